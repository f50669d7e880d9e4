"""RECO, the relative polar edge coherence of Baroncini, Capodiferro, Di Claudio and Jacovitti (2009).

DRPAN (Wang et al. 2018, sec. 4.1) reports it for de-raining; no library implements it.

The image is filtered with two Laguerre-Gauss circular harmonic kernels of radial order 0 and angular
order n = 1, 3:

    L_n(r, gamma) = -c_n / (sigma sqrt(pi)) (r / sigma)^n exp(-r^2 / (2 sigma^2)) exp(-j n gamma),

with c_1 = 1, c_3 = 1/6, sigma = 2 pixels, sampled on a 17 x 17 support centred on the origin.
With y_n = I * L_n the edge coherence of an image is

    ECO(I) = sum_x -Re{ y_3(x) conj(y_1(x))^3 } / |y_1(x)|^2,

large where the local structure is a straight edge (the third-order response is phase-locked to the
first-order one) and near zero for incoherent texture or noise. The sum runs over the positions where
the whole 17 x 17 support lies inside the image (valid convolution, no padding, so the image border
adds no edges), and |y_1|^2 is offset by ``EPS`` = 1e-12 so that flat regions, where y_1 = 0,
contribute 0 instead of 0/0. Then

    RECO = (ECO(generated) + C) / (ECO(reference) + C),   C = 1,

on BT.601 luminance in 0..255. RECO is 1 when the edge structure is preserved, below 1 when edges are
lost (blur), and can exceed 1 when coherent edges are added.
"""

import numpy as np
from scipy.signal import fftconvolve

from pixforge.metrics.image import luminance

SIGMA = 2.0
SUPPORT = 17
C_N = {1: 1.0, 3: 1.0 / 6.0}
C = 1.0
EPS = 1e-12


def laguerre_gauss_kernel(n: int, sigma: float = SIGMA, size: int = SUPPORT) -> np.ndarray:
    """The complex kernel L_n (radial order 0, angular order n in ``C_N``) on a size x size grid."""
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    r = np.hypot(x, y)
    gamma = np.arctan2(y, x)
    radial = (r / sigma) ** n * np.exp(-(r**2) / (2.0 * sigma**2))
    return -C_N[n] / (sigma * np.sqrt(np.pi)) * radial * np.exp(-1j * n * gamma)


def eco(image: np.ndarray) -> float:
    """Polar edge coherence ECO of an RGB image (or an H x W luminance image) in 0..255."""
    y = luminance(image)
    if min(y.shape) < SUPPORT:
        raise ValueError(f"RECO needs images of at least {SUPPORT}x{SUPPORT} pixels, got {y.shape}")
    y1 = fftconvolve(y, laguerre_gauss_kernel(1), mode="valid")
    y3 = fftconvolve(y, laguerre_gauss_kernel(3), mode="valid")
    return float(np.sum(-np.real(y3 * np.conj(y1) ** 3) / (np.abs(y1) ** 2 + EPS)))


def reco(fake: np.ndarray, real: np.ndarray) -> float:
    """RECO = (ECO(fake) + C) / (ECO(real) + C) with C = 1; see the module docstring."""
    if fake.shape != real.shape:
        raise ValueError(f"image sizes differ: generated {fake.shape} vs reference {real.shape}")
    return (eco(fake) + C) / (eco(real) + C)
