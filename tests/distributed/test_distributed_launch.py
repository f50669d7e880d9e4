"""Launching and stopping a job: SIGTERM on one rank, a rank that dies, and bad input (one line, exit 2).

The jobs are real (2 gloo processes on 127.0.0.1) and bounded by a hard timeout; the refusals that need no
process are checked in-process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from pixforge import checkpoint
from pixforge.cli import main
from pixforge.distributed import check_nproc
from pixforge.errors import PixforgeError


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "pix2pix", "--data", str(data), "--out", str(out), "--preset", "tiny", *extra]


def fails(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def wait_for_steps(run: Path, proc: subprocess.Popen, count: int, limit: float) -> None:
    """Wait until ``count`` metrics rows exist (the job is past its set-up), or fail at ``limit`` seconds."""
    end = time.monotonic() + limit
    metrics = run / "metrics.jsonl"
    while time.monotonic() < end and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= count:
            return
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no {count} steps within {limit} s: {proc.communicate()[1][-2000:]}")


def start(dist_tools, cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=dist_tools.child_env(), cwd=dist_tools.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, limit: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the job did not end in time (a hang)") from None
    return proc.returncode, out, err


def test_sigterm_on_one_rank_stops_all_after_a_checkpoint(
    synth_root: Path, tmp_path: Path, dist_tools
) -> None:
    run = tmp_path / "run"
    cmd = dist_tools.torchrun_cmd(
        "-m", "pixforge", *train_args(synth_root / "aligned", run, "--steps", "500", "--set", "log_every=1")
    )
    proc = start(dist_tools, cmd)
    wait_for_steps(run, proc, 2, dist_tools.limit)
    rank1 = dist_tools.rank_pid(proc.pid, 1)
    assert rank1 is not None
    os.kill(rank1, signal.SIGTERM)
    code, out, err = finish(proc, 120)
    assert code == 0, err[-2000:]
    step = checkpoint.read(run).step
    assert 2 <= step < 500
    assert f"interrupted at step {step}" in out
    assert f"another rank was asked to stop: writing a checkpoint at step {step}" in err


def test_a_dead_rank_ends_the_job_with_one_line(synth_root: Path, tmp_path: Path, dist_tools) -> None:
    run = tmp_path / "run"
    args = train_args(synth_root / "aligned", run, "--steps", "500", "--set", "log_every=1", "--nproc", "2")
    proc = start(dist_tools, dist_tools.pixforge_cmd(*args))
    wait_for_steps(run, proc, 2, dist_tools.limit)
    rank1 = dist_tools.rank_pid(proc.pid, 1)
    assert rank1 is not None
    os.kill(rank1, signal.SIGKILL)
    code, _, err = finish(proc, 120)
    assert code == 1
    assert "error: rank 1 was killed by SIGKILL; the other ranks were stopped" in err
    assert "Traceback" not in err


def test_configs_that_differ_between_machines_are_refused(
    synth_root: Path, tmp_path: Path, dist_tools
) -> None:
    """Two 'machines' (one process each) of one job, started with different lambda_l1: both exit 2."""
    endpoint = f"127.0.0.1:{dist_tools.free_port()}"
    procs = [
        start(
            dist_tools,
            dist_tools.pixforge_cmd(
                *train_args(synth_root / "aligned", tmp_path / "run", "--steps", "2"),
                *("--nnodes", "2", "--node-rank", str(rank), "--rdzv-endpoint", endpoint),
                *("--set", f"lambda_l1={100 - 50 * rank}"),
            ),
        )
        for rank in (0, 1)
    ]
    for proc in procs:
        code, _, err = finish(proc, dist_tools.limit)
        assert code == 2, err[-2000:]
        lines = [x for x in err.splitlines() if x.startswith("error: ")]
        assert lines == ["error: the config differs between rank 0 and rank 1: model.lambda_l1 100.0 vs 50.0"]
    assert not (tmp_path / "run").exists()


def test_a_port_in_use_is_refused(synth_root: Path, tmp_path: Path, capsys) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = train_args(synth_root / "aligned", tmp_path / "run", "--nproc", "2")
        line = fails(capsys, [*args, "--rdzv-endpoint", f"127.0.0.1:{port}"])
    assert f"127.0.0.1:{port}: the port is already in use" in line


def test_nccl_without_cuda_is_refused(synth_root: Path, tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    args = train_args(synth_root / "aligned", tmp_path / "run", "--set", "backend=nccl")
    assert "nccl needs CUDA" in fails(capsys, [*args, "--nproc", "2"])
    assert "nccl needs CUDA" in fails(capsys, args)


def test_nproc_beyond_the_gpus_is_refused(synth_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PixforgeError, match="--nproc 4: this machine has 2 GPU"):
        check_nproc(4, "auto")
    check_nproc(4, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = train_args(synth_root / "aligned", tmp_path / "run", "--nproc", "2", "--device", "cuda")
    assert "no CUDA device" in fails(capsys, args)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--nproc", "0"], "--nproc: at least one process"),
        (["--nnodes", "2"], "--nnodes > 1 needs --rdzv-endpoint"),
        (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank: must be in 0..1"),
        (["--nproc", "2", "--rdzv-endpoint", "nohostport"], "expected HOST:PORT"),
    ],
)
def test_bad_launch_options(synth_root: Path, tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    assert message in fails(capsys, train_args(synth_root / "aligned", tmp_path / "run", *extra))


def gone(pid: int, limit: float) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``limit`` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


def test_ranks_die_with_a_killed_launcher_and_a_run_is_locked_while_it_trains(
    synth_root: Path, tmp_path: Path, dist_tools
) -> None:
    """kill -9 of ``pixforge train --nproc 2`` (an OOM kill) ends both ranks (issue 15: they trained on as
    orphans, and a ``--resume`` then put a second job on the run directory). While a job trains, a second
    job on its run directory is refused naming the pid; once the holder is dead, its lock is taken over."""
    run = tmp_path / "run"
    args = train_args(synth_root / "aligned", run, "--steps", "100000", "--set", "log_every=1")
    proc = start(dist_tools, dist_tools.pixforge_cmd(*args, "--set", "checkpoint_every=2", "--nproc", "2"))
    try:
        wait_for_steps(run, proc, 3, dist_tools.limit)
        ranks = [dist_tools.rank_pid(proc.pid, r) for r in (0, 1)]
        assert None not in ranks
        second = dist_tools.run(dist_tools.pixforge_cmd(*args, "--resume"))
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"another job (pid {ranks[0]}) is training in this run directory" in second.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert all(gone(pid, 60) for pid in ranks), "ranks still running after their launcher died"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    step = checkpoint.read(run).step
    after = dist_tools.run(dist_tools.pixforge_cmd(*args, "--resume", "--steps", str(step + 1)))
    assert after.returncode == 0, after.stderr[-2000:]
    assert checkpoint.read(run).step == step + 1
