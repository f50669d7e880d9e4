"""A Python client of ``pixforge serve`` (standard library only).

>>> from pixforge.client import Client
>>> client = Client("http://127.0.0.1:8000")                       # doctest: +SKIP
>>> photo = client.translate(Image.open("labels.png"), model="demo")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any
from urllib import error, request

import numpy as np
from PIL import Image

from pixforge.errors import PixforgeError

Upload = Image.Image | bytes | str | Path


class ServerError(PixforgeError):
    """An error answer of the server: its HTTP ``status`` and its one-sentence message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def upload_bytes(value: Upload) -> bytes:
    """An upload's bytes: a PIL image as PNG, a path's contents, or bytes as they are."""
    if isinstance(value, Image.Image):
        if value.mode == "I":  # PNG holds integer ids as 16 bits
            ids = np.asarray(value)
            if ids.min() < 0 or ids.max() > 65535:
                raise PixforgeError("an id map sent as PNG must hold ids in 0..65535")
            value = Image.fromarray(ids.astype(np.uint16))
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(value, (str, Path)):
        return Path(value).read_bytes()
    return bytes(value)


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, data in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """Talks to a pixforge server at ``url`` (with ``token`` when it was started with one)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with request.urlopen(req, timeout=self.timeout) as resp:
                return resp.headers.get_content_type(), resp.read()
        except error.HTTPError as exc:
            payload = exc.read()
            try:
                message = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload.decode("utf-8", "replace")[:200]
            raise ServerError(exc.code, message) from None

    def _json(self, path: str) -> Any:
        return json.loads(self._request("GET", path)[1])

    def health(self) -> dict[str, Any]:
        return self._json("/healthz")

    def models(self) -> list[dict[str, Any]]:
        """What ``GET /v1/models`` lists."""
        return self._json("/v1/models")["models"]

    def metrics(self) -> str:
        return self._request("GET", "/metrics")[1].decode()

    def translate(
        self,
        image: Upload | None = None,
        model: str | None = None,
        *,
        label: Upload | None = None,
        instance: Upload | None = None,
        explain: str | None = None,
        **options: Any,
    ) -> Image.Image | dict[str, Image.Image]:
        """Translate an image (or a ``label`` map with an optional ``instance`` map) with ``model`` (the only
        served model when None). Options: ``direction``, ``cluster``, ``style_seed``. Returns the output
        image, or with ``explain`` (``region`` | ``attention``) a dict of the output and explanation maps.
        """
        name = model or self.models()[0]["name"]
        files = {
            k: upload_bytes(v)
            for k, v in (("image", image), ("label", label), ("instance", instance))
            if v is not None
        }
        fields = {k: str(v) for k, v in options.items() if v is not None}
        if explain:
            fields["explain"] = explain
        body, content_type = multipart(fields, files)
        kind, payload = self._request("POST", f"/v1/models/{name}/translate", body, content_type)
        if kind == "application/json":
            images = json.loads(payload)["images"]
            return {k: _open(base64.b64decode(v)) for k, v in images.items()}
        return _open(payload)


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy()
