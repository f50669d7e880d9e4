"""A segmentation network for FCN-scores, trained on the real photos and labels of a dataset.

pix2pix (Isola et al. 2017, sec. 4.2) scores labels -> photo with an "off-the-shelf" FCN-8s trained on
the real Cityscapes photos: the better the generated photos, the better the segmenter recovers the
input labels from them, and the same scores on the real photos are the "ground truth" upper bound.
pixforge trains its own segmenter the same way for any labeled dataset: the pix2pix U-Net
(:class:`~pixforge.nets.generators.UnetGenerator`) with ``output_nc = label_nc`` and no dropout,
trained with per-pixel cross-entropy on random crops (resize to ``size * 286 / 256``, crop ``size``,
flip; pix2pix sec. 6.2). The U-Net ends in Tanh for images; class scores are logits, so the final
Tanh is replaced by the identity.

Data: a labeled dataset (``images/`` + ``labels/`` class ids; :class:`TranslationDataset` gives the
photo as "B" and the ids as "label"), or aligned/paired facades-style data whose label side holds the
CMP facade colours (decoded to ids 1..12 by nearest colour, :func:`colors_to_ids`; 13 classes with
0 = unlabeled).

A trained segmenter is one safetensors file, ``RUN/segmenter.safetensors``, whose metadata holds its
config; it is written to a temporary file and renamed into place. ``RUN/metrics.jsonl`` logs the
training loss and pixel accuracy. Any other model can be used for FCN-scores from the API: see
:func:`pixforge.metrics.report.evaluate_dirs`.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from pixforge.config import DataConfig
from pixforge.data import formats, transforms
from pixforge.data.dataset import TranslationDataset
from pixforge.data.palette import FACADE_CLASSES, FACADE_LABEL_NC, colors_to_ids
from pixforge.devices import pick_device
from pixforge.errors import PixforgeError
from pixforge.metrics.segmentation import ConfusionMatrix, fcn_scores
from pixforge.nets.generators import UnetGenerator, unet_depth

log = logging.getLogger("pixforge")

FILE_NAME = "segmenter.safetensors"
FORMAT = "pixforge-segmenter"
FORMAT_VERSION = 1
LABEL_SIDES = ("A", "B")
COLOUR_FORMATS = ("aligned", "paired")


@dataclass
class SegmenterConfig:
    """Everything needed to rebuild a segmenter and to say what it was trained on."""

    label_nc: int
    size: int = 256
    ngf: int = 32
    norm: str = "batch"
    steps: int = 2000
    batch_size: int = 4
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    seed: int = 0
    data: str = ""
    split: str = "train"
    source: str = "labeled"
    label_side: str = "B"
    class_names: list[str] = field(default_factory=list)


class Segmenter(nn.Module):
    """Per-pixel class scores of photos: N x 3 x H x W in [-1, 1] -> N x label_nc x H x W logits.

    Like a translator trained on square crops, it runs at its training size: the input is resized to
    ``size`` x ``size`` (bilinear, antialiased) and the logits back to H x W (bilinear), so any image
    size works and objects appear at the scale seen in training. Call it in eval mode
    (:func:`load_segmenter` returns it so).
    """

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = UnetGenerator(3, cfg.label_nc, unet_depth(cfg.size), cfg.ngf, norm=cfg.norm, dropout=0.0)
        self.unet.ups[0][-1] = nn.Identity()
        self.description = f"U-Net segmenter ({cfg.label_nc} classes, {cfg.size} px, trained on {cfg.data})"

    @property
    def label_nc(self) -> int:
        return self.cfg.label_nc

    def forward(self, photos: Tensor) -> Tensor:
        height, width = photos.shape[-2:]
        size = self.cfg.size
        if (height, width) == (size, size):
            return self.unet(photos)
        resized = F.interpolate(
            photos, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        return F.interpolate(self.unet(resized), size=(height, width), mode="bilinear", align_corners=False)


@dataclass
class SegmenterResult:
    """What :func:`train_segmenter` did: the saved file, its last logged loss and pixel accuracy."""

    path: Path
    steps: int
    loss: float
    pixel_accuracy: float


class LabeledPhotos:
    """(photo, class ids) pairs of one split: labeled data, or facade colours on one side of paired data."""

    def __init__(self, root: Path, split: str, size: int = 256, label_side: str = "B") -> None:
        if label_side not in LABEL_SIDES:
            raise PixforgeError(f"option label_side: {label_side!r} is not one of {', '.join(LABEL_SIDES)}")
        self.root = Path(root)
        self.fmt = formats.resolve_format(self.root, "auto")
        if self.fmt not in ("labeled", *COLOUR_FORMATS):
            raise PixforgeError(
                f"{root}: a segmenter needs photos with labels (labeled data, or aligned/paired data with "
                f"colour-coded labels), not {self.fmt} data"
            )
        self.label_side = label_side
        self.cfg = DataConfig(
            root=str(root), format=self.fmt, load_size=round(size * 286 / 256), crop_size=size
        )
        self.dataset = TranslationDataset(self.root, split, self.cfg, train=True, fmt=self.fmt)
        if not len(self.dataset):
            raise PixforgeError(f"{root}: split {split} has no samples to train or score a segmenter on")
        if self.fmt == "labeled":
            self.label_nc = self.dataset.label_nc
            self.class_names = _class_names(self.root, self.label_nc)
        else:
            self.label_nc = FACADE_LABEL_NC
            self.class_names = ["unlabeled", *FACADE_CLASSES]

    @property
    def source(self) -> str:
        """ "labeled" (id maps) or "facade_colours" (colours decoded with the CMP palette)."""
        return "labeled" if self.fmt == "labeled" else "facade_colours"

    def __len__(self) -> int:
        return len(self.dataset)

    def raw(self, i: int) -> tuple[Image.Image, Image.Image]:
        """Sample ``i`` untransformed: the RGB photo and its class ids as an int32 image."""
        maps = self.dataset.raw_maps(i)
        if self.fmt == "labeled":
            return maps["B"], maps["label"]
        photo_side = "A" if self.label_side == "B" else "B"
        ids = colors_to_ids(np.asarray(maps[self.label_side].convert("RGB")))
        return maps[photo_side], Image.fromarray(ids.astype(np.int32))

    def crop(self, i: int, rng: random.Random) -> tuple[Tensor, Tensor]:
        """A random training crop of sample ``i``: photo 3 x S x S in [-1, 1], ids S x S int64."""
        photo, label = self.raw(i)
        params = transforms.make_params(photo.size, self.cfg, rng, train=True)
        image = transforms.to_tensor(transforms.apply(photo, params))
        ids = np.asarray(transforms.apply(label, params, nearest=True), dtype=np.int64)
        return image, torch.from_numpy(ids)


def _class_names(root: Path, label_nc: int) -> list[str]:
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(names) == label_nc:
            return names
    return [str(i) for i in range(label_nc)]


def build_config(data: LabeledPhotos, split: str, **options: object) -> SegmenterConfig:
    """The config of a segmenter for ``data``; ``options`` are other :class:`SegmenterConfig` fields."""
    cfg = SegmenterConfig(
        label_nc=data.label_nc,
        data=str(data.root),
        split=split,
        source=data.source,
        label_side=data.label_side,
        class_names=data.class_names,
    )
    for key, value in options.items():
        if not hasattr(cfg, key):
            raise PixforgeError(f"unknown segmenter option {key!r}")
        setattr(cfg, key, value)
    for key in ("size", "ngf", "steps", "batch_size"):
        if getattr(cfg, key) < 1:
            raise PixforgeError(f"segmenter option {key} must be at least 1, got {getattr(cfg, key)}")
    unet_depth(cfg.size)
    return cfg


def train_segmenter(
    data: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    label_side: str = "B",
    device: str = "auto",
    log_every: int = 50,
    **options: object,
) -> SegmenterResult:
    """Train a U-Net segmenter on the photos and labels of ``data`` (split ``split``) into the run ``out``.

    ``options`` are :class:`SegmenterConfig` fields: ``size`` (crop size, default 256), ``steps``
    (2000), ``batch_size`` (4), ``ngf`` (32), ``lr`` (1e-3, Adam with betas 0.9, 0.999), ``seed``.
    Batches are drawn with replacement from ``random.Random(seed)``, so a run is reproducible on CPU.
    """
    photos = LabeledPhotos(Path(data), split, int(options.get("size", SegmenterConfig.size)), label_side)
    cfg = build_config(photos, split, **options)
    torch.manual_seed(cfg.seed)
    dev = pick_device(device)
    model = Segmenter(cfg).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    rng = random.Random(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "metrics.jsonl"
    log_path.unlink(missing_ok=True)
    loss_sum, correct, total = torch.zeros((), device=dev), torch.zeros((), device=dev), 0
    last = {"loss": float("nan"), "pixel_accuracy": float("nan")}
    for step in range(1, cfg.steps + 1):
        crops = [photos.crop(rng.randrange(len(photos)), rng) for _ in range(cfg.batch_size)]
        images = torch.stack([c[0] for c in crops]).to(dev)
        labels = torch.stack([c[1] for c in crops]).to(dev)
        logits = model.unet(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * labels.numel()
        correct += (logits.detach().argmax(1) == labels).sum()
        total += labels.numel()
        if step % log_every == 0 or step == cfg.steps:
            last = {"loss": float(loss_sum) / total, "pixel_accuracy": float(correct) / total}
            with log_path.open("a") as handle:
                handle.write(json.dumps({"step": step, **last}) + "\n")
            log.info("segmenter step %d: loss %.4f, pixel accuracy %.4f", step, *last.values())
            loss_sum.zero_()
            correct.zero_()
            total = 0
    path = save_segmenter(model.cpu(), out)
    return SegmenterResult(path, cfg.steps, last["loss"], last["pixel_accuracy"])


def save_segmenter(model: Segmenter, out: str | Path) -> Path:
    """Write ``out/segmenter.safetensors`` (weights + config metadata) atomically; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / FILE_NAME
    tmp = out / f".{FILE_NAME}.{os.getpid()}.tmp"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.unet.state_dict().items()}
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "config": json.dumps(asdict(model.cfg))}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise PixforgeError(f"cannot write segmenter {final}: {error.strerror or error}") from None
    return final


