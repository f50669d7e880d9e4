"""Image decoding in one place, for the library, the CLI, the server and the studio (DESIGN.md, "images at
their real size").

:func:`decode` turns a loaded PIL image into the picture a model sees:

- upright: the EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a phone photo taken upright
  is read upright, and the tag is dropped so that decoding twice changes nothing;
- 16-bit images (``I;16*``, or ``I`` holding values above 255) become 8-bit by v / 257, which maps 0..65535
  onto 0..255 exactly at both ends (PIL's own ``convert`` clips them, so a 16-bit photo turns white);
- palette (``P``) images are expanded to their colours; alpha is composited onto white (as a browser shows a
  transparent picture on a white page) instead of dropped, which would show whatever colour hides under it.

Id maps (label and instance maps) are decoded with ``mode=""``: upright, ids kept as they are.
:func:`class_ids` reads class ids from an id image or, through a palette, from a colour-coded one, in memory
proportional to H x W (the colour search runs on the distinct colours, not on every pixel).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pixforge.errors import PixforgeError

#: PIL modes whose pixels are ids (or 16-bit grey levels), not colours
ID_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")
#: EXIF tag 0x0112: orientation 1 is upright, 2..8 a flip and/or rotation
ORIENTATION = 0x0112


class BrokenImageError(PixforgeError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def upright(img: Image.Image) -> Image.Image:
    """``img`` with its EXIF orientation applied (``img`` itself when it has none)."""
    if img.getexif().get(ORIENTATION, 1) in (0, 1):
        return img
    return ImageOps.exif_transpose(img)


def upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened, undecoded ``img`` once upright: orientations 5..8 turn it a quarter.

    Only EXIF read with the header counts (JPEG's, and PNG's written before the pixels, as PIL writes it):
    ``getexif`` would decode a PNG's pixels to look for EXIF after them, too slow for listing a dataset.
    """
    w, h = img.size
    exif = Image.Exif()
    if img.info.get("exif"):
        exif.load(img.info["exif"])
    return (h, w) if exif.get(ORIENTATION, 1) in (5, 6, 7, 8) else (w, h)


def eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit grey image (``I;16*``, or ``I`` with values over 255) as 8-bit ``L`` by v / 257; others as they are."""
    if not img.mode.startswith("I"):
        return img
    values = np.asarray(img, dtype=np.int64)
    if img.mode == "I" and (values.size == 0 or values.max() <= 255):
        return Image.fromarray(values.clip(0, 255).astype(np.uint8))
    return Image.fromarray((values.clip(0, 65535) / 257).round().astype(np.uint8))


def flatten_alpha(img: Image.Image) -> Image.Image:
    """An image with transparency composited onto white, as RGB (or L for grey with alpha)."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La"):
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "RGBa"):
        return img
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")


def decode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """A loaded image upright and in ``mode`` (``""``: the file's own mode, for id maps); see the module doc."""
    img = upright(img)
    if not mode or img.mode == mode:
        return img
    return flatten_alpha(eight_bit(img)).convert(mode)


def open_image(source: str | Path | bytes, mode: str = "RGB") -> Image.Image:
    """Decode a file (or its bytes) fully, so that truncation is caught here, then :func:`decode` it."""
    name = "upload" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            out = decode(img, mode)
            return out.copy() if out is img else out
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise BrokenImageError(f"cannot read image {name}: {exc}") from None


def nearest_colour_ids(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) int64 index of the nearest ``palette`` colour (squared RGB distance) of each (H, W, 3) pixel.

    The distances are computed for the image's distinct colours only, so memory stays O(H x W) whatever the
    number of classes (a JPEG's ringing at edges still decodes to the nearest class).
    """
    pixels = np.asarray(rgb, dtype=np.uint8)
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    colours, inverse = np.unique(packed.reshape(-1), return_inverse=True)
    distinct = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1).astype(np.int64)
    table = np.asarray(palette, dtype=np.int64)
    nearest = ((distinct[:, None, :] - table[None, :, :]) ** 2).sum(-1).argmin(-1)
    return nearest[inverse].reshape(packed.shape)


def class_ids(img: Image.Image, palette: np.ndarray) -> np.ndarray:
    """Class ids (H, W) int64 of a label map: an id image as it is, a colour image through ``palette``
    (nearest colour)."""
    if img.mode in ID_MODES:
        return np.asarray(img, dtype=np.int64)
    return nearest_colour_ids(np.asarray(decode(img, "RGB")), palette)
