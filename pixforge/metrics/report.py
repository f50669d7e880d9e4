"""Evaluate a folder of generated images against a folder of references, with every setting stated.

Files are matched by stem. Per-image metrics (PSNR, SSIM, VIF, RECO) are averaged over the set, and
RECO is also given as a ratio of sums over the set (``reco_set``); KID/FID compare the two sets'
feature distributions; FCN-scores segment the generated images and compare with label maps
(pix2pix sec. 4.2, DRPAN sec. 4.1).
"""

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixforge.data.images import BrokenImageError, open_image
from pixforge.errors import PixforgeError
from pixforge.metrics import colorfulness, image, kid, reco
from pixforge.metrics.image import Color
from pixforge.metrics.inception import FeatureExtractor, InceptionFeatures, distance_names
from pixforge.metrics.segmentation import AbsentClasses, ConfusionMatrix, fcn_scores

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PER_IMAGE = ("psnr", "ssim", "vif", "reco")
SET_LEVEL = ("kid", "fid")
#: per-image metrics of one image, reported for the generated and the real images side by side
PER_SIDE = ("colorfulness",)
ALL_METRICS = (*PER_IMAGE, *PER_SIDE, *SET_LEVEL)
MAX_LISTED = 5
FCN_MEANS = ("pixel_accuracy", "mean_class_accuracy", "mean_class_iou")
CHUNK = 32

Y_LUMA = "Y of BT.601 as MATLAB rgb2ycbcr (16 + (65.481 R + 128.553 G + 24.966 B) / 255, 16..235, unrounded)"
COLOUR_SPACE: dict[str, str] = {
    "rgb": "RGB, 8 bit, as stored; PSNR and SSIM on R, G, B",
    "y": f"8-bit RGB as stored; PSNR and SSIM on {Y_LUMA}",
}
PSNR: dict[str, str] = {
    "rgb": "10 log10(255^2 / MSE), MSE over all pixels and RGB channels; inf for identical images",
    "y": "10 log10(255^2 / MSE), MSE over the pixels of Y; inf for identical images",
}
SSIM_WINDOW = (
    f"skimage structural_similarity: Gaussian window sigma {image.SSIM_SIGMA} (11x11), K1 0.01, "
    "K2 0.03, population covariance, data range 255"
)
SSIM: dict[str, str] = {
    "rgb": f"{SSIM_WINDOW}; mean over R, G, B of per-channel mean SSIM",
    "y": f"{SSIM_WINDOW}; mean SSIM of Y",
}
VIF = (
    "VIFp (Sheikh & Bovik 2006, pixel domain): 4 scales, Gaussian windows 17/9/5/3 with sigma N/5, "
    f"valid filtering, sigma_nsq {image.VIF_SIGMA_NSQ}, on BT.601 luminance 0..255 (torchmetrics)"
)
RECO = (
    f"RECO (Baroncini et al. 2009): Laguerre-Gauss n=1 (c=1), n=3 (c=1/6), sigma {reco.SIGMA}, "
    f"{reco.SUPPORT}x{reco.SUPPORT} support, valid region, C {reco.C}, eps {reco.EPS}, "
    "BT.601 luminance scaled to [0, 1]; reco = mean of per-image (ECO_fake + C) / (ECO_real + C), "
    "reco_set = sum(ECO_fake + C) / sum(ECO_real + C) over the set; ECO has no fixed sign"
)
FCN_ABSENT: dict[str, str] = {
    "zero": "classes absent from ground truth (accuracy) or from both maps (IoU) score 0 and count in "
    "the means (the pix2pix FCN-score script's convention)",
    "nan": "classes absent from ground truth (accuracy) or from both maps (IoU) are NaN and left out of "
    "the means (the Cityscapes benchmark convention)",
}


