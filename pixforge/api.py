"""The Python surface: ``pixforge.load(path)`` returns a :class:`Translator`; ``pixforge.train(...)`` mirrors the CLI.

>>> import pixforge
>>> result = pixforge.train("pix2pix", data="data/aligned", out="runs/x", preset="tiny")  # doctest: +SKIP
>>> translator = pixforge.load("runs/x")                                                  # doctest: +SKIP
>>> photo = translator(Image.open("labels.png"))                                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge import checkpoint, distributed
from pixforge.config import Config, apply_overrides, from_dict, load_preset, read_yaml, validate
from pixforge.data import formats
from pixforge.data.dataset import TranslationDataset, one_hot
from pixforge.data.images import ID_MODES, class_ids, decode, upright
from pixforge.data.palette import dataset_palette
from pixforge.data.transforms import pad_to_multiple, to_image, to_tensor
from pixforge.devices import pick_device
from pixforge.errors import PixforgeError
from pixforge.methods import get_method
from pixforge.methods.base import Method
from pixforge.train import Trainer, TrainResult, build_method
from pixforge.visual import label_palette


def resolve_config(
    method: str,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Resolve a run's config: method defaults (or a saved ``base``) < preset < YAML file < flags < ``--set``."""
    cls = get_method(method)
    cfg = from_dict(base, cls.config_type) if base else Config(method=method, model=cls.config_type())
    if preset:
        apply_overrides(cfg, load_preset(method, preset))
    if config_file:
        apply_overrides(cfg, read_yaml(Path(config_file)))
    apply_overrides(cfg, {k: v for k, v in (flags or {}).items() if v is not None})
    apply_overrides(cfg, overrides or {})
    validate(cfg)
    return cfg


def size_flags(size: int | None) -> dict[str, int]:
    """``--size S``: train at S px, loading at S * 286/256 for the random-crop jitter (pix2pix §6.2)."""
    if size is None:
        return {}
    return {"data.crop_size": size, "data.load_size": round(size * 286 / 256)}


def train(
    method: str,
    data: str | Path,
    out: str | Path,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    size: int | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    stop_after: int | None = None,
    init_from: str | Path | None = None,
    **flags: Any,
) -> TrainResult:
    """Train ``method`` on the dataset at ``data`` into the run directory ``out``.

    ``flags`` are any config keys (``steps=20``, ``batch_size=4``, ``direction="BtoA"``); ``overrides`` the same
    as a mapping (``--set``). ``stop_after`` stops after that many steps of this call, with a checkpoint.
    ``init_from`` starts from the matching weights of another run.

    Under torchrun (``WORLD_SIZE`` > 1 in the environment) the process joins the job first; rank 0 alone
    logs and writes (see :mod:`pixforge.distributed`).
    """
    cfg = train_config(
        method,
        data,
        out,
        preset=preset,
        config=config,
        size=size,
        resume=resume,
        overrides=overrides,
        **flags,
    )
    init = Path(init_from) if init_from else None
    device = pick_device(cfg.train.device)
    with distributed.session(distributed.resolve_backend(cfg.train.backend, device)) as world:
        if not world.main:
            logging.getLogger("pixforge").setLevel(logging.ERROR)
        return Trainer(cfg, Path(out), resume=resume, init_from=init).fit(stop_after=stop_after)


