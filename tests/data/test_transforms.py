"""Paired transforms: one crop/flip for every map, nearest for labels, output sizes, train vs eval, padding."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.config import DataConfig
from pixforge.data import transforms
from pixforge.data.dataset import TranslationDataset
from pixforge.errors import PixforgeError

W, H = 40, 24
X_STEP, Y_STEP = 6, 10


def coordinate_image(w: int = W, h: int = H) -> np.ndarray:
    """RGB whose red channel encodes x (x * 6) and green encodes y (y * 10)."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * X_STEP, ys * Y_STEP, np.full_like(xs, 128)], axis=-1).astype(np.uint8)


def decode(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) coordinates a transformed coordinate image tensor came from."""
    arr = ((t.numpy() + 1) * 127.5).round()
    return (arr[0] / X_STEP).round().astype(int), (arr[1] / Y_STEP).round().astype(int)


def make_paired(root: Path, a: np.ndarray, b: np.ndarray, count: int = 2) -> Path:
    for i in range(count):
        for side, arr in (("A", a), ("B", b)):
            (root / "train" / side).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / "train" / side / f"{i}.png")
    return root


def test_crop_and_flip_follow_the_coordinates():
    img = Image.fromarray(coordinate_image())
    arr = coordinate_image()
    cfg = DataConfig(preprocess="crop", crop_size=16)
    flips = set()
    for seed in range(20):
        params = transforms.make_params(img.size, cfg, random.Random(seed), train=True)
        x0, y0, cw, ch = params.crop
        assert (cw, ch) == (16, 16) and 0 <= x0 <= W - 16 and 0 <= y0 <= H - 16
        expected = arr[y0 : y0 + 16, x0 : x0 + 16]
        if params.flip:
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(np.asarray(transforms.apply(img, params)), expected)
        flips.add(params.flip)
    assert flips == {True, False}


def test_dataset_applies_the_same_crop_and_flip_to_a_and_b(tmp_path):
    a = coordinate_image()
    root = make_paired(tmp_path, a, 255 - a)
    ds = TranslationDataset(root, "train", DataConfig(preprocess="crop", crop_size=16), train=True)
    flips, origins = set(), set()
    for key in range(24):
        item = ds[(0, key)]
        assert item["A"].shape == (3, 16, 16)
        torch.testing.assert_close(item["A"] + item["B"], torch.zeros_like(item["A"]), atol=1e-5, rtol=0)
        xs, ys = decode(item["A"])
        step = -1 if item["flip"] else 1
        np.testing.assert_array_equal(np.diff(xs, axis=1), step)
        np.testing.assert_array_equal(np.diff(ys, axis=0), 1)
        flips.add(item["flip"])
        origins.add((int(xs.min()), int(ys.min())))
    assert flips == {True, False}
    assert len(origins) > 3


def test_resize_and_crop_keeps_a_and_b_identical(tmp_path):
    a = coordinate_image()
    root = make_paired(tmp_path, a, a)
    ds = TranslationDataset(root, "train", DataConfig(load_size=36, crop_size=32), train=True)
    items = [ds[(1, key)] for key in range(12)]
    for item in items:
        assert item["A"].shape == (3, 32, 32)
        assert torch.equal(item["A"], item["B"])
    assert len({tuple(item["A"][0, 0, :4].tolist()) for item in items}) > 1


def test_labels_are_resized_with_nearest_neighbour():
    ids = np.zeros((8, 8), dtype=np.int32)
    ids[:4, :4], ids[:4, 4:], ids[4:, :4], ids[4:, 4:] = 1, 5, 9, 12
    label = Image.fromarray(ids)
    params = transforms.Params(resize=(13, 11), crop=(2, 1, 9, 9), flip=True)
    out = np.asarray(transforms.apply(label, params, nearest=True))
    assert out.shape == (9, 9)
    assert set(np.unique(out)) == {1, 5, 9, 12}
    smooth = np.asarray(transforms.apply(Image.fromarray(ids.astype(np.uint8) * 20), params))
    assert not set(np.unique(smooth)) <= {20, 100, 180, 240}


def test_dataset_labels_and_instances_keep_their_ids(synth_root):
    cfg = DataConfig(load_size=45, crop_size=40)
    ds = TranslationDataset(synth_root / "labeled", "train", cfg, train=True)
    for i in range(3):
        raw = ds.raw_maps(i)
        item = ds[(i, 5)]
        assert item["label"].shape == (1, 40, 40) and item["instance"].shape == (1, 40, 40)
        assert set(item["label"].unique().tolist()) <= set(np.unique(np.asarray(raw["label"])).tolist())
        assert set(item["instance"].unique().tolist()) <= set(np.unique(np.asarray(raw["instance"])).tolist())


@pytest.mark.parametrize(
    ("preprocess", "train", "size"),
    [
        ("resize_and_crop", True, (32, 32)),
        ("resize_and_crop", False, (32, 32)),
        ("crop", True, (16, 16)),
        ("crop", False, (16, 16)),
        ("scale_width", True, (48, 29)),
        ("scale_width", False, (48, 29)),
        ("none", True, (W, H)),
        ("none", False, (W, H)),
    ],
)
def test_output_sizes(preprocess, train, size):
    cfg = DataConfig(preprocess=preprocess, load_size=36 if preprocess != "scale_width" else 48, crop_size=32)
    if preprocess == "crop":
        cfg.crop_size = 16
    img = Image.fromarray(coordinate_image())
    params = transforms.make_params(img.size, cfg, random.Random(0), train=train)
    assert transforms.apply(img, params).size == size


def test_eval_crop_is_centred():
    params = transforms.make_params(
        (W, H), DataConfig(preprocess="crop", crop_size=16), random.Random(3), train=False
    )
    assert params.crop == ((W - 16) // 2, (H - 16) // 2, 16, 16)


def test_crop_larger_than_the_image_is_an_option_error():
    with pytest.raises(PixforgeError, match="crop_size"):
        transforms.make_params(
            (W, H), DataConfig(preprocess="crop", crop_size=30), random.Random(0), train=True
        )


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "scale_width", "none"])
def test_eval_is_deterministic_and_never_flips(preprocess):
    cfg = DataConfig(preprocess=preprocess, load_size=36, crop_size=16, flip=True)
    params = {transforms.make_params((W, H), cfg, random.Random(seed), train=False) for seed in range(30)}
    assert len(params) == 1
    assert not params.pop().flip


def test_train_is_random_and_flip_can_be_turned_off():
    cfg = DataConfig(load_size=36, crop_size=32, flip=True)
    drawn = [transforms.make_params((W, H), cfg, random.Random(seed), train=True) for seed in range(30)]
    assert {p.flip for p in drawn} == {True, False}
    assert len({p.crop for p in drawn}) > 5
    cfg.flip = False
    assert not any(transforms.make_params((W, H), cfg, random.Random(s), train=True).flip for s in range(30))


def test_pad_to_multiple_non_square():
    t = torch.rand(3, H, W)
    assert transforms.padding_for(H, W, 32) == (8, 24)
    out = transforms.pad_to_multiple(t, 32)
    assert out.shape == (3, 32, 64)
    assert torch.equal(out[:, :H, :W], t)
    assert torch.equal(out[:, :H, W], t[:, :, W - 2])  # reflection at the right edge
    assert torch.equal(out[:, H, :W], t[:, H - 2, :])  # and at the bottom
    batch = transforms.pad_to_multiple(t.expand(2, 3, H, W), 32)
    assert batch.shape == (2, 3, 32, 64)
    assert transforms.pad_to_multiple(torch.rand(3, 32, 64), 32).shape == (3, 32, 64)


def test_pad_small_and_integer_maps():
    small = transforms.pad_to_multiple(torch.rand(1, 4, 4), 32)
    assert small.shape == (1, 32, 32)
    label = torch.randint(0, 13, (1, H, W))
    padded = transforms.pad_to_multiple(label, 32, mode="replicate")
    assert padded.dtype == torch.int64 and padded.shape == (1, 32, 64)
    assert set(padded.unique().tolist()) <= set(label.unique().tolist())


def test_pad_notice_is_logged_once_per_size(caplog):
    notice = transforms.PadNotice(32)
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        notice(H, W)
        notice(H, W)
        notice(32, 64)
    assert len(caplog.records) == 1
    assert "40x24" in caplog.text and "64x32" in caplog.text and "32" in caplog.text


def test_dataset_pads_non_square_images_with_one_message(tmp_path, caplog):
    a = coordinate_image()
    root = make_paired(tmp_path, a, a, count=3)
    ds = TranslationDataset(root, "train", DataConfig(preprocess="none"), train=False, size_multiple=32)
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        items = [ds[i] for i in range(3)]
    assert all(item["A"].shape == item["B"].shape == (3, 32, 64) for item in items)
    assert len([r for r in caplog.records if "padded" in r.getMessage()]) == 1
