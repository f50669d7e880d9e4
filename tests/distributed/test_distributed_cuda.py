"""CUDA paths of distributed training: NCCL with 2 GPUs, and the GPU levers under torchrun with resume.

Skipped without CUDA (CI has none); `pytest -m cuda` runs them on a lent GPU machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pixforge import checkpoint

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

LEVERS = ["--amp", "bf16", "--channels-last", "--set", "compile=true", "--set", "sync_bn=true"]


def rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_two_gpus_with_every_lever_and_resume(synth_root: Path, tmp_path: Path, dist_tools) -> None:
    args = ["train", "pix2pix", "--data", str(synth_root / "aligned"), "--out", str(tmp_path / "run")]
    args += ["--preset", "tiny", "--device", "cuda", "--nproc", "2", *LEVERS]
    first = dist_tools.run(dist_tools.pixforge_cmd(*args, "--steps", "6"))
    assert first.returncode == 0, first.stderr[-3000:]
    second = dist_tools.run(dist_tools.pixforge_cmd(*args, "--steps", "12", "--resume"))
    assert second.returncode == 0, second.stderr[-3000:]
    state = checkpoint.read_state(checkpoint.resolve(tmp_path / "run"))
    assert state["world_size"] == 2 and state["step"] == 12
    assert all(v == v for r in rows(tmp_path / "run") for k, v in r.items() if k != "time")


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan", "guidegan", "pix2pixhd", "drpan"])
def test_one_gpu_under_torchrun_with_every_lever(
    synth_root: Path, tmp_path: Path, dist_tools, method: str
) -> None:
    data = {"cyclegan": "unaligned", "pix2pixhd": "labeled"}.get(method, "aligned")
    args = ["-m", "pixforge", "train", method, "--data", str(synth_root / data), "--out", str(tmp_path / "r")]
    args += ["--preset", "tiny", "--steps", "4", "--device", "cuda", *LEVERS]
    result = dist_tools.run(dist_tools.torchrun_cmd(*args, nproc=1))
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoint.read(tmp_path / "r").step == 4
