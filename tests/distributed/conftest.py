"""Helpers for the multi-process tests: real torchrun jobs of 2 gloo processes on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: a hard limit for any one multi-process command (the tests' tiny jobs take well under a minute)
LIMIT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """This interpreter's environment with the worktree first on the path and one thread per process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("WORLD_SIZE", None)
    return env


def torchrun_cmd(*args: str, nproc: int = 2) -> list[str]:
    """``torchrun --nproc-per-node N ARGS`` on a private port of 127.0.0.1."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        *args,
    ]


def pixforge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pixforge", *args]


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def rank_pid(launcher: int, rank: int) -> int | None:
    """The worker of global rank ``rank`` among the launcher's children (read from their environment)."""
    for pid in children(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


def run(cmd: list[str], timeout: float = LIMIT_S) -> subprocess.CompletedProcess:
    """Run a command to completion under the hard limit, with the test environment; return the result."""
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def dist_tools() -> SimpleNamespace:
    """The helpers above, for the test modules (tests are not an importable package)."""
    return SimpleNamespace(
        root=ROOT,
        run=run,
        torchrun_cmd=torchrun_cmd,
        pixforge_cmd=pixforge_cmd,
        free_port=free_port,
        child_env=child_env,
        rank_pid=rank_pid,
        limit=LIMIT_S,
    )
