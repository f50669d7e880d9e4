"""The studio app: the serve app (:func:`pixforge.serve.app.create_app`) plus the studio's pages and APIs.

Routes added to the serve API (``/v1/...``, ``/healthz``, ``/metrics``):

- pages: ``/studio/`` (translate), ``/studio/paint``, ``/studio/admin``; a study's open link
  ``/study/{name}`` (issues a participant id) and a participant's own link ``/study/{name}/p/{token}``;
  static files under ``/studio/static``.
- paint: ``GET /studio/api/models`` (paintable models, classes, canvas size, clusters, samples),
  ``GET /studio/api/models/{name}/samples/{i}`` (a dataset label map as a scene),
  ``POST /studio/api/models/{name}/render`` (a scene as JSON -> PNG; see :mod:`pixforge.studio.paint`).
- participants: ``POST /study/api/{name}/join``, ``GET /study/api/session/{token}`` (progress and the current
  trial, images by opaque ids only), ``POST /study/api/session/{token}/answer``, ``GET /study/img/{id}``.
- admin (header ``X-Admin-Token: ADMIN_TOKEN``): ``GET /studio/api/admin/studies``,
  ``GET /studio/api/admin/studies/{name}/report``, ``POST /studio/api/admin/studies/{name}/links``,
  ``GET /studio/api/admin/studies/{name}/answers.csv``.

A participant is known by a secret token (in their link, and in a cookie set by the open link): the open link
refuses a browser that has finished a session, a worker id (``?worker=``, case-insensitive) that already has
one, an unsigned worker link of a study that requires workers, and anonymous sessions beyond the study's
bound per client address. A trial's images are served once, and an answer is accepted only for the session's
current trial, once, after its images were served (one that came too soon is flagged, see
:data:`~pixforge.studio.store.MIN_RESPONSE_MS`).

Security (:mod:`pixforge.serve.security`): with ``--token`` every page and API but the participants'
(``/study/...``), the admin's (its own token) and ``/login`` needs the token; JSON endpoints take
``Content-Type: application/json`` only, and every error is a JSON 4xx.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from pixforge.data.images import open_image
from pixforge.errors import PixforgeError
from pixforge.serve.app import ServeSettings, create_app, png_bytes, to_images
from pixforge.serve.inputs import RequestError
from pixforge.serve.security import TOKEN_COOKIE
from pixforge.studio import protocol
from pixforge.studio.paint import Paintable, scene_from_json, scene_to_json
from pixforge.studio.report import report_fragment, study_report
from pixforge.studio.store import (
    NotShown,
    OutOfTurn,
    Participant,
    SessionRefused,
    StudyRow,
    StudyStore,
    TooManySessions,
)

STATIC = Path(str(resources.files("pixforge.studio") / "static"))
QUESTIONS = {"real-vs-fake": "Which image is the real photo?", "ab": "Which image looks more realistic?"}
DISPLAY_SIDE = 256
"""Study images are shown re-encoded as PNG at this height (aspect kept), whatever their file's size and type."""
STORED_PNG = 0
"""zlib level of study images: stored, not compressed, so a file's size follows from its width and height
alone. Compressed, a real photo (more fine detail) was the larger file in most trials, which a participant
with developer tools could read; any lossy or lossless compression leaks that way."""


@dataclass
class StudioSettings:
    """What ``pixforge studio`` adds to the server's settings."""

    study_db: Path = Path("studies.sqlite")
    admin_token: str | None = None
    token: str | None = None
    """The token of the model API (``/v1``, ``/metrics``, ``/docs``) and the translate and paint pages."""


OPEN_PATHS = ("/healthz", "/study/", "/studio/admin", "/studio/api/admin/", "/studio/static/", "/login")
"""Paths open without the studio token: participants, the admin (its own token), static files, the login."""
SEQ = re.compile(r"[A-Za-z0-9._-]{0,64}")
"""A render's ``seq`` (echoed in a header): plain characters only."""


