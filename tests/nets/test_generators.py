import pytest
import torch
from torch import nn

from pixforge.errors import PixforgeError
from pixforge.nets.blocks import ResnetBlock, activation_units, use_checkpointing
from pixforge.nets.generators import (
    GENERATORS,
    CoarseToFineGenerator,
    FeatureEncoder,
    ResnetGenerator,
    UnetGenerator,
    build_generator,
    unet_depth,
)


def count(net, cls):
    return sum(isinstance(m, cls) for m in net.modules())


@pytest.mark.parametrize("name", ["unet", "resnet_6blocks", "resnet_9blocks"])
@pytest.mark.parametrize("size", [32, 64])
def test_generator_maps_to_same_size_in_range(name, size):
    net = build_generator(name, input_nc=3, output_nc=2, ngf=8, norm="batch", dropout=0.5, size=size)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize(("name", "size", "num_downs"), [("unet_128", 128, 7), ("unet_256", 256, 8)])
def test_fixed_depth_unets(name, size, num_downs):
    net = build_generator(name, input_nc=3, output_nc=3, ngf=2, norm="instance", dropout=0.5, size=size)
    assert isinstance(net, UnetGenerator)
    assert len(net.downs) == num_downs
    assert net.size_multiple == 2**num_downs
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert out.shape == (1, 3, size, size)
    assert out.abs().max() <= 1


def test_every_name_builds():
    for name in GENERATORS:
        assert isinstance(build_generator(name, 3, 3, 2, "none", 0.0, 256), nn.Module)


def test_unknown_generator_raises():
    with pytest.raises(PixforgeError, match="netG 'unet_512'.*resnet_9blocks"):
        build_generator("unet_512", 3, 3, 8, "batch", 0.5, 64)


def test_unet_depth():
    assert unet_depth(8) == 3
    assert unet_depth(256) == 8
    assert unet_depth(300) == 8
    with pytest.raises(PixforgeError):
        unet_depth(4)


def test_unet_bottleneck_is_1x1():
    net = UnetGenerator(3, 3, unet_depth(64), ngf=4)
    h = torch.randn(1, 3, 64, 64)
    for down in net.downs:
        h = down(h)
    assert h.shape[-2:] == (1, 1)


def test_unet_encoder_channels_follow_paper():
    net = UnetGenerator(3, 3, 8, ngf=64)
    channels = [down[-1].num_features if isinstance(down[-1], nn.BatchNorm2d) else None for down in net.downs]
    convs = [next(m for m in down if isinstance(m, nn.Conv2d)) for down in net.downs]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert channels[0] is None and channels[-1] is None
    assert channels[1:-1] == [128, 256, 512, 512, 512, 512]


