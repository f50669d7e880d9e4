"""Full-reference image quality: PSNR, SSIM and pixel-domain VIF (DRPAN, Wang et al. 2018, sec. 4.1).

Every function takes two images of the same shape, ``fake`` (generated) and ``real`` (reference),
as H x W x 3 RGB arrays with values 0..255 (normally uint8), and returns a Python float.
Shape problems raise ``ValueError``; the evaluation report turns them into a one-line
:class:`~pixforge.errors.PixforgeError` naming the file.

PSNR and SSIM take ``color``: ``"rgb"`` (default) scores the three channels, ``"y"`` the luma Y of
ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` gives it (:func:`ycbcr_luma`), the protocol of the de-raining
literature. DRPAN evaluates de-raining "using the procedure as same as [43]" (ID-CGAN, sec. 4.3) and
names no colour space; the MATLAB scripts of that literature (``rgb2ycbcr`` on ``im2double`` images,
then ``psnr``/``ssim`` on channel 1) score Y, hence the option.
"""

import math
from typing import Literal

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import visual_information_fidelity

BT601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B."""

YCBCR_Y = (65.481, 128.553, 24.966)
"""MATLAB ``rgb2ycbcr``'s Y row for R, G, B in [0, 1]: BT.601 luma scaled to the 16..235 range."""

YCBCR_OFFSET = 16.0

Color = Literal["rgb", "y"]
COLORS: tuple[Color, ...] = ("rgb", "y")

SSIM_SIGMA = 1.5
"""Gaussian window of Wang et al. 2004; skimage truncates it at 3.5 sigma, an 11 x 11 window."""

VIF_SIGMA_NSQ = 2.0
"""Variance of the visual (HVS) noise in VIFp, in 0..255 luminance units (Sheikh & Bovik 2006)."""

VIF_MIN_SIZE = 41
"""Smallest side VIFp accepts: the four scales with valid-mode windows 17, 9, 5, 3 need it."""


def check_pair(fake: np.ndarray, real: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``fake`` and ``real`` are RGB images of one shape."""
    if fake.shape != real.shape:
        raise ValueError(f"image sizes differ: generated {fake.shape} vs reference {real.shape}")
    if fake.ndim != 3 or fake.shape[-1] != 3:
        raise ValueError(f"expected H x W x 3 RGB images, got shape {fake.shape}")


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B as float64 in 0..255; a 2-D array is taken as Y already."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image or an H x W luminance image, got {image.shape}")
    return image @ np.asarray(BT601)


def ycbcr_luma(image: np.ndarray) -> np.ndarray:
    """Y of MATLAB's ``rgb2ycbcr`` in 0..255 units: 16 + (65.481 R + 128.553 G + 24.966 B) / 255.

    R, G, B are 0..255; Y lies in 16..235. It is MATLAB's Y for an ``im2double`` image times 255, in
    float64 and not rounded (MATLAB rounds only when given uint8 input).
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    return YCBCR_OFFSET + image @ np.asarray(YCBCR_Y) / 255.0


def _in_color(fake: np.ndarray, real: np.ndarray, color: Color) -> tuple[np.ndarray, np.ndarray]:
    """The pair as float64 RGB, or as its :func:`ycbcr_luma` for ``color="y"``."""
    check_pair(fake, real)
    if color == "y":
        return ycbcr_luma(fake), ycbcr_luma(real)
    if color != "rgb":
        raise ValueError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
    return np.asarray(fake, np.float64), np.asarray(real, np.float64)


def psnr(fake: np.ndarray, real: np.ndarray, data_range: float = 255.0, color: Color = "rgb") -> float:
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE).

    The MSE runs over all pixels and RGB channels, or over the pixels of Y with ``color="y"`` (the peak
    stays 255, as MATLAB's ``psnr`` with peak 1 on ``im2double`` data). Identical images give ``inf``.
    """
    fake, real = _in_color(fake, real, color)
    mse = float(np.mean((fake - real) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(fake: np.ndarray, real: np.ndarray, color: Color = "rgb") -> float:
    """SSIM with the settings of Wang et al. 2004, as the image-to-image papers use them.

    ``skimage.metrics.structural_similarity`` with a Gaussian window (sigma 1.5, 11 x 11), K1 = 0.01,
    K2 = 0.03, population (not sample) covariances and data range 255. On the RGB image (default)
    SSIM is computed per channel, averaged over the pixels of each channel, and the three channel
    means are averaged; with ``color="y"`` it is the mean SSIM of the :func:`ycbcr_luma` images.
    """
    fake, real = _in_color(fake, real, color)
    return float(
        structural_similarity(
            fake,
            real,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            data_range=255.0,
            channel_axis=-1 if color == "rgb" else None,
        )
    )


def vif(fake: np.ndarray, real: np.ndarray) -> float:
    """Pixel-domain visual information fidelity VIFp (Sheikh & Bovik 2006) on BT.601 luminance 0..255.

    Four scales; at scale s = 1..4 a Gaussian window of N = 2^(5-s) + 1 pixels and sigma N/5, valid
    filtering, and down-sampling by 2 between scales; sigma_nsq = 2. VIFp = sum over scales and
    positions of log10(1 + g^2 sigma_ref^2 / (sigma_v^2 + sigma_nsq)) divided by the same sum of
    log10(1 + sigma_ref^2 / sigma_nsq). It is 1 for identical images, lower for distortions and can
    exceed 1 for a contrast-enhanced image. Computed by torchmetrics' ``visual_information_fidelity``,
    which implements this definition for single-channel input in the 0..255 range (sigma_nsq is an
    absolute variance), so it is given the luminance in float64. Both sides must be at least 41 pixels.
    """
    check_pair(fake, real)
    if min(real.shape[:2]) < VIF_MIN_SIZE:
        raise ValueError(
            f"VIF needs images of at least {VIF_MIN_SIZE}x{VIF_MIN_SIZE} pixels, got {real.shape[:2]}"
        )
    fake_y = torch.from_numpy(luminance(fake))[None, None]
    real_y = torch.from_numpy(luminance(real))[None, None]
    return float(visual_information_fidelity(fake_y, real_y, sigma_n_sq=VIF_SIGMA_NSQ))