def train_config(
    method: str,
    data: str | Path,
    out: str | Path,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    size: int | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    **flags: Any,
) -> Config:
    """The resolved config :func:`train` would run with (arguments as there); bad options fail here."""
    all_flags = {"data.root": str(data), **size_flags(size), **flags}
    base = saved_config(Path(out)) if resume else None
    if base and base.get("method") != method:
        raise PixforgeError(f"{out} holds a {base.get('method')} run; it cannot be resumed as {method}")
    cfg = resolve_config(
        method, preset=preset, config_file=config, flags=all_flags, overrides=overrides, base=base
    )
    distributed.resolve_backend(cfg.train.backend, pick_device(cfg.train.device))
    return cfg


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The config of a run's latest checkpoint (the base of a resumed run's config), if it has one."""
    latest = checkpoint.latest_checkpoint(run_dir)
    return None if latest is None else checkpoint.read(latest).config


@dataclass
class Translator:
    """A trained model that maps PIL images to PIL images at the input's size."""

    method: Method
    config: Config
    step: int
    device: torch.device

    @property
    def label_nc(self) -> int:
        return self.method.info.label_nc

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """An input image as the (1, C, H, W) tensor the model was trained on, at the model's size."""
        image = upright(image)
        size = self._model_size(image.size)
        if self.label_nc:
            ids = label_map_ids(image, self.label_nc, self.palette())
            img = Image.fromarray(ids.astype(np.int32)).resize(size, Image.NEAREST)
            x = one_hot(torch.from_numpy(np.asarray(img, dtype=np.int64))[None, None], self.label_nc)
        else:
            x = to_tensor(decode(image, "RGB").resize(size, Image.BICUBIC)).unsqueeze(0)
        return x.to(self.device)

    def palette(self) -> np.ndarray:
        """The colours of the class ids (label_nc, 3): the dataset's palette.json, else the default colours."""
        return dataset_palette(self.config.data.root, self.label_nc)

    def _model_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Models trained on square crops run at the crop size; others at the input's own size."""
        data = self.config.data
        if data.preprocess == "resize_and_crop":
            return data.crop_size, data.crop_size
        return size

    def prepare_instance(self, instance: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        """An instance-id map (1, 1, H, W) at the model's input size (nearest neighbour)."""
        ids = np.asarray(upright(instance), dtype=np.int64).astype(np.int32)
        img = Image.fromarray(ids).resize(self._model_size(size), Image.NEAREST)
        return torch.from_numpy(np.asarray(img, dtype=np.int64))[None, None].to(self.device)

    def batch_for(self, image: Image.Image, instance: Image.Image | None = None) -> dict[str, torch.Tensor]:
        """The model batch for one input: ``A``, and for labeled models ``label`` (and ``instance``)."""
        image = upright(image)
        batch = {"A": self.prepare(image)}
        if self.label_nc:
            batch["label"] = batch["A"].argmax(1, keepdim=True)
        if instance is not None:
            batch["instance"] = self.prepare_instance(instance, image.size)
        return batch

    def translate_batch(self, batch: dict[str, torch.Tensor], **options: Any) -> dict[str, torch.Tensor]:
        """Translate a prepared batch, padding sides to the generator's multiple and cropping back.

        Returns ``output`` and the method's explanation maps (region, attention, ...), all cropped.
        """
        h, w = batch["A"].shape[-2:]
        m = self.method.size_multiple
        padded = {k: pad_to_multiple(v, m) for k, v in batch.items()}
        with self.method.inference():
            out = self.method.generate(padded, **options)
            maps = {"output": out, **self.method.explain(padded, out)}
        return {k: v[..., :h, :w] for k, v in maps.items()}

    def translate(
        self, image: Image.Image, instance: Image.Image | None = None, **options: Any
    ) -> dict[str, Image.Image]:
        """Translate one image into ``output`` and explanation maps, each at the input's size (upright)."""
        image = upright(image)
        maps = self.translate_batch(self.batch_for(image, instance), **options)
        size = (image.size[1], image.size[0])
        out = {}
        for name, t in maps.items():
            if tuple(t.shape[-2:]) != size:
                t = F.interpolate(t.float(), size=size, mode="bicubic" if name == "output" else "nearest")
            out[name] = to_image(t[0])
        return out

    def __call__(
        self, image: Image.Image, instance: Image.Image | None = None, **options: Any
    ) -> Image.Image:
        """Translate one PIL image; the result has the input's size."""
        return self.translate(image, instance, **options)["output"]


def load(path: str | Path, device: str = "auto") -> Translator:
    """Load a run directory, checkpoint folder or weights file; no flags needed (the config travels with it)."""
    loaded = checkpoint.read(Path(path))
    cls = get_method(loaded.method)
    cfg = from_dict(loaded.config, cls.config_type)
    dev = pick_device(device)
    method = build_method(cfg, loaded.info)
    method.load_state_dict(loaded.weights)
    method.load_extra_state(loaded.extra)
    return Translator(method.to(dev), cfg, loaded.step, dev)


@dataclass
class Item:
    """One input to translate: its name, the input image, and when known its target and instance map."""

    name: str
    source: Image.Image
    target: Image.Image | None = None
    instance: Image.Image | None = None


def dataset_items(path: Path, translator: Translator, split: str) -> list[Item]:
    """The samples of a dataset's ``split`` as translation inputs, with targets (none for unaligned data)."""
    cfg = translator.config.data
    ds = TranslationDataset(path, split, cfg, train=False, fmt=formats.resolve_format(path, cfg.format))
    items = []
    for i, record in enumerate(ds.data.records):
        maps = ds.raw_maps(i)
        if ds.fmt == "labeled":
            items.append(Item(record.stem, maps["label"], maps.get("B"), maps.get("instance")))
        else:
            items.append(Item(record.stem, maps["A"], None if ds.fmt == "unaligned" else maps["B"]))
    return items


def label_map_ids(image: Image.Image, label_nc: int, palette: np.ndarray) -> np.ndarray:
    """Class ids (H, W) of a label map: an id image, or colours of ``palette``; ids must be below ``label_nc``."""
    ids = class_ids(image, palette)
    if ids.size and (ids.min() < 0 or ids.max() >= label_nc):
        bad = int(ids.max()) if ids.max() >= label_nc else int(ids.min())
        raise PixforgeError(f"label id {bad} is outside 0..{label_nc - 1}")
    return ids


def viewable(image: Image.Image, label_nc: int) -> Image.Image:
    """An input as a viewable picture (id label maps coloured by class; pictures and colour-coded maps as they are)."""
    if not label_nc or image.mode not in ID_MODES:
        return decode(image, "RGB")
    ids = np.asarray(image, dtype=np.int64).clip(0, label_nc - 1)
    colors = ((label_palette(label_nc).numpy() + 1) * 127.5).round().astype(np.uint8)
    return Image.fromarray(colors[ids])
