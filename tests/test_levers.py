"""The GPU levers on the CPU (DESIGN.md): bf16 autocast, channels_last and torch.compile run the same code
path on the CPU as on CUDA, so every method is trained with each lever, and with all of them, and checked
against fp32/eager from the same start.

- The first step's losses are computed from the same weights and batch, so they differ by the lever's
  arithmetic alone: fp32 levers (channels_last, compile) only reorder sums (float32 rounding, 2^-24
  relative per operation, over a few thousand terms: below 1e-3); bf16 keeps 8 significant bits (2^-9
  relative rounding per operation) through ~10-20 layers: within 5e-2.
- Later steps diverge (GAN training amplifies rounding), so the weights are compared by direction: each
  network's 3-step update with the lever points the same way as without it. Adam's first steps are nearly
  lr x sign(gradient), so weights whose gradient is below bf16's rounding flip at random: measured cosines
  were >= 0.997 with channels_last and 0.67-0.99 with bf16 (CycleGAN's generators lowest). The bounds, 0.9
  for the fp32 levers and 0.25 for bf16, are far above chance (an unrelated update of n >= 10^4 weights
  has |cosine| ~ n^-1/2 <= 0.01) and catch a lever that corrupts or reverses the update.
- A run with every lever saves, resumes and exports (the export is checked with onnxruntime against torch).
- torch.compile (backend ``aot_eager``: dynamo's graphs, guards and recompiles without inductor's C++ build)
  compiles nothing new after its first steps: no recompilation storm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

import pixforge
from pixforge.api import train_config
from pixforge.export import export_run
from pixforge.train import Trainer

#: method -> (synthetic layout, overrides that remove randomness besides the seed's: no dropout)
METHODS: dict[str, tuple[str, dict[str, str]]] = {
    "pix2pix": ("aligned", {"dropout": "0"}),
    "cyclegan": ("unaligned", {}),
    "guidegan": ("aligned", {"dropout": "0"}),
    "pix2pixhd": ("labeled", {}),
    "drpan": ("aligned", {}),
}
COMPILE = {"compile": "true", "compile_backend": "aot_eager"}
LEVERS: dict[str, dict[str, str]] = {
    "bf16": {"amp": "bf16"},
    "channels_last": {"channels_last": "true"},
    "compile": COMPILE,
    "all": {"amp": "bf16", "channels_last": "true", **COMPILE},
}
STEPS = 3
#: relative bound on the first step's losses, and lower bound on the update's cosine (module docstring)
FIRST_STEP_REL = {"bf16": 5e-2, "channels_last": 1e-3, "compile": 1e-3, "all": 5e-2}
MIN_COSINE = {"bf16": 0.25, "channels_last": 0.9, "compile": 0.9, "all": 0.25}


def train(method: str, data: Path, out: Path, lever: dict[str, str], **kw: Any) -> Path:
    layout, options = METHODS[method]
    pixforge.train(
        method,
        data / layout,
        out,
        preset="tiny",
        **{"steps": STEPS, "batch_size": 2, "log_every": 1, **kw},
        overrides={**options, **lever},
    )
    return out


def first_losses(run: Path) -> dict[str, float]:
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["step"] == 1
    return {k: v for k, v in row.items() if k not in ("step", "lr", "time")}


def updates(run: Path, init: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each network's weight update (its float tensors, flattened and joined)."""
    weights = pixforge.checkpoint.read(run).weights
    nets: dict[str, list[torch.Tensor]] = {}
    for k, v in weights.items():
        if v.is_floating_point() and k.endswith("weight"):
            nets.setdefault(k.split(".")[1], []).append((v.float() - init[k].float()).reshape(-1))
    return {name: torch.cat(parts) for name, parts in nets.items()}


@pytest.fixture(scope="module")
def reference(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Per method: its fp32/eager run and its initial weights."""
    root = tmp_path_factory.mktemp("levers")
    out: dict[str, Any] = {}
    for method, (layout, options) in METHODS.items():
        run = train(method, synth_root, root / method, {})
        cfg = train_config(
            method, synth_root / layout, root / f"{method}_init", preset="tiny", overrides=options
        )
        init = Trainer(cfg, root / f"{method}_init").method.state_dict()
        out[method] = (run, {k: v.clone() for k, v in init.items()})
    return out


@pytest.mark.parametrize("lever", list(LEVERS))
@pytest.mark.parametrize("method", list(METHODS))
def test_lever_trains_like_fp32_eager(
    reference: dict[str, Any], synth_root: Path, tmp_path: Path, method: str, lever: str
) -> None:
    base, init = reference[method]
    run = train(method, synth_root, tmp_path / "run", LEVERS[lever])
    got, want = first_losses(run), first_losses(base)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=FIRST_STEP_REL[lever], abs=1e-4), k
    moved, ref = updates(run, init), updates(base, init)
    for net, delta in ref.items():
        cosine = torch.nn.functional.cosine_similarity(moved[net], delta, dim=0)
        assert cosine > MIN_COSINE[lever], (net, float(cosine))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_lever_saves_resumes_and_exports(synth_root: Path, tmp_path: Path, method: str) -> None:
    run = tmp_path / "run"
    train(method, synth_root, run, LEVERS["all"], stop_after=2)
    result = train(method, synth_root, run, LEVERS["all"], resume=True)
    assert json.loads((result / "metrics.jsonl").read_text().splitlines()[-1])["step"] == STEPS
    exported = export_run(run, tmp_path / "model.onnx")
    assert exported.max_diff < 1e-4


@pytest.mark.parametrize("method", list(METHODS))
def test_compile_adds_no_graphs_after_the_first_steps(synth_root: Path, tmp_path: Path, method: str) -> None:
    """Graphs are compiled in the first steps (training and the sample grid's eval mode); further steps reuse
    them: the count of unique graphs dynamo compiled stays the same."""
    layout, options = METHODS[method]
    cfg = train_config(
        method, synth_root / layout, tmp_path / "run", preset="tiny", steps=8, batch_size=2,
        overrides={**options, **COMPILE},
    )  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit(stop_after=2)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    trainer.fit(stop_after=3)
    assert counters["stats"]["unique_graphs"] == graphs
