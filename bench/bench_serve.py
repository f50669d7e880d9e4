"""Load test of `pixforge serve` on 127.0.0.1: throughput and latency with micro-batching on and off, a burst of
simultaneous clients against the bounded queue, the ONNX export, and peak memory (not a test: run
`python bench/bench_serve.py`).

Starts a live server process per setting (``--max-batch 8`` and ``--max-batch 1``), then for each client count
(1, 8, 32) runs that many concurrent clients, each sending translate requests one after another, until
``--requests`` requests are answered or ``--seconds`` have passed. Then ``--burst`` clients (300) send one request
each at the same moment to a server with ``--max-queue`` (64): the answers beyond the queue are 503, counted, and
p50/p99 are of the accepted ones. Then the run's ONNX export is served (onnxruntime) to the same client counts.
Reports requests/s and the p50/p99 latency of each row, as a markdown table. Without ``--run`` it serves a
demo-preset pix2pix trained for one step on synthetic 64 px scenes (timing needs no training).

``--memory`` instead measures the server's peak RSS (``VmHWM``) over its resident size after warm-up for one and
for three concurrent 2048x2048 uploads, with the default per-batch pixel budget and with the budget off (the old
behaviour: same-sized requests stacked into one pass), on a one-step demo run trained with ``preprocess=none``
(so the model runs at the upload's own size).
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
from urllib import error, request

import numpy as np
from PIL import Image

import pixforge
from pixforge.client import Client, ServerError, multipart, upload_bytes
from pixforge.data.synth import synthesize
from pixforge.export import export_run

ROOT = Path(__file__).resolve().parents[1]
#: the served model's name (the run directory's, the export's stem)
MODEL = "demo"


def demo_run(folder: Path, **overrides: str) -> Path:
    """A demo-preset pix2pix run (64 px U-Net) after one training step."""
    synthesize(folder / "data", count=8, size=64, seed=0)
    run = folder / "runs" / MODEL
    pixforge.train(
        "pix2pix",
        folder / "data" / "aligned",
        run,
        preset="demo",
        steps=1,
        steps_decay=0,
        batch_size=1,
        overrides=overrides,
    )
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    run: Path, max_batch: int, max_wait_ms: float, threads: int | None, *extra: str
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "pixforge", "serve", str(run), "--port", str(port), "--device", "cpu"]
    cmd += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), *extra]
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


def post(url: str, body: bytes, content_type: str) -> int:
    """The status of one translate request (its own connection)."""
    req = request.Request(
        f"{url}/v1/models/{MODEL}/translate", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with request.urlopen(req, timeout=300) as resp:
            resp.read()
            return resp.status
    except error.HTTPError as exc:
        return exc.code


def burst(url: str, clients: int, image: Image.Image) -> dict[str, float]:
    """``clients`` requests sent at the same moment; 503s counted, latencies (ms) of the accepted ones."""
    body, content_type = multipart({}, {"image": upload_bytes(image)})
    gate = threading.Barrier(clients)
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one() -> None:
        gate.wait()
        start = time.perf_counter()
        status = post(url, body, content_type)
        with lock:
            results.append((status, (time.perf_counter() - start) * 1000))

    start = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = np.asarray([ms for status, ms in results if status == 200])
    return {
        "answered": len(ok),
        "refused": sum(status == 503 for status, _ in results),
        "other": sum(status not in (200, 503) for status, _ in results),
        "rps": len(ok) / wall,
        "p50": float(np.percentile(ok, 50)) if len(ok) else float("nan"),
        "p99": float(np.percentile(ok, 99)) if len(ok) else float("nan"),
    }


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


def row(name: str, max_batch: int, clients: int, r: dict[str, float]) -> None:
    print(
        f"| {name} | {max_batch} | {clients} | {r['answered']} | {r.get('refused', 0)} | {r['rps']:.1f} | "
        f"{r['p50']:.0f} | {r['p99']:.0f} |",
        flush=True,
    )


def serve_rows(
    name: str, model: Path, args: argparse.Namespace, image: Image.Image, max_batch: int, with_burst: bool
) -> None:
    extra = ["--max-queue", str(args.max_queue)]
    proc, url = start_server(model, max_batch, args.max_wait_ms, args.threads, *extra)
    try:
        for _ in range(3):
            Client(url).translate(image, model=MODEL)
        for clients in args.clients:
            row(name, max_batch, clients, load(url, clients, args.requests, args.seconds, image))
        if with_burst:
            row(
                f"{name}, burst, --max-queue {args.max_queue}",
                max_batch,
                args.burst,
                burst(url, args.burst, image),
            )
    finally:
        proc.terminate()
        proc.wait(60)


def rss_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {key} in /proc/{pid}/status")


def memory(args: argparse.Namespace) -> None:
    """Peak RSS over the warmed-up size for 1 and 3 concurrent 2048x2048 uploads, budget on and off."""
    rng = np.random.default_rng(0)
    side = 2048
    big = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    body, content_type = multipart({}, {"image": upload_bytes(big)})
    small = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    print(
        "| per-batch pixel budget | concurrent 2048x2048 uploads | passes | base MB | peak MB | over base MB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or demo_run(Path(tmp), preprocess="none")
        for budget in (None, side * side * 8):
            for clients in (1, 3):
                extra = ["--max-bytes", str(len(body) * 2), "--timeout-ms", "3600000"]
                extra += ["--max-batch-pixels", str(budget)] if budget else []
                proc, url = start_server(run, 8, 2000.0, args.threads, *extra)
                try:
                    Client(url).translate(small, model=MODEL)
                    base = rss_kb(proc.pid, "VmRSS")
                    threads = [
                        threading.Thread(target=post, args=(url, body, content_type)) for _ in range(clients)
                    ]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    peak = rss_kb(proc.pid, "VmHWM")
                    passes = Client(url).metrics().split(f'pixforge_batch_size_count{{model="{MODEL}"}} ')[1]
                    name = "default (1024x1024)" if budget is None else "off (stack all)"
                    print(
                        f"| {name} | {clients} | {float(passes.split()[0]) - 1:.0f} | {base / 1024:.0f} | "
                        f"{peak / 1024:.0f} | {(peak - base) / 1024:.0f} |",
                        flush=True,
                    )
                finally:
                    proc.terminate()
                    proc.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="Run to serve (default: a one-step demo-preset run).")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-queue", type=int, default=64, help="The server's queue bound.")
    parser.add_argument(
        "--burst", type=int, default=300, help="Simultaneous clients of the burst row (0: none)."
    )
    parser.add_argument("--no-onnx", action="store_true", help="Skip the rows serving the ONNX export.")
    parser.add_argument(
        "--memory", action="store_true", help="Measure peak memory instead (see the docstring)."
    )
    parser.add_argument("--requests", type=int, default=96, help="At most this many requests per setting.")
    parser.add_argument("--seconds", type=float, default=20.0, help="At most this long per setting.")
    parser.add_argument("--threads", type=int, help="Torch threads of the server (OMP_NUM_THREADS).")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, server threads "
        f"{args.threads or 'default'}, --max-wait-ms {args.max_wait_ms:g}, <= {args.requests} requests or "
        f"{args.seconds:g} s per row"
    )
    if args.memory:
        memory(args)
        return
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or demo_run(Path(tmp))
        print("| served | --max-batch | clients | answered | 503 | requests/s | p50 ms | p99 ms |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for max_batch in args.max_batch:
            serve_rows("torch", run, args, image, max_batch, with_burst=bool(args.burst) and max_batch > 1)
        if not args.no_onnx:
            exported = Path(tmp) / f"{MODEL}.onnx"
            export_run(run, exported)
            serve_rows("onnxruntime", exported, args, image, max(args.max_batch), with_burst=False)


if __name__ == "__main__":
    main()