def create_studio_app(settings: ServeSettings, studio: StudioSettings) -> FastAPI:
    """The serve app for ``settings.runs`` with the studio on top (see the module docstring)."""
    app = create_app(settings)
    app.state.security.token = studio.token
    app.state.security.open_prefixes = OPEN_PATHS
    app.state.security.frameable_prefixes = ("/study/",)
    app.state.security.login_path = "/login"
    app.state.studies = StudyStore(studio.study_db)
    app.state.admin_token = studio.admin_token or secrets.token_urlsafe(16)
    paintables = {name: Paintable(app.state.registry.get(name)) for name in app.state.registry.names()}
    app.state.paintables = paintables
    app.include_router(pages_router())
    app.include_router(login_router(studio.token))
    app.include_router(paint_router(app))
    app.include_router(study_router(app.state.studies))
    app.include_router(admin_router(app.state.studies, app.state.admin_token))
    app.mount("/studio/static", StaticFiles(directory=STATIC), name="studio-static")
    return app


async def read_json(request: Request) -> Any:
    """A JSON request body, checked: ``Content-Type: application/json`` (415 otherwise, so that a form on
    another site cannot post one), finite numbers (``1e999`` overflows), not too deeply nested (422)."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise RequestError(415, "This endpoint takes JSON: send Content-Type: application/json.")
    try:
        return json.loads(await request.body(), parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise RequestError(422, "The JSON body is nested too deeply.") from None
    except ValueError as exc:
        raise RequestError(422, f"The body is not valid JSON ({str(exc).rstrip('.')}).") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html", headers={"Cache-Control": "no-store"})


def pages_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/studio/")

    @router.get("/favicon.ico")
    async def favicon() -> FileResponse:
        """The icon browsers ask for on every page (an SVG: Chromium and Firefox take it at this path)."""
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @router.get("/studio/")
    async def translate_page() -> FileResponse:
        return _page("translate.html")

    @router.get("/studio/paint")
    async def paint_page() -> FileResponse:
        return _page("paint.html")

    @router.get("/studio/admin")
    async def admin_page() -> FileResponse:
        return _page("admin.html")

    @router.get("/study/{name}")
    async def open_link(name: str) -> FileResponse:
        return _page("study.html")

    @router.get("/study/{name}/p/{token}")
    async def own_link(name: str, token: str) -> FileResponse:
        return _page("study.html")

    return router


def login_router(token: str | None) -> APIRouter:
    """``/login``: a page that takes the studio token (typed, or from a ``#token=`` link) and
    ``POST /login`` that checks it and sets the ``pixforge_token`` cookie (HttpOnly, SameSite=Strict)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    async def login_page() -> FileResponse:
        return _page("login.html")

    @router.post("/login")
    async def login(request: Request) -> JSONResponse:
        body = await read_json(request)
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str):
            raise RequestError(422, 'Give the token as JSON {"token": "..."}.')
        if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
            raise RequestError(401, "That is not the studio's token.")
        response = JSONResponse({"ok": True})
        if token is not None:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    return router


# paint ---------------------------------------------------------------------------------------------------


def paint_router(app: FastAPI) -> APIRouter:
    router = APIRouter(prefix="/studio/api")
    paintables: dict[str, Paintable] = app.state.paintables

    def paintable(name: str) -> Paintable:
        if name not in paintables:
            raise RequestError(404, f"No model named '{name}' is served (models: {', '.join(paintables)}).")
        return paintables[name]

    @router.get("/models")
    async def models() -> dict[str, Any]:
        """The served models as the paint page sees them (``paint`` is null for models that take no labels)."""
        return {"models": [await run_in_threadpool(p.describe) for p in paintables.values()]}

    @router.get("/models/{name}/samples/{index}")
    async def sample(name: str, index: int) -> dict[str, Any]:
        return scene_to_json(await run_in_threadpool(paintable(name).sample, index))

    @router.post("/models/{name}/render", response_class=Response)
    async def render(name: str, request: Request) -> Response:
        """Render a painted scene (JSON, :func:`~pixforge.studio.paint.scene_to_json`) as a PNG.

        The request's ``seq`` (query) is echoed in ``X-Render-Seq`` so the page can drop stale renders.
        """
        target = paintable(name)
        seq = request.query_params.get("seq", "")
        if not SEQ.fullmatch(seq):
            raise RequestError(422, "Option seq: use at most 64 letters, digits, '.', '_' or '-'.")
        scene = scene_from_json(await read_json(request))
        start = time.perf_counter()
        batch, options = await run_in_threadpool(target.batch, scene)
        maps = await app.state.batcher.submit(name, batch, options)
        size = (scene.label.shape[1], scene.label.shape[0])
        image = (await run_in_threadpool(to_images, {"output": maps["output"]}, size))["output"]
        headers = {
            "X-Render-Seq": seq,
            "X-Render-Ms": f"{(time.perf_counter() - start) * 1000:.1f}",
            "Cache-Control": "no-store",
        }
        return Response(png_bytes(image), media_type="image/png", headers=headers)

    return router


