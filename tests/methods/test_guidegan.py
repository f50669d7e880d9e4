"""GuideGAN: attention maps, blending, the per-sample cache (flips, batches, checkpoints), both variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import pixforge
from pixforge import checkpoint
from pixforge.api import Translator, resolve_config
from pixforge.cli import main
from pixforge.config import Config, DataConfig, from_dict
from pixforge.data import formats
from pixforge.data.dataset import TranslationDataset
from pixforge.data.transforms import to_tensor
from pixforge.errors import PixforgeError
from pixforge.losses import GANLoss
from pixforge.methods.base import DataInfo
from pixforge.methods.guidegan import (
    AttentionGuide,
    GuideGAN,
    GuideGANConfig,
    SupervisedGuideGAN,
    UnpairedGuideGAN,
    WeightedGANLoss,
    Where,
)
from pixforge.nets.discriminators import AttentionPatchDiscriminator, PatchDiscriminator
from pixforge.train import Trainer

SIZE = 32


def flip_where(maps: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the maps of the samples whose ``flip`` is true."""
    return torch.where(flip.view(-1, 1, 1, 1), maps.flip(-1), maps)


def make(**kw) -> GuideGAN:
    torch.manual_seed(0)
    return GuideGAN(GuideGANConfig(netG="unet", ngf=8, ndf=8, n_layers=3, **kw), DataInfo(3, 3, (SIZE, SIZE)))


def batch(index: tuple[int, ...] = (3, 7), flip: tuple[bool, ...] = (False, True)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = len(index)
    idx = torch.tensor(index)
    return {
        "A": torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1,
        "B": torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1,
        "index": idx,
        "index_A": idx,
        "index_B": idx + 1,
        "flip": torch.tensor(flip),
    }


def first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def roughen(net: nn.Module) -> None:
    """Make a freshly initialised TAM mask branch respond visibly to its input, as a trained one does."""
    torch.manual_seed(5)
    for m in net.mask.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.5)


# the trainable attention module ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_layers", "size"),
    [(1, (6, 6)), (1, (7, 13)), (2, (12, 12)), (2, (32, 20)), (3, (24, 24)), (3, (33, 47))],
)
def test_tam_discriminator_works_wherever_the_patchgan_does(n_layers, size) -> None:
    x = torch.randn(2, 3, *size)
    plain = PatchDiscriminator(3, ndf=4, n_layers=n_layers, norm="none")
    tam = AttentionPatchDiscriminator(3, ndf=4, n_layers=n_layers, norm="none")
    score, mask = tam.attend(x)
    features = tam.features(x)
    assert score.shape == plain(x).shape == tam(x).shape
    assert torch.equal(features[-1], score)
    assert mask.shape == features[-2].shape
    assert mask.shape[1] == 4 * min(2**n_layers, 8)
    assert mask.min() > 0 and mask.max() < 1


def test_tam_weights_the_trunk_by_mask_plus_one() -> None:
    tam = AttentionPatchDiscriminator(3, ndf=4, n_layers=2, norm="none")
    x = torch.randn(1, 3, 32, 32)
    trunk = tam.blocks[2](tam.blocks[1](tam.blocks[0](x)))
    _, mask = tam.attend(x)
    assert torch.allclose(tam.features(x)[-2], (mask + 1) * trunk)
    with pytest.raises(PixforgeError, match="n_layers"):
        AttentionPatchDiscriminator(3, n_layers=0)


# attention maps and blending ------------------------------------------------------------------------------


@pytest.mark.parametrize(("attention", "upsampler"), [("posthoc", "bilinear"), ("trainable", "learned")])
def test_attention_maps_have_input_size_unit_range_and_are_per_sample(attention, upsampler) -> None:
    m = make(attention=attention, upsampler=upsampler, norm="instance")
    if attention == "trainable":
        roughen(m.nets["D"])
    if upsampler == "learned":
        nn.init.normal_(m.nets["T"].body[-1].weight, 0.0, 0.5)
    b = batch()
    with m.inference():
        out = m.generate(b)
        maps = m.explain(b, out)
        guide = m.guides["AtoB"]
        judged = torch.cat([b["A"], out], dim=1)
        low = guide.attention_map(m.nets["D"], judged)
        alone = guide.attention_map(m.nets["D"], judged[:1])
    seen = (maps["attention_output"] + 1) / 2
    assert seen.shape == (2, 1, SIZE, SIZE)
    assert seen.min() >= 0 and seen.max() <= 1
    assert not torch.allclose(seen[0], seen[1], atol=1e-3)
    assert low.flatten(1).min(1).values.tolist() == [0, 0]
    assert low.flatten(1).max(1).values.tolist() == [1, 1]
    assert torch.allclose(alone, low[:1], atol=1e-5), "normalised per sample, not per batch"
    assert torch.equal(maps["attention"], torch.ones(2, 1, SIZE, SIZE)), "all ones at test time"


