import numpy as np
import pytest
from scipy import linalg

from pixforge.metrics import kid


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_with_one_full_subset_equals_the_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1.2, size=(7, 5))
    mean, std = kid.kid(x, y, subset_size=7, num_subsets=1)
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_of_identical_sets_fluctuates_around_zero_and_detects_a_shift():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(400, 16))
    other = rng.normal(size=(400, 16))
    same_mean, same_std = kid.kid(feats, other, subset_size=100, num_subsets=50)
    shifted_mean, _ = kid.kid(feats + 0.5, other, subset_size=100, num_subsets=50)
    assert abs(same_mean) < 3 * same_std / np.sqrt(50) + 1e-3
    assert shifted_mean > 20 * same_std


def test_kid_is_deterministic_by_seed_and_uses_the_smaller_set():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    assert kid.kid(x, y, subset_size=50, num_subsets=5, seed=3) == kid.kid(
        x, y, subset_size=50, num_subsets=5, seed=3
    )
    assert kid.kid(x, y, subset_size=50, num_subsets=5, seed=3) != kid.kid(
        x, y, subset_size=50, num_subsets=5, seed=4
    )


def test_fid_of_gaussian_samples_matches_the_closed_form():
    rng = np.random.default_rng(3)
    d = 4
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + np.eye(d), b @ b.T + 0.5 * np.eye(d)
    mu1, mu2 = np.zeros(d), np.array([1.0, -2.0, 0.5, 0.0])
    x = rng.multivariate_normal(mu1, s1, size=200_000)
    y = rng.multivariate_normal(mu2, s2, size=200_000)
    root = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    assert kid.fid(x, y) == pytest.approx(expected, rel=0.02)
    assert kid.fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_survives_singular_covariances():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 10)), rng.normal(size=(5, 10))
    assert np.isfinite(kid.fid(x, y))


def test_feature_arrays_are_checked():
    with pytest.raises(ValueError, match="width"):
        kid.fid(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kid.kid(np.zeros((1, 2)), np.zeros((3, 2)))


def test_subsets_are_at_most_half_of_a_set_smaller_than_the_subset_size():
    assert kid.subset_size_for(106, 106, 1000) == 53  # the facades test split
    assert kid.subset_size_for(106, 300, 1000) == 53
    assert kid.subset_size_for(3, 3, 1000) == 2
    assert kid.subset_size_for(2000, 1500, 1000) == 1000
    assert kid.subset_size_for(7, 7, 7) == 7


def test_kid_of_a_small_set_has_a_spread():
    """With fewer vectors than the subset size, every round drew the whole set: a std of exactly 0."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20, 8)), rng.normal(0.3, 1.0, size=(20, 8))
    mean, std = kid.kid(x, y, subset_size=1000, num_subsets=20)
    assert std > 0.05 * abs(mean)
