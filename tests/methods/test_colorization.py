"""Every image method trains on a folder of colour photos with format=colorization and nothing else."""

from __future__ import annotations

import pytest
import torch

import pixforge
from pixforge import visual
from pixforge.data import color

METHODS = ["pix2pix", "drpan", "guidegan", "cyclegan"]


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_on_colour_photos_and_predicts_ab(method, colour_photos, tmp_path):
    result = pixforge.train(
        method, colour_photos, tmp_path / method, preset="tiny", steps=2, overrides={"format": "colorization"}
    )
    assert result.step == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in result.scalars.values())
    translator = pixforge.load(tmp_path / method)
    info = translator.method.info
    assert (info.input_nc, info.output_nc) == (1, 2)
    light = torch.zeros(1, 1, 32, 32)
    assert translator.method.generate({"A": light}).shape == (1, 2, 32, 32)


def test_sample_grids_show_colorization_as_photos():
    photo = torch.rand(2, 3, 8, 8) * 2 - 1
    light, ab = color.photo_to_l_ab(photo)
    shown = visual.with_lightness({"input": light, "output": ab, "target": ab})
    assert shown["input"] is light
    # 1e-3: four times the float32 round-trip bound of tests/data/test_color.py, in [-1, 1] units
    assert (shown["output"] - photo).abs().max() < 1e-3 and shown["target"].shape == (2, 3, 8, 8)
    assert visual.grid({"input": light, "output": ab}).size == (16, 16)
