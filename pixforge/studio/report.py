"""Study reports: fooling rate (real-vs-fake) or preference rate (A/B) per condition, with 95% intervals.

Counted: the answers of finished sessions, practice trials left out (practice images come from a pool that
is never scored, and the report says so); an unfinished session (or a personal link never opened) is excluded
and listed, and so is a flagged answer, counted: too fast (it reached the server less than
:data:`~pixforge.studio.store.MIN_RESPONSE_MS` after its images left it) or sent again after an outage. Each rate carries two 95% intervals: Wilson's score interval over the answers (the usual interval
for a proportion; it treats answers as independent) and a percentile bootstrap over participants (whole
sessions resampled with replacement, 2000 times, seeded; it accounts for answers of one person being
alike). Limited-time studies also get the rates per exposure, drawn as an inline SVG like pix2pixHD's
Fig. 6 (SVG written here: matplotlib is not a dependency).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixforge.studio.protocol import REAL, UNLIMITED, load_plan
from pixforge.studio.store import MIN_RESPONSE_MS, StudyStore

Z95 = 1.959963984540054
BOOTSTRAP = 2000


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (Wilson 1927); (nan, nan) without trials."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(per_participant: list[tuple[int, int]], seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of sum(k)/sum(n) over participants resampled with replacement."""
    if not per_participant:
        return math.nan, math.nan
    counts = np.asarray(per_participant, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(counts), size=(BOOTSTRAP, len(counts)))
    k, n = counts[picks, 0].sum(1), counts[picks, 1].sum(1)
    rates = k / np.maximum(n, 1)
    low, high = np.percentile(rates, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class Rate:
    """One reported rate: ``k`` of ``n`` answers (from ``participants`` sessions)."""

    condition: str
    versus: str
    exposure_ms: int | None
    k: int
    n: int
    participants: int
    rate: float
    wilson_low: float
    wilson_high: float
    bootstrap_low: float
    bootstrap_high: float


def _rate(condition: str, versus: str, exposure: int | None, answers: list[dict[str, Any]], hit: Any) -> Rate:
    by_person: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        by_person[a["participant_number"]][0] += int(hit(a))
        by_person[a["participant_number"]][1] += 1
    k = sum(v[0] for v in by_person.values())
    n = sum(v[1] for v in by_person.values())
    low, high = wilson(k, n)
    b_low, b_high = bootstrap([(v[0], v[1]) for v in by_person.values()])
    return Rate(
        condition, versus, exposure, k, n, len(by_person), k / n if n else math.nan, low, high, b_low, b_high
    )


def _groups(kind: str, conditions: tuple[str, ...]) -> list[tuple[str, str]]:
    if kind == "real-vs-fake":
        return [(c, REAL) for c in conditions]
    return [(a, b) for i, a in enumerate(conditions) for b in conditions[i + 1 :]]


def study_report(store: StudyStore, name: str) -> dict[str, Any]:
    """The report of a study as a JSON-ready dict (see the module docstring for what is counted)."""
    study = store.study(name)
    people = store.participants(name)
    answers = store.answers(name)
    finished = {p.number for p in people if p.finished is not None}
    scored = [a for a in answers if a["phase"] == "trial" and a["participant_number"] in finished]
    counted = [a for a in scored if a["flag"] is None]
    answered: defaultdict[int, int] = defaultdict(int)
    for a in answers:
        answered[a["participant_number"]] += 1
    excluded = [
        {
            "participant": p.number,
            "reason": "unfinished session" if answered[p.number] else "not started",
            "answered": answered[p.number],
        }
        for p in people
        if p.finished is None
    ]
    exposures = sorted({a["exposure_ms"] for a in counted})
    overall, per_exposure = [], []
    for cond, versus in _groups(study.kind, study.conditions):
        mine = [a for a in counted if {a["left_condition"], a["right_condition"]} == {cond, versus}]

        def hit(a: dict[str, Any], c: str = cond) -> bool:
            return a["chosen_condition"] == c

        overall.append(_rate(cond, versus, None, mine, hit))
        if len(exposures) > 1:
            for e in exposures:
                per_exposure.append(_rate(cond, versus, e, [a for a in mine if a["exposure_ms"] == e], hit))
    return {
        "study": study.name,
        "kind": study.kind,
        "measure": "fooling rate" if study.kind == "real-vs-fake" else "preference rate",
        "conditions": list(study.conditions),
        "exposure": study.exposure,
        "practice": study.practice,
        "trials": study.trials,
        "participants": {
            "total": len(people),
            "finished": len(finished),
            "excluded": len(excluded),
            "per_condition": {
                c: sum(p.condition == c for p in people if p.number in finished) for c in study.conditions
            }
            if study.kind == "real-vs-fake"
            else {},
        },
        "excluded_sessions": excluded,
        "answers_counted": len(counted),
        "answers_flagged": len(scored) - len(counted),
        "flag_rule": f"an answer that reached the server less than {MIN_RESPONSE_MS:g} ms after its trial's "
        "images left it is flagged too fast, and one the page sent again after the server did not answer is "
        "flagged after an outage; neither is counted; an answer to a trial whose images were never "
        "served is refused",
        "practice_pool": len(load_plan(store, name).practice_pool()),
        "practice_rule": "practice trials (with feedback) show only images of a pool that no session scores",
        "intervals": "95%: Wilson score over answers; percentile bootstrap over participants "
        f"({BOOTSTRAP} resamples, seed 0)",
        "rates": [_clean(asdict(r)) for r in overall],
        "per_exposure": [_clean(asdict(r)) for r in per_exposure],
    }


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """NaN (no answers) as None, so the JSON is standard."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


# rendering -----------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _label(report: dict[str, Any], r: dict[str, Any]) -> str:
    return r["condition"] if report["kind"] == "real-vs-fake" else f"{r['condition']} over {r['versus']}"


def _exposure(e: int | None) -> str:
    return "all" if e is None else ("unlimited" if e == UNLIMITED else f"{e} ms")


def _table(report: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| condition | exposure | {report['measure']} | 95% CI (Wilson) | 95% CI (bootstrap) | answers | participants |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {_label(report, r)} | {_exposure(r['exposure_ms'])} | {_pct(r['rate'])} | "
            f"{_pct(r['wilson_low'])} – {_pct(r['wilson_high'])} | "
            f"{_pct(r['bootstrap_low'])} – {_pct(r['bootstrap_high'])} | {r['k']}/{r['n']} | {r['participants']} |"
        )
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    """The report as markdown."""
    p = report["participants"]
    lines = [
        f"# Study {report['study']} ({report['kind']})",
        "",
        f"{report['measure'].capitalize()} per condition; exposure {report['exposure']}; "
        f"{report['practice']} practice + {report['trials']} trials per session.",
        f"Participants: {p['total']} ({p['finished']} finished, {p['excluded']} excluded); "
        f"answers counted: {report['answers_counted']}; flagged and left out: "
        f"{report['answers_flagged']}. Intervals: {report['intervals']}.",
        f"Practice: {report['practice_rule']} ({report['practice_pool']} images). "
        f"Flags: {report['flag_rule']}.",
        "",
        *_table(report, report["rates"]),
    ]
    if report["per_exposure"]:
        lines += ["", "## Per exposure", "", *_table(report, report["per_exposure"])]
    if report["excluded_sessions"]:
        lines += ["", "## Excluded sessions", ""]
        lines += [
            f"- participant {e['participant']}: {e['reason']} ({e['answered']} answers)"
            for e in report["excluded_sessions"]
        ]
    return "\n".join(lines) + "\n"


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def exposure_svg(report: dict[str, Any], width: int = 520, height: int = 300) -> str:
    """Rate against exposure (log axis) per condition with Wilson intervals, like pix2pixHD Fig. 6."""
    rows = [r for r in report["per_exposure"] if r["rate"] is not None]
    if not rows:
        return ""
    left, right, top, bottom = 56, 150, 16, 44
    xs = sorted({r["exposure_ms"] for r in rows})
    lo, hi = math.log2(max(xs[0], 1)), math.log2(max(xs[-1], 2))
    span = max(hi - lo, 1.0)

    def x(e: int) -> float:
        return left + (math.log2(max(e, 1)) - lo) / span * (width - left - right)

    def y(v: float) -> float:
        return top + (1 - v) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(report["measure"])} per exposure">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for v in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.0%}</text>'
        )
    for e in xs:
        parts.append(
            f'<text x="{x(e):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{e / 1000:g}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 8}" font-size="12" text-anchor="middle">'
        "exposure (s, log scale)</text>"
    )
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[_label(report, r)].append(r)
    for i, (label, points) in enumerate(groups.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{x(r['exposure_ms']):.1f},{y(r['rate']):.1f}" for r in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for r in points:
            cx = x(r["exposure_ms"])
            parts.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(r["wilson_low"]):.1f}" y2="{y(r["wilson_high"]):.1f}" '
                f'stroke="{colour}"/><circle cx="{cx:.1f}" cy="{y(r["rate"]):.1f}" r="3" fill="{colour}"/>'
            )
        ly = top + 14 + 18 * i
        parts.append(f'<rect x="{width - right + 10}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 26}" y="{ly}" font-size="11">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(report: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in (
            "condition",
            "exposure",
            report["measure"],
            "95% CI (Wilson)",
            "95% CI (bootstrap)",
            "answers",
            "participants",
        )
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                _label(report, r),
                _exposure(r["exposure_ms"]),
                _pct(r["rate"]),
                f"{_pct(r['wilson_low'])} – {_pct(r['wilson_high'])}",
                f"{_pct(r['bootstrap_low'])} – {_pct(r['bootstrap_high'])}",
                f"{r['k']}/{r['n']}",
                r["participants"],
            )
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_fragment(report: dict[str, Any]) -> str:
    """The report as an HTML fragment (tables and the exposure plot), for the report file and the admin page."""
    p = report["participants"]
    parts = [
        f"<p>{html.escape(report['measure'].capitalize())} per condition; exposure {html.escape(report['exposure'])}; "
        f"{report['practice']} practice + {report['trials']} trials per session. Participants: {p['total']} "
        f"({p['finished']} finished, {p['excluded']} excluded); answers counted: {report['answers_counted']}; "
        f"flagged and left out: {report['answers_flagged']}.</p>",
        f"<p class='note'>Practice: {html.escape(report['practice_rule'])} ({report['practice_pool']} images). "
        f"Flags: {html.escape(report['flag_rule'])}.</p>",
        f"<p class='note'>{html.escape(report['intervals'])}</p>",
        _html_table(report, report["rates"]),
    ]
    if report["per_exposure"]:
        parts += ["<h3>Per exposure</h3>", exposure_svg(report), _html_table(report, report["per_exposure"])]
    if report["excluded_sessions"]:
        items = "".join(
            f"<li>participant {e['participant']}: {html.escape(e['reason'])} ({e['answered']} answers)</li>"
            for e in report["excluded_sessions"]
        )
        parts += ["<h3>Excluded sessions</h3>", f"<ul>{items}</ul>"]
    return "\n".join(parts)


def to_html(report: dict[str, Any]) -> str:
    title = html.escape(f"Study {report['study']} ({report['kind']})")
    style = "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.note{color:#555}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body><h1>{title}</h1>{report_fragment(report)}</body></html>\n"
    )


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write report.md, report.html and report.json into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "report.md": to_markdown(report),
        "report.html": to_html(report),
        "report.json": json.dumps(report, indent=2) + "\n",
    }
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / n for n in files]
