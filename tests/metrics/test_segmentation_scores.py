import numpy as np
import pytest
import torch

from pixforge.metrics.segmentation import ConfusionMatrix, fcn_scores


def test_confusion_matrix_counts_rows_as_ground_truth():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1, 1], [1, 0, 2]]), np.array([[0, 0, 1], [1, 1, 2]]))
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])


def test_updates_accumulate_and_accept_tensors():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    cm.update(np.array([1, 1]), np.array([1, 0]))
    np.testing.assert_array_equal(cm.matrix, [[1, 2], [0, 1]])


def test_ignore_index_skips_pixels_and_out_of_range_ids_are_rejected():
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(np.array([0, 1, 1]), np.array([0, 255, 1]))
    assert cm.matrix.sum() == 2
    with pytest.raises(ValueError, match="target class ids"):
        cm.update(np.array([0, 1]), np.array([0, 2]))
    with pytest.raises(ValueError, match="prediction class ids"):
        cm.update(np.array([0, 5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros(4))


def test_scores_of_a_hand_computed_matrix():
    scores = fcn_scores(np.array([[1, 1, 0], [1, 2, 0], [0, 0, 1]]))
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(scores["class_accuracy"], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(scores["class_iou"], [1 / 3, 2 / 4, 1])
    assert scores["mean_class_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert scores["mean_class_iou"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)


def test_absent_classes_are_nan_and_excluded_with_the_cityscapes_convention():
    # class 2 is predicted but absent from the ground truth; class 3 appears nowhere
    matrix = np.array([[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    scores = fcn_scores(matrix, absent="nan")
    np.testing.assert_allclose(scores["class_accuracy"], [0.5, 1.0, np.nan, np.nan])
    np.testing.assert_allclose(scores["class_iou"], [0.5, 1.0, 0.0, np.nan])
    assert scores["mean_class_accuracy"] == pytest.approx(0.75)
    assert scores["mean_class_iou"] == pytest.approx(0.5)


def test_absent_classes_score_zero_by_default_as_in_the_pix2pix_script():
    """The default is the pix2pix eval_cityscapes convention, so numbers compare with the papers' tables."""
    matrix = np.array([[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    scores = fcn_scores(matrix)
    np.testing.assert_allclose(scores["class_accuracy"], [0.5, 1.0, 0.0, 0.0], atol=1e-9)
    assert scores["mean_class_accuracy"] == pytest.approx(0.375)
    assert scores["mean_class_iou"] == pytest.approx(0.375)
    assert scores["pixel_accuracy"] == pytest.approx(0.75)
