"""Fixtures for the method tests: the exact-resume check of methods whose training carries state."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import pixforge
from pixforge import checkpoint


def train_tiny(method: str, data: Path, out: Path, **kw):
    opts = {"log_every": 1, "steps": 12, "seed": 3, "batch_size": 1, "sample_count": 1, **kw}
    overrides = {"pool_size": 3, **({"unpaired": True} if method == "guidegan" else {})}
    return pixforge.train(method, data, out, preset="tiny", overrides=overrides, **opts)


def metrics_rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def training_state(run: Path) -> dict[str, torch.Tensor]:
    """Rank 0's training state (pools, caches) of a run's latest checkpoint."""
    return checkpoint.training_state(checkpoint.read_state(checkpoint.resolve(run)))


def _assert_resume_is_exact(method: str, data: Path, tmp: Path) -> None:
    """12 steps equal 6 steps + resume + 6 steps: every logged loss and every weight and state tensor, bit-equal."""
    train_tiny(method, data, tmp / "full")
    assert train_tiny(method, data, tmp / "split", stop_after=6).step == 6
    assert train_tiny(method, data, tmp / "split", resume=True).step == 12
    assert metrics_rows(tmp / "split") == metrics_rows(tmp / "full")
    full, split = checkpoint.read(tmp / "full"), checkpoint.read(tmp / "split")
    assert full.weights.keys() == split.weights.keys() and full.extra.keys() == split.extra.keys()
    assert all(torch.equal(full.weights[k], split.weights[k]) for k in full.weights)
    assert all(torch.equal(full.extra[k], split.extra[k]) for k in full.extra)
    a, b = training_state(tmp / "full"), training_state(tmp / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {f"pool_{s}.{k}" for s in "AB" for k in range(3)} <= set(a)


@pytest.fixture()
def resume_check() -> Callable[[str, Path, Path], None]:
    """``resume_check(method, data, tmp)``: cyclegan, or guidegan unpaired, with pool_size=3 (full by step 3)."""
    return _assert_resume_is_exact
