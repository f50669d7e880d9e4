"""The FastAPI app of ``pixforge serve`` (the contract is in :mod:`pixforge.serve`)."""

from __future__ import annotations

import base64
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixforge import __version__
from pixforge.data.transforms import to_image
from pixforge.errors import PixforgeError
from pixforge.serve.batcher import Batcher
from pixforge.serve.inputs import RequestError, decode_image, instance_ids, label_ids
from pixforge.serve.metrics import Metrics
from pixforge.serve.registry import EXPLAIN_MAPS, ModelRegistry, ServedModel
from pixforge.serve.security import LOOPBACK, SecurityGuard, SecurityPolicy, install_docs

INPUT_FIELDS = ("image", "label", "instance")


@dataclass
class ServeSettings:
    """What ``pixforge serve`` is started with (see ``pixforge serve --help``)."""

    runs: list[str | Path] = field(default_factory=list)
    device: str = "auto"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    token: str | None = None
    max_pixels: int = 4096 * 4096
    max_bytes: int = 20 * 2**20
    amp: str = "none"
    allowed_hosts: tuple[str, ...] = LOOPBACK
    """Host names answered to (:func:`pixforge.serve.security.allowed_hosts`; ``*``: any)."""

    def validate(self) -> None:
        if self.max_batch < 1:
            raise PixforgeError("option --max-batch: must be at least 1")
        if self.max_wait_ms < 0:
            raise PixforgeError("option --max-wait-ms: must not be negative")
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise PixforgeError("options --max-pixels/--max-bytes: must be positive")
        if self.amp not in ("none", "bf16"):
            raise PixforgeError(f"option --amp: '{self.amp}' is not one of none, bf16")


def error(status: int, message: str) -> JSONResponse:
    """The server's error answer: JSON ``{"error": "One sentence."}``."""
    return JSONResponse({"error": message}, status_code=status)


def metric_path(path: str) -> str:
    """The route a path belongs to, for metric labels (model names stay out of them)."""
    if path.startswith("/v1/models/") and path.endswith("/translate"):
        return "/v1/models/{name}/translate"
    if path.startswith("/v1/models/"):
        return "/v1/models/{name}"
    return path if path in ("/healthz", "/metrics", "/v1/models", "/docs", "/openapi.json") else "other"


class Guard:
    """Pure ASGI middleware in front of the app: token check, upload size limit, request metrics.

    The body is read (at most ``max_bytes`` + the multipart overhead allowance) before the app sees it, so an
    oversized upload is refused without being parsed or stored.
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.body_limit = settings.max_bytes + 64 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.guarded(scope, receive, send_and_record)
        finally:
            self.metrics.observe_request(
                metric_path(scope["path"]), status["code"], time.perf_counter() - start
            )

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.authorised(scope):
            await error(401, "A valid token is needed (Authorization: Bearer TOKEN).")(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.body_limit:
            await self.too_large(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self.read_body(receive)
            if body is None:
                await self.too_large(scope, receive, send)
                return
            receive = self.replay(body)
        await self.app(scope, receive, send)

    def authorised(self, scope: Scope) -> bool:
        token = self.settings.token
        if token is None or scope["path"] == "/healthz":
            return True
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is over the upload limit of {self.settings.max_bytes} bytes."
        response = error(413, message)
        response.headers["connection"] = "close"
        await response(scope, receive, send)

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (or the client left)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def replay(body: bytes) -> Receive:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        return receive


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_images(maps: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, Image.Image]:
    """Maps (1, C, h, w) as PIL images at the input's ``size`` (W, H), as :meth:`Translator.translate` gives."""
    out = {}
    for name, t in maps.items():
        if tuple(t.shape[-2:]) != (size[1], size[0]):
            mode = "bicubic" if name == "output" else "nearest"
            t = F.interpolate(t.float(), size=(size[1], size[0]), mode=mode)
        out[name] = to_image(t[0])
    return out


