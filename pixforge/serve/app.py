"""The FastAPI app of ``pixforge serve`` (the contract is in :mod:`pixforge.serve`)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixforge import __version__
from pixforge.api import Size, model_size, size_choice
from pixforge.errors import PixforgeError
from pixforge.serve.batcher import Batcher
from pixforge.serve.form import Field, Upload, parse_form
from pixforge.serve.inputs import RequestError, decode_image, instance_ids, label_ids
from pixforge.serve.metrics import Metrics
from pixforge.serve.registry import EXPLAIN_MAPS, ModelRegistry, ServedModel, to_images
from pixforge.serve.security import SecurityGuard, SecurityPolicy, install_docs
from pixforge.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "png_bytes", "to_images", "error"]

INPUT_FIELDS = ("image", "label", "instance", "size")
#: paths that answer without the token: liveness, readiness, and the API's documentation (``/docs`` and its
#: assets; the API's shape is no secret; with a token, /docs's "Authorize" button sends it on "Try it out")
OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/openapi.json")
#: the largest style seed (numpy's generators take seeds in 0..2**32-1 and beyond; the API promises this range)
MAX_SEED = 2**32 - 1
#: how often a body read looks whether the server started draining
DRAIN_POLL_S = 0.25
REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

access_log = logging.getLogger("pixforge.serve.access")
error_log = logging.getLogger("pixforge.serve")


class ErrorBody(BaseModel):
    """Every error answer: one sentence."""

    error: str


ERRORS = {
    400: "The multipart body is malformed.",
    401: "A valid token is needed (Authorization: Bearer TOKEN); the answer carries WWW-Authenticate.",
    404: "No such model or endpoint.",
    408: "The request body did not arrive within --body-timeout-s.",
    413: "The upload is over --max-bytes or --max-pixels, or is a decompression bomb.",
    415: "The upload is not an image.",
    422: "A bad upload (truncated, wrong kind, label ids outside the classes) or option.",
    500: "An unexpected failure; the message names the request id, the log has the traceback.",
    503: "The model's queue is full (--max-queue): retry after Retry-After seconds.",
    504: "The request waited in the queue past --timeout-ms and was dropped before it ran.",
}


def binary(description: str) -> dict[str, str]:
    return {"type": "string", "format": "binary", "description": description}


#: the translate request's form (parsed by :func:`pixforge.serve.form.parse_form` in a thread, so described here)
FORM = {
    "type": "object",
    "properties": {
        "image": binary("RGB image (image models)"),
        "label": binary("Label-id map, or a colour map in the advertised palette (labeled models)"),
        "instance": binary("Instance-id map (pix2pixHD)"),
        "direction": {"type": "string", "enum": ["AtoB", "BtoA"], "description": "CycleGAN's generator"},
        "cluster": {"type": "integer", "minimum": 0, "description": "Feature cluster of every instance"},
        "style_seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "description": "Random styles"},
        "explain": {"type": "string", "enum": ["region", "attention"], "description": "JSON with maps"},
        "size": {
            "type": "string",
            "description": "native (default), crop, or N: the short side the model runs at",
        },
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of the error statuses an endpoint can answer (each a JSON :class:`ErrorBody`)."""
    return {s: {"model": ErrorBody, "description": ERRORS[s]} for s in statuses}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The server's error answer: JSON ``{"error": "One sentence."}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def metric_path(path: str) -> str:
    """The route a path belongs to, for metric labels (model names stay out of them)."""
    if path.startswith("/v1/models/") and path.endswith("/translate"):
        return "/v1/models/{name}/translate"
    if path.startswith("/v1/models/"):
        return "/v1/models/{name}"
    known = ("/healthz", "/readyz", "/metrics", "/v1/models", "/docs", "/openapi.json")
    return path if path in known else "other"


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-ID`` when it is a plain token, else a new one."""
    given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class Draining(Exception):
    """The server started draining while a request body was still arriving."""


@dataclass
class Lifecycle:
    """Readiness (``/readyz``): loading until the models have run once, draining from SIGTERM on."""

    loading: bool = True
    draining: bool = False

    @property
    def status(self) -> str:
        return "draining" if self.draining else "loading" if self.loading else "ready"


class Observer:
    """Pure ASGI middleware, outside every check: the request id (``X-Request-ID`` on every answer), request
    metrics, the structured access log, and the last-resort handler (anything unexpected becomes a JSON 500
    naming the request id, with the traceback in the log)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500, "started": False}

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_tagged)
        except Exception:  # noqa: BLE001 - the last resort: log it, answer JSON
            error_log.exception("request %s (%s %s) failed", rid, scope["method"], scope["path"])
            if not status["started"]:
                message = f"The server failed on this request; its log has the details (request id {rid})."
                await error(500, message)(scope, receive, send_tagged)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - start
            self.metrics.observe_request(metric_path(scope["path"]), status["code"], seconds)
            self.log(scope, rid, status["code"], seconds)

    @staticmethod
    def log(scope: Scope, rid: str, status: int, seconds: float) -> None:
        client = scope.get("client")
        entry = {
            "request_id": rid,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round(seconds * 1000, 1),
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        access_log.info(json.dumps(entry))


class Guard:
    """Pure ASGI middleware in front of the app, inside the Host/Origin checks
    (:class:`~pixforge.serve.security.SecurityGuard`): the ``--token`` check, the upload size limit and the
    body timeout.

    The body is read (at most ``max_bytes`` + the multipart overhead allowance, within ``body_timeout_s``) before
    the app sees it, so an oversized or stalled upload is refused without being parsed or stored.
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, lifecycle: Lifecycle) -> None:
        self.app = app
        self.settings = settings
        self.lifecycle = lifecycle
        self.body_limit = settings.max_bytes + 64 * 1024

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.guarded(scope, receive, send)

    async def guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.authorised(scope):
            await self.unauthorised(scope)(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.body_limit:
            await self.too_large(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            try:
                body = await self.read_body(receive)
            except TimeoutError:
                message = f"The request body did not arrive within {self.settings.body_timeout_s:g} s."
                await error(408, message, {"Connection": "close"})(scope, receive, send)
                return
            except Draining:
                message = "The server is shutting down before this upload arrived; retry elsewhere."
                headers = {"Connection": "close", "Retry-After": "1"}
                await error(503, message, headers)(scope, receive, send)
                return
            if body is None:
                await self.too_large(scope, receive, send)
                return
            receive = self.replay(body, receive)
        await self.app(scope, receive, send)

    def authorised(self, scope: Scope) -> bool:
        """The token check: ``Authorization: Bearer T``, the scheme in any case (RFC 7235)."""
        token = self.settings.token
        if token is None or scope["path"] in OPEN_PATHS or scope["path"].startswith("/docs/"):
            return True
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, credentials = given.strip().partition(" ")
        ok = hmac.compare_digest(credentials.strip().encode("latin-1"), token.encode())
        return scheme.lower() == "bearer" and ok

    @staticmethod
    def unauthorised(scope: Scope) -> JSONResponse:
        sent = b"authorization" in dict(scope["headers"])
        challenge = 'Bearer realm="pixforge"' + (', error="invalid_token"' if sent else "")
        message = "A valid token is needed (Authorization: Bearer TOKEN)."
        return error(401, message, {"WWW-Authenticate": challenge})

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is over the upload limit of {self.settings.max_bytes} bytes."
        await error(413, message, {"Connection": "close"})(scope, receive, send)

    async def read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit (or the client left); ``TimeoutError`` when it
        takes longer than ``body_timeout_s`` in all, :class:`Draining` once the server drains (an upload still
        arriving is not a request in flight: the drain does not wait for it)."""
        chunks, size = [], 0
        deadline = time.monotonic() + self.settings.body_timeout_s
        while True:
            message = await self.next_chunk(receive, deadline)
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def next_chunk(self, receive: Receive, deadline: float) -> Message:
        """The next body event, looking every :data:`DRAIN_POLL_S` whether the server started draining."""
        while True:
            if self.lifecycle.draining:
                raise Draining
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                return await asyncio.wait_for(receive(), min(remaining, DRAIN_POLL_S))
            except asyncio.TimeoutError:  # noqa: UP041 - not the builtin on Python 3.10
                continue

    @staticmethod
    def replay(body: bytes, receive: Receive) -> Receive:
        """The body read once, then the connection's own events (so a hang-up is still seen)."""
        sent = False

        async def replayed() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replayed


async def client_gone(receive: Receive) -> None:
    """Returns once the client has hung up (the body was read already: only a disconnect can come)."""
    while (await receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def checked_form(model: ServedModel, form: list[Field]) -> dict[str, Any]:
    """The form's fields, each sent once, files only as inputs and the one input kind the model takes."""
    seen: dict[str, Any] = {}
    for key, value in form:
        if key in seen:
            raise RequestError(422, f"The field '{key}' was sent more than once; send it once.")
        seen[key] = value
    for key, value in seen.items():
        is_file = isinstance(value, Upload)
        if key in INPUT_FIELDS and not is_file:
            raise RequestError(422, f"The field '{key}' must be a file upload.")
        if key not in INPUT_FIELDS and is_file:
            raise RequestError(422, f"The field '{key}' must be a form value, not a file.")
    labeled = bool(model.translator.label_nc)
    main, wrong = ("label", "image") if labeled else ("image", "label")
    if wrong in seen:
        article = "a" if labeled else "an"
        raise RequestError(422, f"Model {model.name} takes {article} {main} upload, not {wrong}.")
    if main not in seen:
        raise RequestError(422, f"The request needs a multipart file field '{main}'.")
    if "instance" in seen and not model.takes_instances():
        raise RequestError(422, f"Model {model.name} takes no instance map.")
    return seen


def request_size(value: Any, image_size: tuple[int, int], model: ServedModel, max_pixels: int) -> Size:
    """The ``size`` form field (:func:`pixforge.api.model_size`); what the model would run at is bounded by
    ``max_pixels`` like an upload (413)."""
    try:
        mode = size_choice(value or None)
    except PixforgeError:
        raise RequestError(
            422, f"Option size: '{value}' is not native, crop or a positive number of pixels."
        ) from None
    width, height = model_size(image_size, model.translator.config.data, mode)
    if width * height > max_pixels:
        raise RequestError(
            413,
            f"Option size: {value} runs the model at {width}x{height} pixels, over the limit of {max_pixels}.",
        )
    return mode


def parse_options(model: ServedModel, form: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Translation options and the explain kind from the form fields, refusing what the model does not take and
    values out of range."""
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
    limits = {"cluster": max(model.n_clusters(), 1) - 1, "style_seed": MAX_SEED}
    for name, top in limits.items():
        value = form.get(name)
        if value in (None, ""):
            continue
        try:
            options[name] = int(value)
        except (TypeError, ValueError):
            raise RequestError(422, f"Option {name}: '{value}' is not an integer.") from None
        if not 0 <= options[name] <= top:
            raise RequestError(422, f"Option {name}: {options[name]} is not in 0..{top}.")
    return options, explain


def read_inputs(
    model: ServedModel, form: dict[str, Any], settings: ServeSettings
) -> tuple[Image.Image, Image.Image | None]:
    """The checked input image (or label map) and optional instance map of a translate request (blocking:
    run it in a thread)."""
    main = "label" if model.translator.label_nc else "image"
    images = {}
    for key in (main, "instance"):
        if key in form:
            data = form[key].data
            images[key] = decode_image(data, key, settings.max_bytes, settings.max_pixels)
    source = images[main]
    if main == "label":
        source = label_ids(source, model.translator.label_nc, model.palette())
    instance = images.get("instance")
    if instance is not None:
        instance = instance_ids(instance, source.size)
    return source, instance


def prepare(
    model: ServedModel, body: bytes, content_type: str, settings: ServeSettings
) -> tuple[Any, dict[str, Any], str | None, tuple[int, int]]:
    """Parse the form, check the options, decode and check the uploads, and build the model's CPU payload (in a
    thread: off the event loop). Returns the payload, options, explain kind and the input's size."""
    form = checked_form(model, parse_form(body, content_type))
    options, kind = parse_options(model, form)
    source, instance = read_inputs(model, form, settings)
    mode = request_size(form.get("size"), source.size, model, settings.max_pixels)
    return model.prepare(source, instance, mode), options, kind, source.size


def answer(model: ServedModel, result: Any, kind: str | None, size: tuple[int, int]) -> tuple[bytes, str]:
    """The response body and type: a PNG, or JSON with base64 PNGs of the explain maps (in a thread)."""
    wanted = ("output", *EXPLAIN_MAPS[kind]) if kind else ("output",)
    images = model.finish(result, wanted, size)
    if kind is None:
        return png_bytes(images["output"]), "image/png"
    encoded = {k: base64.b64encode(png_bytes(v)).decode("ascii") for k, v in images.items()}
    return json.dumps({"model": model.name, "explain": kind, "images": encoded}).encode(), "application/json"


def create_app(settings: ServeSettings) -> FastAPI:
    """The server app for ``settings.runs`` (loaded here, once)."""
    settings.validate()
    specs = settings.specs()
    registry = ModelRegistry.load(specs, settings.device)
    for model, spec in zip(registry, specs, strict=True):
        model.batching = settings.batching(spec)
    if settings.amp != "none" and any(m.device.type != "cuda" for m in registry):
        raise PixforgeError("option --amp: bf16 is supported on CUDA only (use --device cuda)")
    metrics = Metrics()
    batcher = Batcher(registry, metrics, settings.amp)
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        warming = asyncio.ensure_future(warm_up(batcher, lifecycle))
        yield
        warming.cancel()
        await run_in_threadpool(batcher.stop)

    app = FastAPI(
        title="pixforge",
        version=__version__,
        description="Image-to-image translation models served over HTTP. Every error is JSON "
        '`{"error": "One sentence."}`; every answer carries `X-Request-ID`.',
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.lifecycle = lifecycle
    install_error_handlers(app)
    add_routes(app)
    add_bearer_scheme(app, settings)
    install_docs(app)
    app.add_middleware(Guard, settings=settings, lifecycle=lifecycle)
    app.state.security = SecurityPolicy(hosts=settings.allowed_hosts, origins=tuple(settings.cors_origins))
    app.add_middleware(SecurityGuard, policy=app.state.security)
    app.add_middleware(Observer, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    return app


async def warm_up(batcher: Batcher, lifecycle: Lifecycle) -> None:
    """Run each model once on a small blank input in its worker (first-call costs are paid before /readyz says
    ready), then mark the server ready."""
    try:
        for model in batcher.registry:
            side = max(model.size_multiple(), 16)
            blank = Image.new("I" if model.translator.label_nc else "RGB", (side, side))
            payload = await run_in_threadpool(model.prepare, blank, None)
            await batcher.warm(model.name, payload)
    except Exception:  # noqa: BLE001 - a model that fails here fails its requests with the same error
        error_log.exception("warming up the models failed")
    lifecycle.loading = False


def add_bearer_scheme(app: FastAPI, settings: ServeSettings) -> None:
    """With a token, the OpenAPI document declares the bearer scheme, so /docs's "Authorize" button works."""
    if settings.token is None:
        return
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            for path, operations in schema["paths"].items():
                if path not in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, str(exc), getattr(exc, "headers", None))

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
        if not message.endswith("."):
            message += "."
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
    lifecycle: Lifecycle = app.state.lifecycle

    def model_or_404(name: str) -> ServedModel:
        try:
            return registry.get(name)
        except KeyError:
            served = ", ".join(registry.names())
            raise RequestError(404, f"No model named '{name}' is served (models: {served}).") from None

    @app.get("/healthz", responses=error_responses(500))
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers (always, without the token)."""
        return {"status": "ok", "models": len(registry.names())}

    @app.get("/readyz", responses=error_responses(500, 503))
    async def readyz() -> JSONResponse:
        """Readiness: 200 once every model has run once, 503 while loading and from SIGTERM on (draining)."""
        body: dict[str, Any] = {"ready": lifecycle.status == "ready", "status": lifecycle.status}
        if not body["ready"]:
            body["error"] = f"The server is {lifecycle.status}; send requests elsewhere for now."
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/v1/models", responses=error_responses(401, 500))
    async def models() -> dict[str, Any]:
        """The served models: method, input kind, classes and palette, styles, directions, explain maps."""
        return {"models": [m.info() for m in registry]}

    @app.get("/v1/models/{name}", responses=error_responses(401, 404, 422, 500))
    async def model_info(name: str) -> dict[str, Any]:
        return model_or_404(name).info()

    @app.get("/metrics", responses=error_responses(401, 500), response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text: requests, latency, batch sizes, errors, queue depth, in flight, dropped requests."""
        return Response(metrics.text(), media_type=metrics.content_type)

    @app.post(
        "/v1/models/{name}/translate",
        responses={
            200: {"content": {"image/png": {}, "application/json": {}}},
            **error_responses(400, 401, 404, 408, 413, 415, 422, 500, 503, 504),
        },
        response_class=Response,
        openapi_extra={
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": FORM}}}
        },
    )
    async def translate(name: str, request: Request) -> Response:
        """Translate one upload; a PNG at the input's size, or JSON with base64 PNGs when ``explain`` is asked."""
        model = model_or_404(name)
        content_type = request.headers.get("content-type", "")
        body = await request.body()
        payload, options, kind, size = await run_in_threadpool(prepare, model, body, content_type, settings)
        gone: Callable[[], Any] = partial(client_gone, request.receive)
        result = await batcher.submit(
            model.name, payload, options, timeout_s=settings.timeout_ms / 1000, disconnected=gone
        )
        body, media_type = await run_in_threadpool(answer, model, result, kind, size)
        return Response(body, media_type=media_type)
