"""The Python surface: ``pixforge.load(path)`` returns a :class:`Translator`; ``pixforge.train(...)`` mirrors the CLI.

>>> import pixforge
>>> result = pixforge.train("pix2pix", data="data/aligned", out="runs/x", preset="tiny")  # doctest: +SKIP
>>> translator = pixforge.load("runs/x")                                                  # doctest: +SKIP
>>> photo = translator(Image.open("labels.png"))                                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixforge import checkpoint, distributed
from pixforge.config import Config, DataConfig, apply_overrides, from_dict, load_preset, read_yaml, validate
from pixforge.data import color, formats
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
    """The resolved config :func:`train` would run with (arguments as there); bad options fail here.

    ``data.root`` is saved absolute, so that the run reads its data (the studio's samples, the paint page's
    colour-coding check) from whatever folder it is used in.
    """
    all_flags = {"data.root": str(Path(data).expanduser().resolve()), **size_flags(size), **flags}
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


#: ``size`` modes of :meth:`Translator.translate` besides a number (the short side in pixels)
SIZE_MODES = ("native", "crop")
#: the default ``size``: see :func:`model_size`
DEFAULT_SIZE = "native"
#: the default overlap of tiles, in pixels at the model's size
DEFAULT_OVERLAP = 64

Size = str | int


def size_choice(value: Size | None, option: str = "--size") -> Size:
    """A ``size`` choice: ``native``, ``crop`` or a positive number of pixels (``None``: the default)."""
    if value is None:
        return DEFAULT_SIZE
    if isinstance(value, str) and value in SIZE_MODES:
        return value
    try:
        pixels = int(value)
    except (TypeError, ValueError):
        pixels = 0
    if pixels < 1 or (isinstance(value, float) and not value.is_integer()):
        raise PixforgeError(f"{option} {value}: choose native, crop or a positive number of pixels")
    return pixels


def model_size(size: tuple[int, int], data: DataConfig, mode: Size = DEFAULT_SIZE) -> tuple[int, int]:
    """The (W, H) an input of ``size`` runs at: its own (``native``), the training crop (``crop``), or
    scaled so that its short side is ``mode`` pixels.

    ``native`` is the default. The generators are fully convolutional and every method's training
    crops are windows of images at their loaded scale (pix2pix §6.2: 286 px loads, 256 px crops), so a
    photo at its own size keeps the scale of what the model saw; squashing it to the crop (``crop``,
    pixforge's earlier behaviour, akin to the reference code's test-time default ``--preprocess
    resize_and_crop``) distorts the aspect ratio and throws away resolution. The reference code's users are told to test at full resolution
    for this reason (junyanz/pytorch-CycleGAN-and-pix2pix #452: ``--preprocess none``). ``crop`` is
    unchanged from before: the crop size for models trained with ``resize_and_crop``, else the input's size.
    """
    if mode == "native":
        return size
    if mode == "crop":
        return (data.crop_size, data.crop_size) if data.preprocess == "resize_and_crop" else size
    short = min(size)
    return max(1, round(size[0] * int(mode) / short)), max(1, round(size[1] * int(mode) / short))


def resize_ids(ids: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An id map (labels, instances) at ``size`` (W, H), nearest neighbour, as 32-bit integers."""
    img = Image.fromarray(np.asarray(ids, dtype=np.int64).astype(np.int32))
    return img if img.size == size else img.resize(size, Image.NEAREST)


def resize_inputs(
    image: Image.Image, instance: Image.Image | None, size: tuple[int, int], ids: np.ndarray | None = None
) -> tuple[Image.Image, Image.Image | None]:
    """An input and its instance map at ``size`` (W, H): the class ``ids`` of a label map when given
    (nearest neighbour), else the photo (bicubic)."""
    inst = None if instance is None else resize_ids(upright(instance), size)
    if ids is not None:
        return resize_ids(Image.fromarray(ids.astype(np.int32)), size), inst
    return decode(image, "RGB").resize(size, Image.BICUBIC), inst


@dataclass
class Translator:
    """A trained model that maps PIL images to PIL images at the input's size.

    A colorization model (``format=colorization``) takes any photo, reduced to its lightness L, predicts ab
    at the model's size, and returns the photo whose L is the input's own at the input's size: ab alone is
    upsampled, and brought into the sRGB gamut without changing L (:func:`pixforge.data.color.fit_chroma`).
    """

    method: Method
    config: Config
    step: int
    device: torch.device

    @property
    def label_nc(self) -> int:
        return self.method.info.label_nc

    @property
    def colorization(self) -> bool:
        """Whether the model predicts ab from L (trained with ``format=colorization``)."""
        return self.config.data.format == "colorization"

    def prepare(
        self, image: Image.Image, mode: Size | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """An input image as the (1, C, H, W) tensor the model takes, at the size :func:`model_size` gives, on
        ``device`` (default: the model's)."""
        image = upright(image)
        size = self._model_size(image.size, mode)
        if self.label_nc:
            ids = label_map_ids(image, self.label_nc, self.palette())
            img = Image.fromarray(ids.astype(np.int32)).resize(size, Image.NEAREST)
            x = one_hot(torch.from_numpy(np.asarray(img, dtype=np.int64))[None, None], self.label_nc)
        elif self.colorization:
            x = color.lightness(to_tensor(decode(image, "RGB").resize(size, Image.BICUBIC))).unsqueeze(0)
        elif self.method.info.input_nc == 1:
            x = to_tensor(self._grey(image).resize(size, Image.BICUBIC)).unsqueeze(0)
        else:
            x = to_tensor(decode(image, "RGB").resize(size, Image.BICUBIC)).unsqueeze(0)
        return x.to(device or self.device)

    def palette(self) -> np.ndarray:
        """The colours of the class ids (label_nc, 3): the dataset's palette.json, else the default colours."""
        return dataset_palette(self.config.data.root, self.label_nc)

    @staticmethod
    def _grey(image: Image.Image) -> Image.Image:
        """A grey image for a 1-channel model that is not a colorization model: a colour one is refused."""
        rgb = np.asarray(decode(image, "RGB"), dtype=np.int16)
        if int((rgb.max(-1) - rgb.min(-1)).max()) > formats.GRAY_SPREAD:
            raise PixforgeError(
                "this model takes 1-channel (grayscale) images and was not trained to reduce colour; "
                "send a grayscale image"
            )
        return decode(image, "L")

    def lightness(self, image: Image.Image, device: torch.device | str | None = None) -> torch.Tensor:
        """The scaled L (1, 1, H, W) of an input at its own size, kept in a colorization model's output, on
        ``device`` (default: the model's)."""
        return color.lightness(to_tensor(decode(image, "RGB"))).unsqueeze(0).to(device or self.device)

    def _model_size(self, size: tuple[int, int], mode: Size | None = None) -> tuple[int, int]:
        """The (W, H) an input of ``size`` runs at (:func:`model_size`)."""
        return model_size(size, self.config.data, size_choice(mode))

    def prepare_instance(
        self,
        instance: Image.Image,
        size: tuple[int, int],
        mode: Size | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """An instance-id map (1, 1, H, W) at the model's size for an input of ``size`` (nearest neighbour), on
        ``device``."""
        img = resize_ids(upright(instance), self._model_size(size, mode))
        return torch.from_numpy(np.asarray(img, dtype=np.int64))[None, None].to(device or self.device)

    def batch_for(
        self,
        image: Image.Image,
        instance: Image.Image | None = None,
        size: Size | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, torch.Tensor]:
        """The model batch for one input: ``A``, and for labeled models ``label`` (and ``instance``), on
        ``device`` (default: the model's; the server prepares on the CPU and copies once in its worker)."""
        image = upright(image)
        batch = {"A": self.prepare(image, size, device)}
        if self.colorization:
            batch["lightness"] = self.lightness(image, device)
        if self.label_nc:
            batch["label"] = batch["A"].argmax(1, keepdim=True)
        if instance is not None:
            batch["instance"] = self.prepare_instance(instance, image.size, size, device)
        return batch

    def translate_batch(
        self, batch: dict[str, torch.Tensor], explain: bool = True, **options: Any
    ) -> dict[str, torch.Tensor]:
        """Translate a prepared batch, padding sides to the generator's multiple and cropping back.

        Returns ``output`` and (with ``explain``) the method's explanation maps (region, attention, ...), all
        cropped. With a
        ``lightness`` (colorization) the output is the photo of that L and the predicted ab, at L's size.
        """
        batch = dict(batch)
        light = batch.pop("lightness", None)
        h, w = batch["A"].shape[-2:]
        m = self.method.size_multiple
        padded = {k: pad_to_multiple(v, m) for k, v in batch.items()}
        with self.method.inference():
            out = self.method.generate(padded, **options)
            maps = {"output": out, **(self.method.explain(padded, out) if explain else {})}
        maps = {k: v[..., :h, :w] for k, v in maps.items()}
        if light is not None:
            maps["output"] = join_lightness(light, maps["output"])
        return maps

    def translate_maps(
        self,
        image: Image.Image,
        instance: Image.Image | None = None,
        *,
        size: Size | None = None,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        **options: Any,
    ) -> dict[str, torch.Tensor]:
        """``output`` and the explanation maps (1, C, h, w) at the size the model ran at (:func:`model_size`);
        with ``tile``, in overlapping tiles of that many pixels, blended (:func:`translate_tiled`): the output
        only, since the explanation maps (DRPAN's most fake region, GuideGAN's attention) describe a whole
        image, not a tile."""
        image = upright(image)
        if tile is None:
            return self.translate_batch(self.batch_for(image, instance, size), **options)
        ids = label_map_ids(image, self.label_nc, self.palette()) if self.label_nc else None
        resized, inst = resize_inputs(image, instance, self._model_size(image.size, size), ids)

        def run_tile(part: Image.Image, part_instance: Image.Image | None) -> dict[str, torch.Tensor]:
            return self.translate_batch(
                self.batch_for(part, part_instance, "native"), explain=False, **options
            )

        return translate_tiled(run_tile, resized, inst, tile, overlap, self.method.size_multiple)

    def translate(
        self,
        image: Image.Image,
        instance: Image.Image | None = None,
        *,
        size: Size | None = None,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        **options: Any,
    ) -> dict[str, Image.Image]:
        """Translate one image into ``output`` and explanation maps, each at the input's size (upright;
        ``size``, ``tile``, ``overlap``: see :meth:`translate_maps`)."""
        image = upright(image)
        maps = self.translate_maps(image, instance, size=size, tile=tile, overlap=overlap, **options)
        return {name: to_image(at_size(name, t, image.size)[0]) for name, t in maps.items()}

    def __call__(
        self, image: Image.Image, instance: Image.Image | None = None, **options: Any
    ) -> Image.Image:
        """Translate one PIL image; the result has the input's size."""
        return self.translate(image, instance, **options)["output"]


def at_size(name: str, t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A map (1, C, h, w) at the input's ``size`` (W, H): bicubic for the output, nearest for the others."""
    if tuple(t.shape[-2:]) == (size[1], size[0]):
        return t
    return F.interpolate(
        t.float(), size=(size[1], size[0]), mode="bicubic" if name == "output" else "nearest"
    )


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Origins of tiles of ``tile`` pixels along a side of ``length``: ``tile - overlap`` apart, the last
    flush with the end (so it may overlap its neighbour by more); one tile when it covers the side."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def blend_window(length: int, overlap: int, lead: bool, trail: bool) -> torch.Tensor:
    """The 1-D weights of a tile of ``length`` pixels: 1 inside, and over the ``overlap`` pixels of a side
    that meets another tile (``lead``: the start, ``trail``: the end) a guard of ``overlap // 4`` pixels
    of 0 at the edge, then a raised-cosine ramp to 1, then ``overlap // 4`` pixels of 1.

    A tile's trailing window is its neighbour's leading one mirrored, so two tiles ``overlap`` apart sum
    to 1 everywhere and the blend is smooth (no seam). The guard keeps each tile's outermost pixels, which
    saw the least context, out of the result: for a generator whose outputs depend on inputs at most
    ``overlap // 4`` pixels away (and that normalises with fixed statistics, i.e. batch norm in eval mode),
    the tiled result equals the whole one away from the image's borders. A generator with instance norm
    normalises each tile by its own statistics, which the blend smooths but cannot undo.
    """
    weights = torch.ones(length)
    guard = overlap // 4
    steps = overlap - 2 * guard
    cosine = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(steps) + 0.5) / steps)
    ramp = torch.cat([torch.zeros(guard), cosine, torch.ones(guard)])
    if lead and overlap:
        weights[:overlap] *= ramp
    if trail and overlap:
        weights[length - overlap :] *= ramp.flip(0)
    return weights


#: translates one tile (an image, and its instance map) into maps (1, C, h, w) at the tile's size
TileFn = Callable[[Image.Image, Image.Image | None], dict[str, torch.Tensor]]


def translate_tiled(
    run_tile: TileFn,
    image: Image.Image,
    instance: Image.Image | None,
    tile: int,
    overlap: int = DEFAULT_OVERLAP,
    multiple: int = 1,
) -> dict[str, torch.Tensor]:
    """Translate ``image`` (at the size the model runs at; label ids for labeled models, with ``instance``
    beside them) in overlapping ``tile`` x ``tile`` tiles, each by ``run_tile``, blended by
    :func:`blend_window`.

    Each tile is prepared from the image on its own (one-hot labels, instance boundaries), so the memory
    the network needs is that of one tile; the blended maps are accumulated on the CPU at the image's size. ``multiple`` is the generator's
    size multiple, which ``tile`` must be a multiple of. Returns maps (1, C, H, W).
    """
    if overlap < 0 or tile <= 2 * overlap:
        raise PixforgeError(f"--tile {tile}: must be more than twice --overlap {overlap}")
    if tile % multiple:
        raise PixforgeError(f"--tile {tile}: must be a multiple of {multiple} for this generator")
    width, height = image.size
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    sums: dict[str, torch.Tensor] = {}
    total = torch.zeros(1, 1, height, width)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            box = (x, y, min(x + tile, width), min(y + tile, height))
            maps = run_tile(image.crop(box), None if instance is None else instance.crop(box))
            wy = blend_window(box[3] - y, overlap, i > 0, i < len(ys) - 1)
            wx = blend_window(box[2] - x, overlap, j > 0, j < len(xs) - 1)
            weight = (wy[:, None] * wx[None, :])[None, None]
            for name, t in maps.items():
                acc = sums.setdefault(name, torch.zeros(1, t.shape[1], height, width))
                acc[..., y : box[3], x : box[2]] += t.float().cpu() * weight
            total[..., y : box[3], x : box[2]] += weight
    return {name: acc.div_(total) for name, acc in sums.items()}


def join_lightness(light: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """A colorization output: ab (N, 2, h, w) upsampled bicubically to L's (N, 1, H, W) size and joined
    with it into a photo in [-1, 1] whose lightness is L."""
    if ab.shape[-2:] != light.shape[-2:]:
        ab = F.interpolate(ab.float(), size=light.shape[-2:], mode="bicubic", align_corners=False)
    return color.l_ab_to_photo(light.float(), ab.float())


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
    path: Path | None = None
    """The input's file, when it came from one (named in errors)."""


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


def viewable(image: Image.Image, label_nc: int, colorization: bool = False) -> Image.Image:
    """An input as a viewable picture (id label maps coloured by class; pictures and colour-coded maps as they
    are; a colorization model's input as the grey photo of its lightness, what the model sees)."""
    if colorization:
        light = color.lightness(to_tensor(decode(image, "RGB")))
        return to_image(color.l_ab_to_photo(light, torch.zeros(2, *light.shape[-2:])))
    if not label_nc or image.mode not in ID_MODES:
        return decode(image, "RGB")
    ids = np.asarray(image, dtype=np.int64).clip(0, label_nc - 1)
    colors = ((label_palette(label_nc).numpy() + 1) * 127.5).round().astype(np.uint8)
    return Image.fromarray(colors[ids])
