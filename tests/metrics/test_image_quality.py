import math

import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage.color import rgb2ycbcr
from skimage.metrics import structural_similarity

from pixforge.metrics import image, reco


def reference_vifp(dist: np.ndarray, ref: np.ndarray, sigma_nsq: float = 2.0) -> float:
    """Sheikh & Bovik's pixel-domain VIF written out from the paper's algorithm, with scipy."""
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        half = (n - 1) / 2
        g = np.exp(-((np.arange(n) - half) ** 2) / (2 * (n / 5) ** 2))
        win = np.outer(g, g) / np.outer(g, g).sum()
        if scale > 1:
            ref = correlate2d(ref, win, mode="valid")[::2, ::2]
            dist = correlate2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = correlate2d(ref, win, mode="valid"), correlate2d(dist, win, mode="valid")
        s1 = np.maximum(correlate2d(ref * ref, win, mode="valid") - mu1**2, 0)
        s2 = np.maximum(correlate2d(dist * dist, win, mode="valid") - mu2**2, 0)
        s12 = correlate2d(ref * dist, win, mode="valid") - mu1 * mu2
        g_ = s12 / (s1 + 1e-10)
        sv = s2 - g_ * s12
        flat_ref = s1 < 1e-10
        g_[flat_ref], sv[flat_ref], s1[flat_ref] = 0, s2[flat_ref], 0
        flat_dist = s2 < 1e-10
        g_[flat_dist], sv[flat_dist] = 0, 0
        negative = g_ < 0
        sv[negative], g_[negative] = s2[negative], 0
        sv = np.maximum(sv, 1e-10)
        num += np.sum(np.log10(1 + g_**2 * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return num / den


def test_luminance_uses_bt601_weights():
    pixel = np.array([[[100, 50, 200]]], dtype=np.uint8)
    assert image.luminance(pixel)[0, 0] == pytest.approx(0.299 * 100 + 0.587 * 50 + 0.114 * 200)


def test_psnr_of_a_constant_offset(clean):
    shifted = clean.astype(np.int16) + 10
    assert image.psnr(shifted.astype(np.float64), clean) == pytest.approx(10 * math.log10(255**2 / 100))
    assert image.psnr(clean, clean) == math.inf


def test_y_is_the_luma_of_matlab_rgb2ycbcr_in_16_to_235():
    pixels = np.array([[[100, 50, 200], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    # 16 + (65.481 * 100 + 128.553 * 50 + 24.966 * 200) / 255, white 235, black 16
    np.testing.assert_allclose(image.ycbcr_luma(pixels)[0], [86.46647059, 235.0, 16.0], rtol=1e-9)


def test_psnr_on_y_sees_the_luma_of_an_offset(clean):
    """+10 on R, G and B moves Y by 10 * (65.481 + 128.553 + 24.966) / 255 = 10 * 219 / 255."""
    shifted = clean.astype(np.float64) + 10
    expected = 10 * math.log10(255**2 / (10 * 219 / 255) ** 2)
    assert image.psnr(shifted, clean, color="y") == pytest.approx(expected, rel=1e-9)
    assert image.psnr(shifted, clean, color="rgb") == pytest.approx(10 * math.log10(255**2 / 100))


def test_ssim_on_y_is_single_channel_ssim_of_skimage_rgb2ycbcr(clean):
    tinted = clean.astype(np.float64)
    tinted[..., 2] = np.clip(tinted[..., 2] * 0.6 + 40, 0, 255)  # a blue cast, little change in Y
    noisy = np.clip(tinted + np.random.default_rng(3).normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(
        rgb2ycbcr(noisy)[..., 0],
        rgb2ycbcr(clean)[..., 0],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert image.ssim(noisy, clean, color="y") == pytest.approx(expected, rel=1e-9)
    assert image.ssim(noisy, clean, color="y") > image.ssim(noisy, clean)  # the cast is chroma
    with pytest.raises(ValueError, match="color must be one of rgb, y"):
        image.ssim(noisy, clean, color="ycbcr")


def test_shape_mismatch_is_rejected(clean):
    with pytest.raises(ValueError, match="sizes differ"):
        image.psnr(clean[:32], clean)


def test_ssim_is_the_mean_of_per_channel_gaussian_ssim(clean):
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    per_channel = [
        structural_similarity(
            noisy[..., c].astype(float),
            clean[..., c].astype(float),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        for c in range(3)
    ]
    assert image.ssim(noisy, clean) == pytest.approx(np.mean(per_channel), rel=1e-9)
    assert image.ssim(clean, clean) == pytest.approx(1.0)


def test_vif_matches_the_paper_algorithm_on_luminance(clean):
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
    expected = reference_vifp(image.luminance(noisy), image.luminance(clean))
    assert image.vif(noisy, clean) == pytest.approx(expected, rel=1e-6)


def test_vif_is_one_for_identical_images_lower_for_noise_above_one_for_contrast(clean):
    rng = np.random.default_rng(2)
    mild = np.clip(clean + rng.normal(0, 3, clean.shape), 0, 255).astype(np.uint8)
    strong = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
    mean = clean.mean()
    contrast = np.clip(mean + 1.3 * (clean.astype(float) - mean), 0, 255)
    assert image.vif(clean, clean) == pytest.approx(1.0, abs=1e-6)
    assert 1.0 > image.vif(mild, clean) > image.vif(strong, clean)
    assert image.vif(contrast, clean) > 1.0


def test_vif_rejects_images_smaller_than_41_pixels(clean):
    with pytest.raises(ValueError, match="41x41"):
        image.vif(clean[:40], clean[:40])


def test_heavy_rain_lowers_every_metric(clean, rainy):
    rainy = rainy(clean, veil=0.25, streak=40.0)
    for metric in (image.psnr, image.ssim, image.vif, reco.reco):
        assert metric(rainy, clean) < metric(clean, clean), metric.__name__


def test_streak_only_rain_lowers_psnr_ssim_vif_but_raises_reco(clean, rainy):
    """Streaks are coherent edges: RECO rises above 1 when they dominate (no veil)."""
    rainy = rainy(clean, veil=0.0, streak=70.0)
    for metric in (image.psnr, image.ssim, image.vif):
        assert metric(rainy, clean) < metric(clean, clean), metric.__name__
    assert reco.reco(rainy, clean) > 1.1