def test_posthoc_map_is_the_normalised_mean_magnitude_of_the_chosen_conv() -> None:
    d = PatchDiscriminator(3, ndf=4, n_layers=3, norm="none")
    x = torch.randn(2, 3, SIZE, SIZE)
    a = d.features(x)[1].abs().mean(1, keepdim=True)
    lo, hi = a.amin((1, 2, 3), keepdim=True), a.amax((1, 2, 3), keepdim=True)
    expected = (a - lo) / (hi - lo)
    assert torch.allclose(AttentionGuide("posthoc", 2, "rhp").attention_map(d, x), expected)


def test_rhp_with_all_ones_doubles_and_with_all_zeros_is_the_identity() -> None:
    guide = AttentionGuide("posthoc", 4, "rhp")
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(guide.blend(x, torch.ones(2, 1, 8, 8)), 2 * x)
    assert torch.equal(guide.blend(x, torch.zeros(2, 1, 8, 8)), x)
    assert torch.equal(guide.guide(x), 2 * x), "the test-time map is all ones"


def test_alpha_blending_adds_a_generator_input_channel() -> None:
    guide = AttentionGuide("posthoc", 4, "alpha")
    x, maps = torch.randn(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    assert torch.equal(guide.blend(x, maps), torch.cat([x, maps], 1))
    rhp, alpha = make(), make(blend="alpha")
    assert first_conv(rhp.nets["G"]).in_channels == 3 and first_conv(alpha.nets["G"]).in_channels == 4
    assert first_conv(alpha.nets["D"]).in_channels == 6, "D still sees concat(x, y)"
    assert alpha.info.input_nc == 3
    unpaired = make(blend="alpha", unpaired=True)
    assert [first_conv(unpaired.nets[g]).in_channels for g in ("G_A", "G_B", "D_A", "D_B")] == [4, 4, 3, 3]
    with alpha.inference():
        assert alpha.generate(batch()).shape == (2, 3, SIZE, SIZE)


# the cache ------------------------------------------------------------------------------------------------


def ramp() -> torch.Tensor:
    return torch.linspace(0, 1, 16).view(1, 1, 4, 4)


def test_flipped_sample_gets_its_cached_map_flipped() -> None:
    guide = AttentionGuide("posthoc", 4, "rhp")
    x = torch.zeros(2, 3, 4, 4)
    guide.cache.store(Where(torch.tensor([5]), torch.tensor([False])), ramp())
    guide.cache.store(Where(torch.tensor([6]), torch.tensor([True])), ramp())
    index = torch.tensor([5, 6])
    upright = guide.map_for(x, Where(index, torch.tensor([False, False])))
    assert torch.allclose(upright[0], ramp()[0])
    assert torch.allclose(upright[1], ramp()[0].flip(-1)), "stored in the unflipped frame"
    mixed = guide.map_for(x, Where(index, torch.tensor([True, False])))
    assert torch.allclose(mixed[0], ramp()[0].flip(-1))
    assert torch.allclose(mixed[1], upright[1])


def test_unseen_samples_and_test_time_get_all_ones() -> None:
    guide = AttentionGuide("posthoc", 4, "rhp")
    x = torch.zeros(2, 3, 4, 4)
    where = Where(torch.tensor([2, 9]), torch.tensor([False, False]))
    assert torch.equal(guide.map_for(x, where), torch.ones(2, 1, 4, 4))
    guide.cache.store(Where(torch.tensor([2]), torch.tensor([False])), ramp())
    maps = guide.map_for(x, where)
    assert torch.allclose(maps[0], ramp()[0]) and torch.equal(maps[1], torch.ones(1, 4, 4))
    assert torch.equal(guide.map_for(x), torch.ones(2, 1, 4, 4))
    assert guide.cache.maps is not None and len(guide.cache.maps) == 10, "grows to the largest index"


def capture_inputs(net: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    net.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_generator_input_carries_ds_view_of_the_previous_visit() -> None:
    m = make()
    inputs = capture_inputs(m.nets["G"])
    first = batch()
    state = m.forward_step(first)
    guide = m.guides["AtoB"]
    judged = torch.cat([first["A"], state["fake_B"].detach()], dim=1)
    previous = guide.upsample(guide.attention_map(m.nets["D"], judged), (SIZE, SIZE))
    assert torch.equal(inputs[0], 2 * first["A"]), "all ones at the first visit"
    flipped = torch.tensor([True, False])
    second = {**first, "A": flip_where(first["A"], flipped), "flip": first["flip"] ^ flipped}
    m.forward_step(second)
    expected = (flip_where(previous, flipped) + 1) * second["A"]
    assert torch.allclose(inputs[1], expected, atol=1e-6)
    assert torch.equal(state["real_A"], first["A"]), "D is conditioned on the raw input"


def test_learned_transfer_trains_with_the_generators() -> None:
    m = make(upsampler="learned")
    assert [p.nets for p in m.phases()] == [("D",), ("G", "T")]
    m.forward_step(batch())
    loss, _ = m.phases()[1].loss(m.forward_step(batch()))
    loss.backward()
    assert m.nets["T"].body[-1].weight.grad.abs().sum() > 0


def test_unpaired_directions_are_guided_by_their_own_discriminators() -> None:
    m = make(unpaired=True, norm="instance")
    b = batch()
    state = m.forward_step(b)
    for direction, net, fake, key in (
        ("AtoB", "D_A", "fake_B", "index_A"),
        ("BtoA", "D_B", "fake_A", "index_B"),
    ):
        guide = m.guides[direction]
        view = guide.attention_map(m.nets[net], state[fake].detach())
        assert torch.allclose(guide.cache.maps[b[key]], flip_where(view, b["flip"]), atol=1e-6)
        assert guide.cache.seen.nonzero().flatten().tolist() == b[key].tolist()


def test_unaligned_items_say_which_b_image_they_carry(synth_root: Path) -> None:
    root = synth_root / "unaligned"
    for direction in ("AtoB", "BtoA"):
        cfg = DataConfig(preprocess="none", flip=False, direction=direction)
        ds = TranslationDataset(root, "train", cfg, train=True, fmt="unaligned")
        a_files = [r.files["A"] for r in ds.data.records]
        files = (
            {"A": a_files, "B": ds.data.b_files}
            if direction == "AtoB"
            else {"A": ds.data.b_files, "B": a_files}
        )
        assert ds.domain_sizes() == (len(files["A"]), len(files["B"]))
        item = ds[(4, 11)]
        for side in ("A", "B"):
            image = to_tensor(formats.read_image(files[side][item[f"index_{side}"]]))
            assert torch.equal(item[side], image)


# configuration --------------------------------------------------------------------------------------------


def test_variants_and_auto_choices() -> None:
    supervised = GuideGAN(GuideGANConfig(ngf=4, ndf=4), DataInfo(3, 3, (128, 128)))
    assert isinstance(supervised, SupervisedGuideGAN) and supervised.name == "guidegan"
    assert (supervised.cfg.netG, supervised.cfg.norm, supervised.cfg.dropout) == ("unet_128", "instance", 0.5)
    assert supervised.gan_loss.weight == 10.0
    cfg = GuideGANConfig(unpaired=True).cyclegan()
    assert (cfg.netG, cfg.norm, cfg.dropout, cfg.lambda_cycle) == ("resnet_9blocks", "instance", 0.0, 10.0)
    assert cfg.lambda_identity == 0.0, "eq. 11 has no identity term (ASGIT lambda_identity 0)"
    unpaired = make(unpaired=True, attention="trainable")
    assert isinstance(unpaired, UnpairedGuideGAN)
    assert isinstance(unpaired.nets["D_A"], AttentionPatchDiscriminator)


def test_gan_term_is_weighted_by_lambda_gan() -> None:
    pred = torch.randn(2, 1, 4, 4)
    assert torch.allclose(WeightedGANLoss("lsgan", 10.0)(pred, True), 10 * GANLoss("lsgan")(pred, True))
    m = make()
    loss, s = m.phases()[1].loss(m.forward_step(batch()))
    assert torch.allclose(loss, s["G_GAN"] + 10 * s["G_L1"])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"attention_layer": 6}, "attention_layer"),
        ({"attention_layer": 0}, "attention_layer"),
        ({"attention": "trainable", "n_layers": 0}, "n_layers"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_options_are_refused(options, match) -> None:
    with pytest.raises(PixforgeError, match=match):
        resolve_config("guidegan", overrides=options)


def test_translation_options_are_refused() -> None:
    with pytest.raises(PixforgeError, match="cluster"):
        make().generate(batch(), cluster=1)


# training end to end --------------------------------------------------------------------------------------


@pytest.mark.parametrize("unpaired", [False, True], ids=["supervised", "unpaired"])
@pytest.mark.parametrize(
    ("attention", "blend", "upsampler"),
    [
        ("posthoc", "rhp", "bilinear"),
        ("posthoc", "alpha", "learned"),
        ("trainable", "rhp", "learned"),
        ("trainable", "alpha", "bilinear"),
    ],
)
def test_every_combination_trains_with_the_tiny_preset(
    synth_root: Path, tmp_path: Path, unpaired, attention, blend, upsampler
) -> None:
    data = synth_root / ("unaligned" if unpaired else "aligned")
    flags = {"data.root": str(data), "steps": 2, "batch_size": 2, "sample_count": 1}
    options = {"unpaired": unpaired, "attention": attention, "blend": blend, "upsampler": upsampler}
    cfg = resolve_config("guidegan", preset="tiny", flags=flags, overrides=options)
    result = Trainer(cfg, tmp_path).fit()
    assert result.step == 2 and result.scalars
    assert all(torch.isfinite(torch.tensor(v)) for v in result.scalars.values())
    extra = training_state(tmp_path)
    for direction in ("AtoB", "BtoA") if unpaired else ("AtoB",):
        assert int(extra[f"attention_{direction}_seen"].sum()) > 0
        assert extra[f"attention_{direction}"].min() >= 0 and extra[f"attention_{direction}"].max() <= 1


def training_state(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.training_state(checkpoint.read_state(checkpoint.resolve(run)))


def cache(run: Path) -> torch.Tensor:
    return training_state(run)["attention_AtoB"]


def test_cache_survives_checkpoint_and_resume(synth_root: Path, tmp_path: Path) -> None:
    common = {"preset": "tiny", "steps": 4, "batch_size": 8, "sample_count": 1}
    data = synth_root / "aligned"
    pixforge.train("guidegan", data, tmp_path / "stopped", stop_after=2, **common)
    saved, state = checkpoint.read(tmp_path / "stopped"), training_state(tmp_path / "stopped")
    assert saved.step == 2 and state["attention_AtoB_seen"].sum() == 16
    resumed = Trainer(from_dict(saved.config, GuideGANConfig), tmp_path / "stopped", resume=True)
    restored = resumed.method.guides["AtoB"].cache
    assert torch.equal(restored.maps, state["attention_AtoB"])
    assert torch.equal(restored.seen, state["attention_AtoB_seen"])
    assert len(restored.maps) == 20, "one row per training sample"
    resumed.fit()
    pixforge.train("guidegan", data, tmp_path / "straight", **common)
    assert torch.equal(cache(tmp_path / "stopped"), cache(tmp_path / "straight"))


def test_translate_writes_attention_maps(synth_root: Path, tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    main(
        ["train", "guidegan", "--data", str(synth_root / "aligned"), "--out", str(run), "--preset", "tiny"]
        + ["--steps", "2", "--set", "attention=trainable"]
    )
    main(
        ["translate", str(run), str(synth_root / "aligned"), "--out", str(out), "--show-attention", "--html"]
    )
    names = sorted(p.name for p in out.glob("*_attention*.png"))
    assert len(names) == 4 and sum(n.endswith("_attention_output.png") for n in names) == 2
    attention = Image.open(next(out.glob("*_attention.png")))
    assert attention.size == (SIZE, SIZE) and (np.asarray(attention.convert("L")) == 255).all()
    assert (run / "samples" / "latest.png").is_file()


def test_translator_gives_attention_for_the_chosen_direction() -> None:
    m = make(unpaired=True, norm="instance")
    translator = Translator(
        m, Config("guidegan", m.options, DataConfig(crop_size=SIZE)), 0, torch.device("cpu")
    )
    image = Image.fromarray((torch.rand(SIZE, SIZE, 3) * 255).byte().numpy())
    maps = {d: translator.translate(image, direction=d) for d in ("AtoB", "BtoA")}
    assert all(set(v) == {"output", "attention", "attention_output"} for v in maps.values())
    assert maps["AtoB"]["attention_output"].tobytes() != maps["BtoA"]["attention_output"].tobytes()


def test_unpaired_resume_is_exact_past_the_pool_filling(
    synth_root: Path, tmp_path: Path, resume_check
) -> None:
    resume_check("guidegan", synth_root / "unaligned", tmp_path)


def test_unpaired_objective_is_eq_11_gan_weight_one_and_no_identity() -> None:
    m = make(unpaired=True, norm="instance")
    assert m.gan_loss.weight == 1.0
    loss, s = m.phases()[0].loss(m.forward_step(batch()))
    assert set(s) == {"G_A", "G_B", "cycle_A", "cycle_B"}
    pred = m.nets["D_A"](m.forward_step(batch())["fake_B"])
    assert torch.allclose(
        m.gan_loss(pred, True, for_discriminator=False), GANLoss("lsgan")(pred, True, False)
    )
    assert torch.allclose(loss, s["G_A"] + s["G_B"] + 10 * (s["cycle_A"] + s["cycle_B"]))
    assert make(unpaired=True, norm="instance", lambda_gan=10.0).gan_loss.weight == 10.0


@pytest.mark.parametrize("blend", ["rhp", "alpha"])
def test_reconstruction_and_identity_passes_feed_the_generators_unguided(blend) -> None:
    m = make(unpaired=True, norm="instance", blend=blend, lambda_identity=0.5)
    inputs = {g: capture_inputs(m.nets[g]) for g in ("G_A", "G_B")}
    b = batch()
    state = m.forward_step(b)
    m.phases()[0].loss(state)
    ones = torch.ones(2, 1, SIZE, SIZE)

    def raw(x: torch.Tensor) -> torch.Tensor:
        return x if blend == "rhp" else torch.cat([x, ones], 1)

    guided_a, rec_b, idt_a = inputs["G_A"]
    guided_b, rec_a, idt_b = inputs["G_B"]
    assert torch.equal(guided_a, m.guides["AtoB"].blend(b["A"], ones)), "first visit: the all-ones map"
    assert torch.equal(rec_a, raw(state["fake_B"].detach())), "eq. 10: G_B reconstructs from G_A's output"
    assert torch.equal(rec_b, raw(state["fake_A"].detach()))
    assert torch.equal(idt_a, raw(b["B"])) and torch.equal(idt_b, raw(b["A"]))
    assert torch.equal(guided_b, m.guides["BtoA"].blend(b["B"], ones))


@pytest.mark.parametrize(
    ("preset", "gan_weight", "identity", "norm"),
    [
        ("horse2zebra", 1.0, 0.0, "instance"),
        ("cityscapes_unpaired", 1.0, 0.0, "instance"),
        ("cityscapes", 10.0, 0.0, "instance"),
        ("facades", 1.0, 0.0, "batch"),
    ],
)
def test_presets_follow_the_paper_and_the_authors_code(preset, gan_weight, identity, norm) -> None:
    """facades is not a paper experiment: it takes pix2pix's objective, for the reason its file gives."""
    model = resolve_config("guidegan", preset=preset).model
    assert (model.gan_weight, model.lambda_identity, model.norm) == (gan_weight, identity, norm)
    if preset == "facades":
        assert (model.gan_mode, model.lambda_l1, model.attention) == ("vanilla", 100.0, "posthoc")


# the cache follows the crop (parity issue 9, item 9) ------------------------------------------------------

FRAME = (44, 40)
HOT = (30, 21)


def visit(x0: int, y0: int, flip: bool) -> dict[str, torch.Tensor]:
    """A batch of sample 4 cropped at (x0, y0) from a 44x40 loaded image; A is all ones, so x' = M + 1."""
    box = torch.tensor([[x0, y0, SIZE, SIZE, *FRAME]], dtype=torch.float32)
    flips = torch.tensor([flip])
    ones, index = torch.ones(1, 3, SIZE, SIZE), torch.tensor([4])
    return {
        "A": ones,
        "B": -ones,
        "index": index,
        "index_A": index,
        "flip": flips,
        "flip_A": flips,
        "box_A": box,
    }


def pixel_of(x: int, y: int, x0: int, y0: int, flip: bool) -> tuple[int, int]:
    """The (row, column) of the tensor that shows image pixel (x, y) for a crop at (x0, y0)."""
    c = x - x0
    return y - y0, SIZE - 1 - c if flip else c


def test_a_cached_hot_pixel_lands_on_the_same_image_pixel_under_other_crops_and_flips() -> None:
    m = make()
    guide = m.guides["AtoB"]
    first = (5, 3, True)
    hot_map = torch.zeros(1, 1, SIZE, SIZE)
    hot_map[(0, 0, *pixel_of(*HOT, *first))] = 1.0
    guide.attention_map = lambda net, x: hot_map
    m.forward_step(visit(*first))
    guide.remember = lambda *args: None
    inputs = capture_inputs(m.nets["G"])
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    for x0, y0, flip in [(0, 0, False), (12, 8, True), (3, 5, False), (10, 2, True), (5, 3, False)]:
        m.forward_step(visit(x0, y0, flip))
        maps = inputs[-1][0, 0] - 1
        r, c = pixel_of(*HOT, x0, y0, flip)
        assert maps[r, c] == pytest.approx(1.0, abs=1e-5), (x0, y0, flip)
        image_x = x0 + (SIZE - 1 - cols if flip else cols)
        covered = (image_x >= 5) & (image_x < 5 + SIZE) & (rows + y0 >= 3) & (rows + y0 < 3 + SIZE)
        covered[r, c] = False
        assert maps[covered].abs().max() < 1e-5, "zero wherever the first crop saw no attention"
        outside = (image_x < 5) | (image_x >= 5 + SIZE) | (rows + y0 < 3)
        assert torch.equal(maps[outside], torch.ones_like(maps[outside])), "ones where no crop has been"


def test_a_coarse_map_follows_the_crop_to_its_image_region() -> None:
    """At D's resolution (8x8 cells of 4 px for a 32 px crop) a hot cell comes back over its image pixels."""
    guide = AttentionGuide("posthoc", 4, "rhp")
    index, upright = torch.tensor([0]), torch.tensor([False])
    whole = torch.tensor([[0.0, 0.0, 48, 40, 48, 40]])
    guide.cache.store(Where(index, upright, whole), torch.zeros(1, 1, 10, 12), (40, 48))
    assert guide.cache.maps.shape == (1, 1, 10, 12), "a canvas over the whole 48x40 image at D's resolution"
    cells = torch.zeros(1, 1, 8, 8)
    cells[0, 0, 3, 5] = 1.0
    guide.cache.store(Where(index, upright, torch.tensor([[8.0, 4.0, 32, 32, 48, 40]])), cells, (32, 32))
    for x0, y0, flip in [(0, 8, False), (16, 0, True), (4, 4, False)]:
        where = Where(index, torch.tensor([flip]), torch.tensor([[float(x0), float(y0), 32, 32, 48, 40]]))
        maps = guide.map_for(torch.zeros(1, 3, 32, 32), where)[0, 0]
        row, col = divmod(int(maps.argmax()), 32)
        image_x, image_y = x0 + (31 - col if flip else col), y0 + row
        assert 16 <= image_y < 20 and 28 <= image_x < 32, "within the hot cell's 4x4 image pixels"


@pytest.mark.parametrize("unpaired", [False, True], ids=["supervised", "unpaired"])
def test_attention_none_is_the_same_model_with_the_map_left_out(
    synth_root: Path, tmp_path: Path, unpaired
) -> None:
    """The paper's baseline: GuideGAN's networks and losses, G fed the raw input, no attention parameters."""
    m = make(attention="none", blend="alpha", upsampler="learned", unpaired=unpaired)
    ref = make(attention="posthoc", blend="rhp", upsampler="bilinear", unpaired=unpaired)
    assert "T" not in m.nets
    assert not any(isinstance(net, AttentionPatchDiscriminator) for net in m.nets.values())
    assert {k: v.shape for k, v in m.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    seen = []
    m.nets["G" if not unpaired else "G_A"].register_forward_pre_hook(lambda net, args: seen.append(args[0]))
    b = batch()
    for _ in range(2):
        seen.clear()
        m.forward_step(b)
        assert torch.equal(seen[0], b["A"])  # G's input of the step (unpaired: G_A's, before the cycle)
    assert m.training_state().keys() == ref.training_state().keys() - {
        k for k in ref.training_state() if k.startswith("attention_")
    }
    data = synth_root / ("unaligned" if unpaired else "aligned")
    flags = {"data.root": str(data), "steps": 2, "batch_size": 2, "sample_count": 1}
    cfg = resolve_config(
        "guidegan", preset="tiny", flags=flags, overrides={"unpaired": unpaired, "attention": "none"}
    )
    result = Trainer(cfg, tmp_path).fit()
    assert result.step == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.scalars.values())
    assert not any(k.startswith("attention_") for k in training_state(tmp_path))
