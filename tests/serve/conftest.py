"""Tiny trained runs (one step each) and live servers on 127.0.0.1 for the serving tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib import parse

import numpy as np
import pytest
from PIL import Image

from pixforge.client import multipart
from pixforge.serve.app import ServeSettings, create_app
from pixforge.serve.server import background

#: served name -> (method, data layout, overrides)
RUNS = {
    "p2p": ("pix2pix", "aligned", {"test_mode": "eval", "direction": "BtoA"}),
    "hd": ("pix2pixhd", "labeled", {}),
    "drpan": ("drpan", "aligned", {"test_mode": "eval"}),
    "cycle": ("cyclegan", "unaligned", {}),
    "guide": ("guidegan", "aligned", {"test_mode": "eval"}),
}
#: small limits so that the limit tests need small uploads
MAX_PIXELS = 128 * 128
MAX_BYTES = 200_000


@pytest.fixture(scope="session")
def serve_runs(train_tiny: Callable[..., dict[str, Path]]) -> dict[str, Path]:
    return train_tiny("serve_runs", RUNS)


def make_settings(runs: list[Path], **kw: Any) -> ServeSettings:
    limits = {"max_pixels": MAX_PIXELS, "max_bytes": MAX_BYTES, **kw}
    return ServeSettings(runs=list(runs), device="cpu", **limits)


def make_photo(size: tuple[int, int] = (32, 32), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def make_label(size: tuple[int, int] = (32, 32), top: int = 13, seed: int = 0) -> Image.Image:
    """Class ids 0..top-1 in 8 px blocks, mode L."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, top, (size[1] // 8, size[0] // 8)).repeat(8, 0).repeat(8, 1)
    return Image.fromarray(ids.astype(np.uint8))


@pytest.fixture(scope="session")
def settings() -> Callable[..., ServeSettings]:
    """``settings(runs, **options)``: server settings on the CPU with the tests' small limits."""
    return make_settings


@pytest.fixture(scope="session")
def photo() -> Callable[..., Image.Image]:
    """``photo(size=(32, 32), seed=0)``: a random RGB image."""
    return make_photo


@pytest.fixture(scope="session")
def label_map() -> Callable[..., Image.Image]:
    """``label_map(size=(32, 32), top=13, seed=0)``: a block label map of ids below ``top``."""
    return make_label


@pytest.fixture(scope="session")
def server(serve_runs: dict[str, Path]) -> Iterator[str]:
    """All the runs, batching on (8 per pass, 30 ms wait)."""
    app = create_app(make_settings(list(serve_runs.values()), max_batch=8, max_wait_ms=30))
    with background(app) as url:
        yield url


class Gate:
    """Holds a served model's forward passes until :meth:`open`, counting them (passes, samples per pass)."""

    def __init__(self, translator: Any) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.passes: list[int] = []
        self.translator = translator
        self.original = translator.translate_batch

        def held(batch: dict[str, Any], **options: Any) -> Any:
            self.passes.append(int(next(iter(batch.values())).shape[0]))
            self.entered.set()
            assert self.opened.wait(120), "the gate was never opened"
            return self.original(batch, **options)

        translator.translate_batch = held

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate() -> Iterator[Callable[[Any, str], Gate]]:
    """``gate(app, model)``: hold that model's forward passes (opened at the end of the test in any case)."""
    gates: list[Gate] = []

    def make(app: Any, name: str) -> Gate:
        gates.append(Gate(app.state.registry.get(name).translator))
        return gates[-1]

    yield make
    for g in gates:
        g.open()


def http(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one request on its own connection."""
    parts = parse.urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_upload(
    url: str, model: str, files: dict[str, bytes], fields: dict[str, str] | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    body, content_type = multipart(fields or {}, files)
    return http(url, "POST", f"/v1/models/{model}/translate", body, {"Content-Type": content_type, **headers})


def wait_ready(url: str, timeout: float = 60) -> None:
    """Wait while /readyz says the server is loading (its models' first run)."""
    deadline = time.monotonic() + timeout
    while http(url, "GET", "/readyz")[0] == 503:
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.05)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll ``condition`` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def metric(url: str, name: str) -> float:
    """The value of one sample (name with labels, as /metrics writes it), 0 when absent."""
    for line in http(url, "GET", "/metrics")[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="session")
def live() -> Any:
    """Helpers for tests against a live server: ``http``, ``post_upload``, ``wait_ready``, ``wait_for``,
    ``metric``."""
    return SimpleNamespace(
        http=http, post_upload=post_upload, wait_ready=wait_ready, wait_for=wait_for, metric=metric
    )
