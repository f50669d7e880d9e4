"""TranslationDataset items for every format, direction, determinism, the resumable sampler, broken files."""

from __future__ import annotations

import logging
import shutil
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixforge.config import DataConfig
from pixforge.data.dataset import EpochSampler, TranslationDataset, data_channels, one_hot
from pixforge.data.transforms import to_tensor
from pixforge.errors import PixforgeError

TINY = {"load_size": 36, "crop_size": 32}


def check_image(t: torch.Tensor, channels: int = 3, size: int = 32) -> None:
    assert t.shape == (channels, size, size) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1 and t.std() > 0


def make_paired(root: Path, count: int = 4, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        for side in "AB":
            (root / "train" / side).mkdir(parents=True, exist_ok=True)
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "train" / side / f"{i:02d}.png")
    return root


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture()
def aligned_copy(synth_root, tmp_path) -> Path:
    root = tmp_path / "aligned"
    shutil.copytree(synth_root / "aligned", root)
    return root


def test_aligned_items(synth_root):
    ds = TranslationDataset(synth_root / "aligned", "train", DataConfig(**TINY), train=True)
    assert len(ds) == 20 and ds.fmt == "aligned"
    item = ds[(3, 11)]
    assert {"A", "B", "index", "flip", "stem"} <= set(item)
    assert item["index"] == 3 and item["stem"] == "00003"
    check_image(item["A"])
    check_image(item["B"])


def test_aligned_halves_are_photo_and_labels(synth_root):
    cfg = DataConfig(preprocess="none", flip=False)
    item = TranslationDataset(synth_root / "aligned", "val", cfg, train=False)[0]
    ab = np.asarray(Image.open(synth_root / "aligned" / "val" / "00020.png").convert("RGB"), dtype=np.float32)
    expected = torch.from_numpy(ab / 127.5 - 1).permute(2, 0, 1)
    torch.testing.assert_close(item["A"], expected[:, :, :32])
    torch.testing.assert_close(item["B"], expected[:, :, 32:])


def test_paired_items(tmp_path):
    ds = TranslationDataset(make_paired(tmp_path), "train", DataConfig(**TINY), train=True)
    assert ds.fmt == "paired" and len(ds) == 4
    item = ds[(2, 0)]
    check_image(item["A"])
    check_image(item["B"])
    assert not torch.equal(item["A"], item["B"])


def test_labeled_items(synth_root):
    root = synth_root / "labeled"
    cfg = DataConfig(**TINY)
    assert data_channels(root, "labeled", cfg) == (13, 3, 13)
    ds = TranslationDataset(root, "train", cfg, train=True)
    assert ds.label_nc == 13
    item = ds[(4, 2)]
    assert item["A"].shape == (13, 32, 32) and item["A"].dtype == torch.float32
    assert set(item["A"].unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(item["A"].sum(0), torch.ones(32, 32))
    assert item["label"].shape == (1, 32, 32) and item["label"].dtype == torch.int64
    assert torch.equal(item["A"].argmax(0), item["label"][0])
    assert item["instance"].shape == (1, 32, 32) and item["instance"].max() > 255
    check_image(item["B"])


def test_label_nc_option_overrides_classes_txt(synth_root):
    ds = TranslationDataset(synth_root / "labeled", "val", DataConfig(**TINY, label_nc=20), train=False)
    assert ds[0]["A"].shape == (20, 32, 32)


def test_labeled_split_folder_needs_the_class_count(synth_root):
    with pytest.raises(PixforgeError, match="label_nc"):
        TranslationDataset(synth_root / "labeled" / "test", "train", DataConfig(**TINY), train=False)


def test_labeled_btoa_is_refused(synth_root):
    with pytest.raises(PixforgeError, match="direction"):
        TranslationDataset(synth_root / "labeled", "train", DataConfig(**TINY, direction="BtoA"), train=True)


def test_one_hot_batched():
    label = torch.tensor([[[[0, 2], [1, 2]]]])
    out = one_hot(label, 3)
    assert out.shape == (1, 3, 2, 2)
    assert torch.equal(out.argmax(1), label[:, 0])


def test_unaligned_items(synth_root):
    root = synth_root / "unaligned"
    ds = TranslationDataset(root, "train", DataConfig(**TINY), train=True)
    assert ds.fmt == "unaligned" and len(ds) == 10
    item = ds[(1, 3)]
    check_image(item["A"])
    check_image(item["B"])
    raw = ds.raw_maps(1)
    assert np.array_equal(
        np.asarray(raw["A"]), np.asarray(Image.open(root / "trainA" / "00002.png").convert("RGB"))
    )
    b_images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((root / "trainB").iterdir())]
    assert any(np.array_equal(np.asarray(raw["B"]), b) for b in b_images)


@pytest.mark.parametrize("sub", ["aligned", "unaligned"])
def test_btoa_swaps(synth_root, sub):
    cfg = {"preprocess": "none", "flip": False}
    ab = TranslationDataset(synth_root / sub, "train", DataConfig(**cfg), train=False)
    ba = TranslationDataset(synth_root / sub, "train", DataConfig(**cfg, direction="BtoA"), train=False)
    for i in (0, 5):
        x, y = ab[(i, 9)], ba[(i, 9)]
        assert torch.equal(x["A"], y["B"]) and torch.equal(x["B"], y["A"])
        assert not torch.equal(x["A"], x["B"])


