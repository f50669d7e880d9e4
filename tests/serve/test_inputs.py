"""Uploads decoded as the library decodes files (against a live server): EXIF orientation, 16-bit grey,
colour-coded label maps in the advertised palette; and the label decoding's memory, bounded per pixel."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

import pixforge
from pixforge.client import Client
from pixforge.serve.inputs import label_ids

#: EXIF tag 0x0112 (orientation); 6: a viewer turns the stored rows 90 degrees clockwise
ORIENTATION, TURNED = 0x0112, 6


def phone_photo(picture: Image.Image) -> bytes:
    """``picture`` as a camera stores it: turned a quarter counter-clockwise, EXIF orientation 6 (PNG bytes)."""
    exif = Image.Exif()
    exif[ORIENTATION] = TURNED
    buffer = io.BytesIO()
    picture.transpose(Image.Transpose.ROTATE_90).save(buffer, format="PNG", exif=exif)
    return buffer.getvalue()


def test_an_upload_with_exif_orientation_is_translated_upright(
    server: str, serve_runs: dict[str, Path], photo
):
    picture = photo((24, 40))
    out = Client(server).translate(phone_photo(picture), model="p2p")
    assert out.size == (24, 40)
    assert np.array_equal(
        np.asarray(out), np.asarray(pixforge.load(serve_runs["p2p"], device="cpu")(picture))
    )


def test_a_16_bit_grey_upload_keeps_its_grey_levels(server: str, serve_runs: dict[str, Path]):
    levels = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    eight = Image.fromarray((levels / 257).round().astype(np.uint8))
    out = Client(server).translate(Image.fromarray(levels), model="p2p")
    assert np.array_equal(np.asarray(out), np.asarray(pixforge.load(serve_runs["p2p"], device="cpu")(eight)))


def test_a_label_map_coloured_with_the_advertised_palette_is_accepted(server: str, label_map):
    client = Client(server)
    palette = np.asarray(next(m for m in client.models() if m["name"] == "hd")["palette"], dtype=np.uint8)
    label = label_map()
    coloured = Image.fromarray(palette[np.asarray(label)])
    by_colour = client.translate(label=coloured, model="hd", cluster=1)
    assert np.array_equal(
        np.asarray(by_colour), np.asarray(client.translate(label=label, model="hd", cluster=1))
    )


def test_colour_label_decoding_memory_is_bounded_per_pixel():
    """Peak memory of decoding a 256 x 256 colour label map of 35 classes. The ids alone are 8 bytes a pixel;
    the bound, 64 bytes a pixel, leaves room for a few H x W temporaries and is far below what any per-class
    array needs (3 channels x 8 bytes x 35 classes = 840 bytes a pixel)."""
    side, classes = 256, 35
    palette = np.random.default_rng(0).integers(0, 256, (classes, 3))
    ids = np.random.default_rng(1).integers(0, classes, (side, side))
    coloured = Image.fromarray(palette[ids].astype(np.uint8))
    tracemalloc.start()
    try:
        decoded = label_ids(coloured, classes, palette)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"colour label decoding: peak {peak / side**2:.1f} bytes per pixel")
    assert np.array_equal(np.asarray(decoded), ids)
    assert peak <= 64 * side * side
