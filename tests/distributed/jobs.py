"""Run several pixforge jobs in one torchrun process group (tests start it once: process start-up is the cost).

``python -m torch.distributed.run --nproc-per-node 2 tests/distributed/jobs.py JOBS.json``; each job is
``{"train": {...api.train keywords...}}`` (with ``"float64": true`` beside ``"train"``: built and trained in
float64, for exact comparisons with a one-process run), ``{"cli": [args]}``, or ``{"error": {...api.train keywords...},
"record": PATH}`` (a training that must fail with PixforgeError: rank 0 writes the message to PATH).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

import pixforge
from pixforge import distributed
from pixforge.cli import main
from pixforge.errors import PixforgeError


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def run(job: dict) -> None:
    if "train" in job:
        with default_dtype(torch.float64 if job.get("float64") else torch.float32):
            pixforge.train(**job["train"])
    elif "cli" in job:
        try:
            main(job["cli"])
        except SystemExit as exc:
            raise AssertionError(f"pixforge {' '.join(job['cli'])} exited with {exc.code}") from None
    else:
        try:
            pixforge.train(**job["error"])
        except PixforgeError as exc:
            if distributed.world().main:
                Path(job["record"]).write_text(str(exc))
        else:
            raise AssertionError("expected a PixforgeError")


if __name__ == "__main__":
    torch.set_num_threads(1)
    with distributed.session("gloo"):
        for job in json.loads(Path(sys.argv[1]).read_text()):
            run(job)
