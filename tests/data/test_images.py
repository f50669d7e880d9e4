"""One image decoder for the library, CLI and studio: EXIF orientation, 16-bit grey, palettes and alpha."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixforge
from pixforge.cli import main
from pixforge.data import formats

#: EXIF tag 0x0112, the orientation
ORIENTATION = 0x0112
#: EXIF orientation 6: the stored rows are the picture's right side; a viewer turns it 90 degrees clockwise
TURNED = 6


def upright_picture(width: int = 24, height: int = 40) -> Image.Image:
    """A portrait picture whose every pixel differs from its neighbours' (so any turn or flip shows)."""
    return Image.fromarray(np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8))


def phone_photo(picture: Image.Image) -> bytes:
    """``picture`` as a camera stores it: rows turned a quarter counter-clockwise, EXIF orientation 6."""
    exif = Image.Exif()
    exif[ORIENTATION] = TURNED
    buffer = io.BytesIO()
    picture.transpose(Image.Transpose.ROTATE_90).save(buffer, format="PNG", exif=exif)
    return buffer.getvalue()


def grey16(width: int = 20, height: int = 12) -> tuple[bytes, np.ndarray]:
    """A 16-bit grey PNG spanning 0..65535 and the 8-bit levels it stands for (v / 257, exact at 0 and 255)."""
    levels = np.linspace(0, 65535, width * height).round().astype(np.uint16).reshape(height, width)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    return buffer.getvalue(), (levels / 257).round().astype(np.uint8)


def test_a_phone_photo_is_read_upright(tmp_path: Path):
    picture = upright_picture()
    path = tmp_path / "phone.png"
    path.write_bytes(phone_photo(picture))
    assert Image.open(path).size == (40, 24)  # as stored
    read = formats.read_image(path)
    assert read.size == (24, 40) and np.array_equal(np.asarray(read), np.asarray(picture))


def test_a_16_bit_grey_png_keeps_its_grey_levels(tmp_path: Path):
    data, expected = grey16()
    path = tmp_path / "grey16.png"
    path.write_bytes(data)
    read = np.asarray(formats.read_image(path))
    assert np.array_equal(read, np.repeat(expected[:, :, None], 3, axis=2))


def test_alpha_is_composited_on_white_and_palettes_expand(tmp_path: Path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half fully transparent (black-red under it)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    read = np.asarray(formats.read_image(tmp_path / "alpha.png"))
    assert (read[:2] == [200, 0, 0]).all() and (read[2:] == 255).all()
    Image.fromarray(rgba[..., :3]).quantize(4).save(tmp_path / "palette.png")
    assert (np.asarray(formats.read_image(tmp_path / "palette.png")) == [200, 0, 0]).all()


@pytest.fixture(scope="module")
def native_run(train_tiny: Callable[..., dict[str, Path]]) -> Path:
    """A ResNet pix2pix that runs at the input's own size (so a portrait stays a portrait)."""
    spec = {
        "native": (
            "pix2pix",
            "aligned",
            {"netG": "resnet_6blocks", "test_mode": "eval", "preprocess": "none"},
        )
    }
    return train_tiny("images", spec)["native"]


def test_the_library_turns_a_phone_photo_upright(native_run: Path):
    translator = pixforge.load(native_run, device="cpu")
    picture = upright_picture()
    out = translator(Image.open(io.BytesIO(phone_photo(picture))))
    assert out.size == (24, 40)
    assert np.array_equal(np.asarray(out), np.asarray(translator(picture)))


def test_the_library_reads_16_bit_grey(native_run: Path):
    translator = pixforge.load(native_run, device="cpu")
    data, expected = grey16(24, 16)
    out = translator(Image.open(io.BytesIO(data)))
    assert np.array_equal(np.asarray(out), np.asarray(translator(Image.fromarray(expected))))


def test_the_cli_translates_a_phone_photo_upright(native_run: Path, tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "phone.png").write_bytes(phone_photo(upright_picture()))
    main(["translate", str(native_run), str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "phone.png").size == (24, 40)


def test_colour_ids_are_the_nearest_palette_colour():
    from pixforge.data.images import class_ids, nearest_colour_ids

    palette = np.array([[0, 0, 0], [250, 0, 0], [0, 0, 250]])
    rgb = np.array([[[10, 5, 0], [240, 20, 10]], [[5, 0, 200], [255, 0, 0]]], dtype=np.uint8)
    assert nearest_colour_ids(rgb, palette).tolist() == [[0, 1], [2, 1]]
    assert class_ids(Image.fromarray(nearest_colour_ids(rgb, palette).astype(np.uint8)), palette).max() == 2
    assert class_ids(Image.fromarray(rgb), palette).tolist() == [[0, 1], [2, 1]]


def test_a_colour_label_map_of_the_dataset_decodes_to_ids(tmp_path: Path):
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    ids = np.random.default_rng(1).integers(0, 3, (6, 5))
    Image.fromarray(palette[ids].astype(np.uint8)).save(tmp_path / "label.png")
    assert np.array_equal(formats.read_label(tmp_path / "label.png", palette), ids)


def test_a_phone_photo_pairs_with_an_upright_target(tmp_path: Path):
    """Pair sizes are checked as the pictures are read: upright (the header alone would say 40 x 24)."""
    picture = upright_picture()
    for side, data in (("A", phone_photo(picture)), ("B", None)):
        (tmp_path / "train" / side).mkdir(parents=True)
        if data is None:
            picture.save(tmp_path / "train" / side / "x.png")
        else:
            (tmp_path / "train" / side / "x.png").write_bytes(data)
    assert formats.image_size(tmp_path / "train" / "A" / "x.png") == (24, 40)
    assert formats.inspect(tmp_path).problems == []
