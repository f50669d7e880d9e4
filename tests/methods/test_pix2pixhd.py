"""pix2pixHD: inputs (labels, boundaries, features), objective, schedule, clusters, styles, editing, Cityscapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge import checkpoint
from pixforge.cli import main
from pixforge.config import DataConfig
from pixforge.data.dataset import TranslationDataset, one_hot
from pixforge.errors import PixforgeError
from pixforge.losses import VGGLoss
from pixforge.methods.base import DataInfo
from pixforge.methods.pix2pixhd import Pix2PixHD, Pix2PixHDConfig, boundary_map

LABEL_NC = 5
TINY = {
    "ngf": 8,
    "n_downsample_global": 2,
    "n_blocks_global": 1,
    "n_blocks_local": 1,
    "ndf": 4,
    "n_layers_D": 2,
    "num_D": 2,
    "nef": 4,
    "n_downsample_E": 2,
    "vgg_loss": False,
}


def make(label_nc: int = LABEL_NC, **kw) -> Pix2PixHD:
    torch.manual_seed(0)
    cfg = Pix2PixHDConfig(**{**TINY, **kw})
    return Pix2PixHD(cfg, DataInfo(label_nc or 3, 3, (32, 32), label_nc))


def scene_batch(n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    """Class 1 background, two touching class-3 instances (ids 3000, 3001) and a class-4 block (id 4)."""
    label = torch.ones(n, 1, size, size, dtype=torch.long)
    instance = torch.ones(n, 1, size, size, dtype=torch.long)
    label[..., 4:12, 4:12] = 3
    instance[..., 4:12, 4:8] = 3000
    instance[..., 4:12, 8:12] = 3001
    label[..., 20:28, 16:30] = 4
    instance[..., 20:28, 16:30] = 4
    g = torch.Generator().manual_seed(1)
    photo = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return {"A": one_hot(label, LABEL_NC), "B": photo, "label": label, "instance": instance}


def test_boundary_map_marks_pixels_with_a_different_4_neighbour() -> None:
    ids = torch.tensor([[1, 1, 1, 1], [1, 2, 2, 1], [1, 1, 1, 1], [3, 1, 1, 1]]).view(1, 1, 4, 4)
    expected = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]).float()
    assert torch.equal(boundary_map(ids)[0, 0], expected)


def test_generator_and_discriminator_inputs() -> None:
    m = make()
    assert m.nets["G"].global_net.body[1].in_channels == LABEL_NC + 1 + 3
    assert m.nets["D"].discriminators[0].blocks[0][0].in_channels == LABEL_NC + 1 + 3
    cond = m.condition(scene_batch())
    assert torch.equal(cond[:, -1], boundary_map(scene_batch()["instance"])[:, 0])
    assert cond[0, -1, 8, 7] == 1 and cond[0, -1, 8, 8] == 1, "touching instances of one class are separated"
    plain = make(instances=False, encoder=False)
    assert plain.nets["G"].global_net.body[1].in_channels == LABEL_NC
    rgb = make(label_nc=0)
    assert rgb.nets["G"].global_net.body[1].in_channels == 3 + 3
    assert rgb.nets["D"].discriminators[0].blocks[0][0].in_channels == 6


def test_without_instance_maps_label_regions_serve_as_instances() -> None:
    m = make()
    b = scene_batch()
    without = {k: v for k, v in b.items() if k != "instance"}
    assert torch.equal(m.condition(without)[:, -1:], boundary_map(b["label"]))


def test_objective_is_gan_plus_feature_matching_plus_vgg() -> None:
    m = make(lambda_feat=10.0, lambda_vgg=10.0)
    m.frozen["vgg"] = VGGLoss(lambda x: [x, x.mean(1, keepdim=True), x, x, x])
    state = m.forward_step(scene_batch())
    d_phase, g_phase = m.phases()
    assert g_phase.nets == ("G", "E"), "the encoder trains jointly with G (§3.4)"
    loss, s = g_phase.loss(state)
    assert set(s) == {"G_GAN", "G_feat", "G_VGG"}
    assert torch.allclose(loss, s["G_GAN"] + 10 * s["G_feat"] + 10 * s["G_VGG"])
    loss.backward()
    assert all(p.grad is not None for p in m.nets["E"].parameters())


def test_d_phase_does_not_backprop_into_g_or_e() -> None:
    m = make()
    state = m.forward_step(scene_batch())
    loss, scalars = m.phases()[0].loss(state)
    loss.backward()
    assert set(scalars) == {"D_real", "D_fake"}
    assert all(p.grad is None for name in ("G", "E") for p in m.nets[name].parameters())


def g_grads_after_step(m: Pix2PixHD, step: int) -> tuple[bool, bool]:
    """(global generator got gradients, enhancer got gradients) from one G loss at ``step``."""
    m.zero_grad(set_to_none=True)
    m.current_step = step
    m.phases()[1].loss(m.forward_step(scene_batch(1)))[0].backward()
    g = m.nets["G"]
    return (
        all(p.grad is not None for p in g.global_net.parameters()),
        all(p.grad is not None for p in g.enhancers.parameters()),
    )


def test_global_generator_is_frozen_for_the_first_steps_then_trained() -> None:
    m = make(n_local_enhancers=1, steps_fix_global=3)
    assert g_grads_after_step(m, 2) == (False, True)
    assert g_grads_after_step(m, 3) == (True, True)
    epochs = make(n_local_enhancers=1, niter_fix_global=2)
    epochs.steps_per_epoch = 5
    assert g_grads_after_step(epochs, 9) == (False, True)
    assert g_grads_after_step(epochs, 10) == (True, True)


def encoder_gradient(m: Pix2PixHD, step: int) -> torch.Tensor:
    """The feature encoder's gradient (all parameters, flattened) from one G loss at ``step``."""
    m.zero_grad(set_to_none=True)
    m.current_step = step
    torch.manual_seed(0)
    m.phases()[1].loss(m.forward_step(scene_batch(1)))[0].backward()
    return torch.cat([p.grad.flatten() for p in m.nets["E"].parameters()])


