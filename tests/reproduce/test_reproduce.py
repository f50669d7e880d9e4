"""pixforge reproduce: the tables as data, the held-out split, and a table run end to end on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixforge import checkpoint
from pixforge.cli import main
from pixforge.config import Config, apply_overrides, validate
from pixforge.errors import PixforgeError
from pixforge.methods import get_method
from pixforge.reproduce import TABLES
from pixforge.reproduce.runner import Budget, finished_step, holdout_split, plan, snapshot_runs, train_arms

NAMES = {
    "pix2pix-losses",
    "pix2pix-generators",
    "pix2pix-patchgan",
    "pix2pixhd-losses",
    "pix2pixhd-discriminators",
    "pix2pixhd-instances",
    "drpan-reviser",
    "guidegan-attention",
}


def test_every_table_lists_with_the_papers_numbers(capsys) -> None:
    main(["reproduce", "--list"])
    text = capsys.readouterr().out
    assert set(TABLES) == NAMES and all(f"{name}:" in text for name in NAMES)
    assert "| L1+cGAN | 0.66 | 0.23 | 0.17 |" in text and "| GAN | 0.22 | 0.05 | 0.01 |" in text
    assert "| Encoder-decoder (L1) | 0.35 | 0.12 | 0.08 |" in text and "| single D | 82.87 | 0.5775 |" in text


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_arm_is_a_valid_config(name: str) -> None:
    """Each arm's overrides name real options with allowed values (a typo would fail only at training)."""
    from pixforge.config import load_preset

    for arm in TABLES[name].arms:
        cfg = Config(method=arm.method, model=get_method(arm.method).config_type())
        if arm.preset:
            apply_overrides(cfg, load_preset(arm.method, arm.preset))
        apply_overrides(cfg, arm.overrides)
        validate(cfg)


def test_holdout_is_fixed_by_name_and_never_trained_on(tmp_path: Path) -> None:
    source = tmp_path / "data" / "train"
    source.mkdir(parents=True)
    for i in range(1, 13):
        (source / f"{i}.jpg").write_bytes(b"x")
    split, held = holdout_split(tmp_path / "data", tmp_path / "split", 3)
    assert held == ["10", "11", "12"]
    assert sorted(p.stem for p in (split / "test").iterdir()) == ["10", "11", "12"]
    assert {p.stem for p in (split / "train").iterdir()} == {str(i) for i in range(1, 10)}
    with pytest.raises(PixforgeError, match="hold out fewer"):
        holdout_split(tmp_path / "data", tmp_path / "other", 12)


def test_bad_table_and_missing_options_are_one_line_errors(capsys) -> None:
    for args, words in [
        (["reproduce", "pix2pix-loss", "--data", "d", "--out", "o"], "did you mean pix2pix-losses"),
        (["reproduce", "pix2pix-losses"], "--data DIR and --out DIR"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_pix2pix_losses_runs_all_five_arms_end_to_end_and_resumes(
    synth_root: Path, tmp_path: Path, capsys
) -> None:
    args = ["reproduce", "pix2pix-losses", "--data", str(synth_root / "aligned"), "--out", str(tmp_path)]
    args += ["--steps", "2", "--size", "32", "--segmenter-steps", "2", "--metrics", "psnr,ssim"]
    args += ["--jobs", "2", "--device", "cpu"]
    main(args)
    out = capsys.readouterr().out
    arms = [arm.name for arm in TABLES["pix2pix-losses"].arms]
    folders = [(arm.name, arm.training) for arm in TABLES["pix2pix-losses"].arms]
    assert all(f"{arm} seed 0: done (2 steps" in out for arm in arms)
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 5 and all(checkpoint.read(run).step == 2 for run in runs)
    assert "D.blocks.0.0.weight" not in str(
        checkpoint.read(tmp_path / "runs" / "pix2pix-facades-lambda_gan=0-netG=unet-s0").weights.keys()
    )
    table = (tmp_path / "pix2pix-losses.md").read_text()
    for arm in arms:
        row = next(line for line in table.splitlines() if line.startswith(f"| {arm} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 1 + 5 + 3 and all(c != "-" for c in cells), row
    assert "paper (theirs): pix2pix (Isola et al., CVPR 2017), Table 1" in table
    assert "2 steps (the last 1 decaying), 32 px, 1 seed(s)" in table and "segmenter trained" in table
    ours = json.loads((tmp_path / "pix2pix-losses.json").read_text())["ours"]
    assert set(ours) == set(arms) and all(0 <= ours[a]["fcn_pixel_accuracy"]["mean"] <= 1 for a in arms)

    lines: list[str] = []  # a second run finds every arm finished and trains nothing
    budget = Budget(steps=2, size=32, device="cpu")
    train_arms(plan(TABLES["pix2pix-losses"], tmp_path / "runs", budget), synth_root, budget, 2, lines.append)
    assert lines == [f"{arm} seed 0: done (2 steps, {tmp_path / 'runs' / name}-s0)" for arm, name in folders]

    # the generators table in the same --out finds its two U-Net arms trained by this one
    generators = plan(TABLES["pix2pix-generators"], tmp_path / "runs", budget)
    assert [finished_step(run.folder) for run in generators] == [0, 0, 2, 2]


def test_scoring_at_a_step_takes_the_checkpoint_or_its_kept_copy(tmp_path: Path) -> None:
    """A run keeps only its newest checkpoints; one at the asked step or a copy in snapshots/ is scored."""
    budget = Budget(steps=2000)
    runs = plan(TABLES["drpan-reviser"], tmp_path / "runs", budget)
    own = checkpoint.checkpoints_dir(runs[0].folder) / "step_00000250" / checkpoint.WEIGHTS
    kept = tmp_path / "snapshots" / f"{runs[1].folder.name}-at250" / checkpoint.WEIGHTS
    for path in (own, kept):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"weights")
    lines: list[str] = []
    reached = snapshot_runs(runs, 250, tmp_path, lines.append)
    assert [r.arm for r in reached] == [runs[0].arm, runs[1].arm]
    assert [r.folder.resolve() for r in reached] == [own.resolve(), kept.resolve()]
    assert [r.folder.parent.name for r in reached] == [runs[0].folder.name, runs[1].folder.name]
    assert lines == [f"{runs[2].label}: no checkpoint at step 250 yet; left out"]
