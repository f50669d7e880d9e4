"""Device choice for training, translation, metrics and serving."""

from __future__ import annotations

import torch

from pixforge.errors import PixforgeError


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cuda`` without a CUDA device is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PixforgeError("option device: cuda requested but no CUDA device is available")
    return torch.device(name)
