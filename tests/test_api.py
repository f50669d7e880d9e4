"""The Python API and the translate/info commands on a trained tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixforge
from pixforge.cli import main


@pytest.fixture(scope="module")
def run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("api") / "run"
    pixforge.train("pix2pix", synth_root / "aligned", out, preset="tiny", direction="BtoA", steps=6)
    return out


def test_load_needs_no_flags_and_keeps_input_size(run: Path) -> None:
    translator = pixforge.load(run)
    assert translator.config.data.direction == "BtoA" and translator.step == 6
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (29, 45, 3), dtype=np.uint8))
    out = translator(image)
    assert out.size == (45, 29) and out.mode == "RGB"


def test_load_accepts_checkpoint_folder_and_weights_file(run: Path) -> None:
    folder = sorted((run / "checkpoints").glob("step_*"))[-1]
    assert pixforge.load(folder).step == pixforge.load(folder / "model.safetensors").step == 6


def test_unpadded_model_runs_at_native_non_square_size(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "native"
    pixforge.train(
        "pix2pix",
        synth_root / "aligned",
        out,
        preset="tiny",
        steps=2,
        overrides={"preprocess": "none", "flip": "false"},
    )
    translator = pixforge.load(out)
    image = Image.new("RGB", (40, 24), (200, 30, 30))
    maps = translator.translate(image)
    assert maps["output"].size == (40, 24)


def test_translate_dataset_split_writes_gallery_and_run_page(run: Path, synth_root: Path, capsys) -> None:
    out = run / "test"
    main(["translate", str(run), str(synth_root / "aligned"), "--split", "test", "--out", str(out), "--html"])
    gallery = json.loads((out / "gallery.json").read_text())
    stems = sorted(p.stem for p in (synth_root / "aligned" / "test").iterdir())
    assert [r["name"] for r in gallery["rows"]] == stems
    assert all((out / r["target"]).is_file() and (out / r["input"]).is_file() for r in gallery["rows"])
    assert gallery["mean_l1"] == pytest.approx(np.mean([r["l1"] for r in gallery["rows"]]))
    with Image.open(out / f"{stems[0]}.png") as img:
        assert img.size == (32, 32)
    page = (run / "index.html").read_text()
    assert "test/index.html" in page and "<svg" in page
    assert "mean L1" in capsys.readouterr().out


def test_translate_plain_files_and_info(run: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (50, 30), (0, 48, 255)).save(src / "a.png")
    main(["translate", str(run), str(src), "--out", str(tmp_path / "out")])
    with Image.open(tmp_path / "out" / "a.png") as img:
        assert img.size == (50, 30)
    main(["info", str(run)])
    text = capsys.readouterr().out
    assert "method: pix2pix" in text and "step: 6" in text and "G_L1" in text


def test_labeled_data_trains_from_one_hot_labels(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "labeled"
    pixforge.train("pix2pix", synth_root / "labeled", out, preset="tiny", steps=2)
    translator = pixforge.load(out)
    assert translator.label_nc == 13 and translator.method.info.input_nc == 13
    labels = Image.open(next((synth_root / "labeled" / "test" / "labels").iterdir()))
    assert translator(labels).size == labels.size


def test_real_facades_are_read(facades_root: Path) -> None:
    from pixforge.data.formats import inspect

    report = inspect(facades_root)
    assert report.fmt == "aligned" and report.counts == {"train": 400}
    assert report.sizes["train"] == {"256x256": 400} and not report.problems


def test_a_run_records_its_data_folder_absolute(synth_root: Path, tmp_path: Path, monkeypatch) -> None:
    """A run trained from a relative --data reads its data from any folder (the studio's samples, paint)."""
    monkeypatch.chdir(synth_root)
    out = tmp_path / "relative"
    pixforge.train("pix2pix", "aligned", out, preset="tiny", direction="BtoA", steps=1)
    monkeypatch.chdir(tmp_path)
    root = Path(pixforge.load(out).config.data.root)
    assert root.is_absolute() and root == (synth_root / "aligned").resolve()
    assert f"root: {root}" in (out / "config.yaml").read_text()
