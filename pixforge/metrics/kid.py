"""Distribution distances on feature arrays: KID (Binkowski et al. 2018) and FID (Heusel et al. 2017).

Both take N x d feature arrays of the generated and the reference set. They are called KID and FID
only when the features are the pool3 activations of the standard TF-Inception network
(:class:`pixforge.metrics.inception.InceptionFeatures`); see
:func:`pixforge.metrics.inception.distance_names`.
"""

import numpy as np
from scipy import linalg

FID_EPS = 1e-6
"""Offset added to both covariance diagonals when the product's square root is not finite."""


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The cubic kernel of KID, k(x, y) = (x . y / d + 1)^3, for all pairs of rows."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3): the within-set means leave out the diagonal."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def _check_features(feats_fake: np.ndarray, feats_real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fake, real = np.asarray(feats_fake, np.float64), np.asarray(feats_real, np.float64)
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise ValueError(f"expected N x d feature arrays of one width, got {fake.shape} and {real.shape}")
    if min(len(fake), len(real)) < 2:
        raise ValueError(f"need at least 2 feature vectors per set, got {len(fake)} and {len(real)}")
    return fake, real


def subset_size_for(n_fake: int, n_real: int, subset_size: int = 1000) -> int:
    """The KID subset size m for sets of n_fake and n_real feature vectors.

    ``subset_size`` when both sets hold at least that many; otherwise half the smaller set (at least 2,
    the fewest the unbiased MMD^2 takes). Drawing the whole set in every round, as m = min(N, subset_size)
    would, gives every round the same value and a standard deviation of 0, so the "mean ± std over
    subsets" the GuideGAN tables report would say nothing; half-size subsets vary between rounds.
    """
    smaller = min(n_fake, n_real)
    if smaller >= subset_size:
        return subset_size
    return max(2, smaller // 2)


def kid(
    feats_fake: np.ndarray,
    feats_real: np.ndarray,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and standard deviation of the unbiased MMD^2 over subsets.

    Each of ``num_subsets`` rounds draws m = :func:`subset_size_for` (N_fake, N_real, subset_size)
    rows from each set without replacement (independently per round, ``numpy.random.default_rng(seed)``)
    and evaluates :func:`mmd2_unbiased`. The std is the population std (ddof 0) over the rounds.
    Reports multiply both by 100.
    """
    fake, real = _check_features(feats_fake, feats_real)
    m = subset_size_for(len(fake), len(real), subset_size)
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            fake[rng.choice(len(fake), m, replace=False)], real[rng.choice(len(real), m, replace=False)]
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) (Dowson & Landau 1982).

    The square root is ``scipy.linalg.sqrtm``; if it is not finite (a near-singular product), it is
    recomputed with ``FID_EPS`` added to both diagonals, and its real part is taken (the imaginary
    part is numerical error).
    """
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * FID_EPS
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(np.real(covmean)))


def fid(feats_fake: np.ndarray, feats_real: np.ndarray) -> float:
    """Frechet Inception Distance between Gaussians fitted to the two sets (covariance with ddof 1)."""
    fake, real = _check_features(feats_fake, feats_real)
    sigma_fake = np.atleast_2d(np.cov(fake, rowvar=False))
    sigma_real = np.atleast_2d(np.cov(real, rowvar=False))
    return frechet_distance(fake.mean(axis=0), sigma_fake, real.mean(axis=0), sigma_real)