def parse_options(model: ServedModel, form: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Translation options and the explain kind from the form fields, refusing what the model does not take."""
    allowed = set(model.options())
    unknown = sorted(k for k in form if k not in INPUT_FIELDS and k not in allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise RequestError(422, f"Model {model.name} takes no option {unknown[0]} (its options: {takes}).")
    options: dict[str, Any] = {}
    explain = form.get("explain") or None
    if explain is not None and explain not in model.explain_kinds():
        kinds = ", ".join(model.explain_kinds()) or "none"
        raise RequestError(422, f"Option explain: '{explain}' is not one of {kinds}.")
    direction = form.get("direction") or None
    if direction is not None:
        if direction not in model.directions():
            raise RequestError(422, f"Option direction: '{direction}' is not one of AtoB, BtoA.")
        options["direction"] = direction
    for name in ("cluster", "style_seed"):
        value = form.get(name)
        if value in (None, ""):
            continue
        try:
            options[name] = int(value)
        except (TypeError, ValueError):
            raise RequestError(422, f"Option {name}: '{value}' is not an integer.") from None
    n_clusters = model.n_clusters()
    if "cluster" in options and not 0 <= options["cluster"] < n_clusters:
        raise RequestError(422, f"Option cluster: {options['cluster']} is not in 0..{n_clusters - 1}.")
    return options, explain


async def read_inputs(
    model: ServedModel, form: dict[str, Any], settings: ServeSettings
) -> tuple[Image.Image, Image.Image | None]:
    """The checked input image (or label map) and optional instance map of a translate request."""
    labeled = bool(model.translator.label_nc)
    main = "label" if labeled else "image"
    wrong = "image" if labeled else "label"
    if form.get(main) is None:
        if form.get(wrong) is not None:
            raise RequestError(422, f"Model {model.name} takes a {main} upload, not {wrong}.")
        raise RequestError(422, f"The request needs a multipart file field '{main}'.")
    if form.get("instance") is not None and not labeled:
        raise RequestError(422, f"Model {model.name} takes no instance map.")
    uploads = {k: form[k] for k in (main, "instance") if form.get(k) is not None}
    images = {}
    for key, upload in uploads.items():
        if not hasattr(upload, "read"):
            raise RequestError(422, f"The field '{key}' must be a file upload.")
        data = await upload.read()
        images[key] = await run_in_threadpool(
            decode_image, data, key, settings.max_bytes, settings.max_pixels
        )
    source = images[main]
    if labeled:
        palette = model.palette()
        source = await run_in_threadpool(label_ids, source, model.translator.label_nc, palette)
    instance = images.get("instance")
    if instance is not None:
        instance = instance_ids(instance, source.size)
    return source, instance


def create_app(settings: ServeSettings) -> FastAPI:
    """The server app for ``settings.runs`` (loaded here, once)."""
    settings.validate()
    registry = ModelRegistry.load(list(settings.runs), settings.device)
    if settings.amp != "none" and any(m.translator.device.type != "cuda" for m in registry):
        raise PixforgeError("option --amp: bf16 is supported on CUDA only (use --device cuda)")
    metrics = Metrics()
    batcher = Batcher(registry, settings.max_batch, settings.max_wait_ms, metrics, settings.amp)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await run_in_threadpool(batcher.stop)

    app = FastAPI(
        title="pixforge",
        version=__version__,
        description="Image-to-image translation models served over HTTP.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.batcher = batcher
    app.state.metrics = metrics
    install_error_handlers(app)
    add_routes(app)
    app.add_middleware(Guard, settings=settings, metrics=metrics)
    app.state.security = SecurityPolicy(hosts=settings.allowed_hosts)
    app.add_middleware(SecurityGuard, policy=app.state.security)
    install_docs(app)
    return app


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(PixforgeError)
    async def pixforge_error(request: Request, exc: PixforgeError) -> JSONResponse:
        message = str(exc)
        return error(422, message if message.endswith(".") else message[:1].upper() + message[1:] + ".")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "The request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = f"No such endpoint: {request.url.path}."
        if exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        return error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return error(422, f"Field {where or 'request'}: {first.get('msg', 'invalid')}.")


def add_routes(app: FastAPI) -> None:
    registry: ModelRegistry = app.state.registry
    batcher: Batcher = app.state.batcher
    metrics: Metrics = app.state.metrics
    settings: ServeSettings = app.state.settings

    def model_or_404(name: str) -> ServedModel:
        try:
            return registry.get(name)
        except KeyError:
            served = ", ".join(registry.names())
            raise RequestError(404, f"No model named '{name}' is served (models: {served}).") from None

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: always answers, without the token."""
        return {"status": "ok", "models": len(registry.names())}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """The served models: method, input kind, classes and palette, styles, directions, explain maps."""
        return {"models": [m.info() for m in registry]}

    @app.get("/v1/models/{name}")
    async def model_info(name: str) -> dict[str, Any]:
        return model_or_404(name).info()

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: requests, latency histogram, batch sizes, errors."""
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.post(
        "/v1/models/{name}/translate",
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
        response_class=Response,
    )
    async def translate(
        name: str,
        request: Request,
        image: Annotated[UploadFile | None, File(description="RGB image (image models)")] = None,
        label: Annotated[UploadFile | None, File(description="Label-id map (labeled models)")] = None,
        instance: Annotated[UploadFile | None, File(description="Instance-id map (pix2pixHD)")] = None,
        direction: Annotated[str | None, Form(description="AtoB or BtoA (CycleGAN)")] = None,
        cluster: Annotated[
            int | None, Form(description="Feature cluster of every instance (pix2pixHD)")
        ] = None,
        style_seed: Annotated[int | None, Form(description="Seed of random styles (pix2pixHD)")] = None,
        explain: Annotated[
            str | None, Form(description="region (DRPAN) or attention (GuideGAN): JSON answer")
        ] = None,
    ) -> Response:
        """Translate one upload; a PNG at the input's size, or JSON with base64 PNGs when ``explain`` is asked."""
        model = model_or_404(name)
        form = dict(await request.form())
        options, kind = parse_options(model, form)
        source, inst = await read_inputs(model, form, settings)
        batch = await run_in_threadpool(model.translator.batch_for, source, inst)
        maps = await batcher.submit(model.name, batch, options)
        wanted = ("output", *EXPLAIN_MAPS[kind]) if kind else ("output",)
        images = await run_in_threadpool(to_images, {k: maps[k] for k in wanted}, source.size)
        if kind is None:
            return Response(png_bytes(images["output"]), media_type="image/png")
        encoded = {k: base64.b64encode(png_bytes(v)).decode("ascii") for k, v in images.items()}
        body = {"model": model.name, "explain": kind, "images": encoded}
        return Response(json.dumps(body), media_type="application/json")