# participants --------------------------------------------------------------------------------------------


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def _cookie(name: str) -> str:
    return f"pixforge_study_{name}"


def _session(store: StudyStore, token: str) -> Participant:
    participant = store.participant(token)
    if participant is None:
        raise RequestError(404, "No such participant session; open the study's link again.")
    return participant


def _state(store: StudyStore, participant: Participant) -> dict[str, Any]:
    """Progress and the current trial, with nothing that tells which image is which."""
    study = store.study(participant.study)
    done = store.answered(participant.id)
    state: dict[str, Any] = {
        "study": study.name,
        "kind": study.kind,
        "question": QUESTIONS[study.kind],
        "practice": study.practice,
        "total": study.total,
        "answered": done,
        "finished": participant.finished is not None,
        "trial": None,
    }
    if participant.finished is None and done < study.total:
        trial = store.show_trial(participant.id, done)
        state["trial"] = {
            "index": trial.idx,
            "phase": trial.phase,
            "exposure_ms": trial.exposure_ms,
            "images": [f"/study/img/{trial.left_image}", f"/study/img/{trial.right_image}"],
        }
    return state


@lru_cache(maxsize=256)
def _display_png(path: str, mtime: float) -> bytes:
    rgb = open_image(path, "RGB")
    w, h = rgb.size
    shown = rgb.resize((max(1, round(w * DISPLAY_SIDE / h)), DISPLAY_SIDE), Image.BICUBIC)
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG", compress_level=STORED_PNG)
    return buffer.getvalue()


def study_router(store: StudyStore) -> APIRouter:
    router = APIRouter(prefix="/study")

    @router.post("/api/{name}/join")
    async def join(name: str, request: Request) -> JSONResponse:
        """Start (or resume, from the same browser) a session from the study's open link."""
        study = await run_in_threadpool(store.study_or_none, name)
        if study is None:
            raise RequestError(404, f"No study named '{name}'.")
        known = request.cookies.get(_cookie(name))
        previous = await run_in_threadpool(store.participant, known) if known else None
        if previous is not None and previous.study == name:
            if previous.finished is not None:
                raise RequestError(403, "You have already taken part in this study; thank you.")
            return JSONResponse({"token": previous.token, "resumed": True})
        worker = request.query_params.get("worker") or None
        sig = request.query_params.get("sig") or None
        client = request.client.host if request.client else None
        try:
            participant = await run_in_threadpool(protocol.join, store, name, worker, sig, client)
        except SessionRefused as exc:
            raise RequestError(403, _sentence(exc)) from None
        except TooManySessions as exc:
            raise RequestError(429, _sentence(exc)) from None
        response = JSONResponse({"token": participant.token, "resumed": False})
        response.set_cookie(_cookie(name), participant.token, httponly=True, samesite="strict", path="/study")
        return response

    @router.get("/api/session/{token}")
    async def session(token: str) -> JSONResponse:
        participant = await run_in_threadpool(_session, store, token)
        state = await run_in_threadpool(_state, store, participant)
        return JSONResponse(state, headers={"Cache-Control": "no-store"})

    @router.post("/api/session/{token}/answer")
    async def answer(token: str, request: Request) -> dict[str, Any]:
        """Record the answer to the current trial: JSON ``{"trial", "choice": "left"|"right", "response_ms"}``,
        and ``"retried": true`` when the page sends it again after the server did not answer."""
        body = await read_json(request)
        participant = await run_in_threadpool(_session, store, token)
        try:
            idx, choice, rt = int(body["trial"]), str(body["choice"]), float(body["response_ms"])
        except (ValueError, KeyError, TypeError, OverflowError):
            raise RequestError(
                422, "An answer needs trial, choice (left or right) and response_ms."
            ) from None
        retried = body.get("retried", False)
        if not isinstance(retried, bool):
            raise RequestError(422, "The answer's retried must be true or false.")
        try:
            trial, finished = await run_in_threadpool(
                store.add_answer, participant.id, idx, choice, rt, retried
            )
        except (OutOfTurn, NotShown) as exc:
            raise RequestError(409, _sentence(exc)) from None
        feedback = None
        if trial.phase == "practice" and participant.condition is not None:
            chosen = trial.left_condition if choice == "left" else trial.right_condition
            feedback = {"correct": chosen == protocol.REAL}
        return {"feedback": feedback, "finished": finished}

    @router.get("/img/{image_id}")
    async def image(image_id: str) -> Response:
        """A current trial's image, re-encoded (no file name, type or size reaches the page); served once."""
        path = await run_in_threadpool(store.serve_image, image_id)
        if path is None:
            raise RequestError(404, "No such image, or it was shown already.")
        data = await run_in_threadpool(_display_png, path, Path(path).stat().st_mtime)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    return router


