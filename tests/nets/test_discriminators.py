import pytest
import torch
from torch import nn

from pixforge.nets.discriminators import Geometry, PatchDiscriminator, conv_geometry, receptive_field


@pytest.mark.parametrize(("n_layers", "rf"), [(0, 1), (1, 16), (3, 70), (5, 286)])
def test_receptive_fields(n_layers, rf):
    assert receptive_field(n_layers) == rf


def test_geometry_of_no_convs():
    assert conv_geometry(nn.Sequential(nn.ReLU())) == Geometry(receptive_field=1, jump=1, start=0.5)


def test_geometry_with_dilation_and_padding():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=0), nn.Conv2d(1, 1, 3, dilation=2, padding=2))
    assert conv_geometry(net) == Geometry(receptive_field=11, jump=2, start=1.5)


def positive_patch_discriminator(n_layers):
    """All weights positive and inputs positive: every LeakyReLU acts as identity, so every pixel in a
    cell's receptive field gets a nonzero gradient."""
    net = PatchDiscriminator(2, ndf=2, n_layers=n_layers, norm="none").double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(0.05)
                m.bias.fill_(0.01)
    return net


@pytest.mark.parametrize(("n_layers", "cell"), [(1, (5, 9)), (3, (3, 4)), (3, (6, 5))])
def test_geometry_matches_gradient_support(n_layers, cell):
    net = positive_patch_discriminator(n_layers)
    geometry = conv_geometry(net)
    x = (torch.rand(1, 2, 96, 96, dtype=torch.float64) + 0.5).requires_grad_()
    scores = net(x)
    row, col = cell
    scores[0, 0, row, col].backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()

    def window(j):
        centre = geometry.start + j * geometry.jump
        return centre - geometry.receptive_field / 2, centre + geometry.receptive_field / 2

    for idx, j in ((rows, row), (cols, col)):
        lo, hi = window(j)
        assert lo >= 0 and hi <= 96, "test cell must be interior"
        assert idx.min().item() == lo
        assert idx.max().item() + 1 == hi
        assert len(idx) == geometry.receptive_field
    assert support.sum().item() == geometry.receptive_field**2


@pytest.mark.parametrize(("n_layers", "size", "score"), [(0, 32, 32), (1, 32, 14), (3, 64, 6), (3, 256, 30)])
def test_score_map_shape(n_layers, size, score):
    net = PatchDiscriminator(6, ndf=4, n_layers=n_layers, norm="instance")
    assert net(torch.randn(2, 6, size, size)).shape == (2, 1, score, score)


def test_features_end_with_score_map():
    net = PatchDiscriminator(3, ndf=4, n_layers=3, norm="batch").eval()
    x = torch.randn(1, 3, 64, 64)
    feats = net.features(x)
    assert len(feats) == len(net.blocks) == 5
    assert [f.shape[1] for f in feats] == [4, 8, 16, 32, 1]
    assert torch.equal(feats[-1], net(x))


def test_pixelgan_structure():
    net = PatchDiscriminator(3, ndf=4, n_layers=0, norm="batch")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1)] * 3
    assert [c.out_channels for c in convs] == [4, 8, 1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 1


def test_patch_discriminator_layout():
    net = PatchDiscriminator(6, ndf=64, n_layers=3, norm="batch")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.blocks[0])
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Sigmoid)) for m in net.blocks[-1])
    assert abs(convs[1].weight.std().item() - 0.02) < 0.002
