"""Running the app with uvicorn: :func:`run` in the foreground (the CLI), :func:`background` in a thread (tests,
benchmarks). SIGTERM (or Ctrl-C) drains the requests in flight before :func:`run` returns.

Slow clients cannot hold the server: a connection that has not sent a request's headers within
``header_timeout_s`` of connecting (or of its previous answer) is closed (:class:`TimedH11Protocol`), and a body
not received within ``body_timeout_s`` is answered 408 (the app's guard). So a drain after SIGTERM ends within
the body timeout plus the requests in flight, and :data:`GRACEFUL_SECONDS` bounds it whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from pixforge.errors import PixforgeError

#: seconds after SIGTERM after which requests still in flight are cancelled
GRACEFUL_SECONDS = 30


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers (uvicorn has none: a client that sends
    half a request line keeps its connection open for ever)."""

    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timer: asyncio.TimerHandle | None = None
        self.timed_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self.timed_cycle:  # a request's headers arrived
            self.timed_cycle = self.cycle
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _expire(self) -> None:
        self.header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


class DrainingServer(uvicorn.Server):
    """uvicorn's server that tells the app when it starts draining (``app.state.lifecycle``: /readyz)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        lifecycle = getattr(self.app.state, "lifecycle", None)
        if lifecycle is not None:
            lifecycle.draining = True
        super().handle_exit(sig, frame)


def make_server(app: FastAPI, host: str, port: int, log_level: str = "info") -> DrainingServer:
    """One uvicorn process serving the app (the models live in it), with slow-client timeouts and a graceful
    shutdown."""
    settings = getattr(app.state, "settings", None)
    protocol = type(
        "TimedH11", (TimedH11Protocol,), {"header_timeout_s": getattr(settings, "header_timeout_s", 10.0)}
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    return DrainingServer(config, app)


def log_to_stderr() -> None:
    """The server's own logs (a JSON access line per request, tracebacks of failures) on stderr."""
    log = logging.getLogger("pixforge.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


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
    log_to_stderr()
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
