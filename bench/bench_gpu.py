"""The first GPU: steps/s and peak memory of real training runs, lever by lever (bench/gpu_check.sh runs it).

    python bench/bench_gpu.py                                  # a CUDA machine: the sweep below
    python bench/bench_gpu.py --device cpu --steps 2 --tiny    # the CPU path: tiny presets, checks it runs

The sweep trains through the real trainer (``pixforge.train``: data loader, autocast, channels_last,
torch.compile, fused Adam, the process group), each configuration in a fresh process:

- pix2pix, ``facades`` preset, 256 px: ``../shared/data/facades`` when it is there, else the built-in
  synthetic facades at 256 px;
- pix2pixHD, ``cityscapes_1024`` preset (G1, 3 discriminators, encoder, VGG19 loss) at 1024x512 on a few
  Cityscapes-like scenes written for the run;
- levers: fp32; bf16 autocast; bf16 + channels_last + torch.compile;
- 1 process, and 2 (torchrun, NCCL) where two GPUs exist.

Each run takes ``2 x steps`` steps and logs every ``steps``: the first ``steps`` are the warm-up
(compilation, cuDNN autotuning), the speed is that of the second ``steps``; peak memory is
``torch.cuda.max_memory_allocated`` over the run (on the CPU, the peak resident set size), of rank 0.
With ``--tiny`` the presets are the methods' tiny ones on synthetic 32 px data. One table is printed at the
end; the first failing run stops the sweep with its error. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FACADES = ROOT.parent / "shared" / "data" / "facades"
#: lever name -> trainer options
LEVERS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"amp": "bf16"},
    "bf16+cl+compile": {"amp": "bf16", "channels_last": True, "compile": True},
}
#: seconds allowed to any one run (the whole sweep must stay under 8 minutes on one GPU)
RUN_LIMIT_S = 240


def write_streets(root: Path, count: int, width: int, height: int) -> None:
    """``count`` Cityscapes-like scenes in the labeled layout (label ids 0-33, instance ids class*1000+k)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pix2pixhd import street_batch

    for folder in ("images", "labels", "instances"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for k in range(count):
        scene = street_batch(height, width)
        label = scene["label"][0, 0].numpy().astype(np.uint8)
        instance = scene["instance"][0, 0].numpy().astype(np.uint16)
        photo = ((scene["B"][0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()
        Image.fromarray(photo).save(root / "train" / "images" / f"{k:05d}.png")
        Image.fromarray(label).save(root / "train" / "labels" / f"{k:05d}.png")
        Image.fromarray(instance).save(root / "train" / "instances" / f"{k:05d}.png")


def datasets(work: Path, tiny: bool) -> dict[str, tuple[Path, str]]:
    """method -> (data root, preset) of the sweep."""
    from pixforge.data.synth import synthesize

    if tiny:
        synthesize(work / "synth", count=8, size=32, seed=0)
        return {
            "pix2pix": (work / "synth" / "aligned", "tiny"),
            "pix2pixhd": (work / "synth" / "labeled", "tiny"),
        }
    if (FACADES / "train").is_dir():
        facades = FACADES
    else:
        synthesize(work / "synth", count=32, size=256, seed=0)
        facades = work / "synth" / "aligned"
    write_streets(work / "streets", count=8, width=1024, height=512)
    return {"pix2pix": (facades, "facades"), "pix2pixhd": (work / "streets", "cityscapes_1024")}


def peak_memory(device: str) -> float:
    """GiB: max allocated on CUDA, peak resident set size on the CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(spec: dict[str, Any]) -> None:
    """One run in this process (or in each process of a torchrun job); rank 0 prints its figures as JSON."""
    import pixforge

    steps = spec["steps"]
    overrides = {"vgg_loss": "false"} if spec["no_vgg"] and spec["method"] == "pix2pixhd" else {}
    pixforge.train(
        spec["method"], spec["data"], spec["out"], preset=spec["preset"], overrides=overrides,
        steps=100 * steps, stop_after=2 * steps, log_every=steps, checkpoint_every=100 * steps,
        sample_count=1, device=spec["device"], **LEVERS[spec["lever"]],
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")):
        return
    rows = [json.loads(x) for x in (Path(spec["out"]) / "metrics.jsonl").read_text().splitlines()]
    (warm, last) = rows[0], rows[-1]
    seconds = last["time"] - warm["time"]
    figures = {
        "steps_per_s": (last["step"] - warm["step"]) / seconds,
        "peak_gib": peak_memory(spec["device"]),
    }
    print(json.dumps(figures))


def run(spec: dict[str, Any], nproc: int, limit: float) -> dict[str, Any]:
    """``child(spec)`` in a fresh process, or a torchrun job of ``nproc``; fails loudly with its output."""
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    if nproc > 1:
        command[1:1] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    name = f"{spec['method']} {spec['lever']} x{nproc}"
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=limit)
    except subprocess.TimeoutExpired:
        sys.exit(f"{name} took more than {limit:g} s (--run-limit)")
    if done.returncode:
        sys.exit(f"{name} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--steps", type=int, default=20, help="warm-up steps, then as many measured")
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny presets on 32 px data (always on the CPU)"
    )
    parser.add_argument("--levers", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--no-vgg", action="store_true", help="pix2pixHD without the VGG19 loss")
    parser.add_argument(
        "--methods", nargs="+", choices=("pix2pix", "pix2pixhd"), default=["pix2pix", "pix2pixhd"]
    )
    parser.add_argument(
        "--run-limit", type=float, help=f"seconds per run (default: {RUN_LIMIT_S} on CUDA, 1200 on the CPU)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    limit = args.run_limit or (RUN_LIMIT_S if args.device == "cuda" else 1200)
    tiny = args.tiny or args.device == "cpu"  # a CPU takes minutes per full-size step
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    processes = [1, 2] if gpus >= 2 else [1]
    table = []
    with tempfile.TemporaryDirectory(prefix="pixforge-gpu-") as tmp:
        work = Path(tmp)
        for method, (data, preset) in datasets(work, tiny).items():
            if method not in args.methods:
                continue
            for lever in args.levers:
                for nproc in processes:
                    spec = {
                        "method": method, "data": str(data), "preset": preset, "lever": lever,
                        "steps": args.steps, "device": args.device, "no_vgg": args.no_vgg,
                        "out": str(work / "runs" / f"{method}-{lever}-{nproc}"),
                    }  # fmt: skip
                    start = time.perf_counter()
                    figures = run(spec, nproc, limit)
                    table.append((method, preset, lever, nproc, figures, time.perf_counter() - start))
                    print(f"{method} {lever} x{nproc}: {figures}", file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"\n{device}, {args.steps} warm-up + {args.steps} measured steps per run, batch 1 per process")
    print("| method | preset | levers | processes | steps/s | images/s | peak GiB (rank 0) | run s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for method, preset, lever, nproc, f, seconds in table:
        print(
            f"| {method} | {preset} | {lever} | {nproc} | {f['steps_per_s']:.2f} | {f['steps_per_s'] * nproc:.2f} "
            f"| {f['peak_gib']:.2f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
