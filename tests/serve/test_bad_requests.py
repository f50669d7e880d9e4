"""Every bad request gets a 4xx JSON error of one sentence from a live server, which then still serves."""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib import parse

import numpy as np
import pytest
from PIL import Image

from pixforge.client import Client, ServerError, multipart, upload_bytes


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A 1x1 PNG whose header claims width x height pixels (PIL refuses it before decoding anything)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # chunk type + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def truncated_png(photo: Callable[..., Image.Image]) -> bytes:
    data = upload_bytes(photo((64, 64)))
    return data[: len(data) // 2]


def noise_png(side: int) -> bytes:
    rng = np.random.default_rng(1)
    return upload_bytes(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)))


def post(
    url: str,
    path: str,
    files: dict[str, bytes],
    fields: dict[str, str] | None = None,
    token: str | None = None,
):
    """(status, parsed JSON or raw bytes) of a multipart POST (``fields={"raw": ...}``: a urlencoded body)."""
    client = Client(url, token=token)
    body, content_type = multipart(fields or {}, files)
    if fields and "raw" in fields:
        body, content_type = parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
    try:
        kind, payload = client._request("POST", path, body, content_type)
    except ServerError as exc:
        return exc.status, exc.message
    return 200, payload


def cases(
    photo: Callable[..., Image.Image], label_map: Callable[..., Image.Image]
) -> dict[str, tuple[Any, ...]]:
    """name -> (model, files, fields, expected status, words in the message)."""
    label = upload_bytes(label_map())
    over_classes = upload_bytes(Image.fromarray(np.full((32, 32), 40, dtype=np.uint8)))
    small_instance = upload_bytes(Image.fromarray(np.zeros((16, 16), dtype=np.uint16)))
    return {
        "not an image": ("p2p", {"image": b"hello, I am text"}, {}, 415, "not an image"),
        "truncated image": ("p2p", {"image": truncated_png(photo)}, {}, 422, "truncated"),
        "decompression bomb": ("p2p", {"image": bomb_png()}, {}, 413, "decompression bomb"),
        "over max pixels": ("p2p", {"image": upload_bytes(Image.new("RGB", (200, 200)))}, {}, 413, "pixels"),
        "over max bytes": ("p2p", {"image": noise_png(300)}, {}, 413, "upload limit"),
        "label id outside the classes": ("hd", {"label": over_classes}, {}, 422, "Label id 40"),
        "instance map of another size": (
            "hd",
            {"label": label, "instance": small_instance},
            {},
            422,
            "16x16",
        ),
        "unknown model": ("nope", {"image": upload_bytes(photo())}, {}, 404, "No model named"),
        "unknown option": (
            "p2p",
            {"image": upload_bytes(photo())},
            {"strength": "2"},
            422,
            "no option strength",
        ),
        "option of another method": (
            "p2p",
            {"image": upload_bytes(photo())},
            {"direction": "BtoA"},
            422,
            "direction",
        ),
        "bad option value": (
            "cycle",
            {"image": upload_bytes(photo())},
            {"direction": "up"},
            422,
            "direction",
        ),
        "non-integer cluster": ("hd", {"label": label}, {"cluster": "many"}, 422, "cluster"),
        "cluster out of range": ("hd", {"label": label}, {"cluster": "99"}, 422, "cluster"),
        "bad explain kind": (
            "drpan",
            {"image": upload_bytes(photo())},
            {"explain": "attention"},
            422,
            "explain",
        ),
        "image to a labeled model": ("hd", {"image": upload_bytes(photo())}, {}, 422, "label"),
        "no upload": ("p2p", {}, {}, 422, "image"),
        "negative style seed": ("hd", {"label": label}, {"style_seed": "-5"}, 422, "style_seed"),
        "style seed over the range": ("hd", {"label": label}, {"style_seed": str(2**64)}, 422, "style_seed"),
        "label to an image model": (
            "p2p",
            {"image": upload_bytes(photo()), "label": label},
            {},
            422,
            "takes an image upload, not label",
        ),
        "option sent as a file": ("hd", {"label": label, "cluster": b"1"}, {}, 422, "form value"),
        "not multipart": ("p2p", {}, {"raw": "1"}, 422, "multipart"),
    }