def test_unet_dropout_placement_paper_depth():
    net = UnetGenerator(3, 3, 8, ngf=8, dropout=0.5)
    with_dropout = [level for level, up in enumerate(net.ups) if count(up, nn.Dropout)]
    assert with_dropout == [4, 5, 6]
    assert all(m.p == 0.5 for m in net.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize(
    ("num_downs", "levels"), [(3, []), (5, []), (6, [4]), (7, [4, 5]), (8, [4, 5, 6]), (9, [4, 5, 6, 7])]
)
def test_unet_dropout_only_between_ngf8_blocks(num_downs, levels):
    """The reference's num_downs - 5 dropout blocks: unet_128 has 2 (not 3), unet_256 3, depth 5 none."""
    net = UnetGenerator(3, 3, num_downs, ngf=4, dropout=0.3)
    assert [level for level, up in enumerate(net.ups) if count(up, nn.Dropout)] == levels


def test_unet_128_has_two_dropout_layers():
    net = build_generator("unet_128", 3, 3, 4, "batch", 0.5, 128)
    assert count(net, nn.Dropout) == 2


@pytest.mark.parametrize(("norm", "bias_params"), [("batch", 0), ("instance", 64 + 512)])
def test_unet_256_outer_and_inner_down_convs_have_bias_only_without_batch_norm(norm, bias_params):
    """The reference U-Net: 54,413,955 parameters at unet_256, ngf 64, batch norm (576 fewer than with a
    bias on the outermost and innermost down-convs)."""
    net = build_generator("unet_256", 3, 3, 64, norm, 0.5, 256)
    outer, inner = net.downs[0][-1], net.downs[-1][-1]
    assert sum(c.bias.numel() for c in (outer, inner) if c.bias is not None) == bias_params
    if norm == "batch":
        assert sum(p.numel() for p in net.parameters()) == 54_413_955


def test_unet_without_dropout():
    assert count(UnetGenerator(3, 3, 8, ngf=4, dropout=0.0), nn.Dropout) == 0


def test_unet_outer_skip_connection_carries_signal():
    net = UnetGenerator(1, 1, 3, ngf=4, norm="none", dropout=0.0)
    assert net.ups[0][1].in_channels == 2 * 4
    with torch.no_grad():
        for param in net.ups[1].parameters():
            param.zero_()
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    net(x).sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("n_blocks", [6, 9])
def test_resnet_generator_block_count(n_blocks):
    net = build_generator(f"resnet_{n_blocks}blocks", 3, 3, 4, "instance", 0.0, 32)
    assert isinstance(net, ResnetGenerator)
    assert count(net, ResnetBlock) == n_blocks
    assert net.size_multiple == 4


def test_resnet_generator_dropout_passed_to_blocks():
    net = build_generator("resnet_6blocks", 3, 3, 4, "batch", 0.5, 32)
    assert count(net, nn.Dropout) == 6


@pytest.mark.parametrize(("norm", "cls"), [("batch", nn.BatchNorm2d), ("instance", nn.InstanceNorm2d)])
def test_norm_kinds(norm, cls):
    unet = build_generator("unet", 3, 3, 4, norm, 0.5, 32)
    resnet = build_generator("resnet_6blocks", 3, 3, 4, norm, 0.0, 32)
    assert count(unet, cls) > 0 and count(resnet, cls) > 0
    assert count(build_generator("unet", 3, 3, 4, "none", 0.5, 32), nn.BatchNorm2d) == 0


def test_resnet_generator_size_multiple():
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1, n_downsampling=3)
    assert net.size_multiple == 8
    assert net(torch.randn(1, 3, 24, 40)).shape == (1, 3, 24, 40)


