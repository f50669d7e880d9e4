"""The methods, one paper per file, looked up by name."""

from __future__ import annotations

import difflib
import importlib

from pixforge.errors import PixforgeError
from pixforge.methods.base import Method

METHODS = {
    "pix2pix": "pixforge.methods.pix2pix:Pix2Pix",
    "pix2pixhd": "pixforge.methods.pix2pixhd:Pix2PixHD",
    "cyclegan": "pixforge.methods.cyclegan:CycleGAN",
    "guidegan": "pixforge.methods.guidegan:GuideGAN",
    "drpan": "pixforge.methods.drpan:DRPAN",
}


def get_method(name: str) -> type[Method]:
    """The Method class registered as ``name``; an unknown name fails with the closest valid one."""
    if name not in METHODS:
        match = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f" (did you mean {match[0]}?)" if match else ""
        raise PixforgeError(f"unknown method '{name}'{hint}; methods: {', '.join(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
