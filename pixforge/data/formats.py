"""Detect and read the dataset layouts of DESIGN.md.

| format       | layout                                                                 |
| ------------ | ---------------------------------------------------------------------- |
| aligned      | ``split/*.png``: each image is A and B side by side (pix2pix datasets)  |
| paired       | ``split/A/*``, ``split/B/*`` matched by file stem                       |
| unaligned    | ``trainA/ trainB/ testA/ testB/`` (CycleGAN datasets)                   |
| labeled      | ``split/images/``, ``split/labels/`` (+ optional ``split/instances/``)  |
| colorization | ``split/*.jpg``: any colour photos; L is the input, ab the target       |

Colorization is never detected (a folder of photos is also an aligned dataset): it is asked for with
``format=colorization``. Its grayscale photos are skipped with a count (:func:`is_grayscale`).

Maps of one sample share a file stem; the Cityscapes suffixes (``_leftImg8bit``, ``_gtFine_labelIds``,
``_gtFine_instanceIds``) are ignored when matching, so its files can be used as they are named.

Splits are ``train``, ``val`` and ``test``. A folder that directly holds one split's layout is read as
its ``train`` split. A labeled ``val`` or ``test`` split may hold labels (and instances) but no ``images/``:
pix2pixHD's inference layout (NVIDIA's ``test_label/``, ``test_inst/``); only ``train`` needs images.
Labels are class ids (8-bit ``L``/``P`` PNGs, or 32-bit ``I``), or RGB colours decoded with a
``palette.json`` (a list of ``[r, g, b]``, index = class id) in the dataset root. The number of
classes comes from ``label_nc``, ``classes.txt`` (one name per id) or ``palette.json``; Cityscapes-named
labels (``*_gtFine_labelIds.png``) without either get the Cityscapes presets' 34 label ids.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixforge.data.images import ID_MODES, BrokenImageError, class_ids, open_image, upright_size
from pixforge.errors import PixforgeError

log = logging.getLogger("pixforge")

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")
#: a photo whose pixels' R, G, B differ by at most this many 8-bit levels is grayscale (JPEG's chroma
#: rounding leaves a level or two on grey photos saved as RGB)
GRAY_SPREAD = 4
FORMAT_FOLDERS = {"paired": ("A", "B"), "labeled": ("images", "labels")}
#: seam ratio (see :func:`seam_ratio`) from which a folder of images counts as A|B pairs. Measured medians:
#: A|B pairs 11.6 (CMP facades, labels|photo), 7.9-11.0 (built-in labels|photo at 32 and 64 px), 2.6-3.0
#: (built-in rain|clean, where A and B are the same scene); single photos stretched to 2:1 0.64 (facade
#: photos) to 1.14 (built-in photos at 64 px).
SEAM_RATIO = 1.6
#: images of a split whose seam ratios are compared (evenly spaced; their median decides)
SEAM_SAMPLES = 9
#: label ids of Cityscapes' ``*_labelIds`` maps (0..33), the ``label_nc`` of the pix2pixhd cityscapes presets
CITYSCAPES_LABEL_NC = 34


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _split_format(folder: Path) -> str | None:
    """The format of a single split folder, or None if it holds no known layout."""
    for fmt, (a, b) in FORMAT_FOLDERS.items():
        if (folder / a).is_dir() and (folder / b).is_dir():
            return fmt
    return "aligned" if list_images(folder) else None


def seam_ratio(image: Image.Image) -> float:
    """How much more the two middle columns differ than neighbouring columns do elsewhere.

    In an A|B pair the columns either side of the middle are the right edge of A and the left edge of B, so
    they are unrelated; in a single photo they are neighbours like any others. The ratio is the mean absolute
    difference across the seam over the median of the other neighbouring-column differences (+1 grey level,
    so that flat pictures count as seamless).
    """
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    diffs = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))
    middle = a.shape[1] // 2 - 1
    if middle < 1:
        return 0.0
    return float(diffs[middle] / (np.median(np.delete(diffs, middle)) + 1.0))


def looks_paired(files: list[Path]) -> bool:
    """Whether images look like A|B pairs: the median :func:`seam_ratio` of a few of them (unreadable files
    skipped) reaches :data:`SEAM_RATIO`."""
    picked = files[:: max(1, len(files) // SEAM_SAMPLES)][:SEAM_SAMPLES]
    ratios = []
    for path in picked:
        try:
            ratios.append(seam_ratio(read_image(path)))
        except PixforgeError:
            continue
    return not ratios or float(np.median(ratios)) >= SEAM_RATIO


def aligned_doubt(root: Path) -> str | None:
    """What is wrong with taking a flat folder of images (the aligned guess) for A|B pairs, if anything."""
    root = Path(root)
    folder = next((root / s for s in SPLITS if (root / s).is_dir()), root)
    if looks_paired(list_images(folder)):
        return None
    return (
        f"{root}: guessed the aligned layout (each image A|B side by side), but the images do not look like "
        "pairs (no seam between their halves); expected split folders of A|B images, A/ + B/, images/ + "
        "labels/, or trainA/ + trainB/; if they are pairs, pass --data-format aligned"
    )


_checked: set[Path] = set()


def _warn_aligned_guess(root: Path) -> None:
    """Check a folder once per process; warn when the aligned guess looks wrong (see :func:`aligned_doubt`)."""
    key = Path(root).resolve()
    if key in _checked:
        return
    _checked.add(key)
    if (doubt := aligned_doubt(root)) is not None:
        log.warning("warning: %s", doubt)


def check_root(root: Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise PixforgeError(f"data folder not found: {root}")
    if not root.is_dir():
        raise PixforgeError(f"data path is not a folder: {root}")
    if not any(root.iterdir()):
        raise PixforgeError(f"data folder is empty: {root}")
    return root


def detect_format(root: Path) -> str:
    """Detect the layout of a dataset root (or of a single split folder)."""
    root = check_root(root)
    if any((root / f"{s}A").is_dir() for s in SPLITS):
        return "unaligned"
    for candidate in [*(root / s for s in SPLITS), root]:
        if candidate.is_dir() and (fmt := _split_format(candidate)):
            if fmt == "aligned":
                _warn_aligned_guess(root)
            return fmt
    raise PixforgeError(
        f"{root}: layout matches no format (expected split folders train/val/test holding images, A/ + B/, "
        "or images/ + labels/; or trainA/ + trainB/)"
    )


def resolve_format(root: Path, fmt: str) -> str:
    """``fmt`` itself, or the detected format when it is ``auto``; a forced format must fit the folder."""
    if fmt == "auto":
        return detect_format(root)
    if fmt in ("unaligned", "aligned", "colorization") or fmt in FORMAT_FOLDERS:
        check_root(root)
        return fmt
    raise PixforgeError(f"--data-format: unknown format '{fmt}'")


def split_folder(root: Path, fmt: str, split: str) -> Path | None:
    """The folder of ``split``; a root that directly holds a layout counts as its train split."""
    if fmt == "unaligned":
        return root if (root / f"{split}A").is_dir() else None
    folder = Path(root) / split
    if folder.is_dir():
        return folder
    if split == "train" and not any((root / s).is_dir() for s in SPLITS) and _flat_fits(root, fmt):
        return root
    return None


def _flat_fits(root: Path, fmt: str) -> bool:
    """Whether a folder without split folders directly holds the layout of ``fmt``."""
    if fmt == "colorization":
        return bool(list_images(root))
    return _split_format(root) == fmt


def available_splits(root: Path, fmt: str) -> list[str]:
    return [s for s in SPLITS if split_folder(root, fmt, s) is not None]


def _labels_only(folder: Path, fmt: str, split: str) -> bool:
    """Whether a labeled val/test split holds labels but no images (only train needs images)."""
    return fmt == "labeled" and split != "train" and not (folder / "images").is_dir()


def has_targets(root: Path, fmt: str, split: str) -> bool:
    """Whether ``split`` exists with target images (not a labels-only split)."""
    folder = split_folder(root, fmt, split)
    return folder is not None and not _labels_only(folder, fmt, split)


@dataclass(frozen=True)
class Record:
    """One sample: its stem and the files of its maps (keys: AB | A, B | image, label, instance)."""

    stem: str
    files: dict[str, Path]


@dataclass
class SplitData:
    """The samples of one split, the B domain for unaligned data, and the problems found while listing."""

    fmt: str
    split: str
    folder: Path
    records: list[Record]
    b_files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: a labeled val/test split with labels but no images (translation inputs without targets)
    labels_only: bool = False


#: suffixes of the Cityscapes file names, dropped when matching a sample's maps by stem
CITYSCAPES_SUFFIXES = (
    "_leftImg8bit",
    "_gtFine_labelIds",
    "_gtFine_instanceIds",
    "_gtCoarse_labelIds",
    "_gtCoarse_instanceIds",
)


def sample_stem(path: Path) -> str:
    """The stem that ties a sample's maps together (``aachen_000000_000019`` for every Cityscapes map)."""
    stem = path.stem
    for suffix in CITYSCAPES_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _match_by_stem(folders: dict[str, Path], required: tuple[str, ...]) -> tuple[list[Record], list[str]]:
    """Match files of several folders by stem; files present in only some required folders are problems."""
    stems = {key: {sample_stem(p): p for p in list_images(folder)} for key, folder in folders.items()}
    problems: list[str] = []
    all_stems = sorted(set().union(*(stems[k] for k in required)))
    records = []
    for stem in all_stems:
        missing = [k for k in required if stem not in stems[k]]
        if missing:
            have = next(stems[k][stem] for k in required if stem in stems[k])
            problems.append(
                f"unmatched pair: {have} has no counterpart in {', '.join(str(folders[k]) for k in missing)}"
            )
            continue
        records.append(Record(stem, {k: s[stem] for k, s in stems.items() if stem in s}))
    return records, problems


