"""Turning tensors into pictures: label maps in colour, sample grids."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pixforge.data.color import l_ab_to_photo
from pixforge.data.transforms import to_image


def label_palette(n: int) -> Tensor:
    """A fixed, distinct colour per class id (the facade colours for up to 13 classes), in [-1, 1]."""
    from pixforge.data.palette import default_colors

    return torch.from_numpy(default_colors(n).astype(np.float32) / 127.5 - 1.0)


def to_rgb(t: Tensor) -> Tensor:
    """A batch (N, C, H, W) as 3-channel images in [-1, 1]: one-hot label maps are coloured by class."""
    t = t.detach().float().cpu()
    if t.shape[1] == 3:
        return t
    if t.shape[1] == 1:
        return t.repeat(1, 3, 1, 1)
    ids = t.argmax(1)
    return label_palette(t.shape[1])[ids].permute(0, 3, 1, 2)


def with_lightness(visuals: dict[str, Tensor]) -> dict[str, Tensor]:
    """Colorization visuals as photos: 2-channel ab maps are joined with the 1-channel ``input`` (L)."""
    light = visuals.get("input")
    if light is None or light.shape[1] != 1:
        return visuals
    return {k: l_ab_to_photo(light.float(), v.float()) if v.shape[1] == 2 else v for k, v in visuals.items()}


def grid(visuals: dict[str, Tensor]) -> Image.Image:
    """One row per sample, one column per named visual (input, output, target, ...)."""
    columns = [to_rgb(v) for v in with_lightness(visuals).values()]
    rows = torch.cat([torch.cat([c[i] for c in columns], dim=2) for i in range(columns[0].shape[0])], dim=1)
    return to_image(rows)
