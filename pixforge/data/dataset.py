"""The torch Dataset over any of the four formats, with deterministic per-sample augmentation.

Each item is a dict with ``A`` (input) and ``B`` (target) tensors in [-1, 1], the sample ``index`` and
whether it was ``flip``-ped; labeled data adds ``label`` (class ids) and, when present, ``instance``.
``index_A`` and ``index_B`` say which image of its own domain ``A`` and ``B`` are (for unaligned data, whose B
image is drawn at random at every visit, they differ; otherwise both equal ``index``). ``flip_A``/``flip_B``
and ``box_A``/``box_B`` (:meth:`~pixforge.data.transforms.Params.box`: where the tensor lies in its loaded
image) describe each side's geometry; they are equal except for unaligned data.
For labeled data ``A`` is the one-hot label map (``label_nc`` channels) and ``B`` the photo; a labels-only
split (val/test with ``labels/`` but no ``images/``, pix2pixHD's inference layout) has no ``B``.
For colorization data ``A`` is the photo's lightness L and ``B`` its chrominance ab (CIE Lab, D65, scaled
to [-1, 1] by :func:`pixforge.data.color.photo_to_l_ab`), converted after the geometric transforms.

Unaligned data has independent domains, as in the CycleGAN authors' UnalignedDataset: B's crop and flip are
drawn for B from B's own size, and an epoch is max(|A|, |B|) samples (position i reads A image i mod |A|).

Randomness comes only from the key the sampler passes with each index (see :class:`EpochSampler`), so the
same (seed, epoch, position) gives the same crop and flip whatever the worker, and a resumed run sees
exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from pixforge.config import DataConfig
from pixforge.data import color, formats, transforms
from pixforge.data.formats import BrokenImageError, Record, SplitData
from pixforge.errors import PixforgeError

log = logging.getLogger("pixforge")

SampleKey = tuple[int, int]


def data_channels(root: Path, fmt: str, cfg: DataConfig) -> tuple[int, int, int]:
    """(input_nc, output_nc, label_nc) of a dataset: 3 -> 3 for images, label_nc -> 3 for labeled data,
    1 -> 2 (L -> ab) for colorization."""
    if fmt == "colorization":
        if cfg.direction != "AtoB":
            raise PixforgeError("option direction: colorization translates L to ab (AtoB) only")
        return 1, 2, 0
    if fmt != "labeled":
        return 3, 3, 0
    if cfg.direction != "AtoB":
        raise PixforgeError("option direction: labeled data translates labels to images (AtoB) only")
    label_nc = cfg.label_nc or formats.count_classes(root) or _cityscapes_label_nc(root)
    if not label_nc:
        raise PixforgeError(
            f"{root}: labeled data needs the number of classes: --set label_nc=N, or a classes.txt"
        )
    return label_nc, 3, label_nc


_told_cityscapes: set[Path] = set()


def _cityscapes_label_nc(root: Path) -> int | None:
    """The Cityscapes presets' class count for Cityscapes-named labels without a classes.txt (told once per root)."""
    label_nc = formats.cityscapes_label_nc(root)
    if label_nc and Path(root) not in _told_cityscapes:
        _told_cityscapes.add(Path(root))
        log.warning(
            "%s: Cityscapes label files and no classes.txt: label_nc=%d as the cityscapes presets "
            "(--set label_nc=N to change)",
            root,
            label_nc,
        )
    return label_nc


