"""Run several pixforge jobs in one torchrun process group (tests start it once: process start-up is the cost).

``python -m torch.distributed.run --nproc-per-node 2 tests/distributed/jobs.py JOBS.json``; each job is
``{"train": {...api.train keywords...}}`` (with ``"float64": true`` beside ``"train"``: built and trained in
float64, for exact comparisons with a one-process run), ``{"ddp": {...}, "float64": true}`` (pix2pix
trained by torch's DistributedDataParallel instead of the trainer's reduction, weights saved to
``OUT/ddp.pt``), ``{"cli": [args]}``, or ``{"error": {...api.train keywords...},
"record": PATH}`` (a training that must fail with PixforgeError: rank 0 writes the message to PATH).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

import pixforge
from pixforge import distributed
from pixforge.api import train_config
from pixforge.cli import main
from pixforge.errors import PixforgeError
from pixforge.nets.blocks import set_requires_grad
from pixforge.train import Trainer


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def ddp_pix2pix(options: dict) -> None:
    """pix2pix's iteration with G and D each wrapped in torch's DistributedDataParallel.

    The same start, data, optimisers and schedule as the trainer (its own objects); only the gradient
    reduction differs: DDP's reducer during the backward instead of the trainer's per-phase all-reduce. D's
    second use, frozen inside the G phase, runs under ``no_sync`` (no gradient of D is produced there).
    """
    options = dict(options)
    steps, out = options.pop("steps"), Path(options["out"])
    trainer = Trainer(train_config(**options, steps=steps), out)
    method = trainer.method
    g, d = DistributedDataParallel(method.nets["G"]), DistributedDataParallel(method.nets["D"])
    method.nets["G"], method.nets["D"] = g, d
    batches = iter(trainer._loader())
    for _ in range(steps):
        state = method.forward_step(trainer._to_device(next(batches)))
        for phase, trains, frozen in (("D", d, g), ("G", g, d)):
            set_requires_grad([trains], True)
            set_requires_grad([frozen], False)
            trainer.optimizers[phase].zero_grad(set_to_none=True)
            with d.no_sync() if phase == "G" else contextlib.nullcontext():
                loss, _ = method.loss_D(state) if phase == "D" else method.loss_G(state)
            loss.backward()
            trainer.optimizers[phase].step()
        set_requires_grad([g, d], True)
        for scheduler in trainer.schedulers.values():
            scheduler.step()
    method.nets["G"], method.nets["D"] = g.module, d.module
    if distributed.world().main:
        torch.save(method.state_dict(), out / "ddp.pt")
    trainer.lock.release()


def run(job: dict) -> None:
    if "train" in job:
        with default_dtype(torch.float64 if job.get("float64") else torch.float32):
            pixforge.train(**job["train"])
    elif "ddp" in job:
        with default_dtype(torch.float64 if job.get("float64") else torch.float32):
            ddp_pix2pix(job["ddp"])
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