Segmenter = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ScoreOptions:
    """What a set of images is scored with, checked when made (one-line errors naming the option).

    ``metrics`` may name "psnr", "ssim", "vif", "reco" (per image, averaged; RECO also as ``reco_set``,
    :func:`pixforge.metrics.reco.set_reco`), "colorfulness" (of each image alone, averaged over the fakes and
    over the reals: ``colorfulness_fake``, ``colorfulness_real``) and "kid", "fid" (over the set, on ``features``, by default
    the standard TF-Inception pool3 network; KID is reported x100 with its std over ``kid_subsets``
    subsets of ``kid_subset_size`` drawn with ``kid_seed``, see :func:`pixforge.metrics.kid.subset_size_for`).
    ``color`` is "rgb" or "y" for PSNR and SSIM (:mod:`pixforge.metrics.image`). ``segmenter`` and
    ``num_classes`` give FCN-scores (with label maps, :func:`evaluate_dirs`); ``fcn_absent`` ("zero", the
    pix2pix FCN-score script's convention, or "nan") is passed to
    :func:`pixforge.metrics.segmentation.fcn_scores`.
    """

    metrics: Sequence[str] = PER_IMAGE
    segmenter: Segmenter | None = None
    num_classes: int | None = None
    features: FeatureExtractor | None = None
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    kid_seed: int = 0
    color: Color = "rgb"
    fcn_absent: AbsentClasses = "zero"

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        unknown = sorted(set(self.metrics) - set(ALL_METRICS))
        if unknown:
            raise PixforgeError(
                f"unknown metric(s) {', '.join(unknown)}: choose from {', '.join(ALL_METRICS)}"
            )
        if self.color not in COLOUR_SPACE:
            raise PixforgeError(f"--color {self.color!r}: choose from {', '.join(COLOUR_SPACE)}")
        if self.fcn_absent not in FCN_ABSENT:
            raise PixforgeError(f"--fcn-absent {self.fcn_absent!r}: choose from {', '.join(FCN_ABSENT)}")

    @property
    def set_level(self) -> list[str]:
        """The set-level metrics asked for (KID, FID), in their standard order."""
        return [name for name in SET_LEVEL if name in self.metrics]


DEFAULT_SCORING = ScoreOptions()


def _image_settings(metrics: Sequence[str], color: Color) -> dict[str, object]:
    """The colour space and data range, and the settings of the per-image metrics in ``metrics``."""
    settings: dict[str, object] = {
        "colour_space": f"{COLOUR_SPACE[color]}; images are never resized for the per-image metrics",
        "data_range": 255,
    }
    described = {
        "psnr": PSNR[color],
        "ssim": SSIM[color],
        "vif": VIF,
        "reco": RECO,
        "colorfulness": colorfulness.DESCRIPTION,
    }
    settings.update({name: text for name, text in described.items() if name in metrics})
    return settings


