"""Train under torchrun and keep every rank's view of the result, for the CUDA tests.

``python -m torch.distributed.run --nproc-per-node N tests/distributed/cuda_ranks.py JOB.json``: JOB is
``{"dump": DIR, "train": {...pixforge.api.train_config keywords...}}``. Every rank trains as
:func:`pixforge.train` does (the same config, device and process group), then writes its parameters to
``DIR/rank<r>.pt`` and what it ran with to ``DIR/rank<r>.json``: the backend, the world size, the device,
how many of pixforge's SyncBatchNorm2d its networks hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pixforge import distributed
from pixforge.api import train_config
from pixforge.devices import pick_device
from pixforge.train import Trainer


def main(job: dict) -> None:
    cfg = train_config(**job["train"])
    backend = distributed.resolve_backend(cfg.train.backend, pick_device(cfg.train.device))
    with distributed.session(backend) as world:
        trainer = Trainer(cfg, Path(job["train"]["out"]))
        trainer.fit()
        dump = Path(job["dump"])
        params = {k: v.detach().cpu() for k, v in trainer.method.named_parameters()}
        torch.save(params, dump / f"rank{world.rank}.pt")
        sync_bn = sum(isinstance(m, distributed.SyncBatchNorm2d) for m in trainer.method.modules())
        view = {
            "backend": distributed.backend_name(),
            "world_size": world.size,
            "device": str(trainer.device),
            "sync_bn_modules": sync_bn,
        }
        (dump / f"rank{world.rank}.json").write_text(json.dumps(view))


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
