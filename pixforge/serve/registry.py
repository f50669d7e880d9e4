"""The models a server holds: one :class:`ServedModel` per run named at start, loaded once; an exported
``.onnx`` file is served through onnxruntime (:class:`OnnxServedModel`).

A served model runs a request in three steps, so that only the middle one needs the inference worker:
``prepare`` (an upload's images to a CPU payload, in a thread pool), ``run`` (payloads of one batch key to
results, in the worker that owns the model) and ``finish`` (a result to PIL images, in a thread pool).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from pixforge.api import Size, Translator, load
from pixforge.data.palette import dataset_classes
from pixforge.data.transforms import to_image
from pixforge.errors import PixforgeError
from pixforge.evaluation import saved_scores
from pixforge.export import OnnxTranslator, per_sample_norms
from pixforge.methods.cyclegan import CycleGAN
from pixforge.methods.drpan import DRPAN
from pixforge.methods.guidegan import GuideGAN
from pixforge.methods.pix2pixhd import Pix2PixHD
from pixforge.serve.settings import Batching, ModelSpec

#: explanation kinds (the ``explain`` option) and the maps each returns
EXPLAIN_MAPS = {"region": ("score", "region"), "attention": ("attention", "attention_output")}


def freeze(value: Any) -> Hashable:
    """A hashable form of translation options (dicts and lists inside, e.g. pix2pixHD's ``clusters``)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Tensor):
        return tuple(value.flatten().tolist())
    return value


def to_images(maps: dict[str, Tensor], size: tuple[int, int]) -> dict[str, Image.Image]:
    """Maps (1, C, h, w) as PIL images at the input's ``size`` (W, H), as :meth:`Translator.translate` gives."""
    out = {}
    for name, t in maps.items():
        if tuple(t.shape[-2:]) != (size[1], size[0]):
            mode = "bicubic" if name == "output" else "nearest"
            t = F.interpolate(t.float(), size=(size[1], size[0]), mode=mode)
        out[name] = to_image(t[0])
    return out


def run_name(path: Path) -> str:
    """A run's name: its directory's name (an exported file's stem), also for a checkpoint folder or weights
    file inside a run."""
    p = path.resolve()
    if p.suffix == ".onnx":
        return p.stem
    if p.is_file():
        p = p.parent
    if p.parent.name == "checkpoints":
        p = p.parent.parent
    return p.name


@dataclass
class ServedModel:
    """One served run: its public ``name``, its :class:`~pixforge.api.Translator` and its batching."""

    name: str
    translator: Translator
    batching: Batching = field(default_factory=lambda: Batching(8, 10.0, 64, 2**20))
    scores: tuple[str, dict[str, float]] | None = None
    """The split and values of the run's own latest evaluation (:func:`pixforge.evaluation.saved_scores`)."""

    @property
    def backend(self) -> str:
        return "torch"

    @property
    def device(self) -> torch.device:
        return self.translator.device

    def prepare(
        self, source: Image.Image, instance: Image.Image | None, size: Size = "native"
    ) -> dict[str, Tensor]:
        """The model batch of one request at ``size`` (:func:`pixforge.api.model_size`), on the CPU (pinned for a
        CUDA model, so the worker's copy is async)."""
        batch = self.translator.batch_for(source, instance, size, device="cpu")
        if self.device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def batch_key(self, payload: dict[str, Tensor], options: dict[str, Any]) -> Hashable:
        """Requests of one key stack into one forward pass: same input shapes and options."""
        shapes = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in sorted(payload.items()))
        return (self.name, shapes, freeze(options))

    def pixels(self, payload: dict[str, Tensor]) -> int:
        """The pixels one request adds to a forward pass (the per-batch memory budget counts these)."""
        first = next(iter(payload.values()))
        return int(first.shape[-2] * first.shape[-1])

    def run(self, payloads: list[dict[str, Tensor]], options: dict[str, Any]) -> list[dict[str, Tensor]]:
        """One forward pass for the payloads of one key: one copy to the device, results back on the CPU."""
        device = self.device
        stacked = {k: torch.cat([p[k] for p in payloads]).to(device, non_blocking=True) for k in payloads[0]}
        maps = self.translator.translate_batch(stacked, **options)
        maps = {k: v.float().to("cpu") for k, v in maps.items()}
        return [{k: v[i : i + 1] for k, v in maps.items()} for i in range(len(payloads))]

    def finish(
        self, result: dict[str, Tensor], wanted: tuple[str, ...], size: tuple[int, int]
    ) -> dict[str, Image.Image]:
        """The ``wanted`` maps of a result as images at the input's ``size`` (W, H)."""
        return to_images({k: result[k] for k in wanted}, size)

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

    def size_multiple(self) -> int:
        return int(self.translator.method.size_multiple)

    def takes_instances(self) -> bool:
        return bool(getattr(self.translator.method, "use_boundary", False))

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
            "colorization": t.config.data.format == "colorization",
            "size": [data.crop_size, data.crop_size] if data.preprocess == "resize_and_crop" else None,
            "size_multiple": self.size_multiple(),
            "backend": self.backend,
            "label_nc": label_nc,
            "classes": self.classes() if label_nc else [],
            "palette": [],
            "instances": self.takes_instances(),
            "styles": self.has_styles(),
            "clusters": {str(k): v for k, v in self.clusters().items()},
            "directions": self.directions(),
            "explain": self.explain_kinds(),
            "options": self.options(),
            "test_mode": getattr(t.config.model, "test_mode", "eval"),
            "scores_split": self.scores[0] if self.scores else None,
            "scores": self.scores[1] if self.scores else {},
            "batching": {
                "max_batch": self.batching.max_batch,
                "max_wait_ms": self.batching.max_wait_ms,
                "max_queue": self.batching.max_queue,
            },
        }
        if label_nc:
            info["palette"] = self.palette().tolist()
        return info


