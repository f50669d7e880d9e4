"""Host, Origin, token and security headers in front of the serve and studio apps.

:class:`SecurityGuard` is pure ASGI middleware, installed by :func:`pixforge.serve.app.create_app` as the
outermost layer, so a request is checked before anything reads its body:

- a ``Host`` header not in :attr:`SecurityPolicy.hosts` is refused (421): a DNS-rebinding page, whose
  name resolves to 127.0.0.1, cannot drive a server on this machine. The hosts default to the bind address
  and the loopback names; ``--allowed-host`` adds more (``*`` accepts any). ``/healthz`` answers any Host
  (probes name the machine's address; it tells nothing).
- a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` is not this server's own (or is
  ``null``, or whose ``Sec-Fetch-Site`` says cross-site) is refused (403): a form or script on another site
  cannot post. Requests without either header (curl, the Python client) are not from a browser page and pass.
- where :attr:`SecurityPolicy.token` is set (``pixforge studio --token``), every path outside
  :attr:`SecurityPolicy.open_prefixes` needs ``Authorization: Bearer TOKEN`` (scheme case-insensitive, RFC 7235
  §2.1) or the ``pixforge_token`` cookie that ``/login`` sets (HttpOnly, SameSite=Strict), compared in
  constant time.
- every response gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (participant
  links carry a secret) and a Content-Security-Policy that allows the page's own scripts only (no inline
  script, nothing from another host); pages outside :attr:`SecurityPolicy.frameable_prefixes` also get
  ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``.

``/docs`` is served from the package (:func:`install_docs`): swagger-ui's assets come from the
``swagger-ui-bundle`` wheel, not from a CDN, so the page works offline and loads nothing from another host.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixforge.serve.inputs import RequestError
from pixforge.serve.settings import LOOPBACK

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_COOKIE = "pixforge_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
"""The pages' Content-Security-Policy. Inline styles stay allowed (the pages and swagger-ui set some); inline
scripts and event-handler attributes do not run."""
SWAGGER = Path(swagger_ui_bundle.swagger_ui_path)
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
DOCS_INIT = Path(str(resources.files("pixforge.serve") / "docs.js"))


def allowed_hosts(bind: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The Host names a server bound to ``bind`` answers to: the bind address, loopback, and ``extra``."""
    names = [bind, *LOOPBACK, *extra]
    return tuple(dict.fromkeys(n.strip().lower().strip("[]") for n in names if n.strip()))


@dataclass
class SecurityPolicy:
    """What :class:`SecurityGuard` enforces; the studio fills in its token and open paths after create_app."""

    hosts: tuple[str, ...] = LOOPBACK
    token: str | None = None
    open_prefixes: tuple[str, ...] = ()
    frameable_prefixes: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    """Other sites allowed to send state-changing requests (``--cors-origin``), e.g. ``https://app.example``."""
    login_path: str | None = None
    """Where a browser that asks for a page without the token is sent (303), instead of a JSON 401."""


def host_name(host: str) -> str:
    """The name part of a Host header value (``[::1]:8000`` -> ``::1``, ``Example.org:80`` -> ``example.org``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def bearer(value: str) -> str | None:
    """The credentials of an ``Authorization: Bearer X`` value, the scheme matched case-insensitively."""
    scheme, _, credentials = value.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class SecurityGuard:
    """The checks and headers of the module docstring, as ASGI middleware."""

    def __init__(self, app: ASGIApp, policy: SecurityPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self.refusal(scope, headers)
        if refusal is not None and refusal[0] == 401 and self.wants_page(scope, headers):
            redirect = RedirectResponse(str(self.policy.login_path), status_code=303)
            await redirect(scope, receive, self.with_headers(scope, send))
            return
        if refusal is not None:
            status, message = refusal
            extra = {"WWW-Authenticate": 'Bearer realm="pixforge"'} if status == 401 else {}
            response = JSONResponse({"error": message}, status_code=status, headers=extra)
            await response(scope, receive, self.with_headers(scope, send))
            return
        await self.app(scope, receive, self.with_headers(scope, send))

    def refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """Why the request is refused (status, one sentence), or None."""
        host = headers.get(b"host", b"").decode("latin-1")
        if scope["path"] == "/healthz":  # liveness probes name the pod's address; the answer tells nothing
            return None
        if "*" not in self.policy.hosts and host_name(host) not in self.policy.hosts:
            return 421, "This server does not answer to that Host name (see --allowed-host)."
        cross_site = not self.same_origin(headers, host) and not self.allowed_origin(headers)
        if scope["method"] in STATE_CHANGING and cross_site:
            return 403, "Cross-site requests are refused: send it from this server's own pages."
        if not self.authorised(scope["path"], headers):
            return 401, "A valid token is needed (Authorization: Bearer TOKEN, or open /login)."
        return None

    def wants_page(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """A browser navigating to a page (GET, HTML accepted) of a studio that has a login page."""
        accept = headers.get(b"accept", b"").decode("latin-1")
        return self.policy.login_path is not None and scope["method"] == "GET" and "text/html" in accept

    def allowed_origin(self, headers: dict[bytes, bytes]) -> bool:
        return headers.get(b"origin", b"").decode("latin-1") in self.policy.origins

    @staticmethod
    def same_origin(headers: dict[bytes, bytes], host: str) -> bool:
        origin = headers.get(b"origin")
        if origin is None:
            return headers.get(b"sec-fetch-site", b"same-origin") in (b"same-origin", b"none")
        parts = urlsplit(origin.decode("latin-1"))
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()

    def authorised(self, path: str, headers: dict[bytes, bytes]) -> bool:
        token = self.policy.token
        if token is None or path.startswith(self.policy.open_prefixes):
            return True
        given = bearer(headers.get(b"authorization", b"").decode("latin-1"))
        if given is None:
            given = cookie(headers, TOKEN_COOKIE)
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def with_headers(self, scope: Scope, send: Send) -> Send:
        framed = scope["path"].startswith(self.policy.frameable_prefixes)
        csp = CSP if framed else f"{CSP}; frame-ancestors 'none'"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", csp.encode()),
                ]
                if not framed:
                    extra.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_headers


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<link rel="icon" href="/docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs.js"></script></body></html>
"""


def install_docs(app: FastAPI) -> None:
    """``/docs``: swagger-ui from the ``swagger-ui-bundle`` wheel and a start script of this package."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE.format(title=app.title), headers={"Cache-Control": "no-store"})

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name == "docs.js":
            return FileResponse(DOCS_INIT, media_type="text/javascript")
        if name not in DOCS_ASSETS:
            raise RequestError(404, f"No docs asset named '{name}'.")
        return FileResponse(SWAGGER / name)
