"""The reference codes the imports are checked against: junyanz's files in ../shared (skipped where absent)
and NVIDIA's ``pix2pixhd`` package (a test-only dependency; its VGG19 import of torchvision is stubbed)."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest

JUNYANZ = Path(__file__).resolve().parents[3] / "shared" / "bench-peers" / "junyanz"


@pytest.fixture(scope="session")
def junyanz() -> Any:
    """junyanz ``models.networks`` (define_G, define_D), or skip where ../shared is absent."""
    if not (JUNYANZ / "models" / "networks.py").is_file():
        pytest.skip("../shared/bench-peers/junyanz is not available")
    sys.path.insert(0, str(JUNYANZ))
    try:
        return importlib.import_module("models.networks")
    finally:
        sys.path.remove(str(JUNYANZ))


@pytest.fixture(scope="session")
def nvidia() -> Any:
    """NVIDIA's ``pix2pixhd.models.networks``; ``torchvision`` (used only by its VGG19) is stubbed when absent."""
    if "torchvision" not in sys.modules:
        stub = types.ModuleType("torchvision")
        stub.models = types.ModuleType("torchvision.models")  # type: ignore[attr-defined]
        sys.modules["torchvision"] = stub
    return pytest.importorskip("pix2pixhd.models.networks")
