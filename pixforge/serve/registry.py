"""The models a server holds: one :class:`ServedModel` per run named at start, loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixforge.api import Translator, load
from pixforge.data.palette import dataset_classes
from pixforge.errors import PixforgeError
from pixforge.export import per_sample_norms
from pixforge.methods.cyclegan import CycleGAN
from pixforge.methods.drpan import DRPAN
from pixforge.methods.guidegan import GuideGAN
from pixforge.methods.pix2pixhd import Pix2PixHD

#: explanation kinds (the ``explain`` option) and the maps each returns
EXPLAIN_MAPS = {"region": ("score", "region"), "attention": ("attention", "attention_output")}


def run_name(path: Path) -> str:
    """A run's name: its directory's name, also for a checkpoint folder or weights file inside it."""
    p = path.resolve()
    if p.is_file():
        p = p.parent
    if p.parent.name == "checkpoints":
        p = p.parent.parent
    return p.name


@dataclass
class ServedModel:
    """One served run: its public ``name`` and its :class:`~pixforge.api.Translator`."""

    name: str
    translator: Translator

    @property
    def method_name(self) -> str:
        return self.translator.config.method

    def directions(self) -> list[str]:
        return ["AtoB", "BtoA"] if isinstance(self.translator.method, CycleGAN) else []

    def explain_kinds(self) -> list[str]:
        """The explanation maps the model can draw: none for the ablations without a reviser or attention."""
        method = self.translator.method
        if isinstance(method, DRPAN) and "R" in method.nets:
            return ["region"]
        if isinstance(method, GuideGAN) and method.options.attention != "none":
            return ["attention"]
        return []

    def clusters(self) -> dict[int, int]:
        """Feature clusters per class (pix2pixHD with its encoder, once clustered): {class id: count}."""
        method = self.translator.method
        if not isinstance(method, Pix2PixHD) or method.centre_counts is None:
            return {}
        return {c: int(n) for c, n in enumerate(method.centre_counts.tolist()) if n}

    def n_clusters(self) -> int:
        """K of the per-class K-means (pix2pixHD's ``n_clusters``; 0 without styles)."""
        return int(self.translator.config.model.n_clusters) if self.has_styles() else 0

    def has_styles(self) -> bool:
        method = self.translator.method
        return isinstance(method, Pix2PixHD) and "E" in method.nets

    def options(self) -> list[str]:
        """The translation options this model takes (form fields besides the inputs)."""
        names = ["direction"] if self.directions() else []
        if self.has_styles():
            names += ["cluster", "style_seed"]
        return names + (["explain"] if self.explain_kinds() else [])

    def palette(self) -> np.ndarray:
        """The colours of the class ids, as listed and as accepted in colour-coded label maps."""
        return self.translator.palette()

    def classes(self) -> list[str]:
        """Class names from the dataset's classes.txt, else ``class K``."""
        return dataset_classes(self.translator.config.data.root, self.translator.label_nc)

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` lists for this model."""
        t = self.translator
        data = t.config.data
        label_nc = t.label_nc
        info: dict[str, Any] = {
            "name": self.name,
            "method": self.method_name,
            "step": t.step,
            "input": "labels" if label_nc else "image",
            "size": [data.crop_size, data.crop_size] if data.preprocess == "resize_and_crop" else None,
            "size_multiple": t.method.size_multiple,
            "label_nc": label_nc,
            "classes": self.classes() if label_nc else [],
            "palette": [],
            "instances": bool(getattr(t.method, "use_boundary", False)),
            "styles": self.has_styles(),
            "clusters": {str(k): v for k, v in self.clusters().items()},
            "directions": self.directions(),
            "explain": self.explain_kinds(),
            "options": self.options(),
            "test_mode": getattr(t.config.model, "test_mode", "eval"),
        }
        if label_nc:
            info["palette"] = self.palette().tolist()
        return info


class ModelRegistry:
    """The served models by name, in the order the runs were given."""

    def __init__(self, models: list[ServedModel]) -> None:
        self._models = {m.name: m for m in models}

    @classmethod
    def load(cls, runs: list[str | Path], device: str = "auto") -> ModelRegistry:
        """Load every run once; names are the run directories' names, made unique with -2, -3, ..."""
        if not runs:
            raise PixforgeError("serve: name at least one run to serve")
        models: list[ServedModel] = []
        taken: set[str] = set()
        for run in runs:
            translator = load(run, device=device)
            per_sample_norms(translator.method)
            base = run_name(Path(run))
            name, k = base, 1
            while name in taken:
                k += 1
                name = f"{base}-{k}"
            taken.add(name)
            models.append(ServedModel(name, translator))
        return cls(models)

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> ServedModel:
        """The model called ``name``; ``KeyError`` when no such model is served."""
        return self._models[name]

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())
