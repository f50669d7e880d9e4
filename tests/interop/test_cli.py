"""``pixforge import`` and ``pixforge pretrained``: the imported run is an ordinary run; offline get fails clearly."""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.interop import catalogue

from .test_junyanz import reference_generator, save


def run_cli(args: list[str]) -> None:
    """Run the CLI in-process; a success returns without exiting."""
    main(args)


def fails(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture()
def imported(junyanz: Any, tmp_path: Path) -> Path:
    """A junyanz pix2pix checkpoint folder (resnet_6blocks, batch norm, ngf 8; D with 2 layers) imported by the CLI."""
    folder = tmp_path / "facades_pix2pix"
    folder.mkdir()
    save(reference_generator(junyanz, "resnet_6blocks", "batch", 8, seed=11), folder / "latest_net_G.pth")
    torch.manual_seed(12)
    save(
        junyanz.define_D(6, 8, "n_layers", n_layers_D=2, norm="batch", gpu_ids=[]),
        folder / "latest_net_D.pth",
    )
    main_args = ["import", "junyanz", str(folder), "--method", "pix2pix", "--direction", "BtoA"]
    run_cli([*main_args, "--out", str(tmp_path / "run")])
    return tmp_path / "run"


def test_imported_run_translates_exports_and_initialises_training(
    imported: Path, tmp_path: Path, synth_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    photo.save(tmp_path / "in.png")
    run_cli(["translate", str(imported), str(tmp_path / "in.png"), "--out", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "in.png").size == (56, 40)
    run_cli(["export", str(imported), "--out", str(tmp_path / "g.onnx")])
    assert (tmp_path / "g.onnx").stat().st_size > 0
    with caplog.at_level(logging.INFO, logger="pixforge"):
        pixforge.train(
            "pix2pix",
            synth_root / "aligned",
            tmp_path / "tuned",
            preset="tiny",
            steps=1,
            init_from=imported,
            overrides={"netG": "resnet_6blocks", "norm": "batch"},
        )
    tensors = len(pixforge.load(imported).method.state_dict())
    assert f"initialised {tensors} tensors from" in caplog.text


def test_import_into_an_existing_run_is_refused(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = imported.parent / "facades_pix2pix" / "latest_net_G.pth"
    line = fails(capsys, ["import", "junyanz", str(g), "--method", "pix2pix", "--out", str(imported)])
    assert f"--out {imported}: already holds a run" in line


def test_shape_mismatch_exits_2_naming_key_and_shapes(
    imported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g = imported.parent / "facades_pix2pix" / "latest_net_G.pth"
    line = fails(
        capsys,
        [
            "import",
            "junyanz",
            str(g),
            "--method",
            "pix2pix",
            "--ngf",
            "4",
            "--out",
            str(imported.parent / "x"),
        ],
    )
    assert "model.1.weight has shape (8, 3, 7, 7)" in line and "needs (4, 3, 7, 7)" in line


def test_pretrained_get_offline_names_the_url_and_the_import_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(url: str, target: Path) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(catalogue, "fetch", offline)
    monkeypatch.setattr(catalogue.get, "__defaults__", (offline,))
    line = fails(capsys, ["pretrained", "get", "horse2zebra", "--out", str(tmp_path / "h2z")])
    assert (
        "cannot download http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
        in line
    )
    assert f"pixforge import junyanz FILE.pth --method cyclegan --out {tmp_path / 'h2z'}" in line
    line = fails(capsys, ["pretrained", "get", "label2city_1024p", "--out", str(tmp_path / "l2c")])
    assert "download it from https://drive.google.com/" in line and "pixforge import nvidia" in line


def test_pretrained_get_imports_and_checks_the_sha256(
    junyanz: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The import path of ``get``, with a download served from a local file."""
    file = save(reference_generator(junyanz, "unet_256", "batch", 8, seed=13), tmp_path / "served.pth")

    def serve(url: str, target: Path) -> None:
        target.write_bytes(file.read_bytes())

    entry, digest = catalogue.get("pix2pix/facades_label2photo", tmp_path / "run", download=serve)
    translator = pixforge.load(tmp_path / "run")
    assert translator.config.data.direction == "BtoA" and translator.config.model.netG == "unet_256"
    assert digest == catalogue.sha256(file)
    pinned = catalogue.Published(**{**entry.__dict__, "sha256": "0" * 64})
    monkeypatch.setattr(catalogue, "find", lambda name: pinned)
    with pytest.raises(pixforge.PixforgeError, match="sha256 .* is not the published 0000"):
        catalogue.get("pix2pix/facades_label2photo", tmp_path / "run2", download=serve)


def test_catalogue_names_are_unique_and_urls_follow_the_upstream_scripts() -> None:
    keys = catalogue.names()
    assert len(keys) == len(set(keys))
    for entry in catalogue.CATALOGUE:
        if entry.source == "junyanz":
            folder = "pix2pix/models-pytorch" if entry.method == "pix2pix" else "cyclegan/pretrained_models"
            assert entry.url == f"http://efrosgans.eecs.berkeley.edu/{folder}/{entry.name}.pth"
