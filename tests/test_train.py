"""The trainer: exact resume, atomic checkpoints, pruning, Ctrl-C, logging."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

import pixforge
from pixforge import checkpoint
from pixforge.train import Trainer, lr_factor, progress_text


def tiny(data: Path, out: Path, **kw):
    opts = {"direction": "BtoA", "log_every": 1, "steps": 20, "seed": 3, "batch_size": 2, **kw}
    return pixforge.train("pix2pix", data, out, preset="tiny", **opts)


def losses(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.read(run).weights


def test_resume_is_exact(synth_root: Path, tmp_path: Path) -> None:
    data = synth_root / "aligned"
    tiny(data, tmp_path / "full")
    first = tiny(data, tmp_path / "split", stop_after=10)
    assert first.step == 10
    second = tiny(data, tmp_path / "split", resume=True)
    assert second.step == 20
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    full, split = weights(tmp_path / "full"), weights(tmp_path / "split")
    assert full.keys() == split.keys()
    assert all(torch.equal(full[k], split[k]) for k in full)


def test_resume_extends_a_finished_run(synth_root: Path, tmp_path: Path) -> None:
    """`--steps 10`, then `--resume --steps 20`, equals `--steps 20` (constant learning rate)."""
    data = synth_root / "aligned"
    tiny(data, tmp_path / "full", steps=20)
    tiny(data, tmp_path / "two", steps=10)
    tiny(data, tmp_path / "two", steps=20, resume=True)
    assert losses(tmp_path / "two") == losses(tmp_path / "full")


def test_checkpoints_pruned_and_loadable(synth_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny(synth_root / "aligned", run, checkpoint_every=5, keep_checkpoints=2)
    kept = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert kept == ["step_00000015", "step_00000020"]
    assert (run / "checkpoints" / "latest").read_text() == "step_00000020"
    assert pixforge.load(run).step == 20
    assert (run / "index.html").is_file() and (run / "samples" / "latest.png").is_file()
    assert list((run / "tb").iterdir())


def test_ctrl_c_writes_a_checkpoint(synth_root: Path, tmp_path: Path, monkeypatch) -> None:
    real_step = Trainer.train_step

    def interrupting(self, batch):
        out = real_step(self, batch)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "train_step", interrupting)
    result = tiny(synth_root / "aligned", tmp_path / "run")
    assert result.interrupted and result.step == 3
    assert pixforge.load(tmp_path / "run").step == 3


def test_scalars_are_averaged_over_the_log_interval(synth_root: Path, tmp_path: Path) -> None:
    tiny(synth_root / "aligned", tmp_path / "every", steps=4, log_every=1)
    tiny(synth_root / "aligned", tmp_path / "pairs", steps=4, log_every=2)
    every, pairs = losses(tmp_path / "every"), losses(tmp_path / "pairs")
    assert [r["step"] for r in pairs] == [2, 4]
    expected = (every[2]["G_L1"] + every[3]["G_L1"]) / 2
    assert pairs[1]["G_L1"] == pytest.approx(expected, rel=1e-5)


def test_lr_schedule_constant_then_linear_decay() -> None:
    assert [lr_factor(s, 10, 4) for s in (0, 5, 6, 7, 8, 9, 10)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert lr_factor(50, 10, 0) == 1.0


def test_epoch_schedule_counts_steps_from_the_dataset(synth_root: Path, tmp_path: Path) -> None:
    cfg = pixforge.api.resolve_config(
        "pix2pix",
        preset="tiny",
        flags={
            "data.root": str(synth_root / "aligned"),
            "steps": 0,
            "epochs": 2,
            "epochs_decay": 1,
            "batch_size": 4,
        },
    )
    trainer = Trainer(cfg, tmp_path / "run")
    per_epoch = len(trainer.dataset) // 4
    assert trainer.total == 3 * per_epoch
    factors = [s.lr_lambdas[0](2 * per_epoch + per_epoch // 2) for s in trainer.schedulers.values()]
    assert factors[0] == pytest.approx(0.5, abs=1 / per_epoch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_and_channels_last_on_cuda(synth_root: Path, tmp_path: Path) -> None:
    result = tiny(
        synth_root / "aligned", tmp_path / "run", steps=3, device="cuda", amp="bf16", channels_last=True
    )
    assert result.step == 3 and all(map(lambda v: v == v, result.scalars.values()))


def test_resume_with_channels_last_switched_updates_as_without(synth_root: Path, tmp_path: Path) -> None:
    """Adam's moments take the parameters' layout when ``channels_last`` changes on resume: the CPU's fused
    kernel otherwise applies a wrong update to mixed layouts (issue 15).

    In float64 the two layouts' convolutions differ by rounding only (~1e-15 relative, amplified to well
    below 1e-6 over 3 steps); without the fix a layer's update was off by 60% of its norm.
    """
    data, first, other = synth_root / "aligned", tmp_path / "first", tmp_path / "other"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        tiny(data, first, steps=6, stop_after=3, dropout=0)
        start = weights(first)
        shutil.copytree(first, other)
        tiny(data, first, steps=6, resume=True, dropout=0)
        tiny(data, other, steps=6, resume=True, dropout=0, channels_last=True)
    finally:
        torch.set_default_dtype(previous)
    a, b = weights(first), weights(other)
    for k in a:
        if k.endswith("weight") and a[k].dim() == 4:
            da, db = a[k] - start[k], b[k] - start[k]
            assert (da - db).norm() <= 1e-6 * da.norm(), k


def test_progress_text_gives_elapsed_time_and_eta() -> None:
    """The ETA extrapolates this run's own pace (steps done since it started or resumed) to the last step."""
    assert progress_text(step=30, total=100, start_step=10, elapsed=40.0) == "elapsed 0:40, ETA 2:20"
    assert progress_text(step=10, total=10, start_step=0, elapsed=3725.0) == "elapsed 1:02:05, ETA 0:00"


def test_progress_lines_without_a_terminal(synth_root: Path, tmp_path: Path, caplog) -> None:
    """Output that is not a terminal (make demo piped, a log file) gets a line every log_every steps."""
    with caplog.at_level(logging.INFO, logger="pixforge"):
        tiny(synth_root / "aligned", tmp_path / "run", steps=4, log_every=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert all("elapsed " in line and "ETA " in line for line in lines)
