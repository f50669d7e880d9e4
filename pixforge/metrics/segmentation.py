"""FCN-scores: segmentation accuracy of an off-the-shelf segmenter run on generated images.

pix2pix (Isola et al. 2017, sec. 4.2) and DRPAN (sec. 4.1) score labels -> photo by segmenting the
generated photos and comparing with the input labels, using the Cityscapes measures: per-pixel
accuracy, mean per-class accuracy and mean class IoU, all from one confusion matrix accumulated over
the whole evaluation set (not averaged per image).
"""

from typing import Literal

import numpy as np
import torch

AbsentClasses = Literal["nan", "zero"]


def _as_int_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(np.int64, copy=False).ravel()


class ConfusionMatrix:
    """A num_classes x num_classes count matrix: rows are ground-truth classes, columns predictions.

    Pixels whose target equals ``ignore_index`` are skipped. Any other target or prediction outside
    0..num_classes-1 raises ``ValueError``.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add the pixels of one prediction / ground-truth pair (any equal shapes of class ids)."""
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}"
            )
        pred_ids, target_ids = _as_int_array(pred), _as_int_array(target)
        if self.ignore_index is not None:
            keep = target_ids != self.ignore_index
            pred_ids, target_ids = pred_ids[keep], target_ids[keep]
        for name, ids in (("target", target_ids), ("prediction", pred_ids)):
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
                raise ValueError(
                    f"{name} class ids must lie in 0..{self.num_classes - 1}, found {ids.min()}..{ids.max()}"
                )
        counts = np.bincount(self.num_classes * target_ids + pred_ids, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)


def fcn_scores(cm: ConfusionMatrix | np.ndarray, absent: AbsentClasses = "zero") -> dict[str, object]:
    """Per-pixel accuracy, mean per-class accuracy and mean class IoU of a confusion matrix.

    With M[i, j] the number of pixels of true class i predicted as j, TP_i = M[i, i], GT_i = sum_j M[i, j]
    and P_i = sum_j M[j, i]:

    - ``pixel_accuracy`` = sum_i TP_i / sum_ij M[i, j];
    - ``class_accuracy[i]`` = TP_i / GT_i and ``class_iou[i]`` = TP_i / (GT_i + P_i - TP_i);
    - ``mean_class_accuracy`` and ``mean_class_iou`` are their means over the classes.

    ``absent`` decides the classes whose denominator is 0. ``"zero"`` (default) is the convention of
    the pix2pix FCN-score script (junyanz/pytorch-CycleGAN-and-pix2pix, ``scripts/eval_cityscapes``,
    ``get_scores``), which produced the FCN-score tables of pix2pix and the papers that compare with
    it: it adds 1e-12 to every denominator, so a class absent from the ground truth (accuracy) or from
    both maps (IoU) scores 0 and is averaged in over all ``num_classes`` classes. ``"nan"`` is the
    Cityscapes benchmark convention: such a class gets NaN and is left out of the means; a class that
    is only predicted gets IoU 0 and counts in both conventions.
    """
    matrix = np.asarray(cm.matrix if isinstance(cm, ConfusionMatrix) else cm, dtype=np.float64)
    tp = np.diag(matrix)
    gt = matrix.sum(axis=1)
    union = gt + matrix.sum(axis=0) - tp
    offset = 1e-12 if absent == "zero" else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        class_accuracy = tp / (gt + offset)
        class_iou = tp / (union + offset)
        pixel_accuracy = tp.sum() / (matrix.sum() + offset)
    return {
        "pixel_accuracy": float(pixel_accuracy),
        "mean_class_accuracy": _nanmean(class_accuracy),
        "mean_class_iou": _nanmean(class_iou),
        "class_accuracy": class_accuracy,
        "class_iou": class_iou,
    }


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
