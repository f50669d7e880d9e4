"""``pixforge serve`` as a process: SIGTERM drains the request in flight and exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pixforge.client import Client, ServerError

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(client: Client, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            client.health()
            return
        except (OSError, ServerError):
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_sigterm_drains_in_flight_requests_and_exits_zero(serve_runs: dict[str, Path], photo):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pixforge", "serve", str(serve_runs["p2p"]), "--port", str(port)]
    cmd += ["--device", "cpu", "--max-wait-ms", "1500"]  # a request stays in flight for 1.5 s
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = Client(f"http://127.0.0.1:{port}")
        wait_healthy(client, proc)
        result = {}
        request = threading.Thread(target=lambda: result.update(out=client.translate(photo())))
        request.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        request.join(30)
        assert result["out"].size == (32, 32)
        assert proc.wait(30) == 0
        log = proc.stdout.read() if proc.stdout else ""
        assert "Shutting down" in log and "200 OK" in log
    finally:
        if proc.poll() is None:
            proc.kill()
