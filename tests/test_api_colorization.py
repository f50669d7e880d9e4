"""A colorization model as users meet it: any photo in, a colour photo out with the input's own lightness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.data import color
from pixforge.data.transforms import to_tensor
from pixforge.errors import PixforgeError

#: float32 agreement of our Lab with scikit-image's (tests/data/test_color.py), in L units
LAB_TOL = 500 * 16 * float(np.finfo(np.float32).eps)


def lab_lightness(image: Image.Image) -> torch.Tensor:
    """L in [0, 100] (H, W) of an 8-bit image."""
    return color.rgb_to_lab(to_tensor(image.convert("RGB")).add(1).div(2))[0]


def rounding_bound(image: Image.Image) -> torch.Tensor:
    """How far 8-bit rounding can move each pixel's L: half a level (1/510) on each channel times
    sum_i |dL/dc_i|, the gradient taken at the rounded colour and doubled for its change within the
    half-level box (first order), plus the float32 tolerance."""
    rgb = to_tensor(image.convert("RGB")).add(1).div(2).requires_grad_(True)
    color.rgb_to_lab(rgb)[0].sum().backward()
    return rgb.grad.abs().sum(0) / 510 * 2 + LAB_TOL


def colour_photo(colour_photos: Path, size: tuple[int, int]) -> Image.Image:
    path = sorted((colour_photos / "test").glob("*.png"))[0]
    return Image.open(path).convert("RGB").resize(size, Image.BICUBIC)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_output_keeps_the_inputs_lightness_at_the_inputs_size(colour_run, colour_photos, mode):
    translator = pixforge.load(colour_run)
    image = colour_photo(colour_photos, (45, 27)).convert(mode)
    out = translator(image)
    assert out.mode == "RGB" and out.size == image.size
    diff = (lab_lightness(out) - lab_lightness(image)).abs()
    assert (diff <= rounding_bound(out)).all(), float(diff.max())


def test_output_has_colour(colour_run, colour_photos):
    out = np.asarray(pixforge.load(colour_run)(colour_photo(colour_photos, (32, 32)).convert("L")), dtype=int)
    assert (out.max(-1) - out.min(-1)).max() > 0


def test_colour_input_is_reduced_to_its_lightness(colour_run, colour_photos):
    translator = pixforge.load(colour_run)
    image = colour_photo(colour_photos, (32, 32))
    grey_l = translator.prepare(image)
    assert grey_l.shape == (1, 1, 32, 32)
    assert torch.equal(grey_l[0, 0], lab_lightness(image) / 50 - 1)


def test_a_one_channel_model_refuses_colour_it_cannot_reduce(colour_run, colour_photos):
    translator = pixforge.load(colour_run)
    translator.config.data.format = "paired"
    with pytest.raises(PixforgeError, match="1-channel"):
        translator.prepare(colour_photo(colour_photos, (32, 32)))
    assert translator.prepare(colour_photo(colour_photos, (32, 32)).convert("L")).shape == (1, 1, 32, 32)


def test_evaluate_a_run_reports_colorfulness_and_shows_grey_inputs(
    colour_run, colour_photos, tmp_path, capsys
):
    report = tmp_path / "report.json"
    images = tmp_path / "images"
    args = [
        "evaluate",
        str(colour_run),
        "--data",
        str(colour_photos),
        "--split",
        "test",
        "--images",
        str(images),
    ]
    main([*args, "--metrics", "colorfulness,psnr", "--out", str(report)])
    written = json.loads(report.read_text())
    values = written["values"]
    assert values["colorfulness_real"] > 0 and "colorfulness_fake" in values and "psnr" in values
    assert "joined with the input's own L" in written["settings"]["translation"]
    shown = np.asarray(Image.open(sorted((images / "inputs").glob("*.png"))[0]), dtype=int)
    assert (shown.max(-1) - shown.min(-1)).max() <= 1  # the grey photo of L (up to 8-bit rounding)
