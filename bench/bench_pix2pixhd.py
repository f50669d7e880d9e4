"""pix2pixHD at full size on this machine: parameter counts, one training step, high-resolution inference.

    python bench/bench_pix2pixhd.py params
    python bench/bench_pix2pixhd.py train --height 512 --width 1024 [--no-vgg]
    python bench/bench_pix2pixhd.py infer --height 1024 --width 2048

``train`` builds the ``cityscapes_1024`` model (G1, 3 discriminators, encoder, VGG loss) and times one
iteration of the trainer's phases (forward, D step, G+E step with Adam) on a random Cityscapes-like
batch; ``infer`` builds the ``cityscapes_2048`` model (G1 + G2) and times one translation with cluster
styles. Each prints seconds and the process's peak resident memory (run one per process: the peak is
per process). A benchmark, not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import torch

from pixforge.api import resolve_config
from pixforge.data.dataset import one_hot
from pixforge.methods.base import DataInfo
from pixforge.methods.pix2pixhd import Pix2PixHD

LABEL_NC = 34


def peak_rss_gib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build(preset: str, overrides: dict[str, Any] | None = None) -> Pix2PixHD:
    cfg = resolve_config("pix2pixhd", preset=preset, overrides=overrides or {})
    return Pix2PixHD(cfg.model, DataInfo(LABEL_NC, 3, (cfg.data.load_size, cfg.data.load_size), LABEL_NC))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def street_batch(height: int, width: int) -> dict[str, torch.Tensor]:
    """Road, buildings, sky and a row of touching cars (Cityscapes ids 7, 11, 23, 26; car ids 26000+k)."""
    label = torch.full((1, 1, height, width), 7, dtype=torch.long)
    label[..., : height // 3, :] = 23
    label[..., height // 3 : height // 2, :] = 11
    instance = label.clone()
    car_h, car_w = height // 8, width // 16
    top = height // 2 + height // 8
    for k in range(10):
        x = k * car_w + width // 8
        label[..., top : top + car_h, x : x + car_w] = 26
        instance[..., top : top + car_h, x : x + car_w] = 26000 + k
    photo = torch.rand(1, 3, height, width) * 2 - 1
    return {"A": one_hot(label, LABEL_NC), "B": photo, "label": label, "instance": instance}


def params() -> None:
    g1 = build("cityscapes_1024")
    g12 = build("cityscapes_2048")
    print(f"global generator G1 (input {LABEL_NC} labels + 1 boundary + 3 features): {count(g1.nets['G']):,}")
    print(f"G1 + G2 (one local enhancer, G1 without its c7s1-3): {count(g12.nets['G']):,}")
    print(f"  of which the enhancer G2: {count(g12.nets['G'].enhancers):,}")
    print(f"3 discriminators: {count(g1.nets['D']):,}; feature encoder: {count(g1.nets['E']):,}")


def train(height: int, width: int, vgg: bool) -> None:
    method = build("cityscapes_1024", {"vgg_loss": str(vgg).lower()})
    phases = method.phases()
    optimizers = {
        p.name: torch.optim.Adam(
            [q for n in p.nets for q in method.nets[n].parameters()], 2e-4, betas=(0.5, 0.999)
        )
        for p in phases
    }
    batch = street_batch(height, width)
    print(f"built the cityscapes_1024 model (vgg_loss={vgg}); peak RSS so far {peak_rss_gib():.2f} GiB")
    for step in range(2):
        start = time.perf_counter()
        state = method.forward_step(batch)
        scalars = {}
        for phase in phases:
            for name, net in method.nets.items():
                net.requires_grad_(name in phase.nets)
            optimizers[phase.name].zero_grad(set_to_none=True)
            loss, out = phase.loss(state)
            loss.backward()
            optimizers[phase.name].step()
            scalars.update(out)
        seconds = time.perf_counter() - start
        values = " ".join(f"{k}={float(v):.3g}" for k, v in scalars.items())
        print(
            f"step {step} at {width}x{height}: {seconds:.1f} s, peak RSS {peak_rss_gib():.2f} GiB ({values})"
        )


def infer(height: int, width: int) -> None:
    method = build("cityscapes_2048", {"vgg_loss": "false"})
    torch.manual_seed(0)
    centres = torch.rand(LABEL_NC, 10, 3) * 2 - 1
    method.load_extra_state({"centres": centres, "centre_counts": torch.full((LABEL_NC,), 10)})
    batch = {k: v for k, v in street_batch(height, width).items() if k != "B"}
    print(f"built the cityscapes_2048 model (G1 + G2); peak RSS so far {peak_rss_gib():.2f} GiB")
    for run in range(2):
        start = time.perf_counter()
        with method.inference():
            out = method.generate(batch, style_seed=run)
        seconds = time.perf_counter() - start
        print(
            f"translation {run} at {width}x{height}: {seconds:.1f} s, peak RSS {peak_rss_gib():.2f} GiB, {tuple(out.shape)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("params", "train", "infer"))
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--no-vgg", action="store_true", help="train without the VGG19 loss")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "params":
        params()
    elif args.what == "train":
        train(args.height or 512, args.width or 1024, not args.no_vgg)
    else:
        infer(args.height or 1024, args.width or 2048)


if __name__ == "__main__":
    main()
