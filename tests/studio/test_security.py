"""Security and study integrity against a live studio on 127.0.0.1 (issue 21): each test is an attack that
today's code let through."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pixforge.cli import main
from pixforge.studio import store as store_module
from pixforge.studio.paint import scene_from_json, scene_to_json

FLOOR_S = store_module.MIN_RESPONSE_MS / 1000 + 0.02
"""A scripted participant waits this long after fetching a trial's images, so its answers are not too fast."""


def call(
    url: str, body: Any = None, headers: dict[str, str] | None = None, method: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def refused(result: tuple[int, dict[str, str], bytes]) -> tuple[int, str]:
    """The status and the one-sentence JSON error of a refused request."""
    status, headers, body = result
    assert headers.get("content-type", "").startswith("application/json"), (status, body[:200])
    return status, json.loads(body)["error"]


def create(live_studio, name: str, *args: str) -> None:  # noqa: ANN001
    main(["study", "create", name, "--db", str(live_studio.db), *args])


def rvf(live_studio, study_images, name: str, *args: str) -> None:  # noqa: ANN001
    create(
        live_studio,
        name,
        "--kind", "real-vs-fake",
        "--real", str(study_images["real"]),
        "--fake", f"blur={study_images['blur']}",
        "--fake", f"poster={study_images['poster']}",
        "--exposure-ms", "unlimited",
        *args,
    )  # fmt: skip


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, params)]


def join(url: str, study: str, query: str = "") -> tuple[int, dict[str, Any]]:
    status, _, body = call(f"{url}/study/api/{study}/join{query}", {})
    return status, json.loads(body)


def state(url: str, token: str) -> dict[str, Any]:
    return json.loads(call(f"{url}/study/api/session/{token}")[2])


def answer(url: str, token: str, trial: int, choice: str) -> dict[str, Any]:
    status, _, body = call(
        f"{url}/study/api/session/{token}/answer", {"trial": trial, "choice": choice, "response_ms": 500}
    )
    assert status == 200, body
    return json.loads(body)


# 1. practice feedback must not reveal scored pictures ------------------------------------------------------


def attack(url: str, study: str, sessions: int) -> dict[str, Any]:
    """The issue's attack: open many sessions, learn from the practice feedback which pictures are real, and
    in scored trials pick the picture known not to be real (or not known to be real)."""
    real, fake, pictures = set(), set(), {"practice": set(), "trial": set()}
    informed = scored = 0
    for _ in range(sessions):
        token = join(url, study)[1]["token"]
        while (trial := state(url, token)["trial"]) is not None:
            digests = [hashlib.sha256(call(url + image)[2]).hexdigest() for image in trial["images"]]
            pictures[trial["phase"]].update(digests)
            known = [d in real for d in digests], [d in fake for d in digests]
            informed += trial["phase"] == "trial" and any(known[0] + known[1])
            choice = "right" if known[0][0] or known[1][1] else "left"
            time.sleep(FLOOR_S)
            result = answer(url, token, trial["index"], choice)
            chosen = digests[0 if choice == "left" else 1]
            if result["feedback"] is not None:
                (real if result["feedback"]["correct"] else fake).add(chosen)
            else:
                scored += 1
    return {"pictures": pictures, "informed": informed, "scored": scored}


def test_practice_pictures_are_never_scored(live_studio, study_images) -> None:
    """Many sessions: no picture of a practice trial (with feedback) is ever shown in a scored trial, so the
    feedback teaches nothing about the scored ones (red before: 12 sessions shared pictures)."""
    rvf(live_studio, study_images, "practice-pool", "--practice", "2", "--trials", "4")
    with sqlite3.connect(live_studio.db) as con:
        con.execute("UPDATE studies SET anonymous_per_client = 0 WHERE name = 'practice-pool'")
    found = attack(live_studio.url, "practice-pool", sessions=12)
    assert found["pictures"]["practice"] and found["pictures"]["trial"]
    assert not found["pictures"]["practice"] & found["pictures"]["trial"]
    assert found["informed"] == 0
    trials = rows(live_studio.db, "SELECT t.* FROM trials t JOIN participants p ON p.id = t.participant "
                  "WHERE p.study = 'practice-pool'")  # fmt: skip
    practice = {t["stem"] for t in trials if t["phase"] == "practice"}
    assert len(practice) == 2 and not practice & {t["stem"] for t in trials if t["phase"] == "trial"}
    status, _, body = call(
        f"{live_studio.url}/studio/api/admin/studies/practice-pool/report",
        headers={"x-admin-token": live_studio.admin_token},
    )
    report = json.loads(body)["report"]
    assert report["practice_pool"] == 2 and "no session scores" in report["practice_rule"]
    assert report["answers_counted"] == 12 * 4 and report["answers_flagged"] == 0
    fooled = sum(r["k"] for r in report["rates"])
    print(f"attack after the fix: fooling rate {fooled}/{report['answers_counted']}")


