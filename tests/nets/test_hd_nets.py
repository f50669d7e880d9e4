"""pix2pixHD networks: the appendix architectures, the pyramid, instance-wise pooling, multi-scale D, losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixforge.errors import PixforgeError
from pixforge.losses import VGGLoss, feature_matching_loss
from pixforge.nets.blocks import ResnetBlock
from pixforge.nets.discriminators import MultiScaleDiscriminator
from pixforge.nets.generators import (
    CoarseToFineGenerator,
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancer,
    instance_average,
)


def layer_codes(net: nn.Module) -> list[str]:
    """The appendix notation of a generator: c7s1-k, dk, Rk, uk (layers in registration order)."""
    inside_blocks = {id(c) for b in net.modules() if isinstance(b, ResnetBlock) for c in b.modules()}
    codes = []
    for m in net.modules():
        if isinstance(m, ResnetBlock):
            codes.append(f"R{m.body[1].out_channels}")
        elif id(m) in inside_blocks:
            continue
        elif isinstance(m, nn.ConvTranspose2d):
            codes.append(f"u{m.out_channels}")
        elif isinstance(m, nn.Conv2d):
            kind = (
                "c7s1-"
                if m.kernel_size == (7, 7) and m.stride == (1, 1)
                else "d"
                if m.stride == (2, 2)
                else "?"
            )
            codes.append(f"{kind}{m.out_channels}")
    return codes


def test_global_generator_is_the_appendix_network() -> None:
    net = GlobalGenerator(36, 3, ngf=64, n_downsampling=4, n_blocks=9)
    assert layer_codes(net) == [
        "c7s1-64", "d128", "d256", "d512", "d1024", *["R1024"] * 9, "u512", "u256", "u128", "u64", "c7s1-3",
    ]  # fmt: skip
    assert all(isinstance(m, nn.ReflectionPad2d) for m in (net.body[0], net.head[0]))
    assert any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_local_enhancer_is_the_appendix_network_and_g1_loses_its_head() -> None:
    g = CoarseToFineGenerator(36, 3, ngf=64, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=1)
    assert g.global_net.head is None
    assert layer_codes(g.enhancers[0]) == ["c7s1-32", "d64", "R64", "R64", "R64", "u32", "c7s1-3"]
    assert g.size_multiple == 4


def test_enhancer_adds_the_coarser_feature_map_before_its_residual_blocks() -> None:
    torch.manual_seed(0)
    enhancer = LocalEnhancer(4, 3, ngf=4, n_blocks=1, norm="none")
    x = torch.randn(1, 4, 16, 16)
    coarser = torch.randn(1, 8, 8, 8)
    front = enhancer.front(x)
    assert front.shape == coarser.shape
    assert torch.allclose(enhancer(x, coarser), enhancer.head(enhancer.body(front + coarser)))


@pytest.mark.parametrize("enhancers", [0, 1, 2])
def test_any_number_of_enhancers_on_non_square_inputs(enhancers: int) -> None:
    torch.manual_seed(0)
    g = CoarseToFineGenerator(
        5, 3, ngf=8, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=enhancers, n_blocks_local=1
    )
    side = 2 * g.size_multiple
    out = g(torch.randn(1, 5, side, 2 * side))
    assert out.shape == (1, 3, side, 2 * side)
    assert out.abs().max() <= 1
    assert len(g.enhancers) == enhancers


def test_global_generator_sees_the_input_downsampled() -> None:
    torch.manual_seed(0)
    g = CoarseToFineGenerator(
        2, 3, ngf=4, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=1, n_blocks_local=1
    )
    seen = []
    g.global_net.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    g(torch.randn(1, 2, 16, 32))
    assert seen == [torch.Size([1, 2, 8, 16])]


def test_freeze_global_trains_the_outermost_enhancer_only_and_passes_gradients_through() -> None:
    """NVIDIA leaves G1 and the inner enhancers out of the optimiser: no parameter gradient there, but the
    input (hence the feature encoder feeding it) gets exactly the gradient of an unfrozen pass."""
    torch.manual_seed(0)
    g = CoarseToFineGenerator(
        2, 3, ngf=8, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=2, n_blocks_local=1
    )
    x = torch.randn(1, 2, 32, 32)
    frozen_in = x.clone().requires_grad_(True)
    g(frozen_in, freeze_global=True).square().mean().backward()
    assert all(p.grad is None for p in g.global_net.parameters())
    assert all(p.grad is None for p in g.enhancers[0].parameters())
    assert all(p.grad is not None for p in g.enhancers[1].parameters())
    outermost = [p.grad.clone() for p in g.enhancers[1].parameters()]
    g.zero_grad(set_to_none=True)
    free_in = x.clone().requires_grad_(True)
    g(free_in).square().mean().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert torch.allclose(frozen_in.grad, free_in.grad, atol=1e-7, rtol=1e-5)
    assert all(torch.allclose(a, p.grad) for a, p in zip(outermost, g.enhancers[1].parameters(), strict=True))


def test_generator_refuses_sizes_it_cannot_take() -> None:
    g = CoarseToFineGenerator(2, 3, ngf=4, n_downsample_global=2, n_blocks_global=1)
    with pytest.raises(PixforgeError, match="multiples of 4"):
        g(torch.randn(1, 2, 12, 18))
    with pytest.raises(PixforgeError, match="ngf"):
        CoarseToFineGenerator(2, 3, ngf=6, n_local_enhancers=2)


def test_instance_average_means_per_instance_and_per_sample() -> None:
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3).requires_grad_()
    ids = torch.tensor([[[[5, 5, 9], [9, 9, 0]]], [[[5, 5, 5], [5, 5, 5]]]])
    out = instance_average(x, ids)
    expected = torch.tensor([[[[0.5, 0.5, 3.0], [3.0, 3.0, 5.0]]], [[[8.5] * 3, [8.5] * 3]]])
    assert torch.allclose(out, expected)
    out[0, 0, 0, 0].backward()
    assert torch.allclose(x.grad[0, 0, 0, :2], torch.tensor([0.5, 0.5]))
    assert float(x.grad.abs().sum()) == pytest.approx(1.0)


def test_instance_average_under_bf16_autocast_equals_fp32_within_bf16_rounding() -> None:
    """Two instances of 2048 px: bf16 counters would stop at 256 (issue 15). The fp32 means of bf16 inputs
    differ from the fp32 means by at most half a bf16 ulp (input rounding, averaged), and the bf16 output
    adds half an ulp: for means in [0.25, 1) one ulp is 2^-8."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 0.5 + 0.25
    ids = torch.zeros(2, 1, 64, 64, dtype=torch.long)
    ids[:, :, :, 32:] = 7
    fp32 = instance_average(x, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = instance_average(x.bfloat16(), ids)
    assert bf16.dtype == torch.bfloat16
    assert torch.allclose(bf16.float(), fp32, rtol=0, atol=2**-8)


def test_feature_encoder_output_is_constant_within_instances() -> None:
    torch.manual_seed(0)
    enc = FeatureEncoder(3, feat_num=3, nef=4, n_downsampling=2)
    ids = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    ids[..., 4:10, 2:7] = 3
    out = enc(torch.randn(1, 3, 16, 16), ids)
    assert out.shape == (1, 3, 16, 16)
    inside = out[0][:, ids[0, 0] == 3]
    assert torch.allclose(inside, inside[:, :1].expand_as(inside))
    assert not torch.allclose(out[0, :, 0, 0], inside[:, 0])


def test_multiscale_discriminator_returns_features_of_each_scale() -> None:
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(4, ndf=4, n_layers=2, num_D=3)
    outs = d(torch.randn(2, 4, 96, 64))
    assert len(outs) == 3
    assert all(len(features) == 2 + 2 for features in outs)
    scores = [features[-1] for features in outs]
    assert [s.shape[1] for s in scores] == [1, 1, 1]
    assert (
        scores[0].shape[-2:] == (27, 19)
        and scores[1].shape[-2:] == (15, 11)
        and scores[2].shape[-2:] == (9, 7)
    )
    assert outs[0][0].shape[1] == 4 and outs[0][1].shape[1] == 8


def test_multiscale_discriminator_pads_as_nvidia() -> None:
    """NVIDIA's padding ceil((4 - 1) / 2) = 2 on every conv: 35x67 / 19x35 / 11x19 at 256x512."""
    d = MultiScaleDiscriminator(4, ndf=2, n_layers=3, num_D=3)
    with torch.no_grad():
        scores = [features[-1] for features in d(torch.zeros(1, 4, 256, 512))]
    assert [tuple(s.shape[-2:]) for s in scores] == [(35, 67), (19, 35), (11, 19)]
    assert all(m.padding == (2, 2) for m in d.modules() if isinstance(m, nn.Conv2d))


def test_multiscale_discriminator_refuses_too_small_images() -> None:
    d = MultiScaleDiscriminator(4, ndf=4, n_layers=3, num_D=3)
    with pytest.raises(PixforgeError, match="num_D=3"):
        d(torch.randn(1, 4, 64, 64))


def test_feature_matching_weights_and_detached_real() -> None:
    real = [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)] for _ in range(2)]
    fake = [
        [torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0), torch.full((1, 1, 1, 1), 100.0)]
        for _ in range(2)
    ]
    # two intermediate layers per D, weight 4/2 each, score map ignored, mean over the 2 Ds
    assert float(feature_matching_loss(fake, real)) == pytest.approx(2 * 1 + 2 * 3)
    r = torch.zeros(1, 1, 2, 2, requires_grad=True)
    f = torch.ones(1, 1, 2, 2, requires_grad=True)
    feature_matching_loss([[f, torch.zeros(1)]], [[r, torch.zeros(1)]]).backward()
    assert r.grad is None and f.grad is not None


def test_vgg_loss_weights_the_five_layers() -> None:
    class Fake(nn.Module):
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return [x * (i + 1) for i in range(5)]

    loss = VGGLoss(Fake())
    value = loss(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    assert float(value) == pytest.approx(1 / 32 + 2 / 16 + 3 / 8 + 4 / 4 + 5)
