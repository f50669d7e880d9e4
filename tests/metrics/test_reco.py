import numpy as np
import pytest
from scipy.ndimage import convolve, gaussian_filter

from pixforge.metrics import reco


def test_kernels_have_the_stated_radial_profile_and_no_dc():
    l1, l3 = reco.laguerre_gauss_kernel(1), reco.laguerre_gauss_kernel(3)
    assert l1.shape == l3.shape == (17, 17)
    assert abs(l1.sum()) < 1e-12 and abs(l3.sum()) < 1e-12
    # at r = sigma = 2 on the x axis (gamma = 0): -c_n / (sigma sqrt(pi)) * exp(-1/2)
    assert l1[8, 10] == pytest.approx(-1 / (2 * np.sqrt(np.pi)) * np.exp(-0.5))
    assert l3[8, 10] == pytest.approx(-1 / 6 / (2 * np.sqrt(np.pi)) * np.exp(-0.5))
    # angular order: a quarter turn multiplies L_n by exp(-j n pi / 2)
    assert l3[10, 8] == pytest.approx(l3[8, 10] * np.exp(-1.5j * np.pi))


def test_straight_edges_are_coherent_in_any_orientation():
    step = np.zeros((48, 48))
    step[:, 24:] = 200.0
    assert reco.eco(step) > 0
    assert reco.eco(step.T) == pytest.approx(reco.eco(step), rel=1e-9)
    assert reco.eco(np.full((48, 48), 120.0)) == pytest.approx(0.0, abs=1e-6)


def test_identical_images_give_one(clean):
    assert reco.reco(clean, clean) == 1.0


def test_blur_lowers_reco_strongly(clean):
    blurred = gaussian_filter(clean.astype(float), sigma=(1.5, 1.5, 0))
    assert reco.reco(blurred, clean) < 0.7


def test_mild_noise_barely_changes_reco(clean):
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 3, clean.shape), 0, 255)
    assert reco.reco(noisy, clean) == pytest.approx(1.0, abs=0.03)


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="17x17"):
        reco.eco(np.zeros((16, 40)))


def reference_eco(rgb: np.ndarray) -> float:
    """ECO written out independently, after the public reco.py of aizvorski/video-quality.

    Like that script: the kernels from the Laguerre-Gauss formula on a meshgrid, ``scipy.ndimage``
    convolutions of the real and imaginary parts, and the polar form -|y3| |y1| cos(arg y3 - 3 arg y1).
    Unlike it (on purpose, as pixforge defines RECO): an integer pixel grid instead of linspace, BT.601
    luminance in [0, 1], and only the positions where the 17 x 17 support lies inside the image.
    """
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    xx, yy = np.meshgrid(np.arange(-8.0, 9.0), np.arange(-8.0, 9.0))
    r, gamma = np.sqrt(xx**2 + yy**2), np.arctan2(yy, xx)

    def response(n: int, c: float) -> np.ndarray:
        kernel = -c / (2 * np.sqrt(np.pi)) * (r / 2) ** n * np.exp(-(r**2) / 8) * np.exp(-1j * n * gamma)
        full = convolve(luma, kernel.real, mode="reflect") + 1j * convolve(luma, kernel.imag, mode="reflect")
        return full[8:-8, 8:-8]

    y1, y3 = response(1, 1.0), response(3, 1 / 6)
    return float(np.sum(-np.abs(y3) * np.abs(y1) * np.cos(np.angle(y3) - 3 * np.angle(y1))))


def reference_reco(fake: np.ndarray, real: np.ndarray) -> float:
    return (reference_eco(fake) + 1.0) / (reference_eco(real) + 1.0)


def test_two_values_pinned_against_the_independent_reference(clean, rainy):
    """RECO on [0, 1] luminance: C = 1 is about 4 % of the clean scene's ECO (26.48), not 1e-6 of it."""
    blurred = gaussian_filter(clean.astype(float), sigma=(1.5, 1.5, 0))
    heavy_rain = rainy(clean, veil=0.25, streak=40.0).astype(float)
    assert reference_eco(clean.astype(float)) == pytest.approx(26.48366724, rel=1e-8)
    for fake, pinned in ((blurred, 0.44298378), (heavy_rain, 0.72774284)):
        assert reco.reco(fake, clean) == pytest.approx(reference_reco(fake, clean.astype(float)), rel=1e-9)
        assert reco.reco(fake, clean) == pytest.approx(pinned, rel=1e-7)


def test_eco_has_no_fixed_sign():
    yy, xx = np.mgrid[0:48, 0:48]
    checkerboard = ((yy // 4 + xx // 4) % 2) * 255.0
    corner = ((yy > 24) & (xx > 24)) * 255.0
    assert reco.eco(checkerboard) < -50 and reco.eco(corner) > 40
    assert reco.eco(checkerboard) == pytest.approx(reference_eco(np.stack([checkerboard] * 3, -1)), rel=1e-9)


def test_set_reco_is_a_ratio_of_sums():
    fakes, reals = [20.0, -3.0], [25.0, -1.5]
    assert reco.set_reco(fakes, reals) == pytest.approx((21.0 - 2.0) / (26.0 - 0.5))
    assert reco.set_reco([20.0], [25.0]) == pytest.approx(reco.ratio(20.0, 25.0))
    with pytest.raises(ValueError, match="equal, non-empty"):
        reco.set_reco([1.0], [])
