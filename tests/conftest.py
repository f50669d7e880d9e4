"""Shared fixtures: a small built-in synthetic dataset, made once per test session."""

from __future__ import annotations

import http.client
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge.data.synth import synthesize

SHARED_FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> Iterator[None]:
    """The tests' tiny nets run fastest on one thread (and many times slower on a loaded, shared CPU with more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 scenes at 32 px in all four layouts (aligned/, labeled/, unaligned/, derain/)."""
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, count=24, size=32, seed=0)
    return root


#: name -> (method, synthetic layout, config overrides) of tiny runs for :func:`train_tiny`
RunSpecs = dict[str, tuple[str, str, dict[str, Any]]]


@pytest.fixture(scope="session")
def train_tiny(
    synth_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, RunSpecs], dict[str, Path]]:
    """Train each spec with its method's tiny preset for one step; returns name -> run directory."""

    def make(label: str, specs: RunSpecs) -> dict[str, Path]:
        root = tmp_path_factory.mktemp(label)
        for name, (method, layout, overrides) in specs.items():
            pixforge.train(
                method, synth_root / layout, root / name, preset="tiny", steps=1, overrides=overrides
            )
        return {name: root / name for name in specs}

    return make


@pytest.fixture()
def facades_root() -> Path:
    """The real facades training pairs in ../shared, or skip where they are absent."""
    if not (SHARED_FACADES / "train").is_dir():
        pytest.skip("../shared/data/facades is not available")
    return SHARED_FACADES


@pytest.fixture()
def bad_label(synth_root: Path, tmp_path: Path) -> Callable[[str, str], tuple[Path, Path]]:
    """A copy of the synthetic labeled data whose label map ``split/labels/STEM.png`` holds id 40 (of 13 classes).

    Returns (dataset root, the broken label file).
    """

    def make(split: str, stem: str) -> tuple[Path, Path]:
        root = tmp_path / "labeled"
        shutil.copytree(synth_root / "labeled", root)
        path = root / split / "labels" / f"{stem}.png"
        ids = np.asarray(Image.open(path)).copy()
        ids[3, 3] = 40
        Image.fromarray(ids).save(path)
        return root, path

    return make


@pytest.fixture(scope="session")
def hd_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pix2pixHD preset trained for 2 steps on the synthetic labeled data (instances, encoder,
    clusters). ``preprocess=none`` keeps the input size at translation, so the model can render larger scenes."""
    import pixforge

    out = tmp_path_factory.mktemp("hd") / "run"
    result = pixforge.train(
        "pix2pixhd", synth_root / "labeled", out, preset="tiny", steps=2, log_every=1, preprocess="none"
    )
    assert result.step == 2
    return out


@pytest.fixture(scope="session")
def colour_photos(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A colorization dataset: the synthetic photos as ``train/`` (plus two grayscale ones) and ``test/``."""
    root = tmp_path_factory.mktemp("colour")
    photos = sorted((synth_root / "labeled" / "train" / "images").glob("*.png"))
    for split, chosen in (("train", photos[:-4]), ("test", photos[-4:])):
        (root / split).mkdir()
        for path in chosen:
            shutil.copy(path, root / split / path.name)
    grey = np.asarray(Image.open(photos[0]).convert("L"))
    Image.fromarray(grey).save(root / "train" / "zz_grey_L.png")
    Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2)).save(root / "train" / "zz_grey_rgb.png")
    return root


@pytest.fixture(scope="session")
def colour_run(colour_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pix2pix colorization run (2 steps, deterministic inference)."""
    out = tmp_path_factory.mktemp("colour_run") / "run"
    overrides = {"format": "colorization", "test_mode": "eval"}
    pixforge.train("pix2pix", colour_photos, out, preset="tiny", steps=2, overrides=overrides)
    return out


RawStatus = Callable[..., int]


def _raw_status(url: str, path: str, headers: dict[str, str], method: str = "GET", body: bytes = b"") -> int:
    """The status of a request sent with exactly these headers (``Host`` included), as a hostile page or a
    DNS-rebinding attack could send it."""
    parts = urllib.parse.urlsplit(url)
    con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        con.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            con.putheader(key, value)
        con.endheaders(body)
        return con.getresponse().status
    finally:
        con.close()


@pytest.fixture(scope="session")
def raw_status() -> RawStatus:
    """:func:`_raw_status`: a request with hand-set headers against a live server."""
    return _raw_status
