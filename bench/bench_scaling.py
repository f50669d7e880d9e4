"""Scaling of training over processes: steps/s and images/s for 1, 2, ... processes (not a test).

`python bench/bench_scaling.py --nproc 1 2` renders the built-in synthetic dataset, then trains the same
preset with `pixforge train --nproc N` (gloo on the CPU, NCCL on GPUs) for each N, one after the other,
and reports:

- steps/s and images/s (global batch = N x per-process batch) in the steady state, from the timestamps in
  metrics.jsonl between the first and the last logged step (start-up and the final checkpoint excluded);
- the wall time of the whole command (start-up, process group, data scan, training, checkpoints).

On a CPU the processes share the cores: with N processes each gets cores // N threads, so the scaling there
measures the cost of the gradient all-reduce and the per-process overheads, not extra compute.
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

ROOT = Path(__file__).resolve().parents[1]


def run(nproc: int, args: argparse.Namespace, data: Path, out: Path) -> dict[str, float]:
    cmd = [
        sys.executable, "-m", "pixforge", "train", args.method, "--data", str(data), "--out", str(out),
        "--preset", args.preset, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--set", "log_every=1", "--set", f"checkpoint_every={args.steps}", "--nproc", str(nproc),
        *[x for kv in args.set for x in ("--set", kv)],
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[min(args.skip, len(rows) - 2)], rows[-1]
    steps_per_s = (last["step"] - first["step"]) / (last["time"] - first["time"])
    return {
        "nproc": nproc,
        "steps_per_s": steps_per_s,
        "images_per_s": steps_per_s * nproc * args.batch_size,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="pix2pix")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=64, help="Side of the synthetic images.")
    parser.add_argument("--count", type=int, default=48, help="Synthetic scenes.")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=5, help="Logged steps left out as warm-up.")
    parser.add_argument("--batch-size", type=int, default=4, help="Per process.")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pixforge.data.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        synthesize(Path(tmp) / "data", count=args.count, size=args.size, seed=0)
        data = Path(tmp) / "data" / ("unaligned" if args.method == "cyclegan" else "aligned")
        results = [run(n, args, data, Path(tmp) / f"run{n}") for n in args.nproc]
    base = results[0]["images_per_s"]
    print(
        f"{args.method} {args.preset}, {args.size} px, batch {args.batch_size} per process, {os.cpu_count()} CPUs"
    )
    print("| processes | steps/s | images/s | speed-up (images/s) | wall time of the run |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['nproc']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.1f} | "
            f"{r['images_per_s'] / base:.2f}x | {r['wall_s']:.1f} s |"
        )


if __name__ == "__main__":
    main()
