"""CUDA paths of training: NCCL on 2 GPUs, the GPU levers really in effect, exact resume on one GPU.

Skipped without CUDA (CI has none); `pytest -m cuda` (bench/gpu_check.sh) runs them on a lent GPU machine.
Each asserts an outcome that a wrong CUDA path changes: ranks that drift apart, levers that are silently
off, a random stream that a resume does not restore.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import pixforge
from pixforge import checkpoint
from pixforge.api import train_config
from pixforge.train import Trainer, TrainResult

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

LEVERS = ["--amp", "bf16", "--channels-last", "--set", "compile=true", "--set", "sync_bn=true"]
LEVER_FLAGS = {"amp": "bf16", "channels_last": True, "compile": True, "sync_bn": True}
RANKS_SCRIPT = Path(__file__).with_name("cuda_ranks.py")


def rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[dict]:
    """The logged rows without their wall-clock time."""
    return [{k: v for k, v in r.items() if k != "time"} for r in rows(run)]


def all_finite(run: Path) -> bool:
    return all(math.isfinite(v) for r in losses(run) for v in r.values())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_hold_identical_weights_with_every_lever(
    synth_root: Path, tmp_path: Path, dist_tools
) -> None:
    """NCCL, SyncBatchNorm, bf16, channels_last and torch.compile on 2 GPUs: after 6 steps both ranks hold
    the same parameters, bit for bit (their gradients are all-reduced, so every update is the same), and
    those of the checkpoint rank 0 wrote."""
    run = tmp_path / "run"
    train = {
        "method": "pix2pix", "data": str(synth_root / "aligned"), "out": str(run), "preset": "tiny",
        "steps": 6, "log_every": 1, "device": "cuda", **LEVER_FLAGS,
    }  # fmt: skip
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"dump": str(tmp_path), "train": train}))
    result = dist_tools.run(dist_tools.torchrun_cmd(str(RANKS_SCRIPT), str(job), nproc=2))
    assert result.returncode == 0, result.stderr[-3000:]
    views = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [v["device"] for v in views] == ["cuda:0", "cuda:1"]
    assert all(v["backend"] == "nccl" and v["world_size"] == 2 and v["sync_bn_modules"] > 0 for v in views)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    saved = checkpoint.read(run).weights
    assert all(torch.equal(saved[k].cpu(), rank0[k]) for k in rank0)
    assert len(rows(run)) == 6 and all_finite(run)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_two_gpus_with_every_lever_and_resume(synth_root: Path, tmp_path: Path, dist_tools) -> None:
    """The launcher (`pixforge train --nproc 2`) with every lever, stopped at 6 steps and resumed to 12."""
    args = ["train", "pix2pix", "--data", str(synth_root / "aligned"), "--out", str(tmp_path / "run")]
    args += ["--preset", "tiny", "--device", "cuda", "--nproc", "2", *LEVERS]
    first = dist_tools.run(dist_tools.pixforge_cmd(*args, "--steps", "6"))
    assert first.returncode == 0, first.stderr[-3000:]
    second = dist_tools.run(dist_tools.pixforge_cmd(*args, "--steps", "12", "--resume"))
    assert second.returncode == 0, second.stderr[-3000:]
    state = checkpoint.read_state(checkpoint.resolve(tmp_path / "run"))
    assert state["world_size"] == 2 and state["step"] == 12
    assert all_finite(tmp_path / "run")


def conv_outputs(trainer: Trainer) -> dict[str, set[tuple[torch.dtype, bool]]]:
    """Per network, the (dtype, channels_last) of every Conv2d output computed with gradients, filled as the
    trainer runs (sample grids, made without gradients, are not training and are left out)."""
    seen: dict[str, set[tuple[torch.dtype, bool]]] = {name: set() for name in trainer.method.nets}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if torch.is_grad_enabled():
                seen[name].add((output.dtype, output.is_contiguous(memory_format=torch.channels_last)))

        return record

    for name, net in trainer.method.nets.items():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_hook(hook(name))
    return seen


@pytest.mark.parametrize(("method", "layout"), [("pix2pix", "aligned"), ("pix2pixhd", "labeled")])
def test_bf16_and_channels_last_are_in_effect_in_every_network(
    synth_root: Path, tmp_path: Path, method: str, layout: str
) -> None:
    """With amp=bf16 and channels_last every convolution of every trained network computes in bfloat16 and
    hands on channels_last activations (a lever that is silently off leaves float32 or NCHW here)."""
    cfg = train_config(
        method, synth_root / layout, tmp_path / "run", preset="tiny", steps=2, device="cuda",
        amp="bf16", channels_last=True,
    )  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run")
    seen = conv_outputs(trainer)
    trainer.fit()
    assert all(seen.values()), seen
    assert all(formats == {(torch.bfloat16, True)} for formats in seen.values()), seen
    assert all_finite(tmp_path / "run")


@pytest.fixture()
def deterministic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CUDA kernels without atomics-order rounding (cuDNN's deterministic algorithms, fixed cuBLAS workspace),
    so that two runs of the same steps in this process agree bit for bit."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def test_resume_is_exact_on_one_gpu_with_dropout(
    synth_root: Path, tmp_path: Path, deterministic: None
) -> None:
    """20 steps equal 10 + resume + 10 on CUDA, bit for bit, with dropout drawing from the CUDA random stream
    (the U-Net at 64 px has a dropout layer): a resume that does not restore the CUDA RNG state draws other
    masks from step 11 on. All three runs share this process, so cuDNN's autotuner picks the same kernels."""

    def train(out: Path, **kw) -> TrainResult:
        return pixforge.train(
            "pix2pix", synth_root / "aligned", out, preset="tiny", size=64, steps=20, log_every=1,
            checkpoint_every=10, device="cuda", overrides={"netG": "unet", "dropout": "0.5"}, **kw,
        )  # fmt: skip

    train(tmp_path / "full")
    assert train(tmp_path / "split", stop_after=10).step == 10
    assert train(tmp_path / "split", resume=True).step == 20
    assert losses(tmp_path / "split") == losses(tmp_path / "full") and len(rows(tmp_path / "full")) == 20
    full, split = checkpoint.read(tmp_path / "full"), checkpoint.read(tmp_path / "split")
    assert all(torch.equal(full.weights[k], split.weights[k]) for k in full.weights)
    generator = pixforge.load(tmp_path / "full", device="cpu").method.nets["G"]
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in generator.modules())


@pytest.mark.parametrize("method", ["pix2pix", "cyclegan", "guidegan", "pix2pixhd", "drpan"])
def test_one_gpu_under_torchrun_with_every_lever(
    synth_root: Path, tmp_path: Path, dist_tools, method: str
) -> None:
    """Every method under torchrun on one GPU with every lever: it trains to the end with finite losses and
    finite weights."""
    data = {"cyclegan": "unaligned", "pix2pixhd": "labeled"}.get(method, "aligned")
    args = ["-m", "pixforge", "train", method, "--data", str(synth_root / data), "--out", str(tmp_path / "r")]
    args += ["--preset", "tiny", "--steps", "4", "--device", "cuda", *LEVERS]
    result = dist_tools.run(dist_tools.torchrun_cmd(*args, nproc=1))
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = checkpoint.read(tmp_path / "r")
    assert loaded.step == 4 and all_finite(tmp_path / "r")
    assert all(torch.isfinite(w).all() for w in loaded.weights.values() if w.is_floating_point())