def scan_split(root: Path, fmt: str, split: str) -> SplitData:
    """List the samples of one split; an absent or empty split is a :class:`PixforgeError`."""
    folder = split_folder(root, fmt, split)
    if folder is None:
        have = ", ".join(available_splits(root, fmt)) or "none"
        raise PixforgeError(f"{root}: no '{split}' split for the {fmt} format (splits found: {have})")
    if fmt == "aligned":
        data = SplitData(fmt, split, folder, [Record(p.stem, {"AB": p}) for p in list_images(folder)])
    elif fmt == "colorization":
        data = _colour_photos(folder, split)
    elif fmt == "unaligned":
        a_files, b_files = list_images(root / f"{split}A"), list_images(root / f"{split}B")
        if not b_files:
            raise PixforgeError(
                f"{root / (split + 'B')}: no images (unaligned data needs {split}A and {split}B)"
            )
        data = SplitData(fmt, split, folder, [Record(p.stem, {"A": p}) for p in a_files], b_files)
    else:
        names = {
            "paired": {"A": "A", "B": "B"},
            "labeled": {"image": "images", "label": "labels", "instance": "instances"},
        }
        folders = {k: folder / v for k, v in names[fmt].items() if (folder / v).is_dir()}
        labels_only = _labels_only(folder, fmt, split)
        required = ("label",) if labels_only else tuple(names[fmt])[:2]
        if not all(k in folders for k in required):
            need = " and ".join(str(folder / names[fmt][k]) for k in required)
            raise PixforgeError(f"{folder}: the {fmt} format needs {need}; check --data-format")
        records, problems = _match_by_stem(folders, required)
        data = SplitData(fmt, split, folder, records, problems=problems, labels_only=labels_only)
    if not data.records:
        raise PixforgeError(f"{folder}: no images in the {split} split")
    return data