# 2. sessions per person ------------------------------------------------------------------------------------


def test_worker_ids_are_case_insensitive_signed_and_anonymous_sessions_bounded(
    live_studio, study_images, capsys
) -> None:
    url = live_studio.url
    rvf(live_studio, study_images, "workers-open", "--practice", "0", "--trials", "1")
    assert join(url, "workers-open", "?worker=W1")[0] == 200
    status, body = join(url, "workers-open", "?worker=w1")
    assert status == 403 and "already has a session" in body["error"]
    bounded = [join(url, "workers-open")[0] for _ in range(4)]
    assert bounded[:3] == [200] * 3 and bounded[3] == 429

    rvf(live_studio, study_images, "workers-signed", "--practice", "0", "--trials", "1", "--require-worker")
    capsys.readouterr()
    main(
        [
            "study",
            "links",
            "workers-signed",
            "--db",
            str(live_studio.db),
            "--worker",
            "Ann",
            "--worker",
            "bob",
        ]
    )
    ann, bob = capsys.readouterr().out.split()
    assert ann.startswith("/study/workers-signed?worker=Ann&sig=")
    sig_of_bob = urllib.parse.parse_qs(urllib.parse.urlsplit(bob).query)["sig"][0]
    for query in ("", "?worker=mallory", f"?worker=mallory&sig={sig_of_bob}", "?worker=ann&sig=forged"):
        status, body = join(url, "workers-signed", query)
        assert status == 403, query
    assert join(url, "workers-signed", ann.split("workers-signed", 1)[1])[0] == 200
    assert join(url, "workers-signed", ann.split("workers-signed", 1)[1].replace("Ann", "ANN"))[0] == 403
    links = json.loads(
        call(
            f"{url}/studio/api/admin/studies/workers-signed/links",
            {"workers": ["bob"]},
            {"x-admin-token": live_studio.admin_token},
        )[2]
    )["links"]
    assert links == [bob]
    assert join(url, "workers-signed", bob.split("workers-signed", 1)[1])[0] == 200
    people = rows(live_studio.db, "SELECT worker FROM participants WHERE study = 'workers-signed'")
    assert sorted(p["worker"] for p in people) == ["ann", "bob"]


# 3. answers bound to what was shown -------------------------------------------------------------------------


def test_an_answer_counts_only_for_a_trial_that_was_shown(live_studio, study_images, monkeypatch) -> None:
    url = live_studio.url
    rvf(live_studio, study_images, "shown", "--practice", "0", "--trials", "2")
    token = join(url, "shown")[1]["token"]
    left, right = state(url, token)["trial"]["images"]
    blind = call(
        f"{url}/study/api/session/{token}/answer", {"trial": 0, "choice": "left", "response_ms": 900}
    )
    assert refused(blind)[0] == 409 and "never shown" in refused(blind)[1]
    assert call(url + left)[0] == 200
    assert refused(call(url + left))[0] == 404  # served once: not again after the exposure
    assert refused(call(f"{url}/study/api/session/{token}/answer", {"trial": 0, "choice": "left",
                                                                      "response_ms": 900}))[0] == 409  # fmt: skip
    assert call(url + right)[0] == 200
    monkeypatch.setattr(store_module, "MIN_RESPONSE_MS", 1e12)  # every answer is now "too fast"
    answer(url, token, 0, "left")
    monkeypatch.setattr(store_module, "MIN_RESPONSE_MS", 0.0)
    for image in state(url, token)["trial"]["images"]:
        assert call(url + image)[0] == 200
    answer(url, token, 1, "right")
    recorded = rows(live_studio.db, "SELECT a.* FROM answers a WHERE a.study = 'shown' ORDER BY idx")
    assert [a["flag"] for a in recorded] == ["too fast", None]
    assert all(a["server_ms"] >= 0 for a in recorded)
    report = json.loads(
        call(
            f"{url}/studio/api/admin/studies/shown/report", headers={"x-admin-token": live_studio.admin_token}
        )[2]
    )["report"]
    assert (report["answers_counted"], report["answers_flagged"]) == (1, 1)
    assert sum(r["n"] for r in report["rates"]) == 1


