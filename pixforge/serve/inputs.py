"""Request validation: uploads become checked PIL images before anything touches a model.

Every check raises :class:`RequestError` with an HTTP status and one sentence: an upload over
``max_bytes`` (413), a file that is not an image (415), a truncated image (422), a decompression bomb
(PIL's ``Image.MAX_IMAGE_PIXELS`` limit, 413), an image over ``max_pixels`` (413), label ids outside the
model's classes (422), an instance map of another size than its label map (422). Decoded uploads go through
:func:`pixforge.data.images.decode` (EXIF orientation applied), as every image the library reads does.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixforge.data.images import ID_MODES, class_ids, decode
from pixforge.errors import PixforgeError

MAX_INSTANCES = 4096
"""Distinct instance ids one request may hold (a Cityscapes frame has a few hundred): per-instance work is
vectorised, but a style table row per id is still memory the client would choose."""


class RequestError(PixforgeError):
    """A request the server refuses: ``status`` (4xx) and a one-sentence message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, field: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode the upload ``field`` fully, after checking its size, type and pixel count from the header."""
    if len(data) > max_bytes:
        raise RequestError(413, f"The {field} upload is {len(data)} bytes, over the limit of {max_bytes}.")
    if not data:
        raise RequestError(422, f"The {field} upload is empty.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise RequestError(
                413, f"The {field} upload is a decompression bomb (over PIL's pixel limit)."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise RequestError(415, f"The {field} upload is not an image PIL can read.") from None
    width, height = img.size
    if width * height > max_pixels:
        raise RequestError(
            413, f"The {field} upload has {width}x{height} pixels, over the limit of {max_pixels}."
        )
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise RequestError(422, f"The {field} upload is truncated or corrupt.") from None
    return decode(img, "")


def label_ids(img: Image.Image, label_nc: int, palette: np.ndarray) -> Image.Image:
    """A label upload as an id image (mode I): ids as they are, or colours decoded with the palette the model
    advertises (nearest colour, in memory O(H x W): :func:`pixforge.data.images.class_ids`)."""
    ids = class_ids(img, palette)
    if ids.size and (ids.min() < 0 or ids.max() >= label_nc):
        bad = int(ids.max()) if ids.max() >= label_nc else int(ids.min())
        raise RequestError(422, f"Label id {bad} is outside the model's classes 0..{label_nc - 1}.")
    return Image.fromarray(ids.astype(np.int32))


def instance_ids(img: Image.Image, label_size: tuple[int, int]) -> Image.Image:
    """An instance upload as an id image (mode I), the size of its label map."""
    if img.mode not in ID_MODES:
        raise RequestError(
            422, f"The instance map must be a single-channel image of integer ids, not mode {img.mode}."
        )
    if img.size != label_size:
        w, h = img.size
        raise RequestError(
            422, f"The instance map is {w}x{h} but the label map is {label_size[0]}x{label_size[1]}."
        )
    ids = np.asarray(img, dtype=np.int64)
    check_instance_count(ids)
    return Image.fromarray(ids.astype(np.int32))


def check_instance_count(ids: np.ndarray) -> None:
    """Refuse (422) an instance map with more than :data:`MAX_INSTANCES` distinct ids."""
    count = np.unique(ids).size
    if count > MAX_INSTANCES:
        raise RequestError(
            422, f"The instance map has {count} distinct ids; a request may have at most {MAX_INSTANCES}."
        )
