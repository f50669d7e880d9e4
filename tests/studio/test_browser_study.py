"""Perceptual-study sessions in headless Chromium against a live studio, checked against SQLite and the report."""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import norm

from pixforge.cli import main
from pixforge.studio.store import MIN_RESPONSE_MS

ANSWER_READY = (
    "(i) => document.body.dataset.trial === String(i) && !document.querySelector('#answer-left').disabled"
)


def create(live_studio, name: str, *args: str) -> None:  # noqa: ANN001
    main(["study", "create", name, "--db", str(live_studio.db), *args])


def rows(db: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(sql, params)]


def post(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def bot(live_studio, study: str, worker: str, choose, stop_after: int | None = None) -> None:  # noqa: ANN001
    """A scripted participant over HTTP: join, then answer each current trial with ``choose(index)``."""
    token = post(f"{live_studio.url}/study/api/{study}/join?worker={worker}")["token"]
    answered = 0
    while stop_after is None or answered < stop_after:
        with urllib.request.urlopen(f"{live_studio.url}/study/api/session/{token}") as response:
            state = json.loads(response.read())
        if state["trial"] is None:
            return
        index = state["trial"]["index"]
        for image in state["trial"]["images"]:
            urllib.request.urlopen(live_studio.url + image).close()
        time.sleep(MIN_RESPONSE_MS / 1000 + 0.02)  # a person's pace: not flagged too fast
        post(
            f"{live_studio.url}/study/api/session/{token}/answer",
            {"trial": index, "choice": choose(index), "response_ms": 400},
        )
        answered += 1


def wilson_independent(k: int, n: int) -> tuple[float, float]:
    """The Wilson interval as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, a quadratic in p."""
    z2 = norm.ppf(0.975) ** 2
    p_hat = k / n
    a, b, c = 1 + z2 / n, -(2 * p_hat + z2 / n), p_hat**2
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def keep_study_bodies(page, bodies: list[str]) -> None:  # noqa: ANN001
    """Record the body of the study page and of every study API answer as it passes (a route that fetches and
    fulfils): read later from the browser, a body can be gone (evicted from its buffer, or navigated away)."""

    def keep(route) -> None:  # noqa: ANN001
        response = route.fetch()
        bodies.append(response.text())
        route.fulfill(response=response)

    page.route(lambda url: "/study/api/" in url or "/study/rvf" in url, keep)


def take(page, indices: range, choose, feedback: dict[int, str] | None = None) -> None:  # noqa: ANN001
    """Answer the trials ``indices`` on the page with the keyboard (F left, J right)."""
    for i in indices:
        page.wait_for_function(ANSWER_READY, arg=i)
        done = page.evaluate("window.study.answers")
        page.wait_for_timeout(MIN_RESPONSE_MS + 20)  # a person's pace: not flagged too fast
        page.keyboard.press("f" if choose(i) == "left" else "j")
        if feedback is not None:
            page.wait_for_function("document.querySelector('#feedback').textContent !== ''")
            feedback[i] = page.text_content("#feedback")
        page.wait_for_function("(n) => window.study.answers > n", arg=done)


def test_real_vs_fake_session_with_practice_reload_and_report(
    browser, live_studio, study_images, tmp_path: Path
) -> None:
    create(
        live_studio,
        "rvf",
        "--kind", "real-vs-fake",
        "--real", str(study_images["real"]),
        "--fake", f"blur={study_images['blur']}",
        "--fake", f"poster={study_images['poster']}",
        "--exposure-ms", "150",
        "--practice", "2",
        "--trials", "4",
    )  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    texts: list[str] = []
    urls: list[str] = []
    keep_study_bodies(page, texts)
    page.on("response", lambda response: urls.append(response.url))
    page.goto(f"{live_studio.url}/study/rvf?worker=alice")
    page.wait_for_selector("#begin", state="visible")
    page.screenshot(path=str(tmp_path / "study-instructions.png"))
    page.click("#begin")

    def choose(i: int) -> str:
        return "left" if i % 3 else "right"

    feedback: dict[int, str] = {}
    take(page, range(0, 2), choose, feedback)
    page.wait_for_function(ANSWER_READY, arg=2)
    page.screenshot(path=str(tmp_path / "study-trial.png"))
    take(page, range(2, 3), choose)
    page.reload()
    page.wait_for_selector("#begin", state="visible")
    assert "Continue (3 of 6 done)" in page.text_content("#begin")
    page.click("#begin")
    take(page, range(3, 6), choose)
    page.wait_for_selector("#done", state="visible")
    page.screenshot(path=str(tmp_path / "study-done.png"))

    alice = rows(live_studio.db, "SELECT * FROM participants WHERE worker = 'alice'")[0]
    trials = rows(live_studio.db, "SELECT * FROM trials WHERE participant = ? ORDER BY idx", alice["id"])
    answers = rows(live_studio.db, "SELECT * FROM answers WHERE participant = ? ORDER BY idx", alice["id"])
    assert [a["idx"] for a in answers] == list(range(6)) and alice["finished"] is not None
    for t, a in zip(trials, answers, strict=True):
        assert a["choice"] == choose(t["idx"])
        assert (a["left_condition"], a["right_condition"]) == (t["left_condition"], t["right_condition"])
        assert a["chosen_condition"] == (
            t["left_condition"] if a["choice"] == "left" else t["right_condition"]
        )
        assert a["phase"] == ("practice" if t["idx"] < 2 else "trial") and a["exposure_ms"] == 150
        assert a["response_ms"] > 0 and {t["left_condition"], t["right_condition"]} == {
            "real",
            alice["condition"],
        }
    for i, text in feedback.items():
        assert text.startswith("Correct") == (answers[i]["chosen_condition"] == "real")

    # the page never learnt which image was which: no stem, condition or file name reached it
    secrets = {"blur", "poster", str(study_images["real"]), *(t["stem"] for t in trials)}
    assert len(texts) > 12 and not any(s in text for s in secrets for text in texts)
    image_urls = [u for u in urls if "/study/img/" in u]
    ids = {t["left_image"] for t in trials} | {t["right_image"] for t in trials}
    assert image_urls and {u.rsplit("/", 1)[1] for u in image_urls} <= ids
    assert page.evaluate("Array.from(document.images).every((img) => !img.alt)")

    # more participants, one of whom stops half-way; then the report against an independent count
    for k in range(3):
        bot(live_studio, "rvf", f"bot{k}", lambda i, k=k: "left" if (i + k) % 2 else "right")
    bot(live_studio, "rvf", "quitter", lambda i: "left", stop_after=3)
    out = tmp_path / "report"
    main(["study", "report", "rvf", "--db", str(live_studio.db), "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    people = rows(live_studio.db, "SELECT * FROM participants WHERE study = 'rvf'")
    finished = {p["id"] for p in people if p["finished"] is not None}
    assert report["participants"] == {
        "total": 5,
        "finished": 4,
        "excluded": 1,
        "per_condition": {"blur": 2, "poster": 2},
    }
    assert report["excluded_sessions"] == [{"participant": 4, "reason": "unfinished session", "answered": 3}]
    every = rows(live_studio.db, "SELECT * FROM answers WHERE study = 'rvf'")
    for rate in report["rates"]:
        mine = [
            a
            for a in every
            if a["participant"] in finished
            and a["phase"] == "trial"
            and rate["condition"] in (a["left_condition"], a["right_condition"])
        ]
        fooled = sum(a["chosen_condition"] != "real" for a in mine)
        assert (rate["k"], rate["n"], rate["participants"]) == (fooled, len(mine), 2)
        assert rate["rate"] == pytest.approx(fooled / len(mine))
        low, high = wilson_independent(fooled, len(mine))
        assert (rate["wilson_low"], rate["wilson_high"]) == (pytest.approx(low), pytest.approx(high))
    assert report["per_exposure"] == []
    assert "fooling rate" in (out / "report.md").read_text() and (out / "report.html").is_file()

    admin = context.new_page()
    admin.goto(f"{live_studio.url}/studio/admin#token={live_studio.admin_token}")
    admin.click("#studies tr:has-text('rvf') button:has-text('Report')")
    admin.wait_for_selector("#report table")
    assert f"{report['rates'][0]['k']}/{report['rates'][0]['n']}" in admin.text_content("#report")
    admin.screenshot(path=str(tmp_path / "admin-report.png"), full_page=True)
    context.close()


def test_ab_limited_time_session(browser, live_studio, study_images, tmp_path: Path) -> None:
    """A/B with exposures drawn from 100-400 ms: the images vanish after their exposure; per-exposure rates."""
    create(
        live_studio,
        "ab-limited",
        "--kind", "ab",
        "--fake", f"blur={study_images['blur']}",
        "--fake", f"poster={study_images['poster']}",
        "--exposure-ms", "100-400",
        "--practice", "1",
        "--trials", "5",
        "--seed", "3",
    )  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_studio.url}/study/ab-limited")
    page.click("#begin")
    hidden_after: dict[int, float] = {}
    for i in range(6):
        page.wait_for_function(ANSWER_READY, arg=i)
        exposure = page.evaluate("window.study.state.trial.exposure_ms")
        page.wait_for_function("document.querySelectorAll('.slot img').length === 0")
        hidden_after[exposure] = page.evaluate("performance.now() - window.study.onset")
        done = page.evaluate("window.study.answers")
        page.click("#slot-left" if i % 2 else "#answer-right")
        page.wait_for_function("(n) => window.study.answers > n", arg=done)
    page.wait_for_selector("#done", state="visible")
    for exposure, elapsed in hidden_after.items():
        assert exposure - 20 <= elapsed <= exposure + 5000  # hidden, not before its time (slack: a loaded CI)
    token = page.url.rsplit("/", 1)[1]
    participant = rows(live_studio.db, "SELECT * FROM participants WHERE token = ?", token)[0]
    answers = rows(
        live_studio.db, "SELECT * FROM answers WHERE participant = ? ORDER BY idx", participant["id"]
    )
    assert [a["choice"] for a in answers] == ["right" if i % 2 == 0 else "left" for i in range(6)]
    assert {a["exposure_ms"] for a in answers} <= {100, 200, 400}
    assert all(a["response_ms"] >= a["exposure_ms"] - 20 for a in answers)
    assert all({a["left_condition"], a["right_condition"]} == {"blur", "poster"} for a in answers)
    out = tmp_path / "report"
    main(["study", "report", "ab-limited", "--db", str(live_studio.db), "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    counted = [a for a in answers if a["phase"] == "trial"]
    (overall,) = report["rates"]
    assert (overall["condition"], overall["versus"]) == ("blur", "poster")
    assert (overall["k"], overall["n"]) == (sum(a["chosen_condition"] == "blur" for a in counted), 5)
    by_exposure = {r["exposure_ms"]: (r["k"], r["n"]) for r in report["per_exposure"]}
    expected = {
        e: (
            sum(a["chosen_condition"] == "blur" for a in counted if a["exposure_ms"] == e),
            sum(a["exposure_ms"] == e for a in counted),
        )
        for e in {a["exposure_ms"] for a in counted}
    }
    if len(expected) > 1:
        assert by_exposure == expected
        assert "<svg" in (out / "report.html").read_text()
    context.close()


def test_a_participant_gets_one_session(browser, live_studio, study_images) -> None:
    """After a finished session the open link refuses the same browser, and a worker id gets one session."""
    create(
        live_studio,
        "once",
        "--kind", "real-vs-fake",
        "--real", str(study_images["real"]),
        "--fake", str(study_images["blur"]),
        "--practice", "0",
        "--trials", "1",
        "--exposure-ms", "unlimited",
    )  # fmt: skip
    first = browser.new_context()
    page = first.new_page()
    page.goto(f"{live_studio.url}/study/once?worker=w9")
    page.click("#begin")
    take(page, range(1), lambda i: "left")
    page.wait_for_selector("#done", state="visible")
    page.goto(f"{live_studio.url}/study/once")
    page.wait_for_function("document.querySelector('#title').textContent === 'Already taken part'")
    assert "already taken part" in page.text_content("#error")
    other = browser.new_context()
    again = other.new_page()
    again.goto(f"{live_studio.url}/study/once?worker=w9")
    again.wait_for_function("document.querySelector('#error').textContent !== ''")
    assert "already has a session" in again.text_content("#error")
    assert again.locator("#begin").is_hidden()
    people = rows(live_studio.db, "SELECT * FROM participants WHERE study = 'once'")
    assert [p["worker"] for p in people] == ["w9"]
    assert len(rows(live_studio.db, "SELECT * FROM answers WHERE study = 'once'")) == 1
    first.close()
    other.close()


def test_an_answer_sent_during_an_outage_is_retried_as_it_was(browser, live_studio, study_images) -> None:
    """A lost connection (a server restart) is retried with the answer and time of the click, marked as a
    retry; the page says the answers are saved, and the message goes once the server answers; the stored
    answer is flagged after an outage (the report leaves it out)."""
    create(
        live_studio,
        "outage",
        "--kind", "real-vs-fake",
        "--real", str(study_images["real"]),
        "--fake", str(study_images["blur"]),
        "--practice", "0",
        "--trials", "2",
        "--exposure-ms", "unlimited",
    )  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    bodies: list[str] = []
    outage = [True]

    def answer_route(route) -> None:  # noqa: ANN001
        bodies.append(route.request.post_data or "")
        if outage[0]:
            route.abort("connectionrefused")
        else:
            route.continue_()

    page.route("**/answer", answer_route)
    page.goto(f"{live_studio.url}/study/outage")
    page.click("#begin")
    page.wait_for_function(ANSWER_READY, arg=0)
    page.keyboard.press("f")
    page.wait_for_function("document.querySelector('#error').textContent.includes('saved')", timeout=10_000)
    outage[0] = False
    page.wait_for_function(ANSWER_READY, arg=1)
    assert page.text_content("#error") == ""
    sent = [json.loads(b) for b in bodies]
    assert len(sent) >= 2 and "retried" not in sent[0] and all(b["retried"] is True for b in sent[1:])
    assert len({json.dumps({k: v for k, v in b.items() if k != "retried"}) for b in sent}) == 1
    token = page.url.rsplit("/", 1)[1]
    participant = rows(live_studio.db, "SELECT * FROM participants WHERE token = ?", token)[0]
    (stored,) = rows(live_studio.db, "SELECT * FROM answers WHERE participant = ?", participant["id"])
    assert stored["response_ms"] == sent[0]["response_ms"]
    assert stored["flag"] == "after an outage"  # left out of the report, and counted there
    context.close()


def test_the_admin_link_works_in_a_tab_already_on_the_admin_page(browser, live_studio) -> None:
    """Opening admin#token=... where the admin page is already open changes only the fragment (no reload)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_studio.url}/studio/admin")
    assert page.locator("#studies table").count() == 0
    page.goto(f"{live_studio.url}/studio/admin#token={live_studio.admin_token}")
    page.wait_for_selector("#studies table", timeout=10_000)
    assert "#token" not in page.url
    context.close()