def test_same_key_same_item(synth_root):
    cfg = DataConfig(**TINY)
    ds = TranslationDataset(synth_root / "aligned", "train", cfg, train=True)
    other = TranslationDataset(synth_root / "aligned", "train", cfg, train=True)
    for key in [(0, 0), (7, 123), (19, 10**6)]:
        x, y, z = ds[key], ds[key], other[key]
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], z["B"]) and x["flip"] == z["flip"]


def test_different_keys_give_different_augmentation(synth_root):
    ds = TranslationDataset(synth_root / "aligned", "train", DataConfig(**TINY), train=True)
    items = [ds[(2, key)] for key in range(16)]
    assert {item["flip"] for item in items} == {True, False}
    assert len({item["A"].sum().item() for item in items}) > 4


def test_eval_ignores_the_key(synth_root):
    ds = TranslationDataset(synth_root / "aligned", "test", DataConfig(**TINY), train=False)
    first = ds[(1, 0)]
    for key in (1, 99, 12345):
        item = ds[(1, key)]
        assert torch.equal(item["A"], first["A"]) and not item["flip"]


def test_sampler_epochs_are_shuffled_permutations():
    sampler = EpochSampler(size=7, batch_size=2, seed=3)
    assert len(sampler) == 6
    keys = list(islice(iter(sampler), 30))
    epochs = [[i for i, _ in keys[e * 6 : (e + 1) * 6]] for e in range(5)]
    assert all(len(set(e)) == 6 and set(e) <= set(range(7)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1
    assert len({k for _, k in keys}) == 30
    assert keys == list(islice(iter(EpochSampler(7, 2, seed=3)), 30))
    assert keys != list(islice(iter(EpochSampler(7, 2, seed=4)), 30))


@pytest.mark.parametrize("start", [0, 1, 4, 6, 9, 13])
def test_sampler_start_yields_the_tail(start):
    full = list(islice(iter(EpochSampler(size=5, batch_size=2, seed=11)), 20))
    tail = list(islice(iter(EpochSampler(size=5, batch_size=2, seed=11, start=start)), 20 - start))
    assert tail == full[start:]


def test_sampler_without_shuffle():
    keys = list(islice(iter(EpochSampler(size=3, batch_size=1, seed=0, shuffle=False)), 6))
    assert [i for i, _ in keys] == [0, 1, 2, 0, 1, 2]


def test_truncated_image_is_skipped_with_a_warning(aligned_copy, caplog):
    truncate(aligned_copy / "train" / "00003.png")
    ds = TranslationDataset(aligned_copy, "train", DataConfig(**TINY, max_broken=0.2), train=True)
    assert len(ds) == 20
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        item = ds[(3, 0)]
    assert item["index"] == 4
    assert "00003.png" in caplog.text
    assert ds.broken == {3}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        assert ds[(3, 1)]["index"] == 4
    assert "00003.png" not in caplog.text


def test_unreadable_headers_are_skipped_with_a_warning(aligned_copy, caplog):
    (aligned_copy / "train" / "zz_bad.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="pixforge"):
        ds = TranslationDataset(aligned_copy, "train", DataConfig(**TINY, max_broken=0.1), train=True)
    assert len(ds) == 20
    assert "zz_bad.png" in caplog.text


def test_too_many_unreadable_headers(aligned_copy):
    for i in range(3):
        (aligned_copy / "train" / f"bad{i}.png").write_bytes(b"not an image")
    with pytest.raises(PixforgeError, match="3 of 23") as exc:
        TranslationDataset(aligned_copy, "train", DataConfig(**TINY), train=True)
    assert str(aligned_copy / "train") in str(exc.value) and "max_broken" in str(exc.value)


def test_too_many_truncated_images_while_loading(aligned_copy):
    for name in ("00000.png", "00001.png"):
        truncate(aligned_copy / "train" / name)
    ds = TranslationDataset(aligned_copy, "train", DataConfig(**TINY, max_broken=0.05), train=True)
    with pytest.raises(PixforgeError, match="2 of 20"):
        ds[(0, 0)]


def test_label_id_out_of_range_names_the_file(bad_label):
    root, path = bad_label("train", "00002")
    with pytest.raises(PixforgeError, match="label id 40") as exc:
        ds = TranslationDataset(root, "train", DataConfig(**TINY), train=True)
        ds[(2, 0)]
    assert str(path) in str(exc.value) and "13" in str(exc.value)


# unaligned domains are independent (parity issue 9, items 1-2) -----------------------------------------


def make_unaligned(root: Path, a_sizes: list[tuple[int, int]], b_sizes: list[tuple[int, int]]) -> Path:
    """trainA/ and trainB/ of noise images in 50..255 (so a black, padded pixel can never be image content)."""
    rng = np.random.default_rng(0)
    for side, sizes in (("A", a_sizes), ("B", b_sizes)):
        (root / f"train{side}").mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            arr = rng.integers(50, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / f"train{side}" / f"{side}{k}.png")
    return root


def crop_positions(crop: torch.Tensor, image: np.ndarray) -> list[tuple[int, int]]:
    """Every (x, y) where the [-1, 1] tensor ``crop`` equals a window of the uint8 image."""
    c = crop.add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
    h, w = c.shape[:2]
    return [
        (x, y)
        for y in range(image.shape[0] - h + 1)
        for x in range(image.shape[1] - w + 1)
        if np.array_equal(image[y : y + h, x : x + w], c)
    ]


def test_unaligned_b_is_cropped_from_its_own_image(tmp_path):
    root = make_unaligned(tmp_path / "u", [(64, 64)] * 2, [(36, 36)] * 3)
    ds = TranslationDataset(
        root, "train", DataConfig(preprocess="crop", crop_size=32, flip=False), train=True
    )
    b_images = [np.asarray(Image.open(p)) for p in ds.data.b_files]
    offsets = set()
    for key in range(12):
        item = ds[(key % 2, key)]
        assert item["B"].shape == (3, 32, 32)
        assert item["B"].min() > -1, "no black (padded) pixels in a crop of B"
        positions = crop_positions(item["B"], b_images[item["index_B"]])
        assert positions, "B is a crop of its own image"
        offsets.update(positions)
        x, y, w, h, fw, fh = item["box_B"].tolist()
        assert (w, h, fw, fh) == (32, 32, 36, 36) and (int(x), int(y)) in positions
    assert len(offsets) > 1


def test_unaligned_scale_width_keeps_each_domains_aspect_ratio(tmp_path):
    root = make_unaligned(tmp_path / "u", [(64, 32)], [(36, 48)])
    ds = TranslationDataset(root, "train", DataConfig(preprocess="scale_width", load_size=32), train=True)
    item = ds[(0, 5)]
    assert item["A"].shape == (3, 16, 32)
    assert item["B"].shape == (3, 43, 32)


def test_unaligned_flips_are_drawn_per_domain(tmp_path):
    root = make_unaligned(tmp_path / "u", [(32, 32)], [(32, 32)])
    ds = TranslationDataset(root, "train", DataConfig(preprocess="none"), train=True)
    flips = {(ds[(0, k)]["flip_A"], ds[(0, k)]["flip_B"]) for k in range(24)}
    assert flips == {(False, False), (False, True), (True, False), (True, True)}


def test_an_unaligned_epoch_visits_the_larger_domain(tmp_path):
    root = make_unaligned(tmp_path / "u", [(32, 32)] * 3, [(32, 32)] * 5)
    ds = TranslationDataset(root, "train", DataConfig(preprocess="none", flip=False), train=True)
    assert len(ds) == 5
    assert [ds[(i, 0)]["index_A"] for i in range(5)] == [0, 1, 2, 0, 1]
    assert ds.domain_sizes() == (3, 5)
    flipped = TranslationDataset(root, "train", DataConfig(preprocess="none", direction="BtoA"), train=True)
    assert len(flipped) == 5


# padding: every map of a sample the same way (item 5) -----------------------------------------------------


def test_padding_treats_one_hot_labels_ids_and_instances_alike(synth_root):
    cfg = DataConfig(preprocess="crop", crop_size=29, flip=False)
    ds = TranslationDataset(synth_root / "labeled", "train", cfg, train=True, size_multiple=8)
    mismatched = 0
    for key in range(8):
        item = ds[(key, key)]
        assert item["A"].shape[-2:] == item["label"].shape[-2:] == item["instance"].shape[-2:] == (32, 32)
        assert torch.equal(item["A"].argmax(0), item["label"][0]), "one-hot channels and ids agree"
        for key_ in ("label", "instance"):
            core = item[key_][..., :29, :29]
            expected = torch.nn.functional.pad(core[None].float(), (0, 3, 0, 3), mode="reflect")[0].long()
            assert torch.equal(item[key_], expected), f"{key_} padded like the photo (reflection)"
        band = item["label"][0, 29:, :]
        mismatched += int((band != item["label"][0, 28, :]).sum())
    assert mismatched > 0, "the band differs from replication, so the test can tell the modes apart"


def test_box_says_where_the_tensor_lies_in_the_loaded_image(synth_root):
    ds = TranslationDataset(synth_root / "aligned", "train", DataConfig(**TINY), train=True)
    boxes = set()
    for key in range(8):
        item = ds[(2, key)]
        x, y, w, h, fw, fh = (int(v) for v in item["box_A"].tolist())
        assert (w, h, fw, fh) == (32, 32, 36, 36) and torch.equal(item["box_A"], item["box_B"])
        loaded = ds.raw_maps(2)["A"].resize((36, 36), Image.BICUBIC).crop((x, y, x + 32, y + 32))
        if item["flip_A"]:
            loaded = loaded.transpose(Image.FLIP_LEFT_RIGHT)
        assert torch.equal(item["A"], to_tensor(loaded))
        boxes.add((x, y))
    assert len(boxes) > 1
