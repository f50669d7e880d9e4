"""The paint page's back end: which served models can be painted, their starting scenes, and scene renders.

A painted scene is a class-id map, an instance-id map and a style per instance (pix2pixHD §4.3). Two kinds
of model take one:

- ``scene``: pix2pixHD on label maps. The edit is an :class:`pixforge.editing.Scene` (its class checks,
  instances and per-instance cluster choices) and renders with the maps and options of
  :meth:`~pixforge.editing.Scene.render`, submitted to the server's batcher so that it shares the device's
  inference worker with every other request.
- ``colour``: image-to-image models (pix2pix, DRPAN, GuideGAN) trained on colour-coded label maps such as
  the CMP facades: the ids are drawn in the palette's colours (facade ids 1..12, id 0 black) and the picture
  is translated. A model counts as one when its training inputs are colour-coded: nearly every pixel of a
  few training inputs lies near a palette colour.

A scene travels as JSON (:func:`scene_to_json`): ``width``, ``height``, ``label`` (uint8 ids, base64),
``instance`` (little-endian int32 ids, base64), ``clusters`` ({instance id: cluster}), ``style_seed``, and
the ``model`` it was painted for; the page saves and loads that file, and ``pixforge scene render`` renders it.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixforge.api import Translator
from pixforge.data import formats
from pixforge.data.dataset import TranslationDataset, one_hot
from pixforge.data.palette import FACADE_CLASSES, FACADE_COLORS, colors_to_ids, ids_to_colors
from pixforge.editing import Scene
from pixforge.errors import PixforgeError
from pixforge.methods.pix2pixhd import Pix2PixHD
from pixforge.serve.app import to_images
from pixforge.serve.inputs import MAX_INSTANCES, RequestError, check_instance_count
from pixforge.serve.registry import ModelRegistry, ServedModel

log = logging.getLogger("pixforge")

SAMPLES = 8
"""Dataset label maps offered as starting points."""
COLOUR_SHARE = 0.6
"""Share of input pixels within :data:`COLOUR_DISTANCE` of a palette colour for a colour-coded model (the
real CMP facade labels, JPEG-compressed with ringing at every edge, have 75-92%; photos about 0%)."""
COLOUR_DISTANCE = 64.0
MAX_SIDE = 1024
MAX_SEED = 2**32 - 1


@dataclass
class PaintScene:
    """A scene as the page sends it: maps (H, W) and styles."""

    label: np.ndarray
    instance: np.ndarray
    clusters: dict[int, int] = field(default_factory=dict)
    style_seed: int = 0
    model: str = ""


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()


def scene_to_json(scene: PaintScene) -> dict[str, Any]:
    h, w = scene.label.shape
    return {
        "model": scene.model,
        "width": w,
        "height": h,
        "label": _b64(scene.label, "uint8"),
        "instance": _b64(scene.instance, "<i4"),
        "clusters": {str(k): v for k, v in sorted(scene.clusters.items())},
        "style_seed": scene.style_seed,
    }


def _decode(text: Any, dtype: str, shape: tuple[int, int], name: str) -> np.ndarray:
    try:
        raw = base64.b64decode(str(text), validate=True)
        array = np.frombuffer(raw, dtype=dtype)
    except (ValueError, TypeError):
        raise RequestError(422, f"The scene's {name} map is not base64 {dtype} data.") from None
    if array.size != shape[0] * shape[1]:
        raise RequestError(422, f"The scene's {name} map has {array.size} values, not width x height.")
    return array.reshape(shape).astype(np.int64)


def scene_from_json(data: Any) -> PaintScene:
    """A scene from its JSON form, checked (sizes, types); class ranges are checked by the model."""
    if not isinstance(data, dict):
        raise RequestError(422, "The scene must be a JSON object.")
    try:
        w, h = int(data["width"]), int(data["height"])
        given = dict(data.get("clusters") or {})
        if len(given) > MAX_INSTANCES:
            raise RequestError(422, f"The scene gives {len(given)} clusters; at most {MAX_INSTANCES}.")
        clusters = {int(k): int(v) for k, v in given.items()}
        seed = int(data.get("style_seed") or 0)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise RequestError(
            422, "The scene needs integer width and height, clusters and style_seed."
        ) from None
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise RequestError(422, f"The scene is {w}x{h}; each side must be 1..{MAX_SIDE}.")
    if not 0 <= seed <= MAX_SEED:
        raise RequestError(422, f"The scene's style_seed {seed} is not in 0..{MAX_SEED}.")
    label = _decode(data.get("label"), "uint8", (h, w), "label")
    instance = _decode(data.get("instance"), "<i4", (h, w), "instance")
    check_instance_count(instance)
    return PaintScene(label, instance, clusters, seed, str(data.get("model") or ""))


def read_scene(path: Path) -> PaintScene:
    """A scene file saved by the paint page."""
    try:
        return scene_from_json(json.loads(Path(path).read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PixforgeError(f"{path}: not a scene file ({exc})") from exc
    except RequestError as exc:
        raise PixforgeError(f"{path}: {exc}") from exc


def colour_coded(image: Image.Image, palette: np.ndarray) -> bool:
    """Whether a picture is a colour-coded label map of ``palette`` (see :data:`COLOUR_SHARE`)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    dist = np.sqrt(((rgb[:, :, None, :] - np.asarray(palette, np.float64)[None, None]) ** 2).sum(-1)).min(-1)
    return bool((dist < COLOUR_DISTANCE).mean() >= COLOUR_SHARE)


