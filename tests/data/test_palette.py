import numpy as np
import pytest

from pixforge.data.palette import FACADE_CLASSES, FACADE_COLORS, FACADE_LABEL_NC, colors_to_ids, ids_to_colors
from pixforge.errors import PixforgeError


def test_facade_classes_and_colours_follow_cmp_order():
    assert len(FACADE_CLASSES) == 12 and FACADE_LABEL_NC == 13
    assert FACADE_COLORS.shape == (12, 3) and FACADE_COLORS.dtype == np.uint8
    assert FACADE_CLASSES[0] == "background" and tuple(FACADE_COLORS[0]) == (0, 0, 222)
    assert FACADE_CLASSES[10] == "pillar" and tuple(FACADE_COLORS[10]) == (255, 0, 0)
    assert FACADE_CLASSES[11] == "shop" and tuple(FACADE_COLORS[11]) == (175, 0, 0)
    assert len({tuple(c) for c in FACADE_COLORS}) == 12


def test_ids_to_colors_maps_ids_to_palette_and_zero_to_black():
    ids = np.array([[0, 1], [3, 12]])
    rgb = ids_to_colors(ids)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[0, 1]) == tuple(FACADE_COLORS[0])
    assert tuple(rgb[1, 0]) == tuple(FACADE_COLORS[2])
    assert tuple(rgb[1, 1]) == tuple(FACADE_COLORS[11])


def test_round_trip_ids_colours_ids():
    ids = np.random.default_rng(0).integers(1, 13, (17, 23)).astype(np.uint8)
    decoded = colors_to_ids(ids_to_colors(ids))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, ids)


def test_colors_to_ids_is_robust_to_jpeg_like_noise():
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 13, (32, 32))
    noisy = ids_to_colors(ids).astype(int) + rng.integers(-3, 4, (32, 32, 3))
    np.testing.assert_array_equal(colors_to_ids(np.clip(noisy, 0, 255).astype(np.uint8)), ids)


def test_custom_palette():
    palette = np.array([[0, 0, 0], [250, 250, 250]], dtype=np.uint8)
    rgb = np.array([[[10, 5, 0], [240, 251, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(colors_to_ids(rgb, palette), [[1, 2]])
    np.testing.assert_array_equal(ids_to_colors(np.array([[2]]), palette), [[[250, 250, 250]]])


def test_out_of_range_ids_and_bad_shapes_are_rejected():
    with pytest.raises(PixforgeError, match="13"):
        ids_to_colors(np.array([[1, 13]]))
    with pytest.raises(ValueError, match="RGB"):
        colors_to_ids(np.zeros((4, 4), dtype=np.uint8))
