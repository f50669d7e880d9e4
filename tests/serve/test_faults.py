"""The server under faults and load, against live servers on 127.0.0.1: bounded queues, deadlines, clients that
hang up or stall, a per-batch memory budget. A :class:`Gate` holds the worker in a forward pass, so what waits
in the queue is known exactly and no assertion depends on timing."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib import parse

import numpy as np
from PIL import Image

from pixforge.client import multipart, upload_bytes
from pixforge.serve.app import create_app
from pixforge.serve.server import background


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(result=fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def one_sentence(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert "\n" not in message and message.endswith(".") and message[0].isupper(), message
    return message


def connect(url: str) -> socket.socket:
    parts = parse.urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def read_all(sock: socket.socket) -> str:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def upload_request(photo, size: tuple[int, int] = (32, 32)) -> bytes:
    body, content_type = multipart({}, {"image": upload_bytes(photo(size))})
    head = (
        f"POST /v1/models/p2p/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def test_a_full_queue_is_refused_with_503_and_retry_after(
    serve_runs: dict[str, Path], settings, photo, gate, live
):
    app = create_app(settings([serve_runs["p2p"]], max_batch=1, max_queue=2))
    with background(app) as url:
        live.wait_ready(url)
        held = gate(app, "p2p")
        image = {"image": upload_bytes(photo())}
        first, first_out = in_thread(live.post_upload, url, "p2p", image)
        assert held.entered.wait(30)  # the first request is in its forward pass
        queued = [in_thread(live.post_upload, url, "p2p", image) for _ in range(2)]
        live.wait_for(lambda: app.state.batcher.depth("p2p") == 2)
        status, headers, body = live.post_upload(url, "p2p", image)
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert "waiting" in one_sentence(body)
        assert live.metric(url, 'pixforge_queue_depth{model="p2p"}') == 2
        assert live.metric(url, 'pixforge_dropped_total{model="p2p",reason="queue_full"}') == 1
        held.open()
        for thread, out in [(first, first_out), *queued]:
            thread.join(60)
            assert out["result"][0] == 200
        assert held.passes == [1, 1, 1]


def test_a_request_past_its_deadline_is_dropped_before_its_forward_pass(
    serve_runs: dict[str, Path], settings, photo, gate, live
):
    app = create_app(settings([serve_runs["p2p"]], max_batch=1, timeout_ms=300))
    with background(app) as url:
        live.wait_ready(url)
        held = gate(app, "p2p")
        image = {"image": upload_bytes(photo())}
        first, first_out = in_thread(live.post_upload, url, "p2p", image)
        assert held.entered.wait(30)
        status, _, body = live.post_upload(url, "p2p", image)  # waits behind the held pass, past 300 ms
        assert status == 504 and "deadline" in one_sentence(body)
        held.open()
        first.join(60)
        assert first_out["result"][0] == 200  # in its pass already when its deadline came: it finishes
        assert held.passes == [1]  # the late request never reached the model
        assert live.metric(url, 'pixforge_dropped_total{model="p2p",reason="deadline"}') == 1


def test_clients_that_hang_up_cost_no_forward_pass(serve_runs: dict[str, Path], settings, photo, gate, live):
    app = create_app(settings([serve_runs["p2p"]], max_batch=8, max_wait_ms=10))
    with background(app) as url:
        live.wait_ready(url)
        held = gate(app, "p2p")
        first, _ = in_thread(live.post_upload, url, "p2p", {"image": upload_bytes(photo((48, 48)))})
        assert held.entered.wait(30)
        for _ in range(10):  # whole requests, then gone after 50 ms, while the worker is busy
            sock = connect(url)
            sock.sendall(upload_request(photo))
            time.sleep(0.05)
            sock.close()
        dropped = 'pixforge_dropped_total{model="p2p",reason="disconnected"}'
        live.wait_for(lambda: live.metric(url, dropped) == 10)
        assert app.state.batcher.depth("p2p") == 0
        held.open()
        first.join(60)
        assert live.post_upload(url, "p2p", {"image": upload_bytes(photo())})[0] == 200
        assert held.passes == [1, 1]  # the held request and the last one: none of the ten


def test_unfinished_headers_and_stalled_bodies_time_out(serve_runs: dict[str, Path], settings, photo, live):
    app = create_app(settings([serve_runs["p2p"]], header_timeout_s=1, body_timeout_s=1))
    with background(app) as url:
        headers = connect(url)
        headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert headers.recv(1024) == b""  # closed by the server (the socket's own timeout is 30 s)
        body = connect(url)
        request = upload_request(photo)
        body.sendall(request[: len(request) - 100])
        answer = read_all(body)
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in answer
        assert live.http(url, "GET", "/healthz")[0] == 200
        keep_alive = connect(url)  # a second request's headers are timed too
        keep_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):
            first += keep_alive.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        keep_alive.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert keep_alive.recv(4096) == b""


def test_a_batch_holds_at_most_its_pixel_budget(serve_runs: dict[str, Path], settings, photo, gate, live):
    """Three same-sized requests with a budget of two of them: a pass of two, then one alone."""
    app = create_app(settings([serve_runs["p2p"]], max_batch=8, max_wait_ms=10))
    model = app.state.registry.get("p2p")
    model.batching.max_batch_pixels = 2 * model.pixels(model.prepare(photo((48, 48)), None))
    with background(app) as url:
        live.wait_ready(url)
        held = gate(app, "p2p")
        first, _ = in_thread(live.post_upload, url, "p2p", {"image": upload_bytes(photo((32, 32)))})
        assert held.entered.wait(30)
        large = [
            in_thread(live.post_upload, url, "p2p", {"image": upload_bytes(photo((48, 48), i))})
            for i in range(3)
        ]
        live.wait_for(lambda: app.state.batcher.depth("p2p") == 3)
        held.open()
        for thread, out in [(first, {"result": (200,)}), *large]:
            thread.join(60)
            assert out["result"][0] == 200
        assert held.passes == [1, 2, 1]


def noise_png(side: int) -> bytes:
    rng = np.random.default_rng(side)
    return upload_bytes(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)))


def test_healthz_answers_promptly_during_a_burst_of_large_requests(
    serve_runs: dict[str, Path], settings, live
):
    """Decoding, resizing and PNG encoding run in threads: /healthz waits for none of them. The bound is
    relative (a third of one large request's own time, measured here), so a loaded machine slows both; the
    requests are large (2048x2048) so that a pause of the whole process by a loaded OS (up to 0.5 s seen) stays
    under it, while encoding on the event loop stalled a probe for about two thirds of a request's time."""
    app = create_app(settings([serve_runs["p2p"]], max_pixels=2048 * 2048, max_bytes=16 * 2**20, max_batch=1))
    image = {"image": noise_png(2048)}
    with background(app) as url:
        live.wait_ready(url)
        start = time.perf_counter()
        assert live.post_upload(url, "p2p", image)[0] == 200
        alone = time.perf_counter() - start
        burst = [in_thread(live.post_upload, url, "p2p", image) for _ in range(3)]
        probes = []
        while any(thread.is_alive() for thread, _ in burst):
            start = time.perf_counter()
            assert live.http(url, "GET", "/healthz")[0] == 200
            probes.append(time.perf_counter() - start)
        assert all(out["result"][0] == 200 for _, out in burst)
        print(
            f"one large request {alone:.3f} s; /healthz worst {max(probes):.3f} s over {len(probes)} probes"
        )
        assert max(probes) < alone / 3
