"""The colorization format: any colour photos; L in, ab out; geometry first; grayscale photos skipped."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.cli import main
from pixforge.config import DataConfig
from pixforge.data import color, formats, transforms
from pixforge.data.dataset import TranslationDataset, data_channels
from pixforge.errors import PixforgeError

CFG = {"format": "colorization", "preprocess": "resize_and_crop", "load_size": 36, "crop_size": 32}


def test_items_are_lightness_in_and_chrominance_out_after_the_geometry(colour_photos):
    ds = TranslationDataset(colour_photos, "train", DataConfig(**CFG), train=True)
    for seed in range(4):
        item = ds[(1, seed)]
        assert item["A"].shape == (1, 32, 32) and item["B"].shape == (2, 32, 32)
        # the expected item: resize, crop and flip the RGB photo, then convert (not the other way round)
        x, y, w, h, fw, fh = (int(v) for v in item["box_A"])
        photo = ds.raw_maps(1)["A"].resize((fw, fh), Image.BICUBIC).crop((x, y, x + w, y + h))
        if item["flip"]:
            photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
        light, ab = color.photo_to_l_ab(transforms.to_tensor(photo))
        assert torch.equal(item["A"], light) and torch.equal(item["B"], ab)


def test_ab_carries_the_colour_and_spans_the_scaled_range(colour_photos):
    ds = TranslationDataset(colour_photos, "train", DataConfig(**CFG), train=False)
    ab = torch.stack([ds[i]["B"] for i in range(len(ds))])
    assert ab.abs().max() <= 1
    assert ab.abs().mean() > 0.01  # the synthetic photos are coloured


def test_channels_are_one_in_two_out():
    assert data_channels(Path("."), "colorization", DataConfig(**CFG)) == (1, 2, 0)


def test_btoa_is_refused():
    with pytest.raises(PixforgeError, match="direction"):
        data_channels(Path("."), "colorization", DataConfig(**CFG, direction="BtoA"))


def test_grayscale_photos_are_skipped_with_a_count(colour_photos, caplog):
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        data = formats.scan_split(colour_photos, "colorization", "train")
    assert not any(r.stem.startswith("zz_grey") for r in data.records)
    assert len(data.records) == len(formats.list_images(colour_photos / "train")) - 2
    assert "skipping 2 grayscale" in caplog.text


def test_a_flat_folder_of_photos_is_the_train_split(colour_photos):
    assert formats.available_splits(colour_photos / "test", "colorization") == ["train"]
    assert len(formats.scan_split(colour_photos / "test", "colorization", "train").records) == 4


def test_jpeg_grey_photos_count_as_grayscale(tmp_path):
    grey = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2)).save(tmp_path / "g.jpg", quality=75)
    colour = np.zeros((64, 64, 3), dtype=np.uint8)
    colour[..., 0] = grey
    Image.fromarray(colour).save(tmp_path / "c.jpg", quality=75)
    assert formats.is_grayscale(tmp_path / "g.jpg")
    assert not formats.is_grayscale(tmp_path / "c.jpg")


@pytest.fixture()
def grey_only(colour_photos, tmp_path) -> Path:
    root = tmp_path / "grey"
    (root / "train").mkdir(parents=True)
    for path in sorted((colour_photos / "train").glob("*.png"))[:3]:
        Image.open(path).convert("L").save(root / "train" / path.name)
    return root


def test_a_folder_without_colour_photos_is_a_one_line_error(grey_only, tmp_path, capsys):
    args = ["train", "pix2pix", "--data", str(grey_only), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--steps", "1", "--set", "format=colorization"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "none of the 3 photos" in lines[0] and str(grey_only / "train") in lines[0]


def test_inspect_reports_the_colour_photos(colour_photos, capsys):
    main(["data", "inspect", str(colour_photos), "--data-format", "colorization"])
    out = capsys.readouterr().out
    assert "colorization format" in out


def test_broken_photo_is_left_to_the_dataset(colour_photos, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(colour_photos, root)
    (root / "train" / "broken.png").write_bytes(b"not an image")
    assert not formats.is_grayscale(root / "train" / "broken.png")
    ds = TranslationDataset(root, "train", DataConfig(**CFG, max_broken=0.5), train=True)
    assert "broken" not in [r.stem for r in ds.data.records]
    assert ds[0]["A"].shape == (1, 32, 32)
