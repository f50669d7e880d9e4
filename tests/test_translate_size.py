"""Translating at the real size (``size``: native, crop, N) and in overlapping, blended tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import pixforge
from pixforge.api import Translator, blend_window, model_size, size_choice, tile_starts
from pixforge.config import Config, DataConfig
from pixforge.errors import PixforgeError
from pixforge.methods.base import DataInfo
from pixforge.methods.pix2pix import Pix2Pix, Pix2PixConfig
from pixforge.methods.pix2pixhd import Pix2PixHD, Pix2PixHDConfig

#: float32 sums of the same products in another order (a tile's conv sees the same inputs): a few ulps
EXACT = 1e-5


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def p2p_run(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> Path:
    """The tiny pix2pix preset (resize_and_crop, 32 px crops) after one step."""
    out = tmp_path_factory.mktemp("size") / "run"
    pixforge.train("pix2pix", synth_root / "aligned", out, preset="tiny", steps=1)
    return out


def test_native_is_the_default_a_resize_and_crop_model_is_not_squashed(p2p_run: Path) -> None:
    translator = pixforge.load(p2p_run)
    assert translator.config.data.preprocess == "resize_and_crop" and translator.config.data.crop_size == 32
    image = photo(96, 64)
    batch = translator.batch_for(image)
    assert batch["A"].shape[-2:] == (64, 96)
    with translator.method.inference():
        want = translator.method.generate(dict(batch))
    got = np.asarray(translator(image), dtype=np.float32)
    want_img = ((want[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255)
    assert np.abs(got - want_img).max() <= 1  # uint8 rounding only


def test_crop_and_short_side_sizes(p2p_run: Path) -> None:
    translator = pixforge.load(p2p_run)
    image = photo(96, 64)
    assert translator.batch_for(image, size="crop")["A"].shape[-2:] == (32, 32)
    assert translator.batch_for(image, size=48)["A"].shape[-2:] == (48, 72)
    for size in ("native", "crop", 48):
        assert translator.translate(image, size=size)["output"].size == (96, 64)


def test_model_size_and_bad_sizes() -> None:
    data = DataConfig(preprocess="scale_width", crop_size=256)
    assert model_size((1024, 768), data, "crop") == (1024, 768)
    assert model_size((1024, 768), data, 384) == (512, 384)
    assert size_choice("512") == 512 and size_choice(None) == "native"
    for bad in ("big", "0", "-3"):
        with pytest.raises(PixforgeError, match=f"--size {bad}: choose native, crop or a positive number"):
            size_choice(bad)


def test_blend_windows_sum_to_one_across_an_overlap() -> None:
    tile, overlap = 32, 12
    starts = tile_starts(100, tile, overlap)
    assert starts[0] == 0 and starts[-1] == 100 - tile
    total = torch.zeros(100)
    for i, s in enumerate(starts):
        total[s : s + tile] += blend_window(tile, overlap, i > 0, i < len(starts) - 1)
    regular = total[: starts[-1]]  # before the last tile, whose overlap is larger
    assert torch.allclose(regular, torch.ones_like(regular), atol=1e-6)
    assert total.min() > 0


def local_net(input_nc: int) -> nn.Module:
    """A fully convolutional generator whose outputs depend on inputs at most 2 px away, with batch norm
    (in eval mode: fixed statistics)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(input_nc, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1),
        nn.Tanh(),
    )
    net[1].running_mean.normal_(0, 0.1)
    net[1].running_var.uniform_(0.5, 2)
    net.size_multiple = 1
    return net


def rgb_translator() -> Translator:
    cfg = Config(
        method="pix2pix", model=Pix2PixConfig(netG="unet", ngf=4, ndf=4, n_layers=1, test_mode="eval")
    )
    method = Pix2Pix(cfg.model, DataInfo(3, 3, (32, 32)))
    method.nets["G"] = local_net(3)
    return Translator(method, cfg, 0, torch.device("cpu"))


def test_tiled_equals_whole_for_a_local_net_in_eval_mode_no_seam() -> None:
    """Overlap 12 gives a guard of 3 px >= the net's reach of 2 px: every blended pixel is exact."""
    translator = rgb_translator()
    image = photo(100, 70, seed=1)
    whole = translator.translate_batch(translator.batch_for(image))["output"]
    tiled = translator.translate_maps(image, tile=32, overlap=12)["output"]
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < EXACT
    # no seam: the step between neighbouring pixels across each tile border is the whole image's
    for x in tile_starts(100, 32, 12)[1:]:
        for edge in (x, x + 31):
            if edge < 100:
                step_tiled = (tiled[..., edge] - tiled[..., edge - 1]).abs().max()
                step_whole = (whole[..., edge] - whole[..., edge - 1]).abs().max()
                assert (step_tiled - step_whole).abs().item() < 2 * EXACT


