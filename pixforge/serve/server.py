"""Running the app with uvicorn: :func:`run` in the foreground (the CLI), :func:`background` in a thread (tests,
benchmarks). SIGTERM (or Ctrl-C) drains the requests in flight before :func:`run` returns."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from pixforge.errors import PixforgeError

#: seconds that requests in flight get to finish after SIGTERM
GRACEFUL_SECONDS = 60


def make_server(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Server:
    """One uvicorn process serving the app (the models live in it), with a graceful shutdown."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACEFUL_SECONDS
    )
    return uvicorn.Server(config)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, taken before anything is loaded or printed (so that a port in use
    ends with one line instead of a URL that points at the other server)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PixforgeError(
            f"port {port} on {host} is in use or cannot be bound ({exc.strerror}); choose another with --port"
        ) from None
    return sock


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish before this returns.

    ``sock`` is a socket from :func:`listen` (else uvicorn binds ``host:port`` itself).

    uvicorn re-raises the signal it caught once it has shut down; a no-op handler for SIGTERM in its place
    lets the process exit with status 0 after the drain instead of dying by the signal.
    """
    server = make_server(app, host, port)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=None if sock is None else [sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def background(app: FastAPI, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[str]:
    """Serve the app from a thread on a free port of ``host``; yields its base URL, then shuts it down."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = make_server(app, host, port, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise PixforgeError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
