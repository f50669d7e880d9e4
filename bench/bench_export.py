"""Translation time, torch vs onnxruntime on the CPU, for exported pix2pix presets (not a test: run
`python bench/bench_export.py`).

Builds an untrained generator from each preset (timing needs no training), exports it with
:func:`pixforge.export.export_translator` (which checks parity), and times one translation of a random
batch at the preset's crop size after a warm-up: torch through ``Translator.translate_batch`` (the path of
``pixforge translate``) and onnxruntime's CPU session on the exported file, both with the same thread count.
Reports the median and the best ms per translation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pixforge.api import Translator, resolve_config
from pixforge.export import export_translator
from pixforge.methods.base import DataInfo
from pixforge.train import build_method


def timed(fn: Callable[[], object], reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def bench(preset: str, reps: int, warmup: int, batch: int, threads: int) -> dict[str, float | str]:
    import onnxruntime as ort

    cfg = resolve_config("pix2pix", preset=preset)
    size = cfg.data.crop_size
    method = build_method(cfg, DataInfo(3, 3, (size, size))).eval()
    translator = Translator(method, cfg, 0, torch.device("cpu"))
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        result = export_translator(translator, Path(tmp) / f"{preset}.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
        feeds = {"image": x.numpy()}
        ort_ms = timed(lambda: sess.run(None, feeds), reps, warmup)
    torch_ms = timed(lambda: translator.translate_batch({"A": x}), reps, warmup)
    return {
        "preset": preset,
        "size": size,
        "test_mode": cfg.model.test_mode,
        "torch_ms": statistics.median(torch_ms),
        "torch_best_ms": min(torch_ms),
        "onnxruntime_ms": statistics.median(ort_ms),
        "onnxruntime_best_ms": min(ort_ms),
        "max_diff": result.max_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "facades"])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, batch {args.batch}, {args.reps} reps after {args.warmup} warm-up")
    print(
        "| preset | size | test mode | torch ms (median / best) | onnxruntime ms (median / best) | speed-up | max abs diff |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for preset in args.presets:
        r = bench(preset, args.reps, args.warmup, args.batch, args.threads)
        print(
            f"| {r['preset']} | {r['size']} | {r['test_mode']} | {r['torch_ms']:.1f} / {r['torch_best_ms']:.1f} | "
            f"{r['onnxruntime_ms']:.1f} / {r['onnxruntime_best_ms']:.1f} | "
            f"{float(r['torch_ms']) / float(r['onnxruntime_ms']):.2f}x | {float(r['max_diff']):.1e} |"
        )


if __name__ == "__main__":
    main()