def test_tiled_labels_and_instances_equal_whole() -> None:
    """Label maps are tiled with their instance maps (one-hot and boundaries per tile): same result."""
    label_nc = 4
    cfg = Config(
        method="pix2pixhd",
        model=Pix2PixHDConfig(
            ngf=4, n_downsample_global=1, n_blocks_global=1, encoder=False, num_D=1, vgg_loss=False
        ),
    )
    method = Pix2PixHD(cfg.model, DataInfo(label_nc, 3, (32, 32), label_nc))
    method.nets["G"] = local_net(label_nc + 1)
    translator = Translator(method, cfg, 0, torch.device("cpu"))
    rng = np.random.default_rng(2)
    labels = np.repeat(np.repeat(rng.integers(0, label_nc, (9, 12)), 8, 0), 8, 1)[:70, :90]
    instances = labels * 1000 + np.repeat(np.repeat(rng.integers(0, 3, (9, 12)), 8, 0), 8, 1)[:70, :90]
    label_img = Image.fromarray(labels.astype(np.uint8))
    inst_img = Image.fromarray(instances.astype(np.int32))
    whole = translator.translate_batch(translator.batch_for(label_img, inst_img))["output"]
    tiled = translator.translate_maps(label_img, inst_img, tile=32, overlap=12)["output"]
    assert (tiled - whole).abs().max().item() < EXACT
    out = translator.translate(label_img, inst_img, tile=32, overlap=12, size=45)["output"]
    assert out.size == (90, 70)


def test_bad_tiles_are_refused(p2p_run: Path) -> None:
    translator = pixforge.load(p2p_run)
    with pytest.raises(PixforgeError, match="--tile 32: must be more than twice --overlap 16"):
        translator.translate(photo(64, 64), tile=32, overlap=16)
    with pytest.raises(PixforgeError, match="--tile 48: must be a multiple of 32"):
        translator.translate(photo(64, 64), tile=48, overlap=8)


#: every method's tiny run (1 step): method, synthetic layout, overrides
EVERY_METHOD = {
    "pix2pix": ("pix2pix", "aligned", {"test_mode": "eval"}),
    "pix2pixhd": ("pix2pixhd", "labeled", {"preprocess": "none"}),
    "drpan": ("drpan", "aligned", {"test_mode": "eval"}),
    "cyclegan": ("cyclegan", "unaligned", {}),
    "guidegan": ("guidegan", "aligned", {"test_mode": "eval"}),
}


@pytest.fixture(scope="module")
def every_method(train_tiny) -> dict[str, Path]:
    return train_tiny("tiles", EVERY_METHOD)


@pytest.mark.parametrize("name", list(EVERY_METHOD))
def test_every_method_translates_natively_and_in_tiles(every_method: dict[str, Path], name: str) -> None:
    translator = pixforge.load(every_method[name])
    multiple = translator.method.size_multiple
    width, height = 3 * multiple + 8, 2 * multiple + 4
    if translator.label_nc:
        rng = np.random.default_rng(3)
        ids = (
            rng.integers(0, translator.label_nc, (height // 4 + 1, width // 4 + 1)).repeat(4, 0).repeat(4, 1)
        )
        image = Image.fromarray(ids[:height, :width].astype(np.uint8))
        instance = Image.fromarray((ids[:height, :width] * 1000).astype(np.int32))
    else:
        image, instance = photo(width, height, seed=4), None
    whole = translator.translate_maps(image, instance)
    tiled = translator.translate_maps(image, instance, tile=2 * multiple, overlap=multiple // 2)
    assert set(tiled) == {"output"}  # explanation maps describe a whole image, not a tile
    assert tiled["output"].shape[-2:] == (height, width) == whole["output"].shape[-2:]
    assert torch.isfinite(tiled["output"]).all() and tiled["output"].abs().max() <= 1
    assert translator.translate(image, instance, tile=2 * multiple, overlap=multiple // 2)["output"].size == (
        width,
        height,
    )


def test_cli_and_onnx_translate_with_size_and_tiles(p2p_run: Path, tmp_path: Path) -> None:
    from pixforge.cli import main
    from pixforge.export import OnnxTranslator, export_run

    photo(80, 48).save(tmp_path / "in.png")
    main(
        [
            "translate",
            str(p2p_run),
            str(tmp_path / "in.png"),
            "--out",
            str(tmp_path / "a"),
            "--tile",
            "32",
            "--overlap",
            "8",
        ]
    )
    main(
        ["translate", str(p2p_run), str(tmp_path / "in.png"), "--out", str(tmp_path / "b"), "--size", "crop"]
    )
    for folder in ("a", "b"):
        assert Image.open(tmp_path / folder / "in.png").size == (80, 48)
    export_run(p2p_run, tmp_path / "g.onnx", test_mode="eval")
    onnx = OnnxTranslator(tmp_path / "g.onnx")
    torch_translator = pixforge.load(p2p_run)
    torch_translator.method.cfg.test_mode = "eval"
    image = photo(80, 48)
    for kwargs in ({}, {"tile": 32, "overlap": 8}, {"size": 40}):
        got = np.asarray(onnx.translate(image, **kwargs)["output"], dtype=np.int16)
        want = np.asarray(torch_translator.translate(image, **kwargs)["output"], dtype=np.int16)
        assert np.abs(got - want).max() <= 2, kwargs  # onnxruntime vs torch float32, then uint8 rounding
