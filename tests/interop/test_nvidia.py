"""NVIDIA pix2pixHD checkpoints: the reference networks and the imported run give the same outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import pixforge
from pixforge.interop.nvidia import import_nvidia
from pixforge.interop.runs import ImportOptions
from pixforge.methods.pix2pixhd import boundary_map

TOLERANCE = 1e-5  # as in test_junyanz: float32 summation order only
LABEL_NC = 5


def randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``net`` with N(0, 0.1) weights (not the near-zero init, so that every layer matters), in eval mode."""
    torch.manual_seed(seed)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    return net.eval()


def save(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


def labels_and_instances(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A label map with a few rectangles of classes and instance ids (Cityscapes style: class*1000+k)."""
    torch.manual_seed(0)
    label = torch.zeros(1, 1, side, side, dtype=torch.long)
    instance = torch.zeros_like(label)
    for k in range(6):
        y, x = torch.randint(0, side - 8, (2,)).tolist()
        c = 1 + k % (LABEL_NC - 1)
        label[..., y : y + 12, x : x + 16] = c
        instance[..., y : y + 12, x : x + 16] = c * 1000 + k
    return label, instance


def test_global_generator_matches_reference(nvidia: Any, tmp_path: Path) -> None:
    ref = randomised(
        nvidia.define_G(LABEL_NC + 1, 3, 16, "global", n_downsample_global=3, n_blocks_global=2), 1
    )
    import_nvidia([save(ref, tmp_path / "latest_net_G.pth")], tmp_path / "run", ImportOptions("pix2pixhd"))
    translator = pixforge.load(tmp_path / "run")
    cfg = translator.config.model
    assert (cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global, cfg.n_local_enhancers) == (16, 3, 2, 0)
    assert translator.label_nc == LABEL_NC and cfg.instances and not cfg.encoder
    label, instance = labels_and_instances(64)
    one_hot = torch.zeros(1, LABEL_NC, 64, 64).scatter_(1, label, 1.0)
    with torch.no_grad():
        want = ref(torch.cat([one_hot, boundary_map(instance)], 1))
        got = translator.translate_batch({"A": one_hot, "label": label, "instance": instance})["output"]
    assert (got - want).abs().max().item() < TOLERANCE


def test_enhancer_instances_and_encoder_match_reference(nvidia: Any, tmp_path: Path) -> None:
    """Global + local enhancer on labels, boundaries and the feature encoder's instance-pooled features;
    the multi-scale discriminator comes along."""
    feat_num = 3
    g = nvidia.define_G(
        LABEL_NC + 1 + feat_num,
        3,
        8,
        "local",
        n_downsample_global=3,
        n_blocks_global=2,
        n_local_enhancers=1,
        n_blocks_local=2,
    )
    e = nvidia.define_G(3, feat_num, 8, "encoder", n_downsample_global=3)
    d = nvidia.define_D(LABEL_NC + 1 + 3, 8, 2, num_D=2, getIntermFeat=True)
    files = [
        save(randomised(n, s), tmp_path / f"latest_net_{r}.pth")
        for r, n, s in (("G", g, 2), ("E", e, 3), ("D", d, 4))
    ]
    import_nvidia(files, tmp_path / "run", ImportOptions("pix2pixhd"))
    translator = pixforge.load(tmp_path / "run")
    cfg = translator.config.model
    assert (cfg.ngf, cfg.n_local_enhancers, cfg.n_blocks_local, cfg.feat_num, cfg.num_D) == (16, 1, 2, 3, 2)
    nets = translator.method.nets
    label, instance = labels_and_instances(64)
    photo = torch.rand(1, 3, 64, 64) * 2 - 1
    one_hot = torch.zeros(1, LABEL_NC, 64, 64).scatter_(1, label, 1.0)
    with torch.no_grad():
        features = e(photo, instance)
        assert (nets["E"].eval()(photo, instance) - features).abs().max().item() < TOLERANCE
        g_input = torch.cat([one_hot, boundary_map(instance), features], 1)
        assert (nets["G"].eval()(g_input) - g(g_input)).abs().max().item() < TOLERANCE
        d_input = torch.cat([one_hot, boundary_map(instance), photo], 1)
        for mine, theirs in zip(nets["D"].eval()(d_input), d(d_input), strict=True):
            assert (mine[-1] - theirs[-1]).abs().max().item() < TOLERANCE
