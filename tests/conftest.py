"""Shared fixtures: a small built-in synthetic dataset, made once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pixforge.data.synth import synthesize

SHARED_FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """The tests' tiny nets run fastest on one thread (and many times slower on a loaded, shared CPU with more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 scenes at 32 px in all four layouts (aligned/, labeled/, unaligned/, derain/)."""
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, count=24, size=32, seed=0)
    return root


@pytest.fixture()
def facades_root() -> Path:
    """The real facades training pairs in ../shared, or skip where they are absent."""
    if not (SHARED_FACADES / "train").is_dir():
        pytest.skip("../shared/data/facades is not available")
    return SHARED_FACADES