def load_segmenter(path: str | Path, device: str = "cpu") -> Segmenter:
    """A segmenter from its run directory or ``segmenter.safetensors`` file, in eval mode on ``device``."""
    path = Path(path)
    file = path / FILE_NAME if path.is_dir() else path
    if not file.is_file():
        raise PixforgeError(
            f"no segmenter at {path}: expected {FILE_NAME} (train one with `pixforge segmenter train`)"
        )
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
            weights = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (not a mapping)
    except (SafetensorError, OSError, ValueError) as error:
        raise PixforgeError(f"{file}: not a readable segmenter ({str(error).splitlines()[0]})") from None
    if metadata.get("format") != FORMAT:
        raise PixforgeError(f"{file}: not a pixforge segmenter (train one with `pixforge segmenter train`)")
    if int(metadata.get("version", "0")) > FORMAT_VERSION:
        raise PixforgeError(f"{file}: segmenter format {metadata['version']} is newer than this pixforge")
    model = Segmenter(SegmenterConfig(**json.loads(metadata["config"])))
    model.unet.load_state_dict(weights)
    return model.to(pick_device(device)).eval()


@torch.inference_mode()
def score_segmenter(
    model: nn.Module, data: str | Path, split: str, label_nc: int, label_side: str = "B"
) -> dict[str, object]:
    """FCN-scores of ``model`` on the real photos of a split at their own size: the "ground truth" row.

    One confusion matrix over the split (:func:`pixforge.metrics.segmentation.fcn_scores`, absent
    classes score 0 as in the pix2pix FCN-score script).
    """
    photos = LabeledPhotos(Path(data), split, label_side=label_side)
    confusion = ConfusionMatrix(label_nc)
    device = next(model.parameters()).device
    for i in range(len(photos)):
        photo, label = photos.raw(i)
        logits = model(transforms.to_tensor(photo.convert("RGB"))[None].to(device))
        try:
            confusion.update(logits.argmax(1)[0], np.asarray(label))
        except ValueError as error:
            raise PixforgeError(f"{photos.root} ({split}, sample {i}): {error}") from None
    return fcn_scores(confusion)
