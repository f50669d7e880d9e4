"""Time per training step of DRPAN against pix2pix at the same settings, and the cost of the region proposal.

Both methods get the same generator, discriminator, image size and batch, and run through the real Trainer
(its phases, optimisers and gradient switching) on the built-in synthetic data. The proposal is timed as
DRPAN runs it each iteration (D_p's no-grad score map of the fake plus the window search) and the search
alone (one avg_pool2d + argmin + the mapping to pixels).

    .venv/bin/python bench/bench_drpan.py --size 256 --batch-size 1 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pixforge.api import resolve_config
from pixforge.data.synth import synthesize
from pixforge.methods.drpan import DRPAN, propose_region
from pixforge.train import Trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def spread(times: list[float]) -> str:
    """Median and minimum in milliseconds (on a shared CPU the minimum is the cost, the median the wait)."""
    return f"{statistics.median(times) * 1e3:9.3f} ms (min {min(times) * 1e3:.3f} ms)"


def trainer(method: str, data: Path, out: Path, args: argparse.Namespace) -> Trainer:
    """A Trainer for ``method`` with the shared settings (generator, D, size, batch) of the comparison."""
    cfg = resolve_config(
        method,
        flags={
            "data.root": str(data),
            "data.crop_size": args.size,
            "data.load_size": args.size,
            "batch_size": args.batch_size,
            "device": args.device,
            "netG": args.netG,
            "ngf": args.ngf,
            "ndf": args.ndf,
            "n_layers": 3,
            "norm": "batch",
            "dropout": 0.0,
            "test_mode": "eval",
            "steps": 1000,
        },
        overrides={"region_size": args.region_size} if method == "drpan" else {},
    )
    return Trainer(cfg, out)


def step_times(t: Trainer, args: argparse.Namespace) -> list[float]:
    batches = iter(t._loader())
    t.method.train()
    return timed(lambda: t.train_step(t._to_device(next(batches))), t.device, args.steps, args.warmup)


def proposal_times(t: Trainer, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Seconds per batch of DRPAN's proposal (D_p's score map of the fake + search) and of the search alone."""
    drpan: DRPAN = t.method  # type: ignore[assignment]
    batch = t._to_device(next(iter(t._loader())))
    with torch.no_grad():
        fake = drpan.nets["G"](batch["A"])
        score = drpan.discriminate(batch["A"], fake)
    size = (fake.shape[-2], fake.shape[-1])
    full = timed(lambda: drpan.propose(batch["A"], fake), t.device, max(20, args.steps), args.warmup)
    search = timed(
        lambda: propose_region(score, size, args.region_size, drpan.geometry), t.device, 200, args.warmup
    )
    return full, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--netG", default="resnet_9blocks")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--region-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "synth", count=max(8, 2 * args.batch_size), size=args.size, seed=0)
        data = root / "synth" / "aligned"
        p2p = trainer("pix2pix", data, root / "pix2pix", args)
        pix2pix_step = statistics.median(step_times(p2p, args))
        del p2p
        drpan = trainer("drpan", data, root / "drpan", args)
        drpan_step = statistics.median(step_times(drpan, args))
        full, search = proposal_times(drpan, args)
        device = drpan.device
    name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    )
    print(
        f"device {device} ({name}), {args.netG} ngf {args.ngf}, 70x70 PatchGAN ndf {args.ndf}, {args.size} px, "
        f"batch {args.batch_size}, region {args.region_size}, medians of {args.steps} steps"
    )
    print(f"pix2pix step  {pix2pix_step * 1e3:9.2f} ms")
    print(f"drpan step    {drpan_step * 1e3:9.2f} ms  ({drpan_step / pix2pix_step:.2f}x pix2pix)")
    print(f"proposal      {spread(full)} per batch (D_p score map + window search)")
    print(f"search only   {spread(search)} per batch (avg_pool2d + argmin + mapping)")


if __name__ == "__main__":
    main()
