"""Peak memory (RSS) and time of translating one large image whole vs in tiles (not a test: run
`python bench/bench_tiles.py`).

Each measurement runs in a fresh process: it builds an untrained pix2pix ResNet generator (memory needs no
training; eval mode), makes a smooth RGB image of the given side, translates it with
:meth:`pixforge.api.Translator.translate` (whole, or ``tile``/``overlap``) and reports the process's peak
RSS (``ru_maxrss``), the RSS before translating (model + input image) and the seconds taken. Whole
translations larger than ``--max-whole`` are not run: their activations alone (``ngf`` floats per pixel
per layer at full resolution) exceed the memory of a shared development machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

from pixforge.api import Translator, resolve_config
from pixforge.methods.base import DataInfo
from pixforge.train import build_method


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def translator(netG: str, ngf: int) -> Translator:
    cfg = resolve_config("pix2pix", flags={"netG": netG, "ngf": ngf, "norm": "batch", "test_mode": "eval"})
    method = build_method(cfg, DataInfo(3, 3, (256, 256)))
    return Translator(method, cfg, 0, torch.device("cpu"))


def smooth_image(side: int) -> Image.Image:
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    rgb = np.stack(
        [
            ramp[None, :].repeat(side, 0),
            ramp[:, None].repeat(side, 1),
            np.full((side, side), 128, np.float32),
        ],
        2,
    )
    return Image.fromarray(rgb.astype(np.uint8))


def measure(
    side: int, tile: int | None, overlap: int, netG: str, ngf: int, threads: int
) -> dict[str, object]:
    """One translation in this process; its figures."""
    torch.set_num_threads(threads)
    model = translator(netG, ngf)
    image = smooth_image(side)
    before = current_rss_mib()
    start = time.perf_counter()
    out = model.translate(image, tile=tile, overlap=overlap)["output"]
    seconds = time.perf_counter() - start
    assert out.size == (side, side)
    return {
        "side": side,
        "tile": tile,
        "overlap": overlap if tile else None,
        "rss_before_mib": round(before),
        "peak_rss_mib": round(peak_rss_mib()),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--max-whole", type=int, default=4096, help="Largest side translated whole.")
    parser.add_argument("--netG", default="resnet_6blocks")
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(measure(**spec)))
        return
    print(f"pix2pix {args.netG} ngf {args.ngf}, eval mode, CPU, {args.threads} threads; one process per row")
    print(f"{'side':>6} {'mode':>14} {'RSS before':>11} {'peak RSS':>9} {'seconds':>8}")
    for side in args.sides:
        for tile in (None, args.tile):
            if tile is None and side > args.max_whole:
                print(f"{side:>6} {'whole':>14} {'not run: over --max-whole':>30}")
                continue
            spec = {
                "side": side,
                "tile": tile,
                "overlap": args.overlap,
                "netG": args.netG,
                "ngf": args.ngf,
                "threads": args.threads,
            }
            done = subprocess.run(
                [sys.executable, __file__, "--one", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            mode = "whole" if tile is None else f"tile {tile}/{args.overlap}"
            print(
                f"{side:>6} {mode:>14} {row['rss_before_mib']:>8} MiB {row['peak_rss_mib']:>5} MiB {row['seconds']:>8}"
            )


if __name__ == "__main__":
    main()
