"""Load test of `pixforge serve` on 127.0.0.1: throughput and latency with micro-batching on and off (not a
test: run `python bench/bench_serve.py`).

Starts a live server process per setting (``--max-batch 8`` and ``--max-batch 1``), then for each client count
(1, 8, 32) runs that many concurrent clients, each sending translate requests one after another through
:class:`pixforge.client.Client`, until ``--requests`` requests are answered or ``--seconds`` have passed.
Reports requests/s and the p50/p99 latency of each setting, as a markdown table. Without ``--run`` it serves a
demo-preset pix2pix trained for one step on synthetic 64 px scenes (timing needs no training).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

import pixforge
from pixforge.client import Client, ServerError
from pixforge.data.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]


def demo_run(folder: Path) -> Path:
    """A demo-preset pix2pix run (64 px U-Net) after one training step."""
    synthesize(folder / "data", count=8, size=64, seed=0)
    run = folder / "demo"
    pixforge.train(
        "pix2pix", folder / "data" / "aligned", run, preset="demo", steps=1, steps_decay=0, batch_size=1
    )
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    run: Path, max_batch: int, max_wait_ms: float, threads: int | None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "pixforge", "serve", str(run), "--port", str(port), "--device", "cpu"]
    cmd += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            Client(url).health()
            return proc, url
        except (OSError, ServerError):
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def load(url: str, clients: int, requests: int, seconds: float, image: Image.Image) -> dict[str, float]:
    """``clients`` concurrent clients until ``requests`` answers or ``seconds``; latencies in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    issued = [0]

    def client_loop() -> None:
        client = Client(url, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                if issued[0] >= requests:
                    return
                issued[0] += 1
            start = time.perf_counter()
            client.translate(image)
            with lock:
                latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.asarray(latencies)
    return {
        "answered": len(lat),
        "rps": len(lat) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="Run to serve (default: a one-step demo-preset run).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=96, help="At most this many requests per setting.")
    parser.add_argument("--seconds", type=float, default=20.0, help="At most this long per setting.")
    parser.add_argument("--threads", type=int, help="Torch threads of the server (OMP_NUM_THREADS).")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or demo_run(Path(tmp))
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, server threads "
            f"{args.threads or 'default'}, --max-wait-ms {args.max_wait_ms:g}, <= {args.requests} requests or "
            f"{args.seconds:g} s per row"
        )
        print("| --max-batch | clients | answered | requests/s | p50 ms | p99 ms |")
        print("| --- | --- | --- | --- | --- | --- |")
        for max_batch in args.max_batch:
            proc, url = start_server(run, max_batch, args.max_wait_ms, args.threads)
            try:
                for _ in range(3):
                    Client(url).translate(image)
                for clients in args.clients:
                    r = load(url, clients, args.requests, args.seconds, image)
                    print(
                        f"| {max_batch} | {clients} | {r['answered']} | {r['rps']:.1f} | {r['p50']:.0f} | "
                        f"{r['p99']:.0f} |",
                        flush=True,
                    )
            finally:
                proc.terminate()
                proc.wait(60)


if __name__ == "__main__":
    main()
