"""Format detection and reading: the four layouts, forced formats, bad folders, labels, instances, inspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixforge.cli import main
from pixforge.data import formats
from pixforge.errors import PixforgeError

PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]


def save(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_paired(root: Path, stems: list[str], size: tuple[int, int] = (16, 16), split: str = "train") -> Path:
    """``root/split/A`` and ``B`` with one image per stem in both."""
    w, h = size
    for i, stem in enumerate(stems):
        save(rgb(h, w, i), root / split / "A" / f"{stem}.png")
        save(rgb(h, w, 100 + i), root / split / "B" / f"{stem}.png")
    return root


def truncate(path: Path, dest: Path) -> Path:
    data = path.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


@pytest.mark.parametrize(
    ("sub", "fmt"),
    [("aligned", "aligned"), ("labeled", "labeled"), ("unaligned", "unaligned"), ("derain", "aligned")],
)
def test_detects_the_synthetic_layouts(synth_root, sub, fmt):
    root = synth_root / sub
    assert formats.detect_format(root) == fmt
    assert formats.resolve_format(root, "auto") == fmt
    assert formats.available_splits(root, fmt) == (
        ["train", "test"] if fmt == "unaligned" else ["train", "val", "test"]
    )


def test_detects_paired(tmp_path):
    make_paired(tmp_path, ["a", "b"])
    assert formats.detect_format(tmp_path) == "paired"
    data = formats.scan_split(tmp_path, "paired", "train")
    assert [r.stem for r in data.records] == ["a", "b"]
    assert data.records[0].files == {"A": tmp_path / "train/A/a.png", "B": tmp_path / "train/B/a.png"}


def test_scan_counts_of_synthetic_splits(synth_root):
    aligned = formats.scan_split(synth_root / "aligned", "aligned", "train")
    assert len(aligned.records) == 20 and set(aligned.records[0].files) == {"AB"}
    labeled = formats.scan_split(synth_root / "labeled", "labeled", "val")
    assert len(labeled.records) == 2 and set(labeled.records[0].files) == {"image", "label", "instance"}
    unaligned = formats.scan_split(synth_root / "unaligned", "unaligned", "train")
    assert len(unaligned.records) == 10 and len(unaligned.b_files) == 10
    assert {r.files["A"].parent.name for r in unaligned.records} == {"trainA"}
    assert {p.parent.name for p in unaligned.b_files} == {"trainB"}


@pytest.mark.parametrize(("sub", "fmt"), [("aligned", "aligned"), ("labeled", "labeled")])
def test_split_folder_given_directly_reads_as_train(synth_root, sub, fmt):
    folder = synth_root / sub / "test"
    assert formats.detect_format(folder) == fmt
    assert formats.split_folder(folder, fmt, "train") == folder
    data = formats.scan_split(folder, fmt, "train")
    assert len(data.records) == 2
    with pytest.raises(PixforgeError, match="no 'val' split"):
        formats.scan_split(folder, fmt, "val")


def test_forced_format_overrides_detection(tmp_path):
    make_paired(tmp_path, ["a", "b"])
    for i in range(3):
        save(rgb(8, 16, i), tmp_path / "train" / f"ab{i}.png")
    assert formats.resolve_format(tmp_path, "auto") == "paired"
    assert formats.resolve_format(tmp_path, "aligned") == "aligned"
    data = formats.scan_split(tmp_path, "aligned", "train")
    assert [r.stem for r in data.records] == ["ab0", "ab1", "ab2"]


def test_forced_format_that_does_not_fit(synth_root):
    with pytest.raises(PixforgeError, match="unaligned"):
        formats.scan_split(synth_root / "aligned", "unaligned", "train")
    with pytest.raises(PixforgeError, match="--data-format"):
        formats.resolve_format(synth_root / "aligned", "side_by_side")


@pytest.mark.parametrize("fmt", ["paired", "labeled"])
def test_forced_folder_format_without_its_folders(synth_root, fmt):
    with pytest.raises(PixforgeError, match=str(synth_root / "aligned" / "train")):
        formats.scan_split(synth_root / "aligned", fmt, "train")


def test_missing_folder(tmp_path):
    with pytest.raises(PixforgeError, match="not found") as exc:
        formats.detect_format(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(exc.value)


def test_empty_folder(tmp_path):
    with pytest.raises(PixforgeError, match="empty") as exc:
        formats.resolve_format(tmp_path, "auto")
    assert str(tmp_path) in str(exc.value)
    with pytest.raises(PixforgeError, match="empty"):
        formats.resolve_format(tmp_path, "aligned")


def test_file_instead_of_folder(tmp_path):
    path = save(rgb(4, 4), tmp_path / "x.png")
    with pytest.raises(PixforgeError, match="not a folder"):
        formats.detect_format(path)


def test_folder_matching_no_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "misc").mkdir()
    (tmp_path / "misc" / "readme.md").write_text("hi")
    with pytest.raises(PixforgeError, match="matches no format") as exc:
        formats.detect_format(tmp_path)
    assert str(tmp_path) in str(exc.value) and "\n" not in str(exc.value)


def test_unmatched_pair_is_a_problem(tmp_path):
    make_paired(tmp_path, ["a", "b", "c"])
    save(rgb(16, 16), tmp_path / "train" / "A" / "lonely.png")
    data = formats.scan_split(tmp_path, "paired", "train")
    assert [r.stem for r in data.records] == ["a", "b", "c"]
    assert len(data.problems) == 1
    assert "lonely.png" in data.problems[0] and str(tmp_path / "train" / "B") in data.problems[0]


def test_pair_size_mismatch_names_both_files(tmp_path):
    make_paired(tmp_path, ["a"])
    save(rgb(20, 24), tmp_path / "train" / "B" / "a.png")
    data = formats.scan_split(tmp_path, "paired", "train")
    with pytest.raises(PixforgeError, match="sizes differ") as exc:
        formats.check_record(data, data.records[0])
    message = str(exc.value)
    assert str(tmp_path / "train/A/a.png") in message and str(tmp_path / "train/B/a.png") in message
    assert "16x16" in message and "24x20" in message


def test_check_record_returns_the_a_side_size(synth_root, tmp_path):
    data = formats.scan_split(synth_root / "aligned", "aligned", "train")
    assert formats.check_record(data, data.records[0]) == (32, 32)
    make_paired(tmp_path, ["a"], size=(24, 12))
    paired = formats.scan_split(tmp_path, "paired", "train")
    assert formats.check_record(paired, paired.records[0]) == (24, 12)


def test_aligned_odd_width(tmp_path):
    save(rgb(16, 33), tmp_path / "train" / "odd.png")
    data = formats.scan_split(tmp_path, "aligned", "train")
    with pytest.raises(PixforgeError, match="odd width 33") as exc:
        formats.check_record(data, data.records[0])
    assert "odd.png" in str(exc.value)


def make_colour_labeled(root: Path, noise: int = 0) -> np.ndarray:
    """A labeled dataset whose label is colour-coded with palette.json; returns the true ids."""
    ids = np.zeros((8, 12), dtype=np.int64)
    ids[:, 3:6], ids[:, 6:9], ids[4:, 9:] = 1, 2, 3
    colours = np.asarray(PALETTE, dtype=np.int64)[ids]
    colours = np.clip(colours + np.random.default_rng(0).integers(-noise, noise + 1, colours.shape), 0, 255)
    save(colours.astype(np.uint8), root / "train" / "labels" / "x.png")
    save(rgb(8, 12), root / "train" / "images" / "x.png")
    (root / "palette.json").write_text(json.dumps(PALETTE))
    return ids


@pytest.mark.parametrize("noise", [0, 20])
def test_colour_labels_decode_with_the_palette(tmp_path, noise):
    ids = make_colour_labeled(tmp_path, noise)
    assert formats.detect_format(tmp_path) == "labeled"
    assert formats.count_classes(tmp_path) == len(PALETTE)
    palette = formats.read_palette(tmp_path)
    decoded = formats.read_label(tmp_path / "train" / "labels" / "x.png", palette)
    np.testing.assert_array_equal(decoded, ids)


def test_colour_labels_without_palette(tmp_path):
    make_colour_labeled(tmp_path)
    (tmp_path / "palette.json").unlink()
    with pytest.raises(PixforgeError, match="palette.json") as exc:
        formats.read_label(tmp_path / "train" / "labels" / "x.png", formats.read_palette(tmp_path))
    assert "x.png" in str(exc.value)


@pytest.mark.parametrize("text", ["{not json", "[[1, 2], [3, 4]]", '{"a": 1}'])
def test_malformed_palette(tmp_path, text):
    (tmp_path / "palette.json").write_text(text)
    with pytest.raises(PixforgeError, match="palette.json"):
        formats.read_palette(tmp_path)


def test_classes_txt_counts_classes(synth_root):
    assert formats.count_classes(synth_root / "labeled") == 13
    assert formats.count_classes(synth_root / "aligned") is None


def test_id_labels_read_as_ids(synth_root):
    path = synth_root / "labeled" / "train" / "labels" / "00000.png"
    ids = formats.read_label(path, None)
    assert ids.dtype == np.int64 and ids.shape == (32, 32)
    np.testing.assert_array_equal(ids, np.asarray(Image.open(path)))
    assert ids.min() >= 1 and ids.max() <= 12


def test_sixteen_bit_instances(synth_root):
    path = synth_root / "labeled" / "train" / "instances" / "00000.png"
    inst = formats.read_instance(path)
    labels = formats.read_label(synth_root / "labeled" / "train" / "labels" / "00000.png", None)
    assert inst.dtype == np.int64 and inst.shape == (32, 32)
    assert inst.max() > 255
    things = inst >= 1000
    assert things.any()
    np.testing.assert_array_equal(inst[things] // 1000, labels[things])
    np.testing.assert_array_equal(inst[~things], labels[~things])


def test_colour_instance_map_is_refused(tmp_path):
    path = save(rgb(4, 4), tmp_path / "inst.png")
    with pytest.raises(PixforgeError, match="instance maps") as exc:
        formats.read_instance(path)
    assert "inst.png" in str(exc.value)


@pytest.mark.parametrize("kind", ["garbage", "truncated_png", "truncated_jpg"])
def test_read_image_reports_broken_files(synth_root, tmp_path, kind):
    source = synth_root / "aligned" / "train" / "00000.png"
    if kind == "garbage":
        path = tmp_path / "bad.png"
        path.write_bytes(b"this is not an image")
    elif kind == "truncated_png":
        path = truncate(source, tmp_path / "bad.png")
    else:
        Image.open(source).save(tmp_path / "full.jpg", quality=95)
        path = truncate(tmp_path / "full.jpg", tmp_path / "bad.jpg")
    with pytest.raises(formats.BrokenImageError) as exc:
        formats.read_image(path)
    assert str(path) in str(exc.value)
    assert isinstance(exc.value, PixforgeError)


def test_inspect_counts_sizes_and_problems(synth_root, tmp_path):
    root = tmp_path / "aligned"
    shutil.copytree(synth_root / "aligned", root)
    (root / "train" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.open(root / "val" / "00020.png").save(tmp_path / "full.jpg", quality=95)
    truncate(tmp_path / "full.jpg", root / "val" / "truncated.jpg")
    report = formats.inspect(root)
    assert report.fmt == "aligned"
    assert report.counts == {"train": 21, "val": 3, "test": 2}
    assert report.sizes == {"train": {"32x32": 20}, "val": {"32x32": 2}, "test": {"32x32": 2}}
    assert len(report.problems) == 2
    assert any("corrupt.png" in p for p in report.problems)
    assert any("truncated.jpg" in p for p in report.problems)


def test_inspect_clean_synthetic_data(synth_root):
    report = formats.inspect(synth_root / "unaligned")
    assert report.fmt == "unaligned" and report.problems == []
    assert report.counts == {"train": 10, "trainB": 10, "test": 2, "testB": 2}
    report = formats.inspect(synth_root / "labeled")
    assert report.counts == {"train": 20, "val": 2, "test": 2} and report.problems == []


def test_inspect_paired_problems(tmp_path):
    make_paired(tmp_path, ["a", "b", "c"], size=(16, 16))
    save(rgb(16, 16), tmp_path / "train" / "B" / "orphan.png")
    save(rgb(8, 8), tmp_path / "train" / "B" / "b.png")
    report = formats.inspect(tmp_path)
    assert report.fmt == "paired"
    assert report.counts == {"train": 3}
    assert report.sizes == {"train": {"16x16": 2}}
    assert any("orphan.png" in p and "unmatched" in p for p in report.problems)
    assert any("b.png" in p and "sizes differ" in p for p in report.problems)
    assert len(report.problems) == 2


def test_inspect_label_out_of_range(bad_label):
    root, _ = bad_label("val", "00021")
    report = formats.inspect(root)
    assert len(report.problems) == 1
    assert "00021.png" in report.problems[0] and "40" in report.problems[0]


def test_inspect_command(synth_root, tmp_path, capsys):
    main(["data", "inspect", str(synth_root / "aligned")])
    out = capsys.readouterr().out
    assert "aligned format" in out and "train: 20 samples (32x32 x20)" in out and "0 problem(s)" in out
    root = tmp_path / "paired"
    make_paired(root, ["a"])
    save(rgb(16, 16), root / "train" / "A" / "orphan.png")
    with pytest.raises(SystemExit) as exc:
        main(["data", "inspect", str(root)])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "paired format" in out and "1 problem(s)" in out and "orphan.png" in out


def test_a_flat_folder_of_photos_is_not_silently_taken_for_pairs(synth_root, tmp_path, caplog, capsys):
    """2:1 photos with no seam between their halves: inspect reports the guess and the expected layouts, and
    detection warns naming it; real A|B pairs (labels|photo, rain|clean) pass without a word."""
    folder = tmp_path / "holiday"
    for path in sorted((synth_root / "labeled" / "train" / "images").glob("*.png")):
        save(np.asarray(Image.open(path).convert("RGB").resize((64, 32), Image.BICUBIC)), folder / path.name)
    report = formats.inspect(folder)
    (problem,) = report.problems
    assert "aligned" in problem and "A/ + B/" in problem and "--data-format aligned" in problem
    with caplog.at_level("WARNING", logger="pixforge"):
        assert formats.detect_format(folder) == "aligned"
    assert any(str(folder) in r.getMessage() and "pairs" in r.getMessage() for r in caplog.records)
    caplog.clear()
    for layout in ("aligned", "derain"):
        with caplog.at_level("WARNING", logger="pixforge"):
            assert formats.inspect(synth_root / layout).problems == []
        assert not caplog.records
    assert formats.inspect(folder, "aligned").problems == []  # forced: the user said so
