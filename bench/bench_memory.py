"""Peak memory of one pix2pixHD training step, with and without activation checkpointing and bf16 autocast.

    python bench/bench_memory.py                         # CUDA: the presets' sizes; CPU: sides / 4
    python bench/bench_memory.py --scale 2 --presets cityscapes_1024
    python bench/bench_memory.py --device cuda --scale 1

For each preset (``cityscapes_1024``: G1 at 1024x512; ``cityscapes_2048``: G1 + G2 at 2048x1024; both
with the 3 discriminators, the feature encoder and the VGG19 loss) and each configuration (plain,
``checkpoint_activations``, ``amp=bf16``, both), a fresh process builds the model, takes one training
iteration at batch 1 on a Cityscapes-like batch (the shared forward pass, the D step, the G+E step, each
with its Adam update, as the trainer runs them) and reports:

- peak: on the CPU the peak resident set size over the step (Linux ``VmHWM``, reset just before the
  step), on CUDA ``torch.cuda.max_memory_allocated`` over the step;
- before: the resident (allocated) memory just before the step: the weights and the interpreter;
- activations: peak - before - 3 x the trained parameters' bytes (their gradients and Adam's two moments,
  which the step creates): an estimate of what the step's activations take at the peak.

``cityscapes_2048`` is measured in its joint stage (``niter_fix_global=0``: G1 trains too), the larger
of its two stages. ``--scale N`` divides both sides by N (a CPU cannot take a full-size step in minutes).
A benchmark, not a test: the numbers depend on the machine, the allocator and the torch build.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pixforge.api import resolve_config
from pixforge.losses import VGGLoss
from pixforge.methods.base import DataInfo
from pixforge.methods.pix2pixhd import Pix2PixHD
from pixforge.nets.vgg import load_vgg19

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pix2pixhd import LABEL_NC, street_batch  # noqa: E402

#: preset -> (width, height) at full size
SIZES = {"cityscapes_1024": (1024, 512), "cityscapes_2048": (2048, 1024)}
#: configuration name -> (checkpoint_activations, bf16 autocast)
CONFIGS = {
    "plain": (False, False),
    "checkpointing": (True, False),
    "bf16": (False, True),
    "bf16 + checkpointing": (True, True),
}
GIB = 2**30


def status_kib(field: str) -> int:
    """A ``VmRSS``/``VmHWM``-style line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_cpu_peak() -> None:
    """Reset this process's peak resident set size to the current one (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def build(preset: str, checkpointing: bool, size: tuple[int, int], device: torch.device) -> Pix2PixHD:
    overrides = {"checkpoint_activations": str(checkpointing).lower(), "niter_fix_global": "0"}
    cfg = resolve_config("pix2pixhd", preset=preset, overrides=overrides)
    info = DataInfo(LABEL_NC, 3, (size[1], size[0]), LABEL_NC)
    return Pix2PixHD(cfg.model, info).to(device).train()


def train_iteration(method: Pix2PixHD, batch: dict[str, torch.Tensor], bf16: bool) -> dict[str, float]:
    """The trainer's iteration (pixforge.train.Trainer.train_step without the process group)."""
    phases = method.phases()
    optimizers = {
        p.name: torch.optim.Adam([q for n in p.nets for q in method.nets[n].parameters()], 2e-4)
        for p in phases
    }
    device = batch["A"].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        state = method.forward_step(batch)
    scalars: dict[str, torch.Tensor] = {}
    for phase in phases:
        for name, net in method.nets.items():
            net.requires_grad_(name in phase.nets)
        optimizers[phase.name].zero_grad(set_to_none=True)
        with autocast:
            loss, out = phase.loss(state)
        loss.backward()
        optimizers[phase.name].step()
        scalars.update(out)
    return {k: float(v) for k, v in scalars.items()}


def trained_bytes(method: Pix2PixHD) -> int:
    """Bytes of the parameters some phase trains."""
    names = {n for p in method.phases() for n in p.nets}
    return sum(q.numel() * q.element_size() for n in names for q in method.nets[n].parameters())


def measure(preset: str, config: str, size: tuple[int, int], device: torch.device) -> dict[str, Any]:
    """One configuration, in this process: build, one iteration, the memory figures in GiB."""
    checkpointing, bf16 = CONFIGS[config]
    torch.manual_seed(0)
    method = build(preset, checkpointing, size, device)
    if (
        method.cfg.vgg_loss
    ):  # loaded before the step, as the first forward pass would, so it counts as "before"
        method.frozen["vgg"] = VGGLoss(load_vgg19(method.cfg.vgg_weights or None)).to(device)
    batch = {k: v.to(device) for k, v in street_batch(size[1], size[0]).items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset_cpu_peak()
        before = status_kib("VmRSS") * 1024
    start = time.perf_counter()
    losses = train_iteration(method, batch, bf16)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = status_kib("VmHWM") * 1024
    seconds = time.perf_counter() - start
    activations = peak - before - 3 * trained_bytes(method)
    return {
        "preset": preset,
        "config": config,
        "size": f"{size[0]}x{size[1]}",
        "peak": peak / GIB,
        "before": before / GIB,
        "activations": activations / GIB,
        "seconds": seconds,
        "loss_G_GAN": losses.get("G_GAN", float("nan")),
    }


def run_child(preset: str, config: str, size: tuple[int, int], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in a fresh process (so that each peak is its own); None fields on a timeout."""
    command = [sys.executable, __file__, "--child", preset, config, f"{size[0]}x{size[1]}"]
    command += ["--device", args.device, "--threads", str(args.threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"preset": preset, "config": config, "size": f"{size[0]}x{size[1]}", "timeout": args.timeout}
    except subprocess.CalledProcessError as exc:
        sys.exit(f"{preset} {config} failed:\n{exc.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict[str, Any]], device: str) -> None:
    where = "peak RSS" if device == "cpu" else "max_memory_allocated"
    print(
        f"| preset | size | configuration | peak GiB ({where}) | before GiB | activations GiB | vs plain | s |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    plain = {r["preset"]: r for r in rows if r["config"] == "plain" and "peak" in r}
    for r in rows:
        if "peak" not in r:
            print(f"| {r['preset']} | {r['size']} | {r['config']} | over {r['timeout']} s | | | | |")
            continue
        base = plain.get(r["preset"])
        ratio = f"{r['activations'] / base['activations']:.2f}" if base else "-"
        print(
            f"| {r['preset']} | {r['size']} | {r['config']} | {r['peak']:.2f} | {r['before']:.2f} "
            f"| {r['activations']:.2f} | {ratio} | {r['seconds']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--scale", type=int, help="divide both sides by this (default: 1 on CUDA, 4 on the CPU)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--timeout", type=float, help="seconds allowed to each configuration")
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "CONFIG", "WxH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        preset, config, size = args.child
        width, height = (int(v) for v in size.split("x"))
        print(json.dumps(measure(preset, config, (width, height), torch.device(args.device))))
        return
    scale = args.scale or (1 if args.device == "cuda" else 4)
    rows = []
    for preset in args.presets:
        size = (SIZES[preset][0] // scale, SIZES[preset][1] // scale)
        for config in args.configs:
            rows.append(run_child(preset, config, size, args))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table(rows, args.device)


if __name__ == "__main__":
    main()
