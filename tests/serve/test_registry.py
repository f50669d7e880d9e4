"""The registry's description of a served model: which explanation maps it can give."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pixforge
from pixforge.serve.registry import ServedModel


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