def _colour_photos(folder: Path, split: str) -> SplitData:
    """The colour photos of a colorization split; grayscale ones are skipped and counted."""
    files = list_images(folder)
    records = [Record(p.stem, {"image": p}) for p in files if not is_grayscale(p)]
    gray = len(files) - len(records)
    if files and not records:
        raise PixforgeError(
            f"{folder}: none of the {gray} photos in the {split} split is in colour; colorization learns "
            "colour from colour photos"
        )
    if gray:
        log.warning(
            "%s: skipping %d grayscale of %d photos (colorization needs colour)", folder, gray, len(files)
        )
    return SplitData("colorization", split, folder, records)


def is_grayscale(path: Path) -> bool:
    """Whether a photo holds no colour: a grey mode, or RGB whose channels agree to :data:`GRAY_SPREAD`.

    JPEGs are decoded at reduced size (``draft``) for speed. A file that cannot be read counts as colour, so
    the dataset's broken-image handling reports it.
    """
    try:
        with Image.open(path) as img:
            if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return True
            img.draft("RGB", (256, 256))
            arr = np.asarray(img.convert("RGB"), dtype=np.int16)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False
    return int((arr.max(-1) - arr.min(-1)).max()) <= GRAY_SPREAD


def read_image(path: Path, mode: str = "RGB") -> Image.Image:
    """Decode an image fully (so truncation is caught here), upright and in ``mode`` (:func:`images.open_image`)."""
    return open_image(path, mode)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as the picture is read (upright: :func:`images.upright_size`), from the file header,
    without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return upright_size(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise BrokenImageError(f"cannot read image {path}: {exc}") from None


def read_palette(root: Path) -> np.ndarray | None:
    path = Path(root) / "palette.json"
    if not path.is_file():
        return None
    try:
        colors = np.asarray(json.loads(path.read_text()), dtype=np.int64)
    except (ValueError, TypeError):
        raise PixforgeError(f"{path}: expected a JSON list of [r, g, b] colours") from None
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise PixforgeError(f"{path}: expected a JSON list of [r, g, b] colours")
    return colors


def count_classes(root: Path) -> int | None:
    """The number of label ids declared by ``classes.txt`` or ``palette.json`` in a labeled dataset root."""
    names = Path(root) / "classes.txt"
    if names.is_file():
        return len([line for line in names.read_text().splitlines() if line.strip()])
    palette = read_palette(root)
    return None if palette is None else len(palette)


def cityscapes_label_nc(root: Path) -> int | None:
    """:data:`CITYSCAPES_LABEL_NC` when the train labels carry Cityscapes names (``*_labelIds``), else None."""
    folder = split_folder(Path(root), "labeled", "train")
    labels = list_images(folder / "labels") if folder is not None else []
    return CITYSCAPES_LABEL_NC if labels and labels[0].stem.endswith("_labelIds") else None


def read_label(path: Path, palette: np.ndarray | None) -> np.ndarray:
    """Class ids (H, W) int64 from an id image, or from a colour image and its palette (nearest colour)."""
    img = read_image(path, mode="")
    if img.mode not in ID_MODES and palette is None:
        raise PixforgeError(f"{path}: colour-coded label map but no palette.json in the dataset root")
    return class_ids(img, palette)


def read_instance(path: Path) -> np.ndarray:
    """Instance ids (H, W) int64 (Cityscapes style: class * 1000 + k for countable objects)."""
    img = read_image(path, mode="")
    if img.mode not in ("L", "I", "I;16", "P"):
        raise PixforgeError(
            f"{path}: instance maps must be integer images (mode L, I or I;16), not {img.mode}"
        )
    return np.asarray(img, dtype=np.int64)


def check_record(data: SplitData, record: Record) -> tuple[int, int]:
    """The (width, height) of one sample's A side; pairs of different sizes are a :class:`PixforgeError`."""
    sizes = {key: image_size(path) for key, path in record.files.items()}
    if data.fmt == "aligned":
        w, h = sizes["AB"]
        if w % 2:
            raise PixforgeError(
                f"{record.files['AB']}: aligned image has odd width {w}; expected A and B side by side"
            )
        return w // 2, h
    first_key, first = next(iter(sizes.items()))
    for key, size in sizes.items():
        if size != first:
            raise PixforgeError(
                f"pair sizes differ: {record.files[first_key]} is {first[0]}x{first[1]} "
                f"but {record.files[key]} is {size[0]}x{size[1]}"
            )
    return first


def is_dataset_root(folder: Path) -> bool:
    """Whether ``folder`` holds split folders (train/val/test, or trainA/testA/...), not just images."""
    folder = Path(folder)
    return any((folder / s).is_dir() or (folder / f"{s}A").is_dir() for s in SPLITS)


@dataclass
class Inspection:
    """What ``pixforge data inspect`` reports about a dataset."""

    root: Path
    fmt: str
    counts: dict[str, int]
    sizes: dict[str, dict[str, int]]
    problems: list[str]
    #: labeled val/test splits with labels but no images: inputs for translation, not a problem
    labels_only: list[str] = field(default_factory=list)


def inspect(root: Path, fmt: str = "auto") -> Inspection:
    """Detect the format, count every split, tally image sizes and list every problem found."""
    root = Path(root)
    guessed = fmt == "auto"
    fmt = resolve_format(root, fmt)
    counts: dict[str, int] = {}
    sizes: dict[str, dict[str, int]] = {}
    problems: list[str] = []
    if guessed and fmt == "aligned" and (doubt := aligned_doubt(root)) is not None:
        problems.append(doubt)
    palette = read_palette(root) if fmt == "labeled" else None
    label_nc = (count_classes(root) or cityscapes_label_nc(root)) if fmt == "labeled" else None
    labels_only: list[str] = []
    for split in available_splits(root, fmt):
        try:
            data = scan_split(root, fmt, split)
        except PixforgeError as exc:
            problems.append(str(exc))
            continue
        problems.extend(data.problems)
        counts[split] = len(data.records)
        if data.labels_only:
            labels_only.append(split)
        tally: dict[str, int] = {}
        for record in data.records:
            try:
                w, h = check_record(data, record)
                for path in record.files.values():
                    read_image(path, mode="")
                if label_nc and "label" in record.files:
                    ids = read_label(record.files["label"], palette)
                    if ids.max() >= label_nc:
                        problems.append(
                            f"{record.files['label']}: label id {int(ids.max())} >= {label_nc} classes"
                        )
            except PixforgeError as exc:
                problems.append(str(exc))
                continue
            tally[f"{w}x{h}"] = tally.get(f"{w}x{h}", 0) + 1
        sizes[split] = tally
        if data.b_files:
            counts[f"{split}B"] = len(data.b_files)
    return Inspection(root, fmt, counts, sizes, problems, labels_only)
