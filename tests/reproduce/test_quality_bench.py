"""bench/quality/run.py: the issue-19 arms train, score and draw their grids from one command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "quality" / "run.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quality_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_arms_train_score_and_draw_both_grids(synth_root: Path, tmp_path: Path, capsys) -> None:
    """At 128 px (the arms' U-Net 128 needs it), 2 steps, 2 held-out pairs: a table row per arm (pix2pix's
    two seeds as one row), the full grid (input | 3 runs | target) and the README's outputs-only grid."""
    args = ["--data", str(synth_root / "aligned"), "--out", str(tmp_path), "--steps", "2", "--size", "128"]
    args += ["--arms", "pix2pix,drpan-reviser-none", "--holdout", "2", "--metrics", "psnr,ssim"]
    assert _script().main([*args, "--grid-rows", "2", "--cell", "64", "--device", "cpu"]) == 0
    ours = json.loads((tmp_path / "does-it-help.json").read_text())["ours"]
    assert set(ours) == {"pix2pix", "DRPAN reviser=none"}
    assert ours["pix2pix"]["psnr"]["count"] == 2 and ours["DRPAN reviser=none"]["psnr"]["count"] == 1
    folder = tmp_path / "compare-does-it-help"
    assert Image.open(folder / "grid.png").size == (5 * 64, 2 * 64)
    assert Image.open(folder / "grid-outputs.jpg").size == (3 * 64, 2 * 64)
    columns = "grid-outputs.jpg columns: pix2pix-s0 | drpan-reviser-none-s0 | pix2pix-s1"
    assert columns in (folder / "grid.txt").read_text()
    assert f"grid: {folder / 'grid.png'}" in capsys.readouterr().out


def test_without_the_facades_it_says_so_and_exits_0(tmp_path: Path, capsys) -> None:
    assert _script().main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 0
    assert "skipping:" in capsys.readouterr().out and not (tmp_path / "out").exists()
