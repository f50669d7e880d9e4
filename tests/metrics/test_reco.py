import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

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
