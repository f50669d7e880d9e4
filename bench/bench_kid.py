"""Time KID on N image pairs, Inception features included (not a test: run `python bench/bench_kid.py`).

Renders N synthetic de-raining scenes (rainy = "generated", clean = "reference"), writes them as two
folders matched by stem and times :func:`pixforge.metrics.report.evaluate_dirs` with ``("kid",)`` end to
end (loading the TF-Inception network, reading the images, 2N feature extractions at 299 x 299, the
KID estimator), then the parts: feature extraction alone and the estimator alone. ``--fid`` also times
FID on the same features (its 2048 x 2048 matrix square root dominates on a CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge.data.synth import render_scene
from pixforge.metrics import kid
from pixforge.metrics.inception import InceptionFeatures
from pixforge.metrics.report import ScoreOptions, evaluate_dirs


def write_pairs(root: Path, count: int, size: int) -> tuple[Path, Path, list[np.ndarray], list[np.ndarray]]:
    fake, real = root / "fake", root / "real"
    fake.mkdir()
    real.mkdir()
    rainy, clean = [], []
    for index in range(count):
        scene = render_scene(0, index, size)
        Image.fromarray(scene.rainy).save(fake / f"{index:05d}.png")
        Image.fromarray(scene.photo).save(real / f"{index:05d}.png")
        rainy.append(scene.rainy)
        clean.append(scene.photo)
    return fake, real, rainy, clean


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="Image pairs (N).")
    parser.add_argument("--size", type=int, default=256, help="Side of the rendered scenes in pixels.")
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fid", action="store_true", help="Also time FID on the same features.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fake, real, rainy, clean = write_pairs(Path(tmp), args.count, args.size)
        report, total = timed(evaluate_dirs, fake, real, ScoreOptions(("kid",), kid_subsets=args.subsets))
    net, load_s = timed(InceptionFeatures, device=args.device, batch_size=args.batch_size)
    feats_fake, fake_s = timed(net, rainy)
    feats_real, real_s = timed(net, clean)
    _, kid_s = timed(kid.kid, feats_fake, feats_real, subset_size=1000, num_subsets=args.subsets)
    print(
        f"KID on {args.count} pairs of {args.size} px, {args.subsets} subsets, torch threads "
        f"{torch.get_num_threads()}, device {args.device}:\n"
        f"  evaluate_dirs end to end: {total:.1f} s (KIDx100 = {report.values['KIDx100']:.3f} "
        f"± {report.values['KIDx100_std']:.3f})\n"
        f"  network load {load_s:.1f} s; features {fake_s + real_s:.1f} s for {2 * args.count} images "
        f"({(fake_s + real_s) / (2 * args.count) * 1000:.0f} ms/image); estimator {kid_s:.2f} s"
    )
    if args.fid:
        value, fid_s = timed(kid.fid, feats_fake, feats_real)
        print(f"  FID on the same features: {value:.2f} in {fid_s:.1f} s")


if __name__ == "__main__":
    main()
