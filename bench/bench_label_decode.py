"""Peak memory of decoding an uploaded label map as the server does (``decode_image`` then ``label_ids``).

Each case runs in a fresh process and reports its peak resident set (``ru_maxrss``) and the peak of the
numpy/Python allocations (``tracemalloc``), for an all-zero PNG label map of SIDE x SIDE pixels, as 8-bit
class ids (mode L) and as black RGB colours decoded through the palette.

    python bench/bench_label_decode.py --side 4096 --classes 13
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tracemalloc

import numpy as np
from PIL import Image


def measure(side: int, classes: int, mode: str) -> dict[str, float]:
    """Decode one all-zero label map in this process; peak memory in MB."""
    from pixforge.serve.inputs import decode_image, label_ids

    buffer = io.BytesIO()
    Image.new(mode, (side, side)).save(buffer, format="PNG")
    data = buffer.getvalue()
    palette = np.random.default_rng(0).integers(0, 256, (classes, 3))
    palette[0] = 0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    ids = label_ids(decode_image(data, "label", len(data), side * side), classes, palette)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert ids.size == (side, side) and not np.asarray(ids).any()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_before_mb": before, "rss_peak_mb": peak, "traced_peak_mb": traced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=13)
    parser.add_argument("--case", choices=["L", "RGB"], help="run one case in this process (internal)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.side, args.classes, args.case)))
        return
    for case in ("L", "RGB"):
        cmd = [
            sys.executable,
            __file__,
            "--side",
            str(args.side),
            "--classes",
            str(args.classes),
            "--case",
            case,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        row = json.loads(result.stdout) if result.returncode == 0 else {"error": result.stderr.strip()[-200:]}
        print(f"{args.side}^2 all-zero {case} label map, {args.classes} classes: {row}")


if __name__ == "__main__":
    main()