CASES = [
    "not an image",
    "truncated image",
    "decompression bomb",
    "over max pixels",
    "over max bytes",
    "label id outside the classes",
    "instance map of another size",
    "unknown model",
    "unknown option",
    "option of another method",
    "bad option value",
    "non-integer cluster",
    "cluster out of range",
    "bad explain kind",
    "image to a labeled model",
    "no upload",
    "negative style seed",
    "style seed over the range",
    "label to an image model",
    "option sent as a file",
    "not multipart",
]


def one_sentence(message: str) -> bool:
    plain = "\n" not in message and message.endswith(".") and message[0].isupper() and len(message) < 200
    return plain and "image image" not in message


@pytest.mark.parametrize("name", CASES)
def test_bad_request_gets_one_sentence_and_server_keeps_serving(server: str, photo, label_map, name: str):
    model, files, fields, status, words = cases(photo, label_map)[name]
    got, message = post(server, f"/v1/models/{model}/translate", files, fields)
    assert got == status, message
    assert words in message and one_sentence(message), message
    assert Client(server).translate(photo(), model="p2p").size == (32, 32)


def test_wrong_token_is_401_then_the_right_one_works(serve_runs, settings, photo):
    from pixforge.serve.app import create_app
    from pixforge.serve.server import background

    with background(create_app(settings([serve_runs["p2p"]], token="t0k"))) as url:
        status, message = post(url, "/v1/models/p2p/translate", {"image": upload_bytes(photo())}, token="bad")
        assert status == 401 and one_sentence(message)
        assert post(url, "/v1/models/p2p/translate", {"image": upload_bytes(photo())}, token="t0k")[0] == 200


def batch_count(url: str) -> float:
    for line in Client(url).metrics().splitlines():
        if line.startswith('pixforge_batch_size_count{model="p2p"}'):
            return float(line.split()[-1])
    return 0.0


def raw_socket(url: str) -> socket.socket:
    host, port = parse.urlsplit(url).hostname, parse.urlsplit(url).port
    return socket.create_connection((host, port), timeout=5)


def test_client_that_disconnects_mid_upload_costs_nothing(server: str, photo):
    body, content_type = multipart({}, {"image": upload_bytes(photo())})
    head = (
        f"POST /v1/models/p2p/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = batch_count(server)
    sock = raw_socket(server)
    sock.sendall(head + body[: len(body) // 2])  # half an upload, then gone
    sock.close()
    time.sleep(0.3)
    assert batch_count(server) == before  # it never reached the model
    sock = raw_socket(server)
    sock.sendall(head + body)  # a whole request, gone before the answer (skipped when noticed in time)
    sock.close()
    assert Client(server).translate(photo(), model="p2p").size == (32, 32)
    assert Client(server).health()["status"] == "ok"


def test_two_files_in_one_field_are_refused(server: str, photo):
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'.encode()
    body = (
        b"".join(part + upload_bytes(photo(seed=i)) + b"\r\n" for i in range(2))
        + f"--{boundary}--\r\n".encode()
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    with pytest.raises(ServerError) as err:
        Client(server)._request("POST", "/v1/models/p2p/translate", body, content_type)
    assert (
        err.value.status == 422 and "more than once" in err.value.message and one_sentence(err.value.message)
    )


def test_an_unexpected_failure_is_a_json_500_with_the_request_id(
    serve_runs, settings, live, caplog: pytest.LogCaptureFixture
):
    from pixforge.serve.app import create_app
    from pixforge.serve.server import background

    app = create_app(settings([serve_runs["p2p"]]))

    def broken() -> dict:
        raise RuntimeError("a bug")

    app.state.registry.get("p2p").info = broken
    with background(app) as url, caplog.at_level("ERROR", logger="pixforge.serve"):
        status, headers, body = live.http(url, "GET", "/v1/models/p2p", headers={"X-Request-ID": "req-42"})
        assert status == 500 and headers["content-type"] == "application/json"
        message = json.loads(body)["error"]
        assert "req-42" in message and one_sentence(message)
        assert headers["x-request-id"] == "req-42"
        assert live.http(url, "GET", "/healthz")[0] == 200
    logged = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "a bug" in str(logged[0].exc_info[1])


def test_errors_are_json_everywhere(server: str):
    client = Client(server)
    for method, path in (("GET", "/nowhere"), ("DELETE", "/v1/models"), ("GET", "/v1/models/nope")):
        with pytest.raises(ServerError) as err:
            client._request(method, path)
        assert err.value.status in (404, 405) and one_sentence(err.value.message)
    assert json.loads(client._request("GET", "/healthz")[1])["status"] == "ok"
