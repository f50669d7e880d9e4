"""Procedural test images for the metric tests (64 px: smooth gradients and rectangles)."""

from collections.abc import Callable

import numpy as np
import pytest


def make_clean(size: int = 64) -> np.ndarray:
    """A deterministic RGB scene: a colour gradient with three flat rectangles, uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    image = np.stack([60 + 120 * xx, 50 + 100 * yy, 160 - 80 * xx * yy], axis=-1)
    s = size // 64
    image[10 * s : 30 * s, 12 * s : 40 * s] = (220, 200, 60)
    image[36 * s : 56 * s, 20 * s : 52 * s] = (30, 60, 120)
    image[8 * s : 50 * s, 46 * s : 54 * s] = (200, 40, 40)
    return image.round().astype(np.uint8)


def make_rainy(clean: np.ndarray, veil: float, streak: float, seed: int = 0) -> np.ndarray:
    """Rain: a bright scattering veil of weight ``veil``, thin slanted streaks of height ``streak``, noise."""
    rng = np.random.default_rng(seed)
    size = clean.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    streaks = np.zeros((size, size))
    for offset in rng.integers(-size, size, 14):
        streaks[np.abs(xx - 0.3 * yy - offset) < 0.8] = 1.0
    veiled = (1.0 - veil) * clean.astype(np.float64) + veil * 210.0
    rainy = veiled + streak * streaks[..., None] + rng.normal(0.0, 4.0, clean.shape)
    return np.clip(rainy, 0, 255).round().astype(np.uint8)


@pytest.fixture
def clean() -> np.ndarray:
    return make_clean()


@pytest.fixture
def rainy() -> Callable[..., np.ndarray]:
    """The :func:`make_rainy` factory."""
    return make_rainy
