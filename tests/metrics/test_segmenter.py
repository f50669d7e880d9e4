"""The FCN-score segmenter: training on labeled photos, saving/loading, colour-coded labels."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pixforge.cli import main
from pixforge.errors import PixforgeError
from pixforge.metrics.report import ScoreOptions, evaluate_dirs
from pixforge.metrics.segmenter import (
    FILE_NAME,
    LabeledPhotos,
    Segmenter,
    SegmenterConfig,
    load_segmenter,
    save_segmenter,
    score_segmenter,
)


def label_counts(folder: Path, label_nc: int) -> np.ndarray:
    counts = np.zeros(label_nc, dtype=np.int64)
    for path in sorted(folder.glob("*.png")):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=label_nc)
    return counts


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmenter trained briefly from the CLI on the labeled synthetic scenes (32 px); its output."""
    out = tmp_path_factory.mktemp("segmenter") / "seg"
    args = ["segmenter", "train", "--data", str(synth_root / "labeled"), "--out", str(out), "--size", "32"]
    args += ["--steps", "80", "--ngf", "16", "--lr", "3e-3", "--device", "cpu", "--score-split", "test"]
    main(args)
    return out


def test_training_gives_a_ground_truth_row_well_above_chance(trained: Path, synth_root: Path) -> None:
    model = load_segmenter(trained)
    test = synth_root / "labeled" / "test"
    counts = label_counts(test / "labels", model.label_nc)
    majority = counts.max() / counts.sum()
    chance_class_accuracy = 1 / np.count_nonzero(counts)
    report = evaluate_dirs(
        test / "images",
        test / "images",
        ScoreOptions((), segmenter=model, num_classes=model.label_nc),
        labels=test / "labels",
    )
    assert report.values["fcn_pixel_accuracy"] > majority + 0.1
    assert report.values["fcn_mean_class_accuracy"] > 2 * chance_class_accuracy
    assert "U-Net segmenter (13 classes, 32 px" in report.settings["fcn"]
    direct = score_segmenter(model, synth_root / "labeled", "test", model.label_nc)
    assert direct["pixel_accuracy"] == pytest.approx(report.values["fcn_pixel_accuracy"])
    assert (trained / "metrics.jsonl").read_text().count("pixel_accuracy") == 2  # steps 50 and 80


def test_the_cli_prints_the_held_out_scores(synth_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "seg"
    main(
        [
            "segmenter",
            "train",
            "--data",
            str(synth_root / "labeled"),
            "--out",
            str(out),
            "--size",
            "16",
            "--steps",
            "2",
            "--ngf",
            "4",
            "--device",
            "cpu",
        ]
    )
    text = capsys.readouterr().out
    assert re.search(r"ground truth \(val photos\): pixel accuracy 0\.\d{4}", text)
    assert (out / FILE_NAME).is_file() and not list(out.glob(".*tmp"))


def test_save_and_load_round_trip_and_any_input_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = SegmenterConfig(label_nc=5, size=32, ngf=4, data="somewhere", class_names=list("abcde"))
    model = Segmenter(cfg).eval()
    path = save_segmenter(model, tmp_path / "run")
    loaded = load_segmenter(tmp_path / "run")
    assert path == tmp_path / "run" / FILE_NAME and not loaded.training
    assert loaded.cfg == cfg
    photos = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(photos), model(photos))
        assert loaded(torch.rand(1, 3, 24, 40)).shape == (1, 5, 24, 40)


def test_logits_are_not_squashed_by_the_generator_tanh() -> None:
    model = Segmenter(SegmenterConfig(label_nc=3, size=16, ngf=4)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.mul_(50)
        logits = model(torch.rand(1, 3, 16, 16))
    assert logits.abs().max() > 1.0


def test_facade_colour_labels_of_aligned_data_decode_to_the_labeled_ids(synth_root: Path) -> None:
    aligned = LabeledPhotos(synth_root / "aligned", "train", 32)
    labeled = LabeledPhotos(synth_root / "labeled", "train", 32)
    assert aligned.label_nc == labeled.label_nc == 13 and aligned.source == "facade_colours"
    for i in (0, 5):
        photo, ids = aligned.raw(i)
        photo_ref, ids_ref = labeled.raw(i)
        np.testing.assert_array_equal(np.asarray(ids), np.asarray(ids_ref))
        np.testing.assert_array_equal(np.asarray(photo), np.asarray(photo_ref))
    image, label = aligned.crop(0, random.Random(0))
    assert image.shape == (3, 32, 32) and label.shape == (32, 32) and label.dtype == torch.int64


def test_real_facades_decode_to_cmp_ids(facades_root: Path) -> None:
    photo, ids = LabeledPhotos(facades_root, "train", 64).raw(0)
    ids = np.asarray(ids)
    assert photo.size == (256, 256) and ids.shape == (256, 256)
    assert ids.min() >= 1 and ids.max() <= 12 and len(np.unique(ids)) >= 4


def test_bad_inputs_are_one_line_errors(synth_root: Path, tmp_path: Path) -> None:
    with pytest.raises(PixforgeError, match="not unaligned data"):
        LabeledPhotos(synth_root / "unaligned", "train", 32)
    with pytest.raises(PixforgeError, match="no segmenter at"):
        load_segmenter(tmp_path / "nothing")
    bogus = tmp_path / FILE_NAME
    bogus.write_bytes(b"not safetensors")
    with pytest.raises(PixforgeError, match="not a readable segmenter"):
        load_segmenter(bogus)
    save_file({"w": torch.zeros(1)}, str(bogus), metadata={"format": "pixforge"})
    with pytest.raises(PixforgeError, match="not a pixforge segmenter"):
        load_segmenter(bogus)
    with pytest.raises(PixforgeError, match="label_side"):
        LabeledPhotos(synth_root / "aligned", "train", 32, label_side="C")
