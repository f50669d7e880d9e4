"""Colour palettes for label maps: the 12 CMP facade classes and id <-> colour conversion.

Label ids follow the CMP Facade Database (Tyleček & Šára, GCPR 2013): 1..12 in the order of
:data:`FACADE_CLASSES`; id 0 means unlabeled and is drawn black.

A model's palette and class names (:func:`dataset_palette`, :func:`dataset_classes`) come from its dataset's
``palette.json`` and ``classes.txt`` when they are readable, else from :func:`default_colors` and ``class K``:
the server lists them, ONNX exports carry them, and colour-coded label maps are decoded with them.
"""

from pathlib import Path

import numpy as np

from pixforge.data.formats import read_palette
from pixforge.errors import PixforgeError

FACADE_CLASSES: tuple[str, ...] = (
    "background",
    "facade",
    "window",
    "door",
    "cornice",
    "sill",
    "balcony",
    "blind",
    "deco",
    "molding",
    "pillar",
    "shop",
)

FACADE_LABEL_NC = 13
"""One-hot channels needed for the facade label ids 0..12 (0 = unlabeled)."""

FACADE_COLORS: np.ndarray = np.array(
    [
        (0, 0, 222),
        (0, 48, 255),
        (0, 128, 255),
        (0, 207, 255),
        (32, 255, 224),
        (112, 255, 142),
        (192, 255, 63),
        (255, 240, 0),
        (255, 159, 0),
        (255, 80, 0),
        (255, 0, 0),
        (175, 0, 0),
    ],
    dtype=np.uint8,
)
FACADE_COLORS.setflags(write=False)


def _check_palette(palette: np.ndarray) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) == 0:
        raise ValueError(f"a palette must have shape (K, 3), got {palette.shape}")
    return palette


def ids_to_colors(ids: np.ndarray, palette: np.ndarray = FACADE_COLORS) -> np.ndarray:
    """Colour-code a label map: (H, W) ids 1..K -> (H, W, 3) uint8 palette colours (id 0 -> black)."""
    palette = _check_palette(palette)
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > len(palette)):
        bad = int(ids.max()) if ids.max() > len(palette) else int(ids.min())
        raise PixforgeError(
            f"label id {bad} is outside 0..{len(palette)}: check the label map or the palette"
        )
    lut = np.zeros((len(palette) + 1, 3), dtype=np.uint8)
    lut[1:] = palette
    return lut[ids]


def colors_to_ids(rgb: np.ndarray, palette: np.ndarray = FACADE_COLORS) -> np.ndarray:
    """Decode a colour-coded label map: (..., 3) RGB -> (...) uint8 ids 1..K of the nearest palette colour.

    Nearest in squared RGB distance, so JPEG noise and ringing at edges decode to the right class.
    """
    palette = _check_palette(palette).astype(np.int32)
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f"colors_to_ids expects an RGB array of shape (..., 3), got {rgb.shape}")
    pixels = rgb.astype(np.int32)
    best = np.full(rgb.shape[:-1], np.iinfo(np.int32).max, dtype=np.int32)
    ids = np.zeros(rgb.shape[:-1], dtype=np.uint8)
    for k, colour in enumerate(palette, start=1):
        dist = ((pixels - colour) ** 2).sum(axis=-1)
        closer = dist < best
        best[closer] = dist[closer]
        ids[closer] = k
    return ids


def default_colors(n: int) -> np.ndarray:
    """A fixed, distinct colour per class id (n, 3) uint8: black for id 0, the facade colours for ids 1..12,
    fixed random colours beyond (the colours label maps are drawn in when a dataset has no palette.json)."""
    colors = np.random.default_rng(0).integers(0, 256, size=(max(n, 1), 3)).astype(np.uint8)
    colors[0] = 0
    k = min(n - 1, len(FACADE_COLORS))
    colors[1 : 1 + k] = FACADE_COLORS[:k]
    return colors


def dataset_palette(root: str | Path, label_nc: int) -> np.ndarray:
    """The colours of class ids 0..label_nc-1 (label_nc, 3) int64: the dataset's ``palette.json`` when it is
    readable, else :func:`default_colors` (ids beyond a short palette.json also get the default colours)."""
    colors = default_colors(label_nc).astype(np.int64)
    try:
        given = read_palette(Path(root)) if str(root) else None
    except (OSError, PixforgeError):
        given = None
    if given is not None:
        k = min(len(given), label_nc)
        colors[:k] = given[:k]
    return colors


def dataset_classes(root: str | Path, label_nc: int) -> list[str]:
    """The names of class ids 0..label_nc-1: the dataset's ``classes.txt`` (one per line), else ``class K``."""
    path = Path(root) / "classes.txt"
    try:
        lines = path.read_text().splitlines() if str(root) and path.is_file() else []
    except (OSError, UnicodeDecodeError):
        lines = []
    names = [s.strip() for s in lines if s.strip()]
    return [names[i] if i < len(names) else f"class {i}" for i in range(label_nc)]
