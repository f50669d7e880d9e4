import pytest
import torch
from torch import nn

from pixforge.errors import PixforgeError
from pixforge.nets.blocks import (
    ResnetBlock,
    conv_bias,
    init_weights,
    norm_layer,
    pad_layer,
    set_requires_grad,
)


def test_norm_layer_kinds():
    batch = norm_layer("batch")(4)
    assert isinstance(batch, nn.BatchNorm2d) and batch.affine and batch.track_running_stats
    instance = norm_layer("instance")(4)
    assert isinstance(instance, nn.InstanceNorm2d)
    assert not instance.affine and not instance.track_running_stats
    assert isinstance(norm_layer("none")(4), nn.Identity)


def test_unknown_norm_raises():
    with pytest.raises(PixforgeError, match="unknown norm 'group'"):
        norm_layer("group")


def test_conv_bias_only_without_batch_norm():
    assert not conv_bias("batch")
    assert conv_bias("instance")
    assert conv_bias("none")


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("reflect", nn.ReflectionPad2d), ("replicate", nn.ReplicationPad2d), ("zero", nn.ZeroPad2d)],
)
def test_pad_layer(kind, cls):
    layer = pad_layer(kind, 2)
    assert isinstance(layer, cls)
    assert layer(torch.zeros(1, 1, 5, 5)).shape == (1, 1, 9, 9)


def test_unknown_padding_raises():
    with pytest.raises(PixforgeError, match="unknown padding"):
        pad_layer("circular", 1)


def test_resnet_block_keeps_shape_and_is_residual():
    block = ResnetBlock(4, norm="instance", padding="reflect")
    x = torch.randn(2, 4, 8, 8)
    assert block(x).shape == x.shape
    for param in block.parameters():
        nn.init.zeros_(param)
    assert torch.equal(block(x), x)


def test_resnet_block_dropout_is_optional():
    def dropouts(block):
        return sum(isinstance(m, nn.Dropout) for m in block.modules())

    assert dropouts(ResnetBlock(4)) == 0
    assert dropouts(ResnetBlock(4, dropout=0.5)) == 1


def test_init_weights_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(32, 64, 4), nn.BatchNorm2d(64), nn.ConvTranspose2d(64, 32, 4), nn.Linear(64, 64)
    )
    init_weights(net, gain=0.02)
    for layer in (net[0], net[2], net[3]):
        assert abs(layer.weight.std().item() - 0.02) < 0.002
        assert abs(layer.weight.mean().item()) < 0.002
        assert torch.all(layer.bias == 0)
    assert abs(net[1].weight.mean().item() - 1.0) < 0.01
    assert torch.all(net[1].bias == 0)


def test_set_requires_grad():
    nets = [nn.Linear(2, 2), nn.Conv2d(1, 1, 1)]
    set_requires_grad(nets, False)
    assert not any(p.requires_grad for net in nets for p in net.parameters())
    set_requires_grad(nets, True)
    assert all(p.requires_grad for net in nets for p in net.parameters())