# 4. cross-site requests and foreign hosts -------------------------------------------------------------------


def test_cross_site_and_foreign_host_requests_are_refused(live_studio, study_images, raw_status) -> None:
    url = live_studio.url
    rvf(live_studio, study_images, "xsite", "--practice", "0", "--trials", "1")
    host = urllib.parse.urlsplit(url).netloc
    join_path = "/study/api/xsite/join"
    json_type = {"Content-Type": "application/json"}
    assert (
        raw_status(
            url, join_path, {"Host": host, "Origin": "http://evil.example", **json_type}, "POST", b"{}"
        )
        == 403
    )
    assert raw_status(url, join_path, {"Host": host, "Origin": "null", **json_type}, "POST", b"{}") == 403
    assert (
        raw_status(url, join_path, {"Host": host, "Sec-Fetch-Site": "cross-site", **json_type}, "POST", b"{}")
        == 403
    )
    assert (
        raw_status(url, join_path, {"Host": host, "Origin": f"http://{host}", **json_type}, "POST", b"{}")
        == 200
    )
    assert raw_status(url, join_path, {"Host": "evil.example", **json_type}, "POST", b"{}") == 421
    assert (
        raw_status(url, "/study/xsite", {"Host": f"rebound.example:{urllib.parse.urlsplit(url).port}"}) == 421
    )
    assert raw_status(url, "/v1/models", {"Host": "evil.example"}) == 421
    assert raw_status(url, "/healthz", {"Host": "10.0.0.7"}) == 200
    assert raw_status(url, "/v1/models", {"Host": f"localhost:{urllib.parse.urlsplit(url).port}"}) == 200
    token = join(url, "xsite")[1]["token"]
    for image in state(url, token)["trial"]["images"]:
        call(url + image)
    form = b'{"trial": 0, "choice": "left", "response_ms": 900}'
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        result = call(f"{url}/study/api/session/{token}/answer", form, {"content-type": kind})
        assert refused(result)[0] == 415, kind
    assert rows(live_studio.db, "SELECT * FROM answers WHERE study = 'xsite'") == []


# 5. the studio's token --------------------------------------------------------------------------------------


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_the_studio_token_guards_the_api_and_tool_pages_not_the_participants(guarded_studio: str) -> None:
    url = guarded_studio
    for path in ("/v1/models", "/metrics", "/docs", "/openapi.json", "/studio/", "/studio/paint",
                 "/studio/api/models"):  # fmt: skip
        status, headers, _ = call(url + path)
        assert status == 401 and headers.get("www-authenticate", "").startswith("Bearer"), path
        assert call(url + path, headers={"authorization": "bearer studio-secret"})[0] == 200, path
        assert call(url + path, headers={"authorization": "Bearer wrong"})[0] == 401, path
    for path in (
        "/healthz",
        "/study/any",
        "/study/any/p/x",
        "/studio/admin",
        "/login",
        "/studio/static/study.js",
    ):
        assert call(url + path)[0] == 200, path
    assert refused(call(f"{url}/study/api/none/join", {}))[0] == 404  # a participant's API: no studio token
    assert call(f"{url}/studio/api/admin/studies", headers={"x-admin-token": "admin-secret"})[0] == 200
    assert (
        call(f"{url}/studio/api/admin/studies", headers={"authorization": "Bearer studio-secret"})[0] == 401
    )
    assert refused(call(f"{url}/login", {"token": "wrong"}))[0] == 401
    status, headers, _ = call(f"{url}/login", {"token": "studio-secret"})
    session = headers["set-cookie"].split(";", 1)[0]
    assert status == 200 and "httponly" in headers["set-cookie"].lower()
    assert "samesite=strict" in headers["set-cookie"].lower()
    assert call(f"{url}/studio/paint", headers={"cookie": session})[0] == 200
    page = urllib.request.Request(f"{url}/studio/paint", headers={"accept": "text/html"})
    with pytest.raises(urllib.error.HTTPError) as sent:
        urllib.request.build_opener(NoRedirect).open(page, timeout=60)
    assert sent.value.code == 303 and sent.value.headers["location"] == "/login"


# 6. headers -------------------------------------------------------------------------------------------------