def test_encoder_trains_through_the_frozen_global_generator() -> None:
    """While G1 is frozen E gets the same gradient as when it is not (NVIDIA only leaves G1's parameters
    out of the optimiser); cutting the graph at G1 would leave E a smaller one (2.86 vs 4.10 in issue 9)."""
    m = make(n_local_enhancers=1, steps_fix_global=3)
    frozen, free = encoder_gradient(m, 0), encoder_gradient(m, 3)
    assert float(frozen.norm()) > 0
    assert torch.allclose(frozen, free, rtol=1e-4, atol=1e-8)


def test_load_init_puts_a_global_generator_into_an_enhanced_model() -> None:
    stage1 = make()
    stage2 = make(n_local_enhancers=1)
    copied = stage2.load_init(stage1.state_dict())
    own = stage2.state_dict()
    g1 = [k for k in own if k.startswith("nets.G.global_net.")]
    assert set(g1) <= set(copied)
    assert all(torch.equal(own[k], stage1.state_dict()[k]) for k in g1)
    assert not any(k.startswith("nets.G.enhancers") for k in copied)
    with pytest.raises(PixforgeError, match="global generator does not fit"):
        make(n_local_enhancers=1, ngf=16).load_init(stage1.state_dict())


def with_centres(m: Pix2PixHD) -> Pix2PixHD:
    """Centres by hand: class c, cluster k has the vector (c, k, -1); classes 1 and 3 have 2 and 4 clusters."""
    centres = torch.zeros(m.n_classes, m.cfg.n_clusters, m.cfg.feat_num)
    counts = torch.zeros(m.n_classes, dtype=torch.long)
    for cls, count in ((1, 2), (3, 4)):
        counts[cls] = count
        for k in range(count):
            centres[cls, k] = torch.tensor([cls, k, -1.0])
    m.load_extra_state({"centres": centres, "centre_counts": counts})
    return m


