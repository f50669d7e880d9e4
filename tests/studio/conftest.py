"""Fixtures of the studio tests: two tiny trained runs and a live studio on 127.0.0.1 serving them."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

import pixforge
from pixforge.evaluation import evaluate_run
from pixforge.metrics.report import ScoreOptions
from pixforge.serve.app import ServeSettings
from pixforge.serve.server import background
from pixforge.studio.app import StudioSettings, create_studio_app


@pytest.fixture(scope="session")
def studio_runs(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny pix2pix on the colour-coded facade labels (BtoA), evaluated on its test split (PSNR: the
    Translate page shows it), a tiny pix2pixHD with clusters (two downsamplings: edits stay local) and a tiny
    DRPAN (its region overlay), 40, 100 and 2 steps."""
    root = tmp_path_factory.mktemp("studio-runs")
    runs = {"facades": root / "facades", "hd": root / "hd", "drpan": root / "drpan"}
    pixforge.train(
        "pix2pix",
        synth_root / "aligned",
        runs["facades"],
        preset="tiny",
        steps=40,
        direction="BtoA",
        test_mode="eval",
    )
    evaluate_run(runs["facades"], synth_root / "aligned", scoring=ScoreOptions(metrics=("psnr",)))
    pixforge.train(
        "pix2pixhd",
        synth_root / "labeled",
        runs["hd"],
        preset="tiny",
        steps=100,
        preprocess="none",
        n_downsample_global=2,
    )
    pixforge.train("drpan", synth_root / "aligned", runs["drpan"], preset="tiny", steps=2, direction="BtoA")
    return runs


@pytest.fixture(scope="session")
def study_images(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders matched by stem: real photos and two kinds of "generated" ones (blurred, posterised)."""
    root = tmp_path_factory.mktemp("study-images")
    folders = {name: root / name for name in ("real", "blur", "poster")}
    for folder in folders.values():
        folder.mkdir()
    for path in sorted((synth_root / "labeled" / "train" / "images").glob("*.png")):
        photo = Image.open(path).convert("RGB")
        photo.save(folders["real"] / path.name)
        photo.filter(ImageFilter.GaussianBlur(2)).save(folders["blur"] / path.name)
        photo.quantize(4).convert("RGB").save(folders["poster"] / f"{path.stem}.jpg")
    return folders


@dataclass
class LiveStudio:
    url: str
    app: object
    db: Path
    admin_token: str


@pytest.fixture(scope="session")
def live_studio(
    studio_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStudio]:
    """The studio app serving both runs, in uvicorn on a free port of 127.0.0.1 (a thread of this process)."""
    db = tmp_path_factory.mktemp("studio-db") / "studies.sqlite"
    app = create_studio_app(
        ServeSettings(
            [studio_runs["facades"], studio_runs["hd"], studio_runs["drpan"]], "cpu", max_wait_ms=1
        ),
        StudioSettings(db, "admin-secret"),
    )
    with background(app) as url:
        yield LiveStudio(url, app, db, "admin-secret")


@pytest.fixture(scope="session")
def guarded_studio(studio_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live studio with ``--token studio-secret`` (and admin token ``admin-secret``) serving one run."""
    db = tmp_path_factory.mktemp("guarded-db") / "studies.sqlite"
    app = create_studio_app(
        ServeSettings([studio_runs["facades"]], "cpu", max_wait_ms=1),
        StudioSettings(db, "admin-secret", token="studio-secret"),
    )
    with background(app) as url:
        yield url


def chromium_path() -> str | None:
    """The system Chromium (``make setup`` and ``.ci/run`` install it where it is missing)."""
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


class HarnessBrowser:
    """The browser of the page tests: its contexts bypass the pages' Content-Security-Policy, which forbids
    the string evaluation that Playwright's ``wait_for_function`` and the tests' own ``fetch`` of blob URLs
    use. The CSP itself is tested with ``bypass_csp=False`` in test_browser_security."""

    def __init__(self, chromium: Any) -> None:
        self.chromium = chromium

    def new_context(self, **options: Any) -> Any:
        return self.chromium.new_context(**{"bypass_csp": True, **options})

    def new_page(self, **options: Any) -> Any:
        return self.chromium.new_page(**{"bypass_csp": True, **options})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chromium, name)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless system Chromium driven by Playwright; the tests skip (saying why) where either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no system Chromium at /usr/bin/chromium: make setup installs it (apt-get install -y chromium, as root)"
        )
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, headless=True)
        yield HarnessBrowser(chromium)
        chromium.close()


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


@pytest.fixture()
def page_image() -> Callable[[Any, str], np.ndarray]:
    """The pixels (H, W, 3) of an <img> on a page: its blob or data URL, fetched inside the page."""

    def read(page: Any, selector: str) -> np.ndarray:
        encoded = page.evaluate(
            """async (selector) => {
                const img = document.querySelector(selector);
                const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
                let text = ""; for (const b of bytes) text += String.fromCharCode(b);
                return btoa(text);
            }""",
            selector,
        )
        return png_array(base64.b64decode(encoded))

    return read