def test_security_headers_on_every_response(live_studio) -> None:
    url = live_studio.url
    for path in ("/healthz", "/studio/", "/studio/admin", "/study/x", "/studio/static/admin.js", "/nowhere",
                 "/docs", "/v1/models"):  # fmt: skip
        headers = {k.lower(): v for k, v in call(url + path)[1].items()}
        assert headers["x-content-type-options"] == "nosniff", path
        assert "script-src 'self'" in headers["content-security-policy"], path
        framed = path.startswith("/study/")
        assert ("frame-ancestors 'none'" in headers["content-security-policy"]) != framed, path
        assert (headers.get("x-frame-options") == "DENY") != framed, path
    page = call(f"{url}/docs")[2].decode()
    assert "//" not in page.replace("<!doctype", "")  # every asset from this server
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
        assert call(f"{url}/docs/assets/{asset}")[0] == 200
    assert refused(call(f"{url}/docs/assets/index.html"))[0] == 404


# 9. many instance ids ---------------------------------------------------------------------------------------


def test_an_instance_map_with_too_many_ids_is_refused_before_work(live_studio) -> None:
    side = 72  # 5184 distinct ids, over the 4096 a request may hold
    label = Image.fromarray(np.ones((side, side), np.uint8), mode="L")
    instance = Image.fromarray(np.arange(side * side, dtype=np.uint16).reshape(side, side) + 1000)
    files = {}
    for name, img in (("label", label), ("instance", instance)):
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        files[name] = buffer.getvalue()
    boundary = "pixforgeboundary"
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{k}.png"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + v
            + b"\r\n"
            for k, v in files.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    result = call(f"{live_studio.url}/v1/models/hd/translate", body,
                  {"content-type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    status, message = refused(result)
    assert status == 422 and "distinct ids" in message
    scene = scene_from_json(json.loads(call(f"{live_studio.url}/studio/api/models/hd/samples/0")[2]))
    scene.label = np.tile(scene.label, (3, 3))
    scene.instance = np.arange(scene.label.size, dtype=np.int64).reshape(scene.label.shape)
    status, message = refused(call(f"{live_studio.url}/studio/api/models/hd/render", scene_to_json(scene)))
    assert status == 422 and "distinct ids" in message


# 10. every error a JSON 4xx ----------------------------------------------------------------------------------


def test_hostile_json_and_query_values_get_json_4xx(live_studio, study_images) -> None:
    url = live_studio.url
    base = f"{url}/studio/api/models/hd"
    scene = json.loads(call(f"{base}/samples/0")[2])
    cases = [
        (f"{base}/render", json.dumps(scene).replace('"width": 32', '"width": 1e999').encode()),
        (f"{base}/render", b"[" * 100_000 + b"]" * 100_000),
        (f"{base}/render", {**scene, "style_seed": -1}),
        (f"{base}/render", {**scene, "clusters": {"1": 1e999}}),
        (f"{base}/render?seq=a%0D%0ASet-Cookie:%20x=1", scene),
        (f"{base}/render?seq=%E2%98%83", scene),
        (f"{base}/render?seq=%FF", scene),
    ]
    rvf(live_studio, study_images, "hostile", "--practice", "0", "--trials", "1")
    token = join(url, "hostile")[1]["token"]
    for image in state(url, token)["trial"]["images"]:
        call(url + image)
    answer_url = f"{url}/study/api/session/{token}/answer"
    cases += [
        (answer_url, b'{"trial": 1e999, "choice": "left", "response_ms": 500}'),
        (answer_url, b'{"trial": 0, "choice": "left", "response_ms": NaN}'),
        (answer_url, b'{"trial": 0, "choice": "left", "response_ms": Infinity}'),
        (answer_url, b'{"trial": ' + b"9" * 5000 + b', "choice": "left", "response_ms": 500}'),
    ]
    for target, body in cases:
        status, message = refused(call(target, body))
        assert status == 422 and message.endswith("."), (target, message)
    assert rows(live_studio.db, "SELECT * FROM answers WHERE study = 'hostile'") == []


# 11. admin errors ------------------------------------------------------------------------------------------


def test_admin_errors_name_no_file_and_unknown_studies_are_404(live_studio) -> None:
    admin = {"x-admin-token": live_studio.admin_token}
    base = f"{live_studio.url}/studio/api/admin/studies/no-such-study"
    for result in (call(f"{base}/report", headers=admin), call(f"{base}/answers.csv", headers=admin),
                   call(f"{base}/links", {"count": 1}, admin)):  # fmt: skip
        status, message = refused(result)
        assert status == 404 and message == "No study named 'no-such-study'."
        assert str(live_studio.db.parent) not in message and ".sqlite" not in message
