"""Tiny trained runs (one step each) and live servers on 127.0.0.1 for the serving tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pixforge.serve.app import ServeSettings, create_app
from pixforge.serve.server import background

#: served name -> (method, data layout, overrides)
RUNS = {
    "p2p": ("pix2pix", "aligned", {"test_mode": "eval", "direction": "BtoA"}),
    "hd": ("pix2pixhd", "labeled", {}),
    "drpan": ("drpan", "aligned", {"test_mode": "eval"}),
    "cycle": ("cyclegan", "unaligned", {}),
    "guide": ("guidegan", "aligned", {"test_mode": "eval"}),
}
#: small limits so that the limit tests need small uploads
MAX_PIXELS = 128 * 128
MAX_BYTES = 200_000


@pytest.fixture(scope="session")
def serve_runs(train_tiny: Callable[..., dict[str, Path]]) -> dict[str, Path]:
    return train_tiny("serve_runs", RUNS)


def make_settings(runs: list[Path], **kw: Any) -> ServeSettings:
    return ServeSettings(runs=list(runs), device="cpu", max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES, **kw)


def make_photo(size: tuple[int, int] = (32, 32), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def make_label(size: tuple[int, int] = (32, 32), top: int = 13, seed: int = 0) -> Image.Image:
    """Class ids 0..top-1 in 8 px blocks, mode L."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, top, (size[1] // 8, size[0] // 8)).repeat(8, 0).repeat(8, 1)
    return Image.fromarray(ids.astype(np.uint8))


@pytest.fixture(scope="session")
def settings() -> Callable[..., ServeSettings]:
    """``settings(runs, **options)``: server settings on the CPU with the tests' small limits."""
    return make_settings


@pytest.fixture(scope="session")
def photo() -> Callable[..., Image.Image]:
    """``photo(size=(32, 32), seed=0)``: a random RGB image."""
    return make_photo


@pytest.fixture(scope="session")
def label_map() -> Callable[..., Image.Image]:
    """``label_map(size=(32, 32), top=13, seed=0)``: a block label map of ids below ``top``."""
    return make_label


@pytest.fixture(scope="session")
def server(serve_runs: dict[str, Path]) -> Iterator[str]:
    """All the runs, batching on (8 per pass, 30 ms wait)."""
    app = create_app(make_settings(list(serve_runs.values()), max_batch=8, max_wait_ms=30))
    with background(app) as url:
        yield url
