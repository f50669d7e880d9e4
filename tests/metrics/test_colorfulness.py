"""Colourfulness (Hasler and Süsstrunk 2003) and ``evaluate --metrics colorfulness`` on fakes and reals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixforge.cli import main
from pixforge.metrics.colorfulness import colorfulness


def test_grey_images_score_zero():
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (16, 16, 1)), 3, axis=2)
    assert colorfulness(grey) == 0


def test_half_red_half_green_by_hand():
    # rg is +255 on red and -255 on green (mean 0, std 255); yb is 127.5 everywhere (mean 127.5, std 0):
    # M = sqrt(255^2 + 0) + 0.3 * sqrt(0 + 127.5^2)
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:, :2, 0] = 255
    image[:, 2:, 1] = 255
    assert colorfulness(image) == pytest.approx(255 + 0.3 * 127.5, rel=1e-12)


def test_desaturating_lowers_it():
    photo = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype(np.float64)
    grey = photo.mean(axis=2, keepdims=True)
    scores = [colorfulness(grey + s * (photo - grey)) for s in (1.0, 0.5, 0.0)]
    # the opponent components are linear in the saturation s, so M scales with s exactly
    assert scores[1] == pytest.approx(scores[0] / 2, rel=1e-12) and scores[2] == pytest.approx(0, abs=1e-9)


def test_evaluate_reports_fakes_and_reals_side_by_side(tmp_path, capsys):
    fake, real = tmp_path / "fake", tmp_path / "real"
    fake.mkdir()
    real.mkdir()
    rng = np.random.default_rng(2)
    for stem in ("a", "b"):
        photo = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(photo).save(real / f"{stem}.png")
        Image.fromarray(photo).convert("L").convert("RGB").save(fake / f"{stem}.png")
    out = tmp_path / "report.json"
    main(
        ["evaluate", "--fake", str(fake), "--real", str(real), "--metrics", "colorfulness", "--out", str(out)]
    )
    values = json.loads(out.read_text())["values"]
    assert values["colorfulness_fake"] == 0 and values["colorfulness_real"] > 20
    shown = capsys.readouterr().out
    assert "colorfulness_fake" in shown and "colorfulness_real" in shown and "Hasler" in shown
