"""The HTML pages of a run: ``RUN/index.html`` (losses, samples, translations) and translation galleries.

A gallery (written by ``pixforge translate --html``) is a folder with ``index.html`` and ``gallery.json``;
galleries inside a run directory are also shown on the run's page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    "img{image-rendering:pixelated;max-width:256px;min-width:128px}pre{background:#f6f6f6;padding:1em}"
    ".legend span{margin-right:1em}"
)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_plot(rows: list[dict[str, Any]], width: int = 640, height: int = 220) -> str:
    """An inline SVG of every logged scalar against the step, each scaled to its own range."""
    if not rows:
        return "<p>No losses logged yet.</p>"
    keys = [k for k in rows[-1] if k not in ("step", "time", "lr")]
    steps = [r["step"] for r in rows]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    lines, legend = [], []
    for color, key in zip(COLORS * 4, keys, strict=False):
        values = [(r["step"], r[key]) for r in rows if key in r]
        lo, hi = min(v for _, v in values), max(v for _, v in values)
        span = hi - lo or 1.0
        points = " ".join(
            f"{(s - x0) / (x1 - x0) * (width - 20) + 10:.1f},{height - 10 - (v - lo) / span * (height - 20):.1f}"
            for s, v in values
        )
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
        legend.append(f'<span style="color:{color}">&#9632; {html.escape(key)} ({lo:.3g} .. {hi:.3g})</span>')
    svg = f'<svg width="{width}" height="{height}" style="border:1px solid #ccc">{"".join(lines)}</svg>'
    return f'{svg}<div class="legend">{"".join(legend)}</div><p>steps {x0} .. {max(steps)}; each curve scaled to its range</p>'


def loss_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    last = rows[-1]
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>" for k, v in last.items() if k != "time"
    )
    return f"<table>{cells}</table>"


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def gallery_table(gallery: dict[str, Any], prefix: str = "") -> str:
    """The rows of a gallery: input, output and (when known) target side by side, with the per-image L1."""
    has_target = any(r.get("target") for r in gallery["rows"])
    head = "<tr><th>name</th><th>input</th><th>output</th>" + (
        "<th>target</th><th>L1</th>" if has_target else ""
    )
    rows = []
    for r in gallery["rows"]:
        cells = [f"<td>{html.escape(r['name'])}</td>"]
        cells += [f"<td><img src='{html.escape(prefix + r[k])}'></td>" for k in ("input", "output")]
        if has_target:
            cells.append(
                f"<td><img src='{html.escape(prefix + r['target'])}'></td>"
                if r.get("target")
                else "<td></td>"
            )
            cells.append(f"<td>{r['l1']:.4f}</td>" if r.get("l1") is not None else "<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    summary = ""
    if gallery.get("mean_l1") is not None:
        summary = f"<p>mean L1 over {len(gallery['rows'])} images (on the [-1, 1] scale): {gallery['mean_l1']:.4f}</p>"
    return summary + f"<table>{head}</tr>{''.join(rows)}</table>"


def write_gallery(out_dir: Path, gallery: dict[str, Any], run_dir: Path | None) -> Path:
    """Write ``gallery.json`` and ``index.html`` for a translated set; refresh the run's page if inside it."""
    out_dir = Path(out_dir)
    (out_dir / "gallery.json").write_text(json.dumps(gallery, indent=1))
    body = gallery_table(gallery)
    if run_dir is not None:
        rows = read_metrics(run_dir)
        body += "<h2>Training losses</h2>" + loss_plot(rows) + loss_table(rows)
    _write(out_dir / "index.html", _page(gallery.get("title", "translations"), body))
    if run_dir is not None and out_dir.resolve().is_relative_to(Path(run_dir).resolve()):
        write_run_page(run_dir)
    return out_dir / "index.html"


def write_run_page(run_dir: Path) -> Path:
    """``RUN/index.html``: translations made inside the run, the latest sample grid, losses, the config."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    body = []
    for gallery_file in sorted(run_dir.glob("*/gallery.json")):
        gallery = json.loads(gallery_file.read_text())
        sub = gallery_file.parent.name
        body.append(f"<h2>Translations: <a href='{sub}/index.html'>{html.escape(sub)}</a></h2>")
        body.append(gallery_table(gallery, prefix=f"{sub}/"))
    if (run_dir / "samples" / "latest.png").is_file():
        step = rows[-1]["step"] if rows else "?"
        body.append(
            f"<h2>Samples (step {step}): input | output | target</h2><img src='samples/latest.png'"
            " style='max-width:100%'>"
        )
    body.append("<h2>Training losses</h2>" + loss_plot(rows) + loss_table(rows))
    config = run_dir / "config.yaml"
    if config.is_file():
        body.append(f"<h2>Config</h2><pre>{html.escape(config.read_text())}</pre>")
    path = run_dir / "index.html"
    _write(path, _page(f"pixforge run {run_dir.name}", "".join(body)))
    return path