# admin ---------------------------------------------------------------------------------------------------


def admin_router(store: StudyStore, admin_token: str) -> APIRouter:
    router = APIRouter(prefix="/studio/api/admin")

    def check(request: Request) -> None:
        given = request.headers.get("x-admin-token", "")
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise RequestError(401, "The admin token is needed (X-Admin-Token header).")

    async def known(request: Request, name: str) -> StudyRow:
        """The study ``name`` for an admin request (404 without naming the database's file)."""
        check(request)
        study = await run_in_threadpool(store.study_or_none, name)
        if study is None:
            raise RequestError(404, f"No study named '{name}'.")
        return study

    @router.get("/studies")
    async def studies(request: Request) -> dict[str, Any]:
        check(request)

        def listing() -> list[dict[str, Any]]:
            out = []
            for name in store.study_names():
                study = store.study(name)
                people = store.participants(name)
                out.append(
                    {
                        "name": name,
                        "kind": study.kind,
                        "conditions": list(study.conditions),
                        "exposure": study.exposure,
                        "participants": len(people),
                        "finished": sum(p.finished is not None for p in people),
                        "link": f"/study/{name}",
                    }
                )
            return out

        return {"studies": await run_in_threadpool(listing)}

    @router.get("/studies/{name}/report")
    async def report(name: str, request: Request) -> dict[str, Any]:
        await known(request, name)
        result = await run_in_threadpool(study_report, store, name)
        return {"report": result, "html": report_fragment(result)}

    @router.post("/studies/{name}/links")
    async def links(name: str, request: Request) -> dict[str, Any]:
        """Personal links: ``{"count": N}`` new participant sessions, one link each; or ``{"workers": [ID, ...]}``
        the signed open links of those worker ids (:func:`~pixforge.studio.protocol.signed_link`)."""
        study = await known(request, name)
        body = await read_json(request)
        if isinstance(body, dict) and "workers" in body:
            workers = body["workers"]
            if not isinstance(workers, list) or not 1 <= len(workers) <= 500:
                raise RequestError(422, 'Give 1 to 500 worker ids as JSON {"workers": ["ID", ...]}.')
            try:
                return {"links": [protocol.signed_link(study, str(w)) for w in workers]}
            except PixforgeError as exc:
                raise RequestError(422, _sentence(exc)) from None
        try:
            count = int(body.get("count", 1))
        except (ValueError, TypeError, AttributeError, OverflowError):
            raise RequestError(422, 'Give the number of links as JSON {"count": N}.') from None
        if not 1 <= count <= 500:
            raise RequestError(422, "Links are issued 1 to 500 at a time.")
        people = [await run_in_threadpool(protocol.join, store, name) for _ in range(count)]
        return {"links": [f"/study/{name}/p/{p.token}" for p in people]}

    @router.get("/studies/{name}/answers.csv")
    async def answers(name: str, request: Request) -> Response:
        await known(request, name)
        rows = await run_in_threadpool(store.answers, name)
        buffer = io.StringIO()
        fields = [k for k in (rows[0] if rows else {}) if k != "participant"]
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return Response(buffer.getvalue(), media_type="text/csv")

    return router
