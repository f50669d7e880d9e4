"""Running the app with uvicorn; SIGTERM (or Ctrl-C) drains the requests in flight, then returns."""

from __future__ import annotations

import signal
import socket

import uvicorn
from fastapi import FastAPI


def config(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> uvicorn.Config:
    """uvicorn's config for the app: a single process (the models live in it), graceful shutdown."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=60)


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish before this returns.

    uvicorn re-raises the signal it caught once it has shut down; a no-op handler for SIGTERM in its place
    lets the process exit with status 0 after the drain instead of dying by the signal.
    """
    server = uvicorn.Server(config(app, host, port))
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock] if sock else None)
    finally:
        signal.signal(signal.SIGTERM, previous)