@dataclass
class Paintable:
    """What the paint page needs to know of one served model."""

    model: ServedModel

    @property
    def translator(self) -> Translator:
        return self.model.translator

    @cached_property
    def dataset(self) -> TranslationDataset | None:
        """A split of the run's dataset (test, else val, else train), when it is still readable."""
        cfg = self.translator.config.data
        for split in ("test", "val", "train"):
            try:
                return TranslationDataset(Path(cfg.root), split, cfg, train=False)
            except (PixforgeError, OSError):
                continue
        return None

    @cached_property
    def kind(self) -> str | None:
        if self.translator.label_nc:
            return "scene" if isinstance(self.translator.method, Pix2PixHD) else None
        return "colour" if self._colour_palette() is not None else None

    def _colour_palette(self) -> np.ndarray | None:
        """The palette of a colour-coded input (the dataset's palette.json, else the facade colours)."""
        ds = self.dataset
        if ds is None or ds.fmt == "labeled" or not len(ds):
            return None
        palette = formats.read_palette(ds.root)
        palette = FACADE_COLORS if palette is None else np.asarray(palette)
        for i in range(min(3, len(ds))):
            rgb = np.asarray(ds.raw_maps(i)["A"].convert("RGB"), dtype=np.float64)
            dist = np.sqrt(((rgb[:, :, None, :] - palette[None, None].astype(np.float64)) ** 2).sum(-1)).min(
                -1
            )
            if (dist < COLOUR_DISTANCE).mean() < COLOUR_SHARE:
                return None
        return palette

    @cached_property
    def palette(self) -> np.ndarray | None:
        return self._colour_palette() if self.kind == "colour" else None

    def classes(self) -> list[dict[str, Any]]:
        """The paintable classes: id, name, colour."""
        if self.kind == "scene":
            info = self.model.info()
            return [
                {"id": i, "name": n, "color": c}
                for i, (n, c) in enumerate(zip(info["classes"], info["palette"], strict=True))
            ]
        palette = self.palette if self.palette is not None else FACADE_COLORS
        names = (
            FACADE_CLASSES
            if len(palette) == len(FACADE_CLASSES)
            else [f"class {i + 1}" for i in range(len(palette))]
        )
        return [
            {"id": i + 1, "name": names[i], "color": [int(v) for v in palette[i]]}
            for i in range(len(palette))
        ]

    def size(self) -> tuple[int, int]:
        """The canvas size (W, H): the model's crop size, else the first sample's size, else 256."""
        data = self.translator.config.data
        if data.preprocess == "resize_and_crop":
            return data.crop_size, data.crop_size
        if self.dataset is not None and len(self.dataset):
            maps = self.dataset.raw_maps(0)
            return (maps.get("label") or maps["A"]).size
        return 256, 256

    def describe(self) -> dict[str, Any]:
        clusters = self.model.clusters()
        return {
            "name": self.model.name,
            "method": self.model.method_name,
            "paint": self.kind,
            "size": list(self.size()),
            "classes": self.classes(),
            "clusters": {str(k): v for k, v in clusters.items()},
            "samples": self.sample_count(),
            "note": self.note(),
        }

    def note(self) -> str:
        """Why the page offers no dataset samples, or why the model cannot be painted ("" when neither)."""
        if self.dataset is not None:
            return "" if self.kind is not None else "its inputs are not label maps"
        where = f"its data folder {self.translator.config.data.root} is not readable here"
        if self.kind is None and not self.translator.label_nc:
            return f"{where}, so whether it takes colour-coded label maps cannot be told"
        return f"{where}: no dataset samples to start from"

    def sample_count(self) -> int:
        return 0 if self.dataset is None else min(SAMPLES, len(self.dataset))

    def sample(self, i: int) -> PaintScene:
        """Sample ``i`` of the dataset as a scene at the canvas size."""
        if self.dataset is None or not 0 <= i < self.sample_count():
            raise RequestError(404, f"Model {self.model.name} has no sample {i}.")
        maps = self.dataset.raw_maps(i)
        size = self.size()
        if self.kind == "scene":
            label = np.asarray(maps["label"].resize(size, Image.NEAREST), dtype=np.int64)
            inst = maps.get("instance")
            instance = (
                label.copy() if inst is None else np.asarray(inst.resize(size, Image.NEAREST), dtype=np.int64)
            )
        else:
            rgb = np.asarray(maps["A"].convert("RGB").resize(size, Image.NEAREST))
            label = colors_to_ids(rgb, self.palette).astype(np.int64)
            instance = label.copy()
        return PaintScene(label, instance, model=self.model.name)

    def check(self, scene: PaintScene) -> None:
        if self.kind is None:
            raise RequestError(422, f"Model {self.model.name} does not take painted label maps.")
        low = 0 if self.kind == "scene" else 1
        high = self.translator.label_nc - 1 if self.kind == "scene" else len(self.palette)
        if scene.label.min() < low or scene.label.max() > high:
            raise RequestError(422, f"Label ids must be in {low}..{high} for model {self.model.name}.")

    def batch(self, scene: PaintScene) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The model batch and translation options of a scene (see the module docstring)."""
        self.check(scene)
        if self.kind == "colour":
            picture = Image.fromarray(ids_to_colors(scene.label, self.palette))
            return self.translator.batch_for(picture), {}
        size = self.size()
        label = torch.from_numpy(scene.label)[None, None]
        instance = torch.from_numpy(scene.instance)[None, None]
        if tuple(label.shape[-2:]) != (size[1], size[0]):
            raise RequestError(
                422,
                f"The scene is {scene.label.shape[1]}x{scene.label.shape[0]}; the model paints {size[0]}x{size[1]}.",
            )
        edit = Scene(self.translator, label, instance)
        known = edit.instances()
        for instance_id, cluster in scene.clusters.items():
            if instance_id not in known:
                continue
            count = self.model.clusters().get(known[instance_id], 0)
            if not 0 <= cluster < max(count, 1):
                raise RequestError(
                    422,
                    f"Instance {instance_id}: its class has {count} style clusters, not cluster {cluster}.",
                )
            edit.set_style(instance_id, cluster=cluster)
        maps = {
            "A": one_hot(edit.label, edit.method.n_classes),
            "label": edit.label,
            "instance": edit.instance,
        }
        if not self.model.has_styles():
            return maps, {}
        options = {
            "style_seed": scene.style_seed,
            "clusters": dict(edit.clusters),
            "features": dict(edit.features),
        }
        return maps, options

    def render(self, scene: PaintScene) -> Image.Image:
        """Render a scene in this thread (the CLI's way; the server submits :meth:`batch` to its batcher)."""
        batch, options = self.batch(scene)
        translator = self.translator
        maps = translator.translate_batch({k: v.to(translator.device) for k, v in batch.items()}, **options)
        size = (scene.label.shape[1], scene.label.shape[0])
        return to_images({"output": maps["output"].float().cpu()}, size)["output"]


def render_file(scene_file: Path, run: Path, out: Path, device: str = "auto") -> None:
    """``pixforge scene render``: a saved scene rendered with RUN, loaded as the server loads it."""
    scene = read_scene(scene_file)
    model = next(iter(ModelRegistry.load([run], device)))
    if scene.model and scene.model != model.name:
        log.warning("%s was painted for model %s; rendering it with %s", scene_file, scene.model, model.name)
    try:
        image = Paintable(model).render(scene)
    except RequestError as exc:
        raise PixforgeError(f"{scene_file}: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
