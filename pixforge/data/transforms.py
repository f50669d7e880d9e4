"""Paired geometric transforms: one set of random parameters for every map of a sample.

The preprocessing modes are those pix2pix users know: ``resize_and_crop`` (resize to ``load_size``, then a
random ``crop_size`` crop; at test time a plain resize to ``crop_size``), ``crop`` (a random crop; centre
crop at test time), ``scale_width`` (width to ``load_size``, aspect kept) and ``none``. Label and instance
maps are resized with nearest neighbour, images bicubically. After preprocessing, a side that the generator
cannot take is padded up to its multiple, every map of a sample the same way (reflection; replication where a
side is too small to reflect), so a label map, its one-hot channels and its instance map agree in the band.

:meth:`Params.box` says where a sample's tensor lies in its loaded image (after the resize, before the crop
and the flip), so that per-sample state kept across visits (GuideGAN's attention cache) can follow the crop.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from pixforge.config import DataConfig
from pixforge.errors import PixforgeError

log = logging.getLogger("pixforge")


@dataclass(frozen=True)
class Params:
    """The random choices for one sample, shared by all its maps."""

    resize: tuple[int, int] | None
    crop: tuple[int, int, int, int] | None
    flip: bool
    #: (width, height) of the loaded image: the source after ``resize``, the frame ``crop`` is taken from
    frame: tuple[int, int] = (0, 0)

    def box(self) -> tuple[float, float, float, float, float, float]:
        """(left, top, width, height, frame width, frame height) in pixels of the loaded image.

        The first four give the crop (the whole frame without one), unflipped; padding is not included.
        """
        fw, fh = self.frame
        x, y, w, h = self.crop if self.crop is not None else (0, 0, fw, fh)
        return float(x), float(y), float(w), float(h), float(fw), float(fh)


def _random_crop(size: tuple[int, int], crop: int, rng: random.Random) -> tuple[int, int, int, int]:
    w, h = size
    if w < crop or h < crop:
        raise PixforgeError(
            f"option crop_size: {crop} is larger than the {w}x{h} image (lower it or use --size)"
        )
    return rng.randint(0, w - crop), rng.randint(0, h - crop), crop, crop


def make_params(size: tuple[int, int], cfg: DataConfig, rng: random.Random, train: bool) -> Params:
    """Draw the transform parameters of one sample of (width, height) ``size``."""
    w, h = size
    resize: tuple[int, int] | None = None
    crop: tuple[int, int, int, int] | None = None
    if cfg.preprocess == "resize_and_crop":
        if train:
            resize = (cfg.load_size, cfg.load_size)
            crop = _random_crop(resize, cfg.crop_size, rng)
        else:
            resize = (cfg.crop_size, cfg.crop_size)
    elif cfg.preprocess == "crop":
        if train:
            crop = _random_crop(size, cfg.crop_size, rng)
        else:
            c = min(cfg.crop_size, w, h)
            crop = ((w - c) // 2, (h - c) // 2, c, c)
    elif cfg.preprocess == "scale_width":
        resize = (cfg.load_size, max(1, round(h * cfg.load_size / w)))
    flip = train and cfg.flip and rng.random() < 0.5
    return Params(resize, crop, flip, resize or (w, h))


def apply(img: Image.Image, params: Params, nearest: bool = False) -> Image.Image:
    """Apply ``params`` to one map; ``nearest`` for label and instance maps."""
    if params.resize is not None and img.size != params.resize:
        img = img.resize(params.resize, Image.NEAREST if nearest else Image.BICUBIC)
    if params.crop is not None:
        x, y, w, h = params.crop
        img = img.crop((x, y, x + w, y + h))
    if params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def to_tensor(img: Image.Image) -> Tensor:
    """An RGB/L image as a float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).div(127.5).sub(1.0)


def to_image(t: Tensor) -> Image.Image:
    """A (3, H, W) or (1, H, W) tensor in [-1, 1] as an 8-bit PIL image (one float copy: large tiled outputs)."""
    arr = t.detach().float().clamp(-1, 1).add_(1).mul_(127.5).round_().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def padding_for(height: int, width: int, multiple: int) -> tuple[int, int]:
    """How many rows and columns bring (height, width) up to multiples of ``multiple``."""
    return (-height) % multiple, (-width) % multiple


def pad_to_multiple(t: Tensor, multiple: int, mode: str = "reflect") -> Tensor:
    """Pad the last two dims at the bottom/right to multiples of ``multiple`` (reflect, or replicate if too small)."""
    ph, pw = padding_for(t.shape[-2], t.shape[-1], multiple)
    if not (ph or pw):
        return t
    if mode == "reflect" and (ph >= t.shape[-2] or pw >= t.shape[-1]):
        mode = "replicate"
    batched = t if t.dim() == 4 else t.unsqueeze(0)
    out = F.pad(batched.float(), (0, pw, 0, ph), mode=mode).to(t.dtype)
    return out if t.dim() == 4 else out.squeeze(0)


class PadNotice:
    """Tell the user once per size that images are padded to the generator's multiple."""

    def __init__(self, multiple: int) -> None:
        self.multiple = multiple
        self.seen: set[tuple[int, int]] = set()

    def __call__(self, height: int, width: int) -> None:
        ph, pw = padding_for(height, width, self.multiple)
        if (ph or pw) and (height, width) not in self.seen:
            self.seen.add((height, width))
            log.warning(
                "images of %dx%d are padded to %dx%d: the generator needs sides that are multiples of %d",
                width,
                height,
                width + pw,
                height + ph,
                self.multiple,
            )
