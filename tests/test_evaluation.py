"""Evaluating runs on a split and comparing several runs in one table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.errors import PixforgeError
from pixforge.evaluation import Spread, compare_runs, evaluate_run, run_names, translate_split
from pixforge.metrics.report import ScoreOptions, evaluate_dirs

METRICS = ("psnr", "ssim", "reco")  # VIF needs 41 px, the test scenes have 32


@pytest.fixture(scope="module")
def runs(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny pix2pix runs: two de-raining runs (A = rainy, B = clean), one reversed, one labels -> photo."""
    root = tmp_path_factory.mktemp("compare")
    specs = {
        "short": ("derain", {"steps": 2}),
        "long": ("derain", {"steps": 6}),
        "reversed": ("derain", {"steps": 2, "direction": "BtoA"}),
        "labels": ("labeled", {"steps": 2}),
    }
    for name, (layout, flags) in specs.items():
        pixforge.train("pix2pix", synth_root / layout, root / name, preset="tiny", device="cpu", **flags)
    return {name: root / name for name in specs}


def test_compare_writes_one_table_with_baselines_samples_and_losses(runs, synth_root: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    comparison = compare_runs(
        [runs["short"], runs["long"]],
        synth_root / "derain",
        out,
        scoring=ScoreOptions(METRICS),
        device="cpu",
        samples=1,
    )
    assert list(comparison.reports) == ["short", "long", "input", "ground truth"]
    rainy, truth = comparison.reports["input"].values, comparison.reports["ground truth"].values
    assert truth["psnr"] == float("inf") and truth["ssim"] == pytest.approx(1.0) and truth["reco"] == 1.0
    assert rainy["psnr"] < 40 and rainy["ssim"] < 0.99
    table = (out / "compare.md").read_text()
    assert "| short | pix2pix | 2 |" in table and "| long | pix2pix | 6 |" in table
    assert "| ground truth | - | - | inf | 1.0000 | 1.0000 |" in table
    assert "direction AtoB" in table and "sigma 1.5" in table
    assert "- input: the input image scored in place of an output" in table
    page = (out / "index.html").read_text()
    assert page.count("<svg") == 2 and "Training losses: long" in page
    stem = sorted(p.stem for p in (synth_root / "derain" / "test").iterdir())[0]
    for src in ("runs/short/inputs", "runs/short/fake", "runs/long/fake", "runs/short/real"):
        assert f"<img src='{src}/{stem}.png'>" in page
        assert (out / src / f"{stem}.png").is_file()
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert rows["ground truth"]["values"]["psnr"] == "inf"
    assert rows["long"]["settings"]["step"] == 6


def test_evaluate_run_scores_its_translations_like_evaluate_dirs(runs, synth_root: Path):
    report = evaluate_run(runs["long"], synth_root / "derain", scoring=ScoreOptions(METRICS), device="cpu")
    folder = runs["long"] / "evaluation" / "test"
    direct = evaluate_dirs(folder / "fake", folder / "real", ScoreOptions(METRICS))
    assert report.values == pytest.approx(direct.values)
    assert report.settings["method"] == "pix2pix" and report.settings["step"] == 6
    with Image.open(folder / "real" / f"{report.per_image[0]['stem']}.png") as real:
        clean = synth_root / "derain" / "test" / f"{report.per_image[0]['stem']}.png"
        np.testing.assert_array_equal(np.asarray(real), np.asarray(Image.open(clean))[:, 32:])


def test_test_time_dropout_is_seeded_so_evaluations_repeat(synth_root: Path, tmp_path: Path):
    # a 32 px U-Net has no dropout (pix2pix puts it between ngf*8 blocks only): a ResNet with dropout
    run = tmp_path / "dropout"
    overrides = {"netG": "resnet_6blocks", "dropout": 0.5}
    pixforge.train(
        "pix2pix", synth_root / "derain", run, preset="tiny", device="cpu", steps=2, overrides=overrides
    )

    def outputs(seed: int) -> list[bytes]:
        split = translate_split(run, synth_root / "derain", tmp_path / str(seed), seed=seed, device="cpu")
        return [(split.fake / f"{stem}.png").read_bytes() for stem in split.stems]

    state = torch.get_rng_state()
    assert outputs(0) == outputs(0)
    assert torch.equal(torch.get_rng_state(), state)
    assert outputs(0) != outputs(1)  # pix2pix keeps dropout on at test time (its sec. 3.1)


def test_runs_with_other_targets_are_not_compared(runs, synth_root: Path, tmp_path: Path):
    with pytest.raises(PixforgeError, match="different targets"):
        compare_runs(
            [runs["short"], runs["reversed"]],
            synth_root / "derain",
            tmp_path,
            scoring=ScoreOptions(METRICS),
            device="cpu",
        )


def test_label_inputs_give_fcn_scores_and_no_input_row(runs, synth_root: Path, tmp_path: Path):
    def facade_everywhere(photo: torch.Tensor) -> torch.Tensor:
        return torch.full((1, *photo.shape[-2:]), 2, dtype=torch.long)

    comparison = compare_runs(
        [runs["labels"]],
        synth_root / "labeled",
        tmp_path,
        scoring=ScoreOptions(("psnr",), segmenter=facade_everywhere, num_classes=13),
        device="cpu",
    )
    assert list(comparison.reports) == ["labels", "ground truth"]
    labels = [
        np.asarray(Image.open(p)) for p in sorted((synth_root / "labeled" / "test" / "labels").iterdir())
    ]
    facade_share = np.mean(np.concatenate([ids.ravel() for ids in labels]) == 2)
    for report in comparison.reports.values():
        assert report.values["fcn_pixel_accuracy"] == pytest.approx(facade_share)
    assert "input label maps" in comparison.reports["labels"].settings["labels"]


def test_compare_cli_prints_the_table(runs, synth_root: Path, tmp_path: Path, capsys):
    main(
        [
            "compare",
            str(runs["short"]),
            str(runs["short"]),
            "--data",
            str(synth_root / "derain"),
            "--out",
            str(tmp_path),
            "--metrics",
            "psnr",
            "--device",
            "cpu",
        ]
    )
    text = capsys.readouterr().out
    assert "| short | pix2pix | 2 |" in text and "| short_2 | pix2pix | 2 |" in text
    assert "index.html" in text


def test_run_names_are_distinct():
    assert run_names(["a/run", "b/run", "c/run/checkpoints/step_1/model.safetensors", "input"]) == [
        "run",
        "run_2",
        "step_1",
        "input_2",
    ]


def test_runs_that_differ_only_in_their_seed_make_one_row_with_the_spread(
    runs, synth_root: Path, tmp_path: Path
):
    seeds = [tmp_path / f"short-s{seed}" for seed in (1, 2)]
    for seed, run in zip((1, 2), seeds, strict=True):
        pixforge.train("pix2pix", synth_root / "derain", run, preset="tiny", device="cpu", steps=2, seed=seed)
    comparison = compare_runs(
        [*seeds, runs["long"]],
        synth_root / "derain",
        tmp_path / "cmp",
        scoring=ScoreOptions(("psnr",)),
        device="cpu",
        merge_seeds=True,
    )
    assert comparison.seed_groups() == {"short": ["short-s1", "short-s2"], "long": ["long"]}
    values = [comparison.reports[name].values["psnr"] for name in ("short-s1", "short-s2")]
    row = comparison.seed_rows()["short"]["psnr"]
    assert row.mean == pytest.approx(np.mean(values)) and row.spread == pytest.approx(np.std(values, ddof=1))
    assert row.count == 2 and comparison.seed_rows()["long"]["psnr"].count == 1
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"| short | 2 | {row.mean:.4f} ± {row.spread:.4f} |" in table
    assert (
        json.loads((tmp_path / "cmp" / "compare.json").read_text())["seed_rows"]["short"]["psnr"]["count"]
        == 2
    )


def test_a_one_seed_row_shows_the_metrics_own_spread_marked_as_over_subsets():
    assert Spread(30.0, 0.0, 1, subsets=1.5).text() == "30.0000 ± 1.5000 (subsets)"
    assert Spread(30.0, 2.0, 2).text() == "30.0000 ± 2.0000" and Spread(30.0, 0.0, 1).text() == "30.0000"
