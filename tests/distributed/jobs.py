"""Run several pixforge jobs in one torchrun process group (tests start it once: process start-up is the cost).

``python -m torch.distributed.run --nproc-per-node 2 tests/distributed/jobs.py JOBS.json``; each job is
``{"train": {...api.train keywords...}}``, ``{"cli": [args]}``, or ``{"error": {...api.train keywords...},
"record": PATH}`` (a training that must fail with PixforgeError: rank 0 writes the message to PATH).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import pixforge
from pixforge import distributed
from pixforge.cli import main
from pixforge.errors import PixforgeError


def run(job: dict) -> None:
    if "train" in job:
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