@dataclass
class Report:
    """Set-level values, the settings that produced them, per-image rows and per-class FCN arrays."""

    values: dict[str, float]
    settings: dict[str, object]
    per_image: list[dict[str, object]]
    per_class: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> str:
        """Strict JSON; non-finite numbers (PSNR of identical images, absent classes) become "inf"/"nan"."""
        return json.dumps(_finite_json(asdict(self)), indent=2, allow_nan=False)

    def to_markdown(self) -> str:
        """A metric table followed by a settings table."""
        lines = ["| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in self.values.items()]
        lines += ["", "| setting | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in self.settings.items()]
        return "\n".join(lines) + "\n"


def _finite_json(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(item) for item in value]
    return value


def parse_metrics(text: str) -> tuple[str, ...]:
    """A comma-separated metric list ("psnr,ssim", or "all" for every metric) as names, checked."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return ALL_METRICS
    unknown = [name for name in names if name not in ALL_METRICS]
    if unknown or not names:
        raise PixforgeError(
            f"--metrics {text!r}: choose from {', '.join(ALL_METRICS)} or all, comma-separated"
        )
    return tuple(names)


def evaluate_dirs(
    fake: Path,
    real: Path,
    scoring: ScoreOptions = DEFAULT_SCORING,
    *,
    labels: Path | None = None,
    ignore_index: int | None = 255,
) -> Report:
    """Compare generated images in ``fake`` with references in ``real`` (matched by file stem).

    ``scoring`` says which metrics and how (:class:`ScoreOptions`). With ``labels`` (a folder of
    single-channel class-id PNGs matched by stem) and the segmenter and class count of ``scoring``,
    FCN-scores are added at the label maps' resolution, as the pix2pix FCN-score script scores them: a
    generated image of another size is first resized to its label map's (PIL bilinear, what that
    script's ``scipy.misc.imresize`` does). The segmenter gets it as a 1 x 3 x H x W float32 CPU tensor
    in [-1, 1] (under ``torch.inference_mode``; put it in eval mode yourself) and returns 1 x H x W class
    ids or 1 x C x H x W scores (argmax over C); label pixels equal to ``ignore_index`` are skipped and
    other ids must lie in 0..num_classes-1.
    """
    metrics, color = scoring.metrics, scoring.color
    segmenter, num_classes = scoring.segmenter, scoring.num_classes
    fcn = _check_fcn_options(labels, segmenter, num_classes)
    image_settings = _image_settings(metrics, color)
    fake_files, real_files = _image_files(Path(fake)), _image_files(Path(real))
    stems = _matched_stems(Path(fake), fake_files, Path(real), real_files)
    label_files = _label_files(Path(labels), stems) if fcn else {}
    set_level = scoring.set_level
    if set_level and len(stems) < 2:
        raise PixforgeError(f"KID/FID need at least 2 image pairs, {fake} and {real} have {len(stems)}")
    features = scoring.features
    if set_level and features is None:
        features = InceptionFeatures()

    per_image: list[dict[str, object]] = []
    fake_feats: list[np.ndarray] = []
    real_feats: list[np.ndarray] = []
    confusion = ConfusionMatrix(num_classes, ignore_index) if fcn else None
    sizes: set[tuple[int, int]] = set()
    for chunk in _chunks(stems, CHUNK):
        fakes, reals = [], []
        for stem in chunk:
            fake_image, real_image = _load_pair(fake_files[stem], real_files[stem])
            sizes.add(real_image.shape[:2])
            per_image.append(
                {"stem": stem, **_per_image_metrics(fake_files[stem], fake_image, real_image, metrics, color)}
            )
            if confusion is not None:
                _segment(segmenter, fake_image, label_files[stem], confusion)
            fakes.append(fake_image)
            reals.append(real_image)
        if set_level:
            fake_feats.append(features(fakes))
            real_feats.append(features(reals))

    values = {name: float(np.mean([row[name] for row in per_image])) for name in PER_IMAGE if name in metrics}
    for name in PER_SIDE:
        if name in metrics:
            values.update(
                {
                    f"{name}_{side}": float(np.mean([row[f"{name}_{side}"] for row in per_image]))
                    for side in ("fake", "real")
                }
            )
    if "reco" in metrics:
        values["reco_set"] = reco.set_reco(
            [row["eco_fake"] for row in per_image], [row["eco_real"] for row in per_image]
        )
    settings: dict[str, object] = {
        "n_images": len(stems),
        "resolution": ", ".join(sorted(f"{w}x{h}" for h, w in sizes)),
        **image_settings,
    }
    if set_level:
        distance_values, distance_settings = _distances(
            np.concatenate(fake_feats),
            np.concatenate(real_feats),
            set_level,
            features,
            scoring,
        )
        values.update(distance_values)
        settings.update(distance_settings)
    per_class: dict[str, list[float]] = {}
    if confusion is not None:
        scores = fcn_scores(confusion, absent=scoring.fcn_absent)
        values.update({f"fcn_{key}": scores[key] for key in FCN_MEANS})
        per_class = {f"fcn_{key}": scores[key].tolist() for key in ("class_accuracy", "class_iou")}
        settings["fcn"] = (
            f"segmenter {_describe(segmenter)} on generated images vs "
            f"labels in {labels}; {num_classes} classes, ignore index {ignore_index}; scored at the label "
            "maps' resolution (generated images of another size resized to it, PIL bilinear); one "
            f"confusion matrix over the set; {FCN_ABSENT[scoring.fcn_absent]}"
        )
    return Report(values=values, settings=settings, per_image=per_image, per_class=per_class)


def _kid_subsets(n_fake: int, n_real: int, subset_size: int) -> str:
    """The KID subset size, and why when it is not the requested one."""
    size = kid.subset_size_for(n_fake, n_real, subset_size)
    if size == subset_size:
        return f"subset size {size}"
    return (
        f"subset size {size} (the smaller set, {min(n_fake, n_real)} images, is smaller than the requested "
        f"{subset_size}: subsets of half of it, at least 2, so that they differ and the std means something)"
    )


def _describe(segmenter: Segmenter) -> str:
    """A segmenter's ``description`` attribute, else its function or class name."""
    return getattr(segmenter, "description", None) or getattr(segmenter, "__name__", type(segmenter).__name__)


def _check_fcn_options(labels: Path | None, segmenter: Segmenter | None, num_classes: int | None) -> bool:
    given = {
        "labels": labels is not None,
        "segmenter": segmenter is not None,
        "num_classes": num_classes is not None,
    }
    if any(given.values()) and not all(given.values()):
        missing = ", ".join(name for name, present in given.items() if not present)
        raise PixforgeError(f"FCN-scores need labels, segmenter and num_classes together: {missing} missing")
    return all(given.values())


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise PixforgeError(f"image folder {folder} does not exist")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            raise PixforgeError(
                f"{files[path.stem]} and {path} share a stem: keep one image per stem in {folder}"
            )
        files[path.stem] = path
    if not files:
        raise PixforgeError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _listed(stems: Sequence[str]) -> str:
    shown = ", ".join(stems[:MAX_LISTED])
    return shown + (", ..." if len(stems) > MAX_LISTED else "")


def _matched_stems(
    fake: Path, fake_files: dict[str, Path], real: Path, real_files: dict[str, Path]
) -> list[str]:
    only_fake = sorted(set(fake_files) - set(real_files))
    only_real = sorted(set(real_files) - set(fake_files))
    if only_fake or only_real:
        raise PixforgeError(
            f"{fake} and {real} do not match by file stem: {len(only_fake)} only in {fake} "
            f"({_listed(only_fake)}), {len(only_real)} only in {real} ({_listed(only_real)})"
        )
    return sorted(fake_files)


def _label_files(labels: Path, stems: Sequence[str]) -> dict[str, Path]:
    files = _image_files(labels)
    missing = [stem for stem in stems if stem not in files]
    if missing:
        raise PixforgeError(f"{len(missing)} label map(s) missing in {labels}: {_listed(missing)}")
    return files


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_rgb(path: Path) -> np.ndarray:
    try:
        return np.asarray(open_image(path, "RGB"), dtype=np.uint8)
    except BrokenImageError as error:
        raise PixforgeError(f"{error}: replace or remove it") from None


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _load_pair(fake_path: Path, real_path: Path) -> tuple[np.ndarray, np.ndarray]:
    fake, real = _load_rgb(fake_path), _load_rgb(real_path)
    if fake.shape != real.shape:
        raise PixforgeError(
            f"{fake_path} is {_size(fake)} but its reference {real_path} is {_size(real)}: "
            "generate images at the reference size"
        )
    return fake, real


def _reco_row(fake: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """RECO of a pair with the two ECO values it comes from (the set-level ratio sums them)."""
    eco_fake, eco_real = reco.eco(fake), reco.eco(real)
    return {"reco": reco.ratio(eco_fake, eco_real), "eco_fake": eco_fake, "eco_real": eco_real}


def _per_image_metrics(
    path: Path, fake: np.ndarray, real: np.ndarray, metrics: Sequence[str], color: Color
) -> dict[str, float]:
    row: dict[str, float] = {}
    try:
        if "psnr" in metrics:
            row["psnr"] = image.psnr(fake, real, color=color)
        if "ssim" in metrics:
            row["ssim"] = image.ssim(fake, real, color=color)
        if "vif" in metrics:
            row["vif"] = image.vif(fake, real)
        if "reco" in metrics:
            row.update(_reco_row(fake, real))
        if "colorfulness" in metrics:
            row.update(
                colorfulness_fake=colorfulness.colorfulness(fake),
                colorfulness_real=colorfulness.colorfulness(real),
            )
    except ValueError as error:
        raise PixforgeError(f"{path}: {error}") from None
    return row


def _segment(
    segmenter: Segmenter,
    fake: np.ndarray,
    label_path: Path,
    confusion: ConfusionMatrix,
) -> None:
    try:
        label = np.asarray(open_image(label_path, ""))
    except BrokenImageError as error:
        raise PixforgeError(f"{error} (a label map): replace or remove it") from None
    if label.ndim != 2:
        raise PixforgeError(
            f"label map {label_path} has shape {label.shape}, expected single-channel class ids "
            "(height x width)"
        )
    if label.shape != fake.shape[:2]:
        fake = np.asarray(Image.fromarray(fake).resize(label.shape[::-1], Image.Resampling.BILINEAR))
    tensor = torch.from_numpy(np.array(fake, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.inference_mode():
        output = segmenter(tensor)
    prediction = output.argmax(dim=1) if output.ndim == 4 else output
    try:
        confusion.update(prediction[0], label)
    except ValueError as error:
        raise PixforgeError(f"{label_path}: {error}") from None


def _distances(
    fake_feats: np.ndarray,
    real_feats: np.ndarray,
    wanted: Sequence[str],
    features: FeatureExtractor,
    scoring: ScoreOptions,
) -> tuple[dict[str, float], dict[str, object]]:
    """KID (x100, with std) and/or FID, named by :func:`distance_names`, and their settings."""
    subset_size, subsets, seed = scoring.kid_subset_size, scoring.kid_subsets, scoring.kid_seed
    kid_name, fid_name = distance_names(features)
    values: dict[str, float] = {}
    settings: dict[str, object] = {"feature_network": f"{features.name} ({fake_feats.shape[1]}-d)"}
    if isinstance(features, InceptionFeatures):
        settings["feature_network"] += f", file {features.path}"
        settings["feature_input"] = "TF legacy bilinear resize to 299x299, (v - 128) / 128"
    if "kid" in wanted:
        mean, std = kid.kid(fake_feats, real_feats, subset_size=subset_size, num_subsets=subsets, seed=seed)
        values[f"{kid_name}x100"] = 100.0 * mean
        values[f"{kid_name}x100_std"] = 100.0 * std
        settings["kid"] = (
            "unbiased MMD^2, kernel (x.y/d + 1)^3, x100, std over subsets (ddof 0); "
            f"{_kid_subsets(len(fake_feats), len(real_feats), subset_size)}, {subsets} subsets, seed {seed}"
        )
    if "fid" in wanted:
        values[fid_name] = kid.fid(fake_feats, real_feats)
        settings["fid"] = "Frechet distance of Gaussians, covariance ddof 1, real part of scipy sqrtm"
    return values, settings
