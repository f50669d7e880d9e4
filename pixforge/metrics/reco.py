"""RECO, the relative polar edge coherence of Baroncini, Capodiferro, Di Claudio and Jacovitti (2009).

DRPAN (Wang et al. 2018, sec. 4.1) reports it for de-raining; no library implements it.

The image is filtered with two Laguerre-Gauss circular harmonic kernels of radial order 0 and angular
order n = 1, 3:

    L_n(r, gamma) = -c_n / (sigma sqrt(pi)) (r / sigma)^n exp(-r^2 / (2 sigma^2)) exp(-j n gamma),

with c_1 = 1, c_3 = 1/6, sigma = 2 pixels, sampled on a 17 x 17 support centred on the origin.
With y_n = I * L_n the edge coherence of an image is

    ECO(I) = sum_x -Re{ y_3(x) conj(y_1(x))^3 } / |y_1(x)|^2 = sum_x -|y_3| |y_1| cos(arg y_3 - 3 arg y_1),

the local polar edge coherence -|y_3| / |y_1| cos(...) weighted by the edge energy |y_1|^2. A term
is positive where the local structure is a straight edge (the third-order response is phase-locked
to the first-order one) and near zero for flat regions. ECO has no fixed sign: structures whose
third-order phase opposes the edge's (a checkerboard of 4-pixel cells, some noise and texture) give
negative terms, and an image's sum can be negative. The sum runs over the positions where the whole
17 x 17 support lies inside the image (valid convolution, no padding, so the image border adds no
edges), and |y_1|^2 is offset by ``EPS`` = 1e-12 so that flat regions, where y_1 = 0, contribute 0
instead of 0/0.

I is the BT.601 luminance scaled to [0, 1], the range for which the constant of

    RECO = (ECO(generated) + C) / (ECO(reference) + C),   C = 1,

is meant: ECO is quadratic in the intensity, so on 0..255 values it is 255^2 times larger and C
vanishes beside it. RECO is 1 when the edge structure is preserved, below 1 when edges are lost
(blur), and above 1 when coherent edges are added. Because ECO has no fixed sign, RECO of a
reference whose ECO + C is near 0 or negative is unstable or negative: the set-level
:func:`set_reco` (a ratio of sums over the set) is steadier than the mean of per-image ratios.
"""

from collections.abc import Sequence

import numpy as np
from scipy.signal import fftconvolve

from pixforge.metrics.image import luminance

SIGMA = 2.0
SUPPORT = 17
C_N = {1: 1.0, 3: 1.0 / 6.0}
C = 1.0
EPS = 1e-12
SCALE = 255.0
"""Divisor that brings 0..255 luminance to the [0, 1] range RECO is computed on."""


def laguerre_gauss_kernel(n: int, sigma: float = SIGMA, size: int = SUPPORT) -> np.ndarray:
    """The complex kernel L_n (radial order 0, angular order n in ``C_N``) on a size x size grid."""
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    r = np.hypot(x, y)
    gamma = np.arctan2(y, x)
    radial = (r / sigma) ** n * np.exp(-(r**2) / (2.0 * sigma**2))
    return -C_N[n] / (sigma * np.sqrt(np.pi)) * radial * np.exp(-1j * n * gamma)


def eco(image: np.ndarray) -> float:
    """Polar edge coherence ECO of an RGB image (or an H x W luminance image) in 0..255, on [0, 1] luma."""
    y = luminance(image) / SCALE
    if min(y.shape) < SUPPORT:
        raise ValueError(f"RECO needs images of at least {SUPPORT}x{SUPPORT} pixels, got {y.shape}")
    y1 = fftconvolve(y, laguerre_gauss_kernel(1), mode="valid")
    y3 = fftconvolve(y, laguerre_gauss_kernel(3), mode="valid")
    return float(np.sum(-np.real(y3 * np.conj(y1) ** 3) / (np.abs(y1) ** 2 + EPS)))


def ratio(eco_fake: float, eco_real: float) -> float:
    """(ECO(fake) + C) / (ECO(real) + C) from the two ECO values."""
    return (eco_fake + C) / (eco_real + C)


def reco(fake: np.ndarray, real: np.ndarray) -> float:
    """RECO = (ECO(fake) + C) / (ECO(real) + C) with C = 1; see the module docstring."""
    if fake.shape != real.shape:
        raise ValueError(f"image sizes differ: generated {fake.shape} vs reference {real.shape}")
    return ratio(eco(fake), eco(real))


def set_reco(eco_fakes: Sequence[float], eco_reals: Sequence[float]) -> float:
    """RECO of a set as a ratio of sums: sum_i (ECO(fake_i) + C) / sum_i (ECO(real_i) + C).

    For one image it is :func:`reco`; for a set it weights each image by its reference's ECO + C, so
    a reference with ECO + C near 0 cannot dominate the average as it does a mean of ratios.
    """
    if len(eco_fakes) != len(eco_reals) or not eco_reals:
        raise ValueError(f"need equal, non-empty ECO lists, got {len(eco_fakes)} and {len(eco_reals)}")
    fakes, reals = np.asarray(eco_fakes, np.float64), np.asarray(eco_reals, np.float64)
    return float(np.sum(fakes + C) / np.sum(reals + C))