#: one request to an ONNX model: the image, its instance map, and the size it runs at
OnnxPayload = tuple[Image.Image, Image.Image | None, Size]


class OnnxServedModel(ServedModel):
    """An exported ``.onnx`` file served through onnxruntime on the CPU (:class:`pixforge.export.OnnxTranslator`).

    The graph translates one direction with the options it was exported with; ``cluster`` and ``style_seed`` are
    its options (pix2pixHD with styles). Requests of one input size and options share a worker turn, one session run each.
    """

    translator: OnnxTranslator  # type: ignore[assignment]

    @property
    def backend(self) -> str:
        return "onnxruntime"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def prepare(
        self, source: Image.Image, instance: Image.Image | None, size: Size = "native"
    ) -> OnnxPayload:  # type: ignore[override]
        return source, instance, size

    def batch_key(self, payload: OnnxPayload, options: dict[str, Any]) -> Hashable:  # type: ignore[override]
        return (self.name, payload[0].size, payload[2], freeze(options))

    def pixels(self, payload: OnnxPayload) -> int:  # type: ignore[override]
        return payload[0].size[0] * payload[0].size[1]

    def run(  # type: ignore[override]
        self, payloads: list[OnnxPayload], options: dict[str, Any]
    ) -> list[dict[str, Image.Image]]:
        return [
            self.translator.translate(image, inst, size=size, **options) for image, inst, size in payloads
        ]

    def finish(  # type: ignore[override]
        self, result: dict[str, Image.Image], wanted: tuple[str, ...], size: tuple[int, int]
    ) -> dict[str, Image.Image]:
        return {k: result[k] for k in wanted}

    def directions(self) -> list[str]:
        return []

    def explain_kinds(self) -> list[str]:
        return []

    def clusters(self) -> dict[int, int]:
        return {}

    def has_styles(self) -> bool:
        return "cluster" in self.translator.names

    def options(self) -> list[str]:
        return ["cluster", "style_seed"] if self.has_styles() else []

    def palette(self) -> np.ndarray:
        return np.asarray(self.translator.spec["inputs"]["label"]["palette"], dtype=np.int64)

    def size_multiple(self) -> int:
        return int(self.translator.spec.get("size_multiple") or 1)

    def takes_instances(self) -> bool:
        return "instance" in self.translator.names


def load_model(spec: ModelSpec, device: str) -> ServedModel:
    """A run loaded with torch on ``device``, or an exported ``.onnx`` file with onnxruntime (CPU)."""
    path = Path(spec.run)
    if path.suffix == ".onnx":
        return OnnxServedModel(spec.name or run_name(path), OnnxTranslator(path))
    translator = load(path, device=device)
    per_sample_norms(translator.method)
    scores = saved_scores(path) if path.is_dir() else None
    return ServedModel(spec.name or run_name(path), translator, scores=scores)


class ModelRegistry:
    """The served models by name, in the order the runs were given."""

    def __init__(self, models: list[ServedModel]) -> None:
        self._models = {m.name: m for m in models}

    @classmethod
    def load(cls, runs: list[str | Path | ModelSpec], device: str = "auto") -> ModelRegistry:
        """Load every run once; names are the run directories' names (or the names given), made unique with
        -2, -3, ..."""
        if not runs:
            raise PixforgeError("serve: name at least one run to serve")
        models: list[ServedModel] = []
        taken: set[str] = set()
        for run in runs:
            model = load_model(run if isinstance(run, ModelSpec) else ModelSpec(run), device)
            base, k = model.name, 1
            while model.name in taken:
                k += 1
                model.name = f"{base}-{k}"
            taken.add(model.name)
            models.append(model)
        return cls(models)

    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str) -> ServedModel:
        """The model called ``name``; ``KeyError`` when no such model is served."""
        return self._models[name]

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())
