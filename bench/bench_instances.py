"""Per-instance work of pix2pixHD at inference on an instance map with very many ids (issue 21, item 9).

A tiny pix2pixHD with a feature encoder and clusters is trained for a few steps on the synthetic facades; then
the style features of a SIDE x SIDE instance map whose every pixel is its own instance (SIDE² ids) are timed
(:meth:`Pix2PixHD.style_features` with a style seed: one cluster centre drawn per instance), and the paint
page's instance listing (:meth:`pixforge.editing.Scene.instances`) on a smaller map.

    .venv/bin/python bench/bench_instances.py --side 1024
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import pixforge
from pixforge.data.dataset import one_hot
from pixforge.data.synth import synthesize
from pixforge.editing import Scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=1024, help="Instance map side (side² ids).")
    parser.add_argument("--scene-side", type=int, default=256, help="Side of the Scene.instances map.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "synth", count=8, size=32, seed=0)
        run = root / "hd"
        pixforge.train(
            "pix2pixhd", root / "synth" / "labeled", run, preset="tiny", steps=4, preprocess="none"
        )
        translator = pixforge.load(run, device="cpu")
        method = translator.method
        side = args.side
        label = torch.ones(1, 1, side, side, dtype=torch.long)
        instance = torch.arange(side * side, dtype=torch.long).reshape(1, 1, side, side) + 1000
        batch = {"A": one_hot(label, method.n_classes), "label": label, "instance": instance}
        start = time.perf_counter()
        with torch.no_grad():
            features = method.style_features(batch, style_seed=0)
        print(
            f"style_features, {side}x{side} map, {side * side} ids: {time.perf_counter() - start:.2f} s "
            f"(shape {tuple(features.shape)})"
        )
        s = args.scene_side
        scene = Scene(translator, label[..., :s, :s], instance[..., :s, :s])
        start = time.perf_counter()
        found = scene.instances()
        print(f"Scene.instances, {s}x{s} map, {len(found)} ids: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
