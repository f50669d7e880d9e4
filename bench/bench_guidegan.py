"""Time per training step of GuideGAN against its base methods at the same settings (not a test).

Supervised: guidegan against pix2pix, both with the same U-Net, 70x70 PatchGAN (batch norm), LSGAN, size
and batch. Unpaired: guidegan ``unpaired=true`` against cyclegan, both with the same ResNet generators,
PatchGANs (instance norm), pool, size and batch. Every GuideGAN combination of attention (posthoc,
trainable) and blend (rhp, alpha) is timed. All runs go through the real Trainer (phases, optimisers,
gradient switching) on the built-in synthetic data; the steps of the methods compared are interleaved, so
that a shared machine's changing load falls on all of them alike.

    .venv/bin/python bench/bench_guidegan.py --size 128 --batch-size 1 --steps 6
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pixforge.api import resolve_config
from pixforge.data.synth import synthesize
from pixforge.devices import pick_device
from pixforge.train import Trainer

COMBINATIONS = [("posthoc", "rhp"), ("posthoc", "alpha"), ("trainable", "rhp"), ("trainable", "alpha")]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer(method: str, data: Path, out: Path, flags: dict[str, Any], overrides: dict[str, Any]) -> Trainer:
    cfg = resolve_config(method, flags={"data.root": str(data), **flags}, overrides=overrides)
    return Trainer(cfg, out)


def stepper(t: Trainer) -> Iterator[float]:
    """Wall seconds of each next training step of ``t``."""
    batches = iter(t._loader())
    t.method.train()
    while True:
        batch = t._to_device(next(batches))
        sync(t.device)
        start = time.perf_counter()
        t.train_step(batch)
        sync(t.device)
        yield time.perf_counter() - start


def interleaved(trainers: dict[str, Trainer], steps: int, warmup: int) -> dict[str, float]:
    """Median step time of each trainer, their steps taken in turn."""
    runs = {name: stepper(t) for name, t in trainers.items()}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for i in range(warmup + steps):
        for name, run in runs.items():
            seconds = next(run)
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}


def guidance_seconds(t: Trainer, repeats: int) -> float:
    """Median seconds per step of the guidance alone: for each guided direction, the cached map's recall,
    upsampling and blending into x, and D's no-grad view of G's output stored in the cache."""
    m: Any = t.method
    batch = t._to_device(next(iter(t._loader())))
    with torch.no_grad():
        state = m.forward_step(batch)
    if "D" in m.nets:
        views = {"AtoB": ("A", m.nets["D"], torch.cat([batch["A"], state["fake_B"]], dim=1))}
    else:
        views = {"AtoB": ("A", m.nets["D_A"], state["fake_B"]), "BtoA": ("B", m.nets["D_B"], state["fake_A"])}

    def work() -> None:
        with torch.no_grad():
            for direction, (side, net, judged) in views.items():
                guide, index = m.guides[direction], batch[m.index_keys[direction]]
                guide.guide(batch[side], index, batch["flip"])
                guide.remember(net, judged, index, batch["flip"])

    times = []
    for _ in range(repeats):
        sync(t.device)
        start = time.perf_counter()
        work()
        sync(t.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(
    title: str, base: str, data: Path, root: Path, flags: dict[str, Any], extra: dict[str, Any], args: Any
) -> None:
    trainers = {base: trainer(base, data, root / base, flags, {})}
    for attention, blend in COMBINATIONS:
        options = {**extra, "attention": attention, "blend": blend}
        trainers[f"guidegan {attention}+{blend}"] = trainer(
            "guidegan", data, root / f"guidegan_{attention}_{blend}", flags, options
        )
    medians = interleaved(trainers, args.steps, args.warmup)
    print(f"\n{title}")
    for name, seconds in medians.items():
        if name == base:
            print(f"  {name:28s} {seconds * 1e3:9.1f} ms/step")
            continue
        guidance = guidance_seconds(trainers[name], max(5, args.steps))
        print(
            f"  {name:28s} {seconds * 1e3:9.1f} ms/step  ({seconds / medians[base]:.2f}x {base}); "
            f"guidance alone {guidance * 1e3:.1f} ms ({guidance / medians[base]:.1%} of a {base} step)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--netG", default="unet_128", help="Generator of the supervised comparison.")
    parser.add_argument("--netG-unpaired", default="resnet_6blocks", help="Generators of the unpaired one.")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default).")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    common = {
        "data.crop_size": args.size,
        "data.load_size": args.size,
        "batch_size": args.batch_size,
        "device": args.device,
        "ngf": args.ngf,
        "ndf": args.ndf,
        "n_layers": 3,
        "gan_mode": "lsgan",
        "steps": 1000,
    }
    supervised = {**common, "netG": args.netG, "norm": "batch", "dropout": 0.5, "lambda_l1": 10.0}
    unpaired = {**common, "netG": args.netG_unpaired, "norm": "instance", "dropout": 0.0, "pool_size": 50}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "synth", count=max(8, 4 * args.batch_size), size=args.size, seed=0)
        device = pick_device(args.device)
        name = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{torch.get_num_threads()} threads"
        )
        print(
            f"device {device} ({name}), {args.size} px, batch {args.batch_size}, ngf {args.ngf}, ndf {args.ndf}, "
            f"70x70 PatchGAN, LSGAN, medians of {args.steps} interleaved steps after {args.warmup} warm-up"
        )
        compare(
            f"supervised: {args.netG}, batch norm, on aligned pairs",
            "pix2pix",
            root / "synth" / "aligned",
            root,
            supervised,
            {},
            args,
        )
        compare(
            f"unpaired: {args.netG_unpaired}, instance norm, identity 0.5, on unaligned domains",
            "cyclegan",
            root / "synth" / "unaligned",
            root,
            unpaired,
            {"unpaired": True},
            args,
        )


if __name__ == "__main__":
    main()
