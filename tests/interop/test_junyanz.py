"""junyanz pix2pix/CycleGAN checkpoints: the reference network and the imported run give the same output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import pixforge
from pixforge.errors import PixforgeError
from pixforge.interop.junyanz import import_junyanz
from pixforge.interop.runs import ImportOptions

#: float32 convolutions summed in a different order differ by a few ulps per layer; 1e-5 (the issue's
#: bound) holds with a wide margin for outputs in [-1, 1] through <= 16 layers
TOLERANCE = 1e-5


def reference_generator(
    junyanz: Any, netG: str, norm: str, ngf: int, seed: int, dropout: bool = False
) -> Any:
    torch.manual_seed(seed)
    net = junyanz.define_G(3, 3, ngf, netG, norm=norm, use_dropout=dropout, init_type="normal", gpu_ids=[])
    for p in net.parameters():  # random, not the near-zero init: every layer must matter
        p.data.normal_(0, 0.2)
    for name, b in net.named_buffers():
        if "running_var" in name:
            b.data.uniform_(0.5, 2)
        elif "running_mean" in name:
            b.data.normal_(0, 0.2)
    return net.eval()


def save(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("netG", "norm", "size"),
    [
        ("unet_128", "batch", 128),
        ("unet_256", "batch", 256),
        ("resnet_6blocks", "batch", 64),
        ("resnet_6blocks", "instance", 64),
        ("resnet_9blocks", "batch", 64),
        ("resnet_9blocks", "instance", 64),
    ],
)
def test_pix2pix_generator_matches_reference(
    junyanz: Any, tmp_path: Path, netG: str, norm: str, size: int
) -> None:
    ref = reference_generator(junyanz, netG, norm, 16, seed=1, dropout=True)
    file = save(ref, tmp_path / "latest_net_G.pth")
    import_junyanz([file], tmp_path / "run", ImportOptions("pix2pix", ngf=None))
    translator = pixforge.load(tmp_path / "run")
    assert translator.config.model.netG == netG and translator.config.model.norm == norm
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        want = ref(x)
        got = translator.method.nets["G"].eval()(x)
    assert (got - want).abs().max().item() < TOLERANCE


def max_difference(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a.eval()(x) - b.eval()(x)).abs().max().item()


def test_cyclegan_both_directions_and_discriminators(junyanz: Any, tmp_path: Path) -> None:
    g_a = reference_generator(junyanz, "resnet_6blocks", "instance", 8, seed=2)
    g_b = reference_generator(junyanz, "resnet_6blocks", "instance", 8, seed=3)
    torch.manual_seed(4)
    d_a = junyanz.define_D(3, 8, "basic", norm="instance", gpu_ids=[])
    folder = tmp_path / "horse2zebra"
    folder.mkdir()
    for name, net in (("G_A", g_a), ("G_B", g_b), ("D_A", d_a)):
        save(net, folder / f"latest_net_{name}.pth")
    import_junyanz([folder], tmp_path / "run", ImportOptions("cyclegan"))
    translator = pixforge.load(tmp_path / "run")
    nets = translator.method.nets
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert max_difference(nets["G_A"], g_a, x) < TOLERANCE
    assert max_difference(nets["G_B"], g_b, x) < TOLERANCE
    assert max_difference(nets["D_A"], d_a, x) < TOLERANCE
    with torch.no_grad():
        want = g_b.eval()(x)
        got = translator.translate_batch({"A": x}, direction="BtoA")["output"]
    assert (got - want).abs().max().item() < TOLERANCE


def test_pix2pix_discriminator_comes_along(junyanz: Any, tmp_path: Path) -> None:
    g = reference_generator(junyanz, "unet_128", "batch", 8, seed=5)
    torch.manual_seed(6)
    d = junyanz.define_D(6, 8, "n_layers", n_layers_D=2, norm="batch", gpu_ids=[])
    files = [save(g, tmp_path / "latest_net_G.pth"), save(d, tmp_path / "latest_net_D.pth")]
    import_junyanz(files, tmp_path / "run", ImportOptions("pix2pix"))
    translator = pixforge.load(tmp_path / "run")
    assert translator.config.model.n_layers == 2
    assert max_difference(translator.method.nets["D"], d, torch.rand(1, 6, 64, 64)) < TOLERANCE


def test_old_formats_data_parallel_prefix_and_instance_norm_stats(junyanz: Any, tmp_path: Path) -> None:
    """``module.`` keys (DataParallel) and the running statistics old torch saved for InstanceNorm."""
    g = reference_generator(junyanz, "resnet_6blocks", "instance", 8, seed=7)
    old = {}
    for key, value in g.state_dict().items():
        old["module." + key] = value
        if key.endswith("conv_block.1.weight"):  # the InstanceNorm after this conv is conv_block.2
            norm = key.replace("conv_block.1.weight", "conv_block.2.")
            old["module." + norm + "running_mean"] = torch.zeros(value.shape[0])
            old["module." + norm + "running_var"] = torch.ones(value.shape[0])
    torch.save(old, tmp_path / "old_net_G.pth")
    import_junyanz([tmp_path / "old_net_G.pth"], tmp_path / "run", ImportOptions("pix2pix"))
    translator = pixforge.load(tmp_path / "run")
    assert max_difference(translator.method.nets["G"], g, torch.rand(1, 3, 32, 32) * 2 - 1) < TOLERANCE


def test_shape_mismatch_names_the_key_and_both_shapes(junyanz: Any, tmp_path: Path) -> None:
    g = reference_generator(junyanz, "resnet_6blocks", "batch", 8, seed=8)
    file = save(g, tmp_path / "latest_net_G.pth")
    with pytest.raises(PixforgeError) as err:
        import_junyanz([file], tmp_path / "run", ImportOptions("pix2pix", ngf=16))
    message = str(err.value)
    assert "\n" not in message
    assert "model.1.weight has shape (8, 3, 7, 7)" in message and "(16, 3, 7, 7)" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "latest_net_G.pth"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(PixforgeError, match="latest_net_G.pth: not a readable PyTorch state dict"):
        import_junyanz([bad], tmp_path / "run", ImportOptions("pix2pix"))
