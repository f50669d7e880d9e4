"""The README's studio screenshots (docs/studio-translate.png, docs/studio-paint.png, docs/studio-study.png).

Starts a studio on 127.0.0.1 with a pix2pix facade model (``--run``, e.g. runs/demo from ``make demo``; by
default a small one trained here for a few hundred steps on the built-in synthetic data), drives the pages in
headless Chromium as the browser tests do, and saves palette PNGs (small files) of each page.

    .venv/bin/python bench/studio_screenshots.py --run runs/demo --out docs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image, ImageFilter
from playwright.sync_api import Page, sync_playwright

import pixforge
from pixforge.data.synth import synthesize
from pixforge.serve.app import ServeSettings
from pixforge.serve.server import background
from pixforge.studio.app import StudioSettings, create_studio_app
from pixforge.studio.protocol import create_study


def small_png(path: Path) -> None:
    """Re-save a screenshot with a 256-colour palette: a fraction of the size, still crisp for UI."""
    Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def drag(page: Page, points: list[tuple[float, float]]) -> None:
    box = page.locator("#overlay").bounding_box()
    assert box is not None
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=6)
    page.mouse.up()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, help="A pix2pix run on colour-coded facade labels (default: train one)."
    )
    parser.add_argument("--steps", type=int, default=400, help="Training steps of the default model.")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    synthesize(root / "synth", count=48, size=64, seed=0)
    run = args.run
    if run is None:
        run = root / "facades"
        pixforge.train(
            "pix2pix", root / "synth" / "aligned", run, preset="tiny", size=64, steps=args.steps, direction="BtoA",
            test_mode="eval",
        )  # fmt: skip
    real, fake = root / "real", root / "fake"
    real.mkdir()
    fake.mkdir()
    for path in sorted((root / "synth" / "labeled" / "train" / "images").glob("*.png")):
        photo = Image.open(path).convert("RGB")
        photo.save(real / path.name)
        photo.filter(ImageFilter.GaussianBlur(1.2)).save(fake / path.name)
    app = create_studio_app(ServeSettings([run], "cpu"), StudioSettings(root / "studies.sqlite", "shots"))
    create_study(app.state.studies, "facades-realism", "real-vs-fake", real, [str(fake)], "unlimited", 2, 10)
    args.out.mkdir(parents=True, exist_ok=True)
    aligned = Image.open(sorted((root / "synth" / "aligned" / "test").glob("*.png"))[0])
    labels = root / "labels.png"
    aligned.crop((aligned.width // 2, 0, aligned.width, aligned.height)).save(labels)
    with background(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1180, "height": 560})
        page.goto(f"{url}/studio/")
        page.set_input_files("#file", str(labels))
        page.wait_for_function("document.querySelector('#output').dataset.seq !== undefined")
        page.screenshot(path=str(args.out / "studio-translate.png"))
        page.set_viewport_size({"width": 1360, "height": 660})
        page.goto(f"{url}/studio/paint")
        page.wait_for_function("window.studio.shown > 0")
        page.click("#palette button[data-class='4']")  # door
        page.fill("#size", "6")
        drag(page, [(0.3, 0.62), (0.3, 0.9), (0.42, 0.9), (0.42, 0.62)])
        page.click("#palette button[data-class='12']")
        drag(page, [(0.55, 0.8), (0.85, 0.8)])
        page.wait_for_function(
            "window.studio.shown >= 3 && !window.studio.pending && !window.studio.inflight"
        )
        page.screenshot(path=str(args.out / "studio-paint.png"))
        page.set_viewport_size({"width": 1000, "height": 640})
        page.goto(f"{url}/study/facades-realism")
        page.click("#begin")
        page.wait_for_function("!document.querySelector('#answer-left').disabled")
        page.screenshot(path=str(args.out / "studio-study.png"))
        browser.close()
    for name in ("studio-translate.png", "studio-paint.png", "studio-study.png"):
        small_png(args.out / name)
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
