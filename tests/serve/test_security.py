"""The serve app's Host, Origin and header checks (:mod:`pixforge.serve.security`) against a live server."""

from __future__ import annotations

import io
import urllib.error
import urllib.parse
import urllib.request

from pixforge.serve.security import allowed_hosts, bearer, host_name


def multipart(photo) -> tuple[bytes, str]:  # noqa: ANN001
    buffer = io.BytesIO()
    photo().save(buffer, format="PNG")
    boundary = "pixforgeboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + buffer.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_foreign_hosts_and_cross_site_posts_are_refused(server: str, photo, raw_status) -> None:
    host = urllib.parse.urlsplit(server).netloc
    port = urllib.parse.urlsplit(server).port
    assert raw_status(server, "/v1/models", {"Host": "attacker.example"}) == 421
    assert raw_status(server, "/v1/models", {"Host": f"attacker.example:{port}"}) == 421
    assert raw_status(server, "/v1/models", {"Host": f"localhost:{port}"}) == 200
    assert raw_status(server, "/v1/models", {"Host": f"[::1]:{port}"}) == 200
    body, kind = multipart(photo)
    path = "/v1/models/p2p/translate"
    form = {"Host": host, "Content-Type": kind}
    assert raw_status(server, path, {**form, "Origin": "http://attacker.example"}, "POST", body) == 403
    assert raw_status(server, path, {**form, "Origin": f"http://localhost:{port + 1}"}, "POST", body) == 403
    assert raw_status(server, path, {**form, "Sec-Fetch-Site": "cross-site"}, "POST", body) == 403
    assert raw_status(server, path, {**form, "Origin": f"http://{host}"}, "POST", body) == 200
    assert raw_status(server, path, form, "POST", body) == 200  # no Origin: not a browser page


def test_every_answer_carries_the_security_headers(server: str) -> None:
    for path in ("/healthz", "/v1/models", "/docs", "/nowhere", "/docs/assets/swagger-ui.css"):
        try:
            response = urllib.request.urlopen(server + path)
        except urllib.error.HTTPError as exc:
            response = exc
        headers = {k.lower(): v for k, v in response.headers.items()}
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert "script-src 'self'" in headers["content-security-policy"], path


def test_allowed_hosts_and_header_parsing() -> None:
    assert allowed_hosts("0.0.0.0", ["Studio.Example.org"]) == (
        "0.0.0.0",
        "127.0.0.1",
        "localhost",
        "::1",
        "studio.example.org",
    )
    assert allowed_hosts("[::1]") == ("::1", "127.0.0.1", "localhost")
    assert [host_name(h) for h in ("[::1]:80", "Example.org:8000", "example.org", "::1")] == [
        "::1",
        "example.org",
        "example.org",
        "::1",
    ]
    assert [bearer(v) for v in ("Bearer x", "bearer x", "BEARER  x ", "Basic x", "x")] == [
        "x",
        "x",
        "x",
        None,
        None,
    ]