def test_styles_are_chosen_per_instance() -> None:
    m = with_centres(make())
    b = {k: v for k, v in scene_batch(1).items() if k != "B"}
    f = m.style_features(b, cluster=1)
    car_a, car_b = b["instance"][0, 0] == 3000, b["instance"][0, 0] == 3001
    assert torch.equal(f[0][:, car_a].unique(dim=1).flatten(), torch.tensor([3.0, 1.0, -1.0]))
    assert torch.equal(f[0][:, 0, 0], torch.tensor([1.0, 1.0, -1.0]))
    assert torch.equal(f[0][:, 24, 20], torch.zeros(3)), "a class without clusters gets zero features"
    with pytest.raises(
        PixforgeError, match=r"cluster 3 does not exist for class 1, which has clusters 0\.\.1"
    ):
        m.style_features(b, cluster=3)
    one = m.style_features(b, style_seed=0, clusters={3001: 2}, features={3000: (0.5, 0.5, 0.5)})
    assert torch.equal(one[0][:, car_b].unique(dim=1).flatten(), torch.tensor([3.0, 2.0, -1.0]))
    assert torch.equal(one[0][:, car_a].unique(dim=1).flatten(), torch.tensor([0.5, 0.5, 0.5]))
    seeds = [m.style_features(b, style_seed=s)[0][:, car_a][1, 0].item() for s in range(12)]
    assert len(set(seeds)) > 1 and seeds == [
        m.style_features(b, style_seed=s)[0][:, car_a][1, 0].item() for s in range(12)
    ]


def test_seeded_styles_of_many_instances_in_one_pass() -> None:
    """Every pixel its own instance (1024 ids, as an attacker's map): each instance's seeded style depends on
    (seed, instance, class) only (the same in a map of its own), draws use every cluster, and explicit
    clusters and features land on their instances only."""
    m = with_centres(make())
    label = torch.full((1, 1, 32, 32), 3, dtype=torch.long)
    ids = torch.arange(32 * 32).reshape(1, 1, 32, 32) + 5000
    many = {"A": one_hot(label, LABEL_NC), "label": label, "instance": ids}
    f = m.style_features(many, style_seed=7)[0]
    assert set(f[1].unique().tolist()) == {0.0, 1.0, 2.0, 3.0} and torch.equal(f[0], torch.full_like(f[0], 3))
    for y, x in ((0, 0), (13, 29), (31, 31)):
        alone = {k: v[..., y : y + 1, x : x + 1] for k, v in many.items()}
        assert torch.equal(m.style_features(alone, style_seed=7)[0][:, 0, 0], f[:, y, x])
    assert not torch.equal(m.style_features(many, style_seed=8)[0], f)
    given = m.style_features(many, style_seed=7, clusters={5000: 3, 5001: 0}, features={5002: (9, 9, 9)})[0]
    assert given[:, 0, 0].tolist() == [3.0, 3.0, -1.0] and given[:, 0, 1].tolist() == [3.0, 0.0, -1.0]
    assert given[:, 0, 2].tolist() == [9.0, 9.0, 9.0] and torch.equal(given[:, 1:], f[:, 1:])
    with pytest.raises(PixforgeError, match=r"instance 5000 \(class 3\) has clusters 0\.\.3, not 4"):
        m.style_features(many, style_seed=7, clusters={5000: 4})


