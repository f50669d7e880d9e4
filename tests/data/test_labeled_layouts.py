"""Labeled layouts beyond the plain one: labels-only val/test splits and Cityscapes file names (issue 9, 3-4)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pixforge.cli import main
from pixforge.config import DataConfig
from pixforge.data import formats
from pixforge.data.dataset import TranslationDataset, data_channels
from pixforge.errors import PixforgeError

CONFIGS = Path(formats.__file__).resolve().parents[1] / "configs" / "pix2pixhd"


@pytest.fixture()
def labels_only(synth_root: Path, tmp_path: Path) -> Path:
    """The synthetic labeled data with val/ and test/ reduced to labels + instances (pix2pixHD's test layout)."""
    root = tmp_path / "labeled"
    shutil.copytree(synth_root / "labeled", root)
    for split in ("val", "test"):
        shutil.rmtree(root / split / "images")
    return root


def test_a_labels_only_split_reads_without_targets(labels_only: Path) -> None:
    ds = TranslationDataset(labels_only, "test", DataConfig(load_size=36, crop_size=32), train=False)
    assert ds.data.labels_only and len(ds) == 2
    item = ds[0]
    assert "B" not in item and item["A"].shape == (13, 32, 32) and "instance" in item
    assert not formats.has_targets(labels_only, "labeled", "test")
    assert formats.has_targets(labels_only, "labeled", "train")
    with pytest.raises(PixforgeError, match="images"):
        shutil.rmtree(labels_only / "train" / "images")
        formats.scan_split(labels_only, "labeled", "train")


def test_inspect_reports_labels_only_splits_not_as_problems(labels_only: Path, capsys) -> None:
    report = formats.inspect(labels_only)
    assert report.problems == [] and report.labels_only == ["val", "test"]
    assert report.counts == {"train": 20, "val": 2, "test": 2}
    main(["data", "inspect", str(labels_only)])
    out = capsys.readouterr().out
    assert "test: 2 samples (32x32 x2; labels only)" in out and "0 problem(s)" in out


def test_trains_and_translates_a_labels_only_test_split(labels_only: Path, tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    main(
        ["train", "pix2pix", "--data", str(labels_only), "--out", str(run), "--preset", "tiny"]
        + ["--steps", "1", "--set", "sample_count=1"]
    )
    main(["translate", str(run), str(labels_only), "--split", "test", "--out", str(out)])
    stems = sorted(p.stem for p in (labels_only / "test" / "labels").iterdir())
    assert sorted(p.stem for p in out.glob("*.png")) == stems


def make_cityscapes(root: Path, stems: list[str]) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / "train" / folder).mkdir(parents=True)
    for stem in stems:
        photo = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "train" / "images" / f"{stem}_leftImg8bit.png")
        ids = rng.integers(0, 34, (16, 32), dtype=np.uint8)
        Image.fromarray(ids).save(root / "train" / "labels" / f"{stem}_gtFine_labelIds.png")
    return root


def test_cityscapes_names_get_the_presets_label_nc_with_a_notice(tmp_path: Path, caplog) -> None:
    root = make_cityscapes(tmp_path / "cs", ["aachen_000000_000019", "aachen_000001_000019"])
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        assert data_channels(root, "labeled", DataConfig()) == (34, 3, 34)
        ds = TranslationDataset(root, "train", DataConfig(preprocess="none"), train=True)
    assert ds.label_nc == 34 and ds[0]["A"].shape == (34, 16, 32)
    notices = [r for r in caplog.records if "label_nc=34" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0].getMessage()
    assert data_channels(root, "labeled", DataConfig(label_nc=40)) == (40, 3, 40), "label_nc still wins"
    assert formats.inspect(root).problems == []


def test_other_labeled_data_without_a_class_count_still_asks(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(synth_root / "labeled", root)
    (root / "classes.txt").unlink()
    with pytest.raises(PixforgeError, match="label_nc"):
        data_channels(root, "labeled", DataConfig())


@pytest.mark.parametrize("preset", ["cityscapes_1024.yaml", "cityscapes_2048.yaml"])
def test_the_cityscapes_count_is_the_presets(preset: str) -> None:
    label_nc = yaml.safe_load((CONFIGS / preset).read_text())["data"]["label_nc"]
    assert label_nc == formats.CITYSCAPES_LABEL_NC
