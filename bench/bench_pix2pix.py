"""Training-step speed and peak memory of pix2pix presets (not a test: run `python bench/bench_pix2pix.py`).

Builds the method from a preset, feeds random batches of the preset's crop size and times
`Trainer`-equivalent steps (forward, D phase, G phase) after a warm-up. Reports ms/step, steps/s and peak
memory (RSS on CPU, max allocated on CUDA). `--fused both` measures Adam with and without torch's fused
kernel side by side: the two set-ups alternate in rounds, so a shared machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable

import torch

from pixforge.api import resolve_config
from pixforge.devices import pick_device
from pixforge.methods.base import DataInfo
from pixforge.train import build_method


def setup(preset: str, device: str, batch_size: int | None, fused: bool) -> tuple[Callable[[], None], dict]:
    """One training step of the preset (forward, D phase, G phase) as a closure, and its sizes."""
    cfg = resolve_config("pix2pix", preset=preset)
    dev = pick_device(device)
    size = cfg.data.crop_size
    bs = batch_size or cfg.train.batch_size
    method = build_method(cfg, DataInfo(3, 3, (size, size))).to(dev)
    phases = method.phases()
    opts = {
        p.name: torch.optim.Adam(
            [q for n in p.nets for q in method.nets[n].parameters()],
            lr=2e-4,
            betas=(0.5, 0.999),
            fused=fused or None,
        )
        for p in phases
    }
    batch = {"A": torch.randn(bs, 3, size, size, device=dev), "B": torch.randn(bs, 3, size, size, device=dev)}

    def step() -> None:
        state = method.forward_step(batch)
        for phase in phases:
            opts[phase.name].zero_grad(set_to_none=True)
            loss, _ = phase.loss(state)
            loss.backward()
            opts[phase.name].step()

    return step, {"size": size, "batch": bs, "device": dev}


def timed(step: Callable[[], None], steps: int, dev: torch.device) -> float:
    """Seconds per step over ``steps`` steps."""
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def bench(
    preset: str, steps: int, warmup: int, device: str, batch_size: int | None, fused: bool = True
) -> dict[str, float]:
    step, info = setup(preset, device, batch_size, fused)
    dev = info["device"]
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(step, steps, dev)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "ms_per_step": seconds * 1000,
        "steps_per_s": 1 / seconds,
        "peak_mib": peak,
        "size": info["size"],
        "batch": info["batch"],
    }


def side_by_side(preset: str, steps: int, warmup: int, device: str, rounds: int) -> dict[str, float]:
    """Seconds per step with fused and with plain (for-each) Adam, alternating ``rounds`` times."""
    setups = {name: setup(preset, device, None, name == "fused") for name in ("fused", "plain")}
    for step, _ in setups.values():
        for _ in range(warmup):
            step()
    totals = dict.fromkeys(setups, 0.0)
    for _ in range(rounds):
        for name, (step, info) in setups.items():
            totals[name] += timed(step, steps, info["device"]) / rounds
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="facades")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--fused", choices=("on", "off", "both"), default="on", help="Fused Adam.")
    parser.add_argument("--rounds", type=int, default=3, help="With --fused both: alternations.")
    args = parser.parse_args()
    if args.fused == "both":
        t = side_by_side(args.preset, args.steps, args.warmup, args.device, args.rounds)
        print(
            f"pix2pix {args.preset}, torch threads {torch.get_num_threads()}, {args.rounds} x {args.steps} steps "
            f"each: fused Adam {t['fused']:.3f} s/step, plain Adam {t['plain']:.3f} s/step "
            f"(plain / fused = {t['plain'] / t['fused']:.3f})"
        )
        return
    r = bench(args.preset, args.steps, args.warmup, args.device, args.batch_size, args.fused == "on")
    print(
        f"pix2pix {args.preset}: {r['size']} px, batch {r['batch']}, torch threads {torch.get_num_threads()}: "
        f"{r['ms_per_step']:.0f} ms/step ({r['steps_per_s']:.2f} steps/s), peak {r['peak_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
