"""Cross-site pages, framing, offline docs and a hostile study name, in headless Chromium against a live studio
(issue 21, items 4, 6 and 7). The "other site" is a second server on 127.0.0.1, another origin."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pixforge.cli import main


@pytest.fixture()
def other_site() -> Iterator[dict[str, Any]]:
    """A site on another origin serving ``site["page"]`` at ``/``."""
    site: dict[str, Any] = {"page": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = site["page"].encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield site
    finally:
        server.shutdown()
        thread.join(30)


def count(db: Any, sql: str, *params: Any) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute(sql, params).fetchone()[0])


def test_another_site_cannot_join_a_study_or_answer(browser, live_studio, study_images, other_site) -> None:
    main(
        ["study", "create", "csrf", "--db", str(live_studio.db), "--kind", "real-vs-fake"]
        + ["--real", str(study_images["real"]), "--fake", str(study_images["blur"])]
        + ["--practice", "0", "--trials", "1", "--exposure-ms", "unlimited"]
    )
    url = live_studio.url
    request = urllib.request.Request(
        f"{url}/study/api/csrf/join", data=b"{}", headers={"content-type": "application/json"}
    )
    token = json.loads(urllib.request.urlopen(request).read())["token"]
    state = json.loads(urllib.request.urlopen(f"{url}/study/api/session/{token}").read())
    for image in state["trial"]["images"]:
        urllib.request.urlopen(url + image).close()
    time.sleep(0.15)  # were the answer taken, it would not be too fast
    answer = json.dumps({"trial": 0, "choice": "left", "response_ms": 900})
    other_site["page"] = f"""<!doctype html><html><body>
<form id="join" method="POST" action="{url}/study/api/csrf/join" enctype="text/plain">
<input name='{{"x": "' value='"}}'></form>
<script>
fetch("{url}/study/api/session/{token}/answer", {{method: "POST", mode: "no-cors",
  headers: {{"content-type": "text/plain"}}, body: {json.dumps(answer)}}})
  .catch(() => null).then(() => document.getElementById("join").submit());
</script></body></html>"""
    context = browser.new_context(bypass_csp=False)
    page = context.new_page()
    with page.expect_response(f"{url}/study/api/csrf/join") as joined:
        page.goto(other_site["url"])
    assert joined.value.status == 403
    assert count(live_studio.db, "SELECT COUNT(*) FROM participants WHERE study = 'csrf'") == 1
    assert count(live_studio.db, "SELECT COUNT(*) FROM answers WHERE study = 'csrf'") == 0
    context.close()


def test_the_admin_page_cannot_be_framed_by_another_site(browser, live_studio, other_site) -> None:
    other_site["page"] = (
        f"<!doctype html><iframe id='f' src='{live_studio.url}/studio/admin' "
        "onload=\"document.title = 'framed'\"></iframe>"
    )
    context = browser.new_context(bypass_csp=False)
    page = context.new_page()
    page.goto(other_site["url"])
    page.wait_for_function("document.title === 'framed'")
    (frame,) = [f for f in page.frames if f is not page.main_frame]
    assert frame.query_selector("#connect") is None and frame.query_selector("#token") is None
    context.close()


def test_docs_work_offline_from_the_package(browser, live_studio) -> None:
    """/docs with every other host unreachable: swagger-ui renders the API from this server's assets only,
    and the page's CSP (own scripts only) lets it run."""
    context = browser.new_context(bypass_csp=False)
    asked: list[str] = []

    def only_this_server(route: Any) -> None:
        asked.append(route.request.url)
        if route.request.url.startswith(live_studio.url):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{live_studio.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "pixforge" in page.text_content(".swagger-ui .info .title")
    page.get_by_text("/v1/models/{name}/translate").first.wait_for()
    assert asked and all(u.startswith(live_studio.url) for u in asked), asked
    assert blocked == []
    context.close()


HOSTILE = "<img src=x id=pwned onerror=\"document.title='owned'\">"


def test_a_hostile_study_name_is_shown_as_text_in_the_admin_page(browser, live_studio) -> None:
    """A name written into the database directly (the CLI refuses such names) is text, not markup."""
    with sqlite3.connect(live_studio.db) as con:
        con.execute(
            "INSERT INTO studies (name, kind, conditions, exposure, practice, trials, seed, created) "
            "VALUES (?, 'real-vs-fake', '[\"blur\"]', 'unlimited', 0, 1, 0, ?)",
            (HOSTILE, time.time() + 1e6),  # listed last
        )
    context = browser.new_context(bypass_csp=False)
    page = context.new_page()
    page.goto(f"{live_studio.url}/studio/admin#token={live_studio.admin_token}")
    page.click("#studies tbody tr:last-child button:has-text('Report')")
    page.wait_for_selector("#report h2")
    assert page.text_content("#report h2") == HOSTILE
    assert page.locator("#pwned").count() == 0 and page.locator("#report h2 *").count() == 0
    assert page.title() != "owned"
    context.close()


def test_the_studio_pages_run_under_their_csp(browser, live_studio, study_images) -> None:
    """Translate, paint, admin and a study session work with the CSP enforced, and nothing violates it."""
    main(
        ["study", "create", "csp", "--db", str(live_studio.db), "--kind", "real-vs-fake"]
        + ["--real", str(study_images["real"]), "--fake", str(study_images["blur"])]
        + ["--practice", "1", "--trials", "1", "--exposure-ms", "unlimited"]
    )
    context = browser.new_context(bypass_csp=False)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: violations.append(str(error)))
    page.goto(f"{live_studio.url}/studio/")
    page.wait_for_selector("#model option", state="attached")
    page.goto(f"{live_studio.url}/studio/paint")
    page.wait_for_selector("#output[data-seq]")
    page.goto(f"{live_studio.url}/studio/admin#token={live_studio.admin_token}")
    page.wait_for_selector("#studies table")
    page.goto(f"{live_studio.url}/study/csp")
    page.click("#begin")
    page.wait_for_selector("#slot-left img")
    page.wait_for_selector("#slot-right img")
    assert violations == []
    context.close()


def test_the_tool_pages_ask_for_the_studio_token(browser, guarded_studio: str) -> None:
    """With --token, the paint page sends the browser to /login; a wrong token is refused there, the right
    one (typed, or from a #token= link) opens the studio, kept in a cookie no script can read."""
    context = browser.new_context(bypass_csp=False)
    page = context.new_page()
    page.goto(f"{guarded_studio}/studio/paint")
    assert page.url == f"{guarded_studio}/login"
    page.fill("#token", "wrong")
    page.click("#login button")
    page.wait_for_selector("#error:has-text('not the studio')")
    page.fill("#token", "studio-secret")
    page.click("#login button")
    page.wait_for_url(f"{guarded_studio}/studio/")
    page.wait_for_selector("#model option", state="attached")
    assert page.evaluate("document.cookie") == ""
    other = browser.new_context(bypass_csp=False).new_page()
    other.goto(f"{guarded_studio}/login#token=studio-secret")
    other.wait_for_url(f"{guarded_studio}/studio/")
    other.wait_for_selector("#model option", state="attached")
    other.context.close()
    context.close()
