"""The registry's description of a served model: which explanation maps it can give."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import pixforge
from pixforge.evaluation import evaluate_run
from pixforge.metrics.report import ScoreOptions
from pixforge.serve.registry import ServedModel, load_model
from pixforge.serve.settings import ModelSpec


def test_ablated_models_offer_no_explanation_they_cannot_draw(
    train_tiny: Callable[..., dict[str, Path]],
) -> None:
    """DRPAN without a reviser has no region, GuideGAN without attention no map: neither is offered."""
    runs = train_tiny(
        "explain",
        {
            "drpan": ("drpan", "aligned", {}),
            "drpan_none": ("drpan", "aligned", {"reviser": "none"}),
            "guidegan": ("guidegan", "aligned", {}),
            "guidegan_none": ("guidegan", "aligned", {"attention": "none"}),
        },
    )
    kinds = {name: ServedModel(name, pixforge.load(run)).explain_kinds() for name, run in runs.items()}
    assert kinds == {"drpan": ["region"], "drpan_none": [], "guidegan": ["attention"], "guidegan_none": []}


def test_models_list_the_runs_own_test_scores(
    train_tiny: Callable[..., dict[str, Path]], synth_root: Path
) -> None:
    """``evaluate_run`` keeps its report beside the images; the listing (and the studio's Translate page)
    shows the run's test scores, and nothing for a run never evaluated."""
    runs = train_tiny("scored", {"scored": ("pix2pix", "aligned", {}), "fresh": ("pix2pix", "aligned", {})})
    report = evaluate_run(runs["scored"], synth_root / "aligned", scoring=ScoreOptions(metrics=("psnr",)))
    scored, fresh = (load_model(ModelSpec(runs[n]), "cpu").info() for n in ("scored", "fresh"))
    assert scored["scores_split"] == "test"
    assert scored["scores"] == {"psnr": pytest.approx(report.values["psnr"])}
    assert fresh["scores_split"] is None and fresh["scores"] == {}