def test_explicit_features_for_every_instance_need_no_centres() -> None:
    m = make()
    b = {k: v for k, v in scene_batch(1).items() if k != "B"}
    every = {i: (float(i % 7), 0.0, 1.0) for i in b["instance"].unique().tolist()}
    f = m.style_features(b, style_seed=0, features=every)
    assert torch.equal(f[0][:, 0, 0], torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(PixforgeError, match="no feature clusters"):
        m.style_features(b, style_seed=0, features={3000: (0.0, 0.0, 0.0)})


def listed(**samples: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """A one-sample 'dataset' for :meth:`Pix2PixHD.instance_features`."""
    return [{k: v[0] for k, v in samples.items()}]


@pytest.mark.parametrize(("min_size", "expected"), [(0.0, {1: 2, 3: 3, 4: 1}), (0.5, {1: 1, 3: 1, 4: 1})])
def test_only_instances_above_the_size_threshold_are_clustered(min_size: float, expected: dict) -> None:
    """At 32x32 NVIDIA's threshold is 0.5 * (1024 // 32) = 16 px: the 16 px instances (77, 3000, 3002) are
    left out, the 32 px one (3001) is kept. The default keeps all (the paper: "all instances in the training
    images")."""
    m = make(cluster_min_size=min_size)
    b = scene_batch(1)
    b["instance"][..., 0:4, 28:32] = 77  # a 16 px class-1 instance
    b["instance"][..., 4:12, 4:6] = 3002  # 3000 and 3002 are 8x2 = 16 px, 3001 stays 8x4
    found = m.instance_features(listed(**b), torch.device("cpu"))
    assert {c: len(v) for c, v in found.items()} == expected


def test_kmeans_runs_with_sklearn_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn.cluster

    calls = []
    real = sklearn.cluster.KMeans

    def spy(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(sklearn.cluster, "KMeans", spy)
    m = make()
    m.cluster_features(listed(**scene_batch(1)), torch.device("cpu"))
    assert calls and all(set(kw) == {"n_clusters", "random_state"} for kw in calls)


def test_translation_options_are_checked() -> None:
    m = make()
    b = scene_batch(1)
    with pytest.raises(PixforgeError, match="unknown translation option"):
        m.generate(b, direction="AtoB")
    with pytest.raises(PixforgeError, match="pix2pixhd cluster RUN"):
        m.generate(b, cluster=0)
    with_centres(m)
    with pytest.raises(PixforgeError, match=r"0\.\.9"):
        m.generate(b, cluster=10)
    with pytest.raises(PixforgeError, match="has clusters 0..3"):
        m.generate(b, clusters={3000: 5})
    with pytest.raises(PixforgeError, match="need 3 values"):
        m.generate(b, features={3000: (1.0,)})
    with pytest.raises(PixforgeError, match="no feature encoder"):
        make(encoder=False).generate(b, style_seed=1)
    encoded = m.generate(b)
    assert torch.equal(encoded, m.generate(b, encode=True)), "with a photo the default encodes it"


# end to end -------------------------------------------------------------------------------------------------


def test_tiny_preset_trains_and_stores_clusters(hd_run: Path) -> None:
    loaded = checkpoint.read(hd_run)
    assert {"centres", "centre_counts"} <= set(loaded.extra)
    counts = loaded.extra["centre_counts"]
    assert int((counts > 0).sum()) >= 8 and int(counts.max()) == 10
    assert any(k.startswith("nets.E.") for k in loaded.weights)


def test_random_styles_give_diverse_outputs(hd_run: Path, synth_root: Path, tmp_path: Path) -> None:
    main(["translate", str(hd_run), str(synth_root / "labeled"), "--split", "test", "--random-styles", "2",
          "--out", str(tmp_path), "--device", "cpu"])  # fmt: skip
    first = sorted(tmp_path.glob("*_style0.png"))[0]
    a = np.asarray(Image.open(first), dtype=np.float32)
    b = np.asarray(Image.open(str(first).replace("_style0", "_style1")), dtype=np.float32)
    assert np.abs(a - b).mean() > 0.1


def test_enhancer_stage_starts_from_the_global_run(hd_run: Path, synth_root: Path, tmp_path: Path) -> None:
    """Stage 2 of the schedule: --init-from the global run, the enhancer alone while G1 stays frozen."""
    pixforge.train(
        "pix2pixhd", synth_root / "labeled", tmp_path / "stage2", preset="tiny", steps=2, preprocess="none",
        init_from=hd_run, overrides={"n_local_enhancers": "1", "steps_fix_global": "2"},
    )  # fmt: skip
    stage1, stage2 = checkpoint.read(hd_run).weights, checkpoint.read(tmp_path / "stage2").weights
    g1 = [k for k in stage2 if k.startswith("nets.G.global_net.")]
    assert g1 and all(torch.equal(stage1[k], stage2[k]) for k in g1)
    assert any(k.startswith("nets.G.enhancers.0.") for k in stage2)


def test_activation_checkpointing_trains_exactly_as_without(synth_root: Path, tmp_path: Path) -> None:
    """``--set checkpoint_activations=true`` reaches G (global generator and enhancer) and E, and changes
    nothing but memory: the same logged losses and weights, bit for bit, through the frozen-G1 stage and the
    joint one (non-reentrant checkpointing replays the same kernels on the same values)."""
    overrides = {"n_local_enhancers": "1", "steps_fix_global": "1"}
    for name, on in (("plain", "false"), ("checkpointed", "true")):
        pixforge.train(
            "pix2pixhd", synth_root / "labeled", tmp_path / name, preset="tiny", steps=3, log_every=1,
            overrides={**overrides, "checkpoint_activations": on},
        )  # fmt: skip
    rows = [json.loads(x) for x in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    rows_ckpt = [
        json.loads(x) for x in (tmp_path / "checkpointed" / "metrics.jsonl").read_text().splitlines()
    ]
    drop_time = [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert len(rows) == 3 and drop_time == [{k: v for k, v in r.items() if k != "time"} for r in rows_ckpt]
    plain, ckpt = checkpoint.read(tmp_path / "plain"), checkpoint.read(tmp_path / "checkpointed")
    assert ckpt.config["model"]["checkpoint_activations"] is True
    assert all(torch.equal(plain.weights[k], ckpt.weights[k]) for k in plain.weights)
    model = pixforge.load(tmp_path / "checkpointed").method
    assert model.nets["G"].enhancers[0].checkpoint_activations and model.nets["E"].checkpoint_activations


# the Cityscapes layout ----------------------------------------------------------------------------------------


def write_cityscapes_like(root: Path) -> None:
    """Two 64x32 samples like Cityscapes, named as its files are: label ids 0-33 (uint8), instance ids in 16-bit
    PNGs where id // 1000 is the class of countable objects (two touching cars 26000 and 26001) and stuff keeps
    its id."""
    for split in ("train", "val"):
        for folder in ("images", "labels", "instances"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for k in range(2):
            label = np.full((32, 64), 7, dtype=np.uint8)
            label[:10] = 23
            label[10:16, 40:] = 11
            label[18:28, 10:30] = 26
            label[30:, :4] = 33
            instance = label.astype(np.uint16)
            instance[18:28, 10:20] = 26000
            instance[18:28, 20:30] = 26001
            photo = np.random.default_rng(k).integers(0, 256, (32, 64, 3), dtype=np.uint8)
            stem = f"frankfurt_000000_{k:06d}"
            Image.fromarray(photo).save(root / split / "images" / f"{stem}_leftImg8bit.png")
            Image.fromarray(label).save(root / split / "labels" / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(instance).save(root / split / "instances" / f"{stem}_gtFine_instanceIds.png")


def test_cityscapes_layout_loads_and_trains(tmp_path: Path) -> None:
    write_cityscapes_like(tmp_path)
    cfg = DataConfig(root=str(tmp_path), preprocess="scale_width", load_size=64, label_nc=34, flip=False)
    m = make(label_nc=34, n_downsample_E=3)
    ds = TranslationDataset(tmp_path, "train", cfg, train=True, size_multiple=m.size_multiple)
    assert [r.stem for r in ds.data.records] == ["frankfurt_000000_000000", "frankfurt_000000_000001"]
    assert not ds.data.problems
    item = ds[0]
    assert item["A"].shape == (34, 32, 64) and item["B"].shape == (3, 32, 64)
    assert int(item["label"].max()) == 33 and {26000, 26001, 7} <= set(item["instance"].unique().tolist())
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    edge = boundary_map(batch["instance"])[0, 0]
    assert edge[22, 19] == 1 and edge[22, 20] == 1, "the border between the two cars"
    assert boundary_map(batch["label"])[0, 0, 22, 19] == 0, "which the label map alone does not show"
    assert edge[5, 30] == 0
    state = m.forward_step(batch)
    assert state["fake"].shape == (2, 3, 32, 64)
    for phase in m.phases():
        loss, _ = phase.loss(state)
        loss.backward()
        assert torch.isfinite(loss)


def test_reviser_switches_on_in_pix2pixhd(synth_root: Path, tmp_path: Path) -> None:
    """`--set reviser=true`: DRPAN's reviser on the finest D's proposals, its own phase, G's eq. 9 weighting."""
    run = tmp_path / "hd_reviser"
    main(
        [
            "train",
            "pix2pixhd",
            "--data",
            str(synth_root / "labeled"),
            "--out",
            str(run),
            "--preset",
            "tiny",
            "--steps",
            "2",
            "--set",
            "reviser=true",
            "--set",
            "region_size=16",
            "--set",
            "vgg_loss=false",
        ]
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"R_real", "R_fake", "R_gp", "G_R", "G_region", "G_GAN"} <= set(rows[-1])
    translator = pixforge.load(run)
    assert [p.name for p in translator.method.phases()] == ["D", "R", "G"]