def test_build_generator_initialises_weights():
    torch.manual_seed(0)
    net = build_generator("unet", 3, 3, 16, "batch", 0.5, 64)
    weights = torch.cat(
        [m.weight.flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    )
    assert abs(weights.std().item() - 0.02) < 0.002


@pytest.mark.parametrize(
    ("name", "unet", "size"),
    [
        ("encoder_decoder_128", "unet_128", 128),
        ("encoder_decoder_256", "unet_256", 256),
        ("encoder_decoder", "unet", 64),
    ],
)
def test_encoder_decoder_is_the_unet_without_its_skips(name, unet, size):
    """pix2pix §3.2.1 / Table 2: the same layers, each decoder reading only the level below (no concat)."""
    plain = build_generator(name, input_nc=3, output_nc=3, ngf=2, norm="batch", dropout=0.5, size=size)
    skipped = build_generator(unet, input_nc=3, output_nc=3, ngf=2, norm="batch", dropout=0.5, size=size)
    assert isinstance(plain, UnetGenerator) and len(plain.downs) == len(skipped.downs)
    # each decoder but the innermost loses the weights that read its skip: channels(level) x out x 4 x 4
    skip_weights = sum(
        skip.shape[0] // 2 * skip.shape[1] * 16 for skip in (up[1].weight for up in list(skipped.ups)[:-1])
    )
    params = [sum(p.numel() for p in net.parameters()) for net in (plain, skipped)]
    assert params[1] - params[0] == skip_weights

    seen: dict[int, tuple[str, torch.Tensor]] = {}
    for level, up in enumerate(plain.ups):
        up.register_forward_hook(lambda m, i, o, level=level: seen.update({level: (i[0], o)}))
    with torch.no_grad():
        plain(torch.randn(1, 3, size, size))
    for level in range(len(plain.ups) - 1):
        assert torch.equal(seen[level][0], seen[level + 1][1])


# activation checkpointing -----------------------------------------------------------------------------------

#: generators of every kind that checkpoints, each with its noise or statistics: dropout and batch norm
#: (ResNet, U-Net), a local enhancer (pix2pixHD's G), instance-wise pooling (pix2pixHD's E)
CHECKPOINTED = {
    "resnet": lambda: build_generator("resnet_6blocks", 3, 3, 4, "batch", 0.5, 32),
    "unet": lambda: build_generator("unet", 3, 3, 4, "batch", 0.5, 64),
    "pix2pixhd_G": lambda: CoarseToFineGenerator(4, 3, 8, 2, 2, n_local_enhancers=1, n_blocks_local=2),
    "pix2pixhd_E": lambda: FeatureEncoder(3, 3, 4, 2),
}


def segments(size: int) -> torch.Tensor:
    ids = torch.zeros(2, 1, size, size, dtype=torch.long)
    ids[..., : size // 2, :] = 1
    ids[1, :, :, size // 3 :] = 2
    return ids


def train_step(
    name: str, checkpointing: bool, **forward
) -> tuple[torch.Tensor, dict[str, torch.Tensor], nn.Module]:
    """One forward and backward of generator ``name`` from the same initialisation and random state.

    Returns its output, the gradients of its parameters and of its input, and the network (for its buffers).
    """
    torch.manual_seed(0)
    net = use_checkpointing(CHECKPOINTED[name](), checkpointing).train()
    size = 64 if name == "unet" else 32
    x = torch.randn(2, 4 if name == "pix2pixhd_G" else 3, size, size, requires_grad=True)
    out = net(x, segments(size)) if name == "pix2pixhd_E" else net(x, **forward)
    (out * torch.randn_like(out)).sum().backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    return out, {**grads, "input": x.grad}, net


@pytest.mark.parametrize("name", list(CHECKPOINTED))
def test_checkpointing_gives_the_same_outputs_gradients_and_statistics(name):
    """Exactly the same: non-reentrant checkpointing keeps the plain forward's autograd graph and refills
    its saved tensors by running the same kernels on the same values with the random state replayed, so
    no rounding differs (a dropout mask drawn afresh, or a batch counted twice in the running statistics,
    would show here)."""
    out, grads, net = train_step(name, checkpointing=False)
    out_ckpt, grads_ckpt, net_ckpt = train_step(name, checkpointing=True)
    assert torch.equal(out, out_ckpt)
    assert grads.keys() == grads_ckpt.keys()
    assert all(torch.equal(grads[k], grads_ckpt[k]) for k in grads)
    buffers, buffers_ckpt = dict(net.named_buffers()), dict(net_ckpt.named_buffers())
    assert all(torch.equal(buffers[k], buffers_ckpt[k]) for k in buffers)


def test_checkpointing_keeps_a_frozen_global_generator_frozen():
    """pix2pixHD's first enhancer stage runs G1 on detached weights; its recomputation must not train G1."""
    out, grads, _ = train_step("pix2pixhd_G", checkpointing=False, freeze_global=True)
    out_ckpt, grads_ckpt, _ = train_step("pix2pixhd_G", checkpointing=True, freeze_global=True)
    assert torch.equal(out, out_ckpt)
    frozen = [k for k in grads if k.startswith("global_net.")]
    assert frozen and all(grads[k] is None and grads_ckpt[k] is None for k in frozen)
    trained = [k for k in grads if k not in frozen]
    assert all(torch.equal(grads[k], grads_ckpt[k]) for k in trained)


def conv_calls(name: str, checkpointing: bool, train: bool = True) -> tuple[int, int]:
    """Calls of the generator's convolutions in its forward pass and in its backward pass."""
    net = use_checkpointing(CHECKPOINTED[name](), checkpointing).train(train)
    calls = [0]
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    x = torch.randn(1, 4 if name == "pix2pixhd_G" else 3, 32, 32)
    out = net(x).sum()
    forward = calls[0]
    out.backward()
    return forward, calls[0] - forward


@pytest.mark.parametrize("name", ["resnet", "pix2pixhd_G"])
def test_checkpointing_recomputes_the_convolutions_in_the_backward_pass(name):
    forward, backward = conv_calls(name, checkpointing=False)
    assert backward == 0
    assert conv_calls(name, checkpointing=True) == (forward, forward)


def test_checkpointing_is_off_in_eval_mode_and_without_gradients():
    assert conv_calls("resnet", checkpointing=True, train=False)[1] == 0
    net = use_checkpointing(CHECKPOINTED["resnet"](), True).train()
    calls = [0]
    net.model[1].register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    assert calls[0] == 1


def test_activation_units_are_residual_blocks_and_runs_ending_at_an_activation():
    net = build_generator("resnet_6blocks", 3, 3, 4, "instance", 0.0, 32)
    units = activation_units(net.model)
    kinds = [type(u[-1]).__name__ for u in units]
    assert kinds == ["ReLU"] * 3 + ["ResnetBlock"] * 6 + ["ReLU"] * 2 + ["Tanh"]
    assert [m for u in units for m in u] == list(net.model)