class TranslationDataset(Dataset):
    """One split of a dataset, transformed for training or for evaluation."""

    def __init__(
        self,
        root: Path,
        split: str,
        cfg: DataConfig,
        *,
        train: bool,
        size_multiple: int = 1,
        fmt: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.fmt = fmt or formats.resolve_format(self.root, cfg.format)
        self.train = train
        self.size_multiple = size_multiple
        self.data: SplitData = formats.scan_split(self.root, self.fmt, split)
        for problem in self.data.problems:
            log.warning("%s", problem)
        self.label_nc = data_channels(self.root, self.fmt, cfg)[2]
        self.palette = formats.read_palette(self.root) if self.fmt == "labeled" else None
        self.broken: set[int] = set()
        self._check_headers()
        self.pad_notice = transforms.PadNotice(size_multiple)

    def _check_headers(self) -> None:
        """Read every header: pairs of different sizes fail; unreadable files are skipped up to ``max_broken``.

        Label maps are decoded too, so an id outside the class range stops the run before its first step.
        """
        good: list[Record] = []
        for record in self.data.records:
            try:
                formats.check_record(self.data, record)
                if "label" in record.files:
                    self._label_image(record)
                good.append(record)
            except BrokenImageError as exc:
                log.warning("skipping %s", exc)
        broken = len(self.data.records) - len(good)
        self._fail_if_too_broken(broken, len(self.data.records))
        self.data.records = good

    def _fail_if_too_broken(self, broken: int, total: int) -> None:
        if broken and broken > self.cfg.max_broken * total:
            raise PixforgeError(
                f"{self.data.folder}: {broken} of {total} images are unreadable, more than max_broken="
                f"{self.cfg.max_broken:g}; fix or remove them"
            )

    def __len__(self) -> int:
        """Samples per epoch: the records, or max(|A|, |B|) for unaligned data (junyanz's and ASGIT's
        UnalignedDataset), so that every image of the larger domain is visited."""
        return max(len(self.data.records), len(self.data.b_files))

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        records = len(self.data.records)
        for offset in range(records):
            i = (index + offset) % records
            if i in self.broken:
                continue
            try:
                return self._load(i, random.Random(seed * 1_000_003 + i))
            except BrokenImageError as exc:
                self.broken.add(i)
                log.warning("skipping %s", exc)
                self._fail_if_too_broken(len(self.broken), records)
        raise PixforgeError(f"{self.data.folder}: no readable images")

    def raw_maps(
        self, i: int, rng: random.Random | None = None, b_index: int | None = None
    ) -> dict[str, Image.Image]:
        """The untransformed maps of sample ``i`` as images: A, B and, for labeled data, label and instance.

        For unaligned data B is image ``b_index`` of the B folder, drawn from ``rng`` when not given.
        """
        rng = rng or random.Random(i)
        record = self.data.records[i]
        if self.fmt == "aligned":
            ab = formats.read_image(record.files["AB"])
            w, h = ab.size
            maps = {"A": ab.crop((0, 0, w // 2, h)), "B": ab.crop((w // 2, 0, w, h))}
        elif self.fmt == "colorization":
            photo = formats.read_image(record.files["image"])
            maps = {"A": photo, "B": photo}
        elif self.fmt == "paired":
            maps = {"A": formats.read_image(record.files["A"]), "B": formats.read_image(record.files["B"])}
        elif self.fmt == "unaligned":
            b_path = self.data.b_files[rng.randrange(len(self.data.b_files)) if b_index is None else b_index]
            maps = {"A": formats.read_image(record.files["A"]), "B": formats.read_image(b_path)}
        else:
            maps = {"label": self._label_image(record)}
            if "image" in record.files:
                maps["B"] = formats.read_image(record.files["image"])
            if "instance" in record.files:
                maps["instance"] = Image.fromarray(
                    formats.read_instance(record.files["instance"]).astype(np.int32)
                )
        if self._swapped():
            maps["A"], maps["B"] = maps["B"], maps["A"]
        return maps

    def _label_image(self, record: Record) -> Image.Image:
        ids = formats.read_label(record.files["label"], self.palette)
        if ids.min() < 0 or ids.max() >= self.label_nc:
            raise PixforgeError(
                f"{record.files['label']}: label id {int(ids.max())} is outside 0..{self.label_nc - 1} "
                f"(label_nc={self.label_nc})"
            )
        return Image.fromarray(ids.astype(np.int32))

    def domain_sizes(self) -> tuple[int, int]:
        """How many distinct images ``index_A`` and ``index_B`` range over."""
        records = len(self.data.records)
        sizes = (records, len(self.data.b_files) if self.fmt == "unaligned" else records)
        return sizes[::-1] if self._swapped() else sizes

    def _swapped(self) -> bool:
        return self.cfg.direction == "BtoA" and self.fmt != "labeled"

    def _load(self, i: int, rng: random.Random) -> dict[str, Any]:
        b_index = rng.randrange(len(self.data.b_files)) if self.fmt == "unaligned" else i
        maps = self.raw_maps(i, rng, b_index)
        sides = self._params(maps, rng)
        index_a, index_b = (b_index, i) if self._swapped() else (i, b_index)
        item: dict[str, Any] = {
            "index": i,
            "index_A": index_a,
            "index_B": index_b,
            "flip": sides["A"].flip,
            "stem": self.data.records[i].stem,
        }
        for side, params in sides.items():
            item[f"flip_{side}"] = params.flip
            item[f"box_{side}"] = torch.tensor(params.box())
        for key, img in maps.items():
            out = transforms.apply(
                img, sides["B" if key == "B" else "A"], nearest=key in ("label", "instance")
            )
            if key in ("label", "instance"):
                item[key] = torch.from_numpy(np.asarray(out, dtype=np.int64)).unsqueeze(0)
            else:
                item[key] = transforms.to_tensor(out)
        if self.fmt == "colorization":
            item["A"], item["B"] = color.photo_to_l_ab(item["A"])
        item = self._pad(item)
        if self.fmt == "labeled":
            item["A"] = one_hot(item["label"], self.label_nc)
        return item

    def _params(self, maps: dict[str, Image.Image], rng: random.Random) -> dict[str, transforms.Params]:
        """The transform parameters of each side: one set for every map of a sample, or for unaligned data
        A's drawn from A's size, then B's from B's (independent domains)."""
        first = maps["A"] if "A" in maps else maps["label"]
        a = transforms.make_params(first.size, self.cfg, rng, self.train)
        if self.fmt != "unaligned":
            return {"A": a, "B": a}
        return {"A": a, "B": transforms.make_params(maps["B"].size, self.cfg, rng, self.train)}

    def _pad(self, item: dict[str, Any]) -> dict[str, Any]:
        """Pad every map to the size multiple the same way (so labels, instances and photo agree in the band)."""
        for key in ("A", "B", "label", "instance"):
            if key in item:
                self.pad_notice(*item[key].shape[-2:])
                item[key] = transforms.pad_to_multiple(item[key], self.size_multiple)
        return item


def one_hot(label: Tensor, label_nc: int) -> Tensor:
    """Class ids (1, H, W) or (N, 1, H, W) as float one-hot channels (label_nc, H, W) / (N, label_nc, H, W)."""
    out = torch.nn.functional.one_hot(label.squeeze(-3), label_nc).movedim(-1, -3)
    return out.float()


class EpochSampler(Sampler[SampleKey]):
    """A resumable shuffling sampler: epoch ``e`` is a permutation drawn from (seed, e), shared by all ranks.

    It yields (index, key) pairs; the key seeds the sample's augmentation. Positions are global: a step takes
    the next ``world_size * batch_size`` positions of the epoch's order (the global batch) and rank ``r``
    yields its ``r``-th block of ``batch_size`` of them, so the ranks' batches of a step together hold exactly
    the samples, augmented the same way, that one process with batch ``world_size * batch_size`` would hold.
    An epoch is ``size // global batch`` whole global batches. ``start`` is the global position to begin at
    (``epoch * per_epoch + position``), so a resumed run continues the data order exactly; a start that is
    not on a global batch boundary makes the batches straddle epochs, as one process's would.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        start: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.per_epoch = max(1, size // self.global_batch) * self.global_batch
        self.seed = seed
        self.start = start
        self.shuffle = shuffle
        self.rank = rank

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return [i % self.size for i in range(self.per_epoch)]
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        perm = torch.randperm(self.size, generator=g).tolist()
        return (perm * (self.per_epoch // self.size + 1))[: self.per_epoch]

    def position(self, start: int, steps: int) -> tuple[int, int]:
        """(epoch, position in it) of the first sample after ``steps`` global batches from ``start``."""
        return divmod(start + steps * self.global_batch, self.per_epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        block = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for n, key in enumerate(self._stream()):
            if n % self.global_batch in block:
                yield key

    def _stream(self) -> Iterator[SampleKey]:
        """Every position from ``start`` on, over the epochs (what one process with the global batch reads)."""
        epoch, pos = divmod(self.start, self.per_epoch)
        while True:
            order = self.order(epoch)
            for p in range(pos, self.per_epoch):
                yield order[p], self.seed * 100_003 + epoch * self.per_epoch + p
            epoch, pos = epoch + 1, 0

    def __len__(self) -> int:
        return self.per_epoch // self.global_batch * self.batch_size
