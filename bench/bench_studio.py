"""The studio on this machine: render latency per paint stroke, and a short simulated perceptual study.

1. Latency: a pix2pix of the demo preset (``pixforge/configs/pix2pix/demo.yaml``: U-Net, ngf 32, 64 px;
   one training step, so untrained: the cost is the same) served by a live studio on 127.0.0.1. Each
   "stroke" paints a disc of a facade class into the label map and asks for a render: timed over HTTP
   (request to decoded PNG), and in headless Chromium from pointer-up to the new photo on screen (what the
   user waits for: the page renders a stroke at pointer-up) when /usr/bin/chromium and Playwright are there.
2. A simulated study: scripted participants take a limited-time real-vs-fake study over HTTP (join, fetch
   each trial, answer). Each participant answers "real" for the generated image with a set probability that
   falls with the exposure, per condition; the report should find those rates inside its intervals.

    .venv/bin/python bench/bench_studio.py --strokes 30 --participants 12
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

import pixforge
from pixforge.data.synth import synthesize
from pixforge.serve.app import ServeSettings
from pixforge.serve.server import background
from pixforge.studio.app import StudioSettings, create_studio_app
from pixforge.studio.paint import scene_from_json, scene_to_json
from pixforge.studio.protocol import REAL, create_study
from pixforge.studio.report import study_report, to_markdown
from pixforge.studio.store import MIN_RESPONSE_MS

#: simulated chance of picking the generated image as real at 125 ms and at 8 s, per condition
FOOLING = {"blur": (0.45, 0.15), "poster": (0.30, 0.05)}


def post(url: str, body: Any) -> bytes:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return response.read()


def get(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


def http_latency(url: str, strokes: int) -> list[float]:
    """Milliseconds per stroke: paint a disc into the scene, POST it, decode the PNG."""
    scene = scene_from_json(get(f"{url}/studio/api/models/demo/samples/0"))
    h, w = scene.label.shape
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    times = []
    for k in range(strokes + 3):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        scene.label[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = int(rng.integers(1, 13))
        start = time.perf_counter()
        png = post(f"{url}/studio/api/models/demo/render?seq={k}", scene_to_json(scene))
        Image.open(io.BytesIO(png)).load()
        if k >= 3:
            times.append((time.perf_counter() - start) * 1000)
    return times


def browser_latency(url: str, strokes: int) -> list[float] | None:
    """Milliseconds from pointer-up to the new photo on screen in headless Chromium (what the user waits)."""
    if not Path("/usr/bin/chromium").is_file():
        return None
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(bypass_csp=True)  # the timing probes are evaluated strings
        page.goto(f"{url}/studio/paint")
        page.wait_for_function("window.studio.shown > 0")
        page.evaluate(
            "document.querySelector('#overlay').addEventListener('pointerup', () => { window.upAt = performance.now(); }, true)"
        )
        box = page.locator("#overlay").bounding_box()
        for k in range(strokes):
            shown = page.evaluate("window.studio.shown")
            y = box["y"] + box["height"] * (0.1 + 0.8 * (k % 10) / 10)
            page.mouse.move(box["x"] + 0.2 * box["width"], y)
            page.mouse.down()
            page.mouse.move(box["x"] + 0.8 * box["width"], y, steps=5)
            page.mouse.up()
            page.wait_for_function("(n) => window.studio.shown > n && !window.studio.pending", arg=shown)
            times.append(float(page.evaluate("window.studio.shownAt - window.upAt")))
        browser.close()
    return times


def fooling_chance(condition: str, exposure_ms: int) -> float:
    """Linear in log2(exposure) between the 125 ms and the 8 s chance of :data:`FOOLING`."""
    short, long = FOOLING[condition]
    t = (math.log2(exposure_ms) - math.log2(125)) / (math.log2(8000) - math.log2(125))
    return short + (long - short) * min(max(t, 0.0), 1.0)


def simulated_study(url: str, images: dict[str, Path], participants: int, store: Any) -> str:
    create_study(
        store,
        "simulated",
        "real-vs-fake",
        images[REAL],
        [f"{c}={images[c]}" for c in FOOLING],
        "125-8000",
        2,
        20,
    )
    rng = np.random.default_rng(1)
    for k in range(participants):
        token = json.loads(post(f"{url}/study/api/simulated/join?worker=sim{k}", {}))["token"]
        number = store.participant(token).number
        condition = store.participants("simulated")[number].condition
        trials = {t.idx: t for t in store.trials(store.participant(token).id)}
        while (state := get(f"{url}/study/api/session/{token}"))["trial"] is not None:
            trial = state["trial"]
            for image in trial["images"]:
                urllib.request.urlopen(url + image).read()
            fooled = rng.random() < fooling_chance(condition, trial["exposure_ms"])
            real_left = (
                trials[trial["index"]].left_condition == REAL
            )  # the simulator's knowledge, not the page's
            choice = "left" if real_left != fooled else "right"
            time.sleep(MIN_RESPONSE_MS / 1000 + 0.02)  # a person's pace: not flagged too fast
            post(
                f"{url}/study/api/session/{token}/answer",
                {"trial": trial["index"], "choice": choice, "response_ms": 600},
            )
    return to_markdown(study_report(store, "simulated"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strokes", type=int, default=30)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, help="Also write the simulated study's report (markdown) here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench-studio-"))
    synthesize(root / "synth", count=48, size=64, seed=0)
    pixforge.train(
        "pix2pix", root / "synth" / "aligned", root / "demo", preset="demo", steps=1, steps_decay=0
    )
    images = {name: root / name for name in (REAL, *FOOLING)}
    for folder in images.values():
        folder.mkdir()
    for path in sorted((root / "synth" / "labeled" / "train" / "images").glob("*.png")):
        photo = Image.open(path).convert("RGB")
        photo.save(images[REAL] / path.name)
        photo.filter(ImageFilter.GaussianBlur(1.5)).save(images["blur"] / path.name)
        photo.quantize(6).convert("RGB").save(images["poster"] / path.name)
    app = create_studio_app(
        ServeSettings([root / "demo"], "cpu", max_wait_ms=1), StudioSettings(root / "db", "b")
    )
    with background(app) as url:
        http = http_latency(url, args.strokes)
        print(f"demo pix2pix (64 px, ngf 32), CPU, {args.threads} threads, {args.strokes} strokes")
        print(
            f"render per stroke over HTTP: median {statistics.median(http):.1f} ms, p90 {np.percentile(http, 90):.1f} ms"
        )
        shown = browser_latency(url, min(args.strokes, 20))
        if shown:
            print(
                f"in Chromium, pointer-up to photo on screen: median "
                f"{statistics.median(shown):.1f} ms, p90 {np.percentile(shown, 90):.1f} ms ({len(shown)} strokes)"
            )
        report = simulated_study(url, images, args.participants, app.state.studies)
        truth = ", ".join(f"{c}: {a:.0%} at 125 ms -> {b:.0%} at 8 s" for c, (a, b) in FOOLING.items())
        print(
            f"\nsimulated study: {args.participants} scripted participants; simulated fooling chance {truth}\n"
        )
        print(report)
        if args.out:
            args.out.write_text(report)


if __name__ == "__main__":
    main()
