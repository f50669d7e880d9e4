"""sRGB <-> Lab against scikit-image, and the chroma fit that keeps L."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import color as skcolor

from pixforge.data import color

EPS32 = float(np.finfo(np.float32).eps)
#: float32 against scikit-image's float64: the a channel multiplies a difference of cube roots (~1) by 500,
#: and the chain rounds at most 16 times, so Lab agrees to 500 * 16 * eps32 (about 1e-3 Lab units)
LAB_TOL = 500 * 16 * EPS32
#: back to RGB: the steepest sRGB encoding slope (12.92) times the largest row sum of XYZ -> RGB (5.3),
#: times the same 16 roundings
RGB_TOL = 12.92 * 5.3 * 16 * EPS32

EDGES = np.array(
    [
        [0, 0, 0],
        [1, 1, 1],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0, 1, 1],
        [1, 0, 1],
        [0.04045, 0.04045, 0.04045],
        [0.003, 0.002, 0.001],
        [1 / 255, 0, 254 / 255],
    ]
)


def channels_first(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(hwc, -1, 0).copy()).float()


def colours() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((48, 48, 3)), EDGES[None]]


@pytest.mark.parametrize("rgb", colours(), ids=["random", "edges"])
def test_rgb_to_lab_matches_skimage(rgb: np.ndarray) -> None:
    ours = color.rgb_to_lab(channels_first(rgb)).numpy()
    ref = np.moveaxis(skcolor.rgb2lab(rgb), -1, 0)
    assert np.abs(ours - ref).max() <= LAB_TOL


@pytest.mark.parametrize("rgb", colours(), ids=["random", "edges"])
def test_lab_to_rgb_matches_skimage(rgb: np.ndarray) -> None:
    lab = skcolor.rgb2lab(rgb)
    ours = color.lab_to_rgb(channels_first(lab)).numpy()
    assert np.abs(ours - np.moveaxis(skcolor.lab2rgb(lab), -1, 0)).max() <= RGB_TOL
    assert np.abs(ours - np.moveaxis(rgb, -1, 0)).max() <= RGB_TOL


def random_lab(n: int = 32) -> np.ndarray:
    """Lab colours over the whole box L in [0, 100], a, b in [-110, 110]: most are outside sRGB."""
    rng = np.random.default_rng(1)
    return np.stack([rng.uniform(0, 100, (n, n)), *rng.uniform(-110, 110, (2, n, n))], axis=-1)


def test_out_of_gamut_lab_clips_as_skimage() -> None:
    lab = random_lab()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.moveaxis(skcolor.lab2rgb(lab), -1, 0)
    assert np.abs(color.lab_to_rgb(channels_first(lab)).numpy() - ref).max() <= RGB_TOL


def test_fit_chroma_keeps_lightness_and_brings_colours_into_gamut() -> None:
    lab = channels_first(random_lab())
    light, ab = lab[:1], lab[1:]
    fitted = color.fit_chroma(light, ab)
    linear = color.lab_to_linear(torch.cat([light, fitted]))
    # the kept scale is one the gamut test accepted, computed by the same operations
    assert linear.min() >= 0 and linear.max() <= 1
    rgb = color.lab_to_rgb(torch.cat([light, fitted]))
    assert (color.rgb_to_lab(rgb)[0] - light[0]).abs().max() <= LAB_TOL
    inside = color._in_gamut(light, ab)
    assert inside.any() and not inside.all()
    assert torch.equal(fitted[inside.expand_as(ab)], ab[inside.expand_as(ab)])
    # only the chroma shrinks: the hue (direction of ab) is kept
    assert (fitted.norm(dim=0) <= ab.norm(dim=0) + 1e-4).all()


def test_network_scaling_round_trip() -> None:
    photo = torch.rand(2, 3, 16, 16) * 2 - 1
    light, ab = color.photo_to_l_ab(photo)
    assert light.shape == (2, 1, 16, 16) and ab.shape == (2, 2, 16, 16)
    assert light.abs().max() <= 1 and ab.abs().max() <= 1
    assert (color.l_ab_to_photo(light, ab) - photo).abs().max() <= 2 * RGB_TOL
