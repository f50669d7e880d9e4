"""Generators: the pix2pix U-Net and the ResNet generator (Johnson et al. 2016, as used by CycleGAN)."""

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pixforge.errors import PixforgeError
from pixforge.nets.blocks import (
    Checkpointable,
    ResnetBlock,
    conv_bias,
    init_weights,
    norm_layer,
    pad_layer,
)

GENERATORS = (
    "unet",
    "unet_128",
    "unet_256",
    "encoder_decoder",
    "encoder_decoder_128",
    "encoder_decoder_256",
    "resnet_6blocks",
    "resnet_9blocks",
)
#: the fixed-depth U-Nets and their encoder-decoders (the same layers without skips): name -> downsamplings
FIXED_DEPTH = {"unet_128": 7, "unet_256": 8, "encoder_decoder_128": 7, "encoder_decoder_256": 8}
#: the first level whose decoder block maps ngf*8 to ngf*8 channels (its encoder reads ngf*8 channels)
FIRST_WIDE_LEVEL = 4


def unet_channels(level: int, ngf: int) -> int:
    """Encoder output channels of U-Net level ``level`` (0 = outermost): C64-C128-C256-C512-C512-..."""
    return ngf * min(2**level, 8)


def unet_dropout_levels(num_downs: int) -> range:
    """Levels whose decoder layer has dropout: the ngf*8 -> ngf*8 blocks outside the innermost one.

    pix2pix appendix 6.1.1 gives the 256 px decoder as CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128:
    dropout on the first three, the blocks between ngf*8 feature maps. The reference code (junyanz) builds
    ``num_downs - 5`` such blocks, so ``num_downs`` = 8 (unet_256) has 3, 7 (unet_128) has 2 and a U-Net
    with depth from a size of 32 px or less has none."""
    return range(FIRST_WIDE_LEVEL, max(FIRST_WIDE_LEVEL, num_downs - 1))


class UnetGenerator(Checkpointable):
    """U-Net generator of pix2pix (Isola et al. 2017, §3.2.1 and appendix 6.1.1).

    Level ``i`` (0 = outermost) halves the resolution on the way down (conv 4x4 s2 p1) and doubles it on
    the way up (transposed conv 4x4 s2 p1); the decoder of every level but the innermost reads the
    concatenation of the level's encoder output (the skip) and the decoder output of the level below.
    Dropout is the generator's noise (§3.1), on the levels of :func:`unet_dropout_levels`. As in the
    reference code (junyanz ``UnetSkipConnectionBlock``), every down-conv has a bias exactly when the norm is
    not batch norm, the outermost and innermost ones too although no norm follows them (with batch norm,
    576 fewer parameters than with those two biases at unet_256, ngf 64).

    ``skips=False`` is the paper's encoder-decoder (§3.2.1, Table 2; appendix 6.1.1: decoder
    CD512-CD512-CD512-C512-C256-C128-C64): the same layers, each decoder reading only the output of the
    level below, so its transposed conv has half the input channels.

    With activation checkpointing (:class:`~pixforge.nets.blocks.Checkpointable`) every level's encoder
    layer and decoder layer is one unit: only the skips and the decoder inputs are stored.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        skips: bool = True,
    ) -> None:
        super().__init__()
        self.size_multiple: int = 2**num_downs
        self.skips = skips
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        innermost = num_downs - 1
        dropout_levels = unet_dropout_levels(num_downs) if dropout > 0 else range(0)
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level in range(num_downs):
            channels = unet_channels(level, ngf)
            self.downs.append(self._down(level, innermost, input_nc, channels, ngf, make_norm, bias))
            up_in = channels if level == innermost or not skips else 2 * channels
            if level == 0:
                up = [nn.ReLU(), nn.ConvTranspose2d(up_in, output_nc, 4, 2, 1), nn.Tanh()]
            else:
                up_out = unet_channels(level - 1, ngf)
                up = [nn.ReLU(), nn.ConvTranspose2d(up_in, up_out, 4, 2, 1, bias=bias), make_norm(up_out)]
                if level in dropout_levels:
                    up.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*up))

    @staticmethod
    def _down(
        level: int,
        innermost: int,
        input_nc: int,
        channels: int,
        ngf: int,
        make_norm: Callable[[int], nn.Module],
        bias: bool,
    ) -> nn.Sequential:
        """Encoder layer of ``level``: no activation before the first, no norm after the first nor the
        innermost (the 1x1 bottleneck)."""
        if level == 0:
            return nn.Sequential(nn.Conv2d(input_nc, channels, 4, 2, 1, bias=bias))
        conv_in = unet_channels(level - 1, ngf)
        if level == innermost:
            return nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(conv_in, channels, 4, 2, 1, bias=bias))
        return nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(conv_in, channels, 4, 2, 1, bias=bias), make_norm(channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = self.checkpointed([down], down, h)
            skips.append(h)
        h = self.checkpointed([self.ups[-1]], self.ups[-1], skips[-1])
        for level in reversed(range(len(self.ups) - 1)):
            up = self.ups[level]
            h = self.checkpointed([up], up, torch.cat([skips[level], h], dim=1) if self.skips else h)
        return h


def unet_depth(size: int) -> int:
    """Number of downsamplings that bring a ``size`` x ``size`` input to a 1x1 bottleneck."""
    if size < 8:
        raise PixforgeError(f"image size {size} is too small for the U-Net generator (use size >= 8)")
    return int(math.floor(math.log2(size)))


class ResnetGenerator(Checkpointable):
    """ResNet generator (Johnson et al. 2016; CycleGAN appendix): c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R,
    u(2ngf), u(ngf), c7s1-output_nc, Tanh (for ``n_downsampling`` = 2)."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "batch",
        n_blocks: int = 9,
        dropout: float = 0.0,
        padding: str = "reflect",
        n_downsampling: int = 2,
    ) -> None:
        super().__init__()
        self.size_multiple: int = 2**n_downsampling
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            pad_layer(padding, 3),
            nn.Conv2d(input_nc, ngf, 7, bias=bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(n_downsampling):
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=bias), make_norm(c_out), nn.ReLU(True)]
        dim = ngf * 2**n_downsampling
        layers += [ResnetBlock(dim, norm=norm, padding=padding, dropout=dropout) for _ in range(n_blocks)]
        for i in reversed(range(n_downsampling)):
            c_in, c_out = ngf * 2 ** (i + 1), ngf * 2**i
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1, bias=bias),
                make_norm(c_out),
                nn.ReLU(True),
            ]
        layers += [pad_layer(padding, 3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.run_layers(self.model, x)


def build_generator(
    name: str, input_nc: int, output_nc: int, ngf: int, norm: str, dropout: float, size: int
) -> nn.Module:
    """Build and initialise generator ``name`` (one of :data:`GENERATORS`) for ``size`` x ``size`` images."""
    if name in ("unet", "encoder_decoder"):
        skips = name == "unet"
        net: nn.Module = UnetGenerator(input_nc, output_nc, unet_depth(size), ngf, norm, dropout, skips=skips)
    elif name in FIXED_DEPTH:
        skips = name.startswith("unet")
        net = UnetGenerator(input_nc, output_nc, FIXED_DEPTH[name], ngf, norm, dropout, skips=skips)
    elif name == "resnet_6blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm, n_blocks=6, dropout=dropout)
    elif name == "resnet_9blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm, n_blocks=9, dropout=dropout)
    else:
        raise PixforgeError(f"unknown netG '{name}' (choose {', '.join(GENERATORS)})")
    init_weights(net)
    return net


# pix2pixHD (Wang et al., CVPR 2018; papers/003_*): coarse-to-fine generator and feature encoder -----------


def downsample_input(x: Tensor) -> Tensor:
    """Halve an input for a coarser scale: 3x3 average pooling with stride 2, padding not counted (pix2pixHD)."""
    return torch.nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


def check_side(x: Tensor, multiple: int, name: str) -> None:
    """Fail clearly unless both sides of ``x`` are multiples of ``multiple`` and at least twice it (the
    bottleneck needs 2 px for reflection padding and instance normalisation)."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or min(h, w) < 2 * multiple:
        raise PixforgeError(
            f"the {name} takes sides that are multiples of {multiple} and at least {2 * multiple} px "
            f"(got {w}x{h}): use larger images or fewer downsamplings"
        )


def _c7s1(input_nc: int, k: int, norm: str, padding: str) -> list[nn.Module]:
    """c7s1-k: 7x7 Convolution-InstanceNorm-ReLU with k filters and stride 1, reflection padding."""
    return [pad_layer(padding, 3), nn.Conv2d(input_nc, k, 7), norm_layer(norm)(k), nn.ReLU(True)]


def _down(input_nc: int, k: int, norm: str) -> list[nn.Module]:
    """dk: 3x3 Convolution-InstanceNorm-ReLU with k filters and stride 2."""
    return [nn.Conv2d(input_nc, k, 3, stride=2, padding=1), norm_layer(norm)(k), nn.ReLU(True)]


def _up(input_nc: int, k: int, norm: str) -> list[nn.Module]:
    """uk: 3x3 fractional-strided Convolution-InstanceNorm-ReLU with k filters and stride 1/2."""
    return [
        nn.ConvTranspose2d(input_nc, k, 3, stride=2, padding=1, output_padding=1),
        norm_layer(norm)(k),
        nn.ReLU(True),
    ]


def _to_image(input_nc: int, output_nc: int, padding: str) -> nn.Sequential:
    """The final c7s1-3: a 7x7 convolution to the output channels, then Tanh."""
    return nn.Sequential(pad_layer(padding, 3), nn.Conv2d(input_nc, output_nc, 7), nn.Tanh())


class GlobalGenerator(Checkpointable):
    """G1 of pix2pixHD (appendix B): c7s1-64, d128, d256, d512, d1024, 9 x R1024, u512, u256, u128, u64,
    c7s1-3 for ``ngf`` = 64, ``n_downsampling`` = 4, ``n_blocks`` = 9.

    ``body`` ends at the last feature map (u64, ``ngf`` channels), which a local enhancer adds to its own
    front-end output; ``head`` (the final c7s1-3 and Tanh) exists only when ``output_nc`` is given, i.e.
    when G1 is the whole generator. Without a head, :meth:`forward` returns the feature map.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int | None,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: str = "instance",
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        layers = _c7s1(input_nc, ngf, norm, padding)
        for i in range(n_downsampling):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1), norm)
        dim = ngf * 2**n_downsampling
        layers += [ResnetBlock(dim, norm=norm, padding=padding) for _ in range(n_blocks)]
        for i in reversed(range(n_downsampling)):
            layers += _up(ngf * 2 ** (i + 1), ngf * 2**i, norm)
        self.body = nn.Sequential(*layers)
        self.head = _to_image(ngf, output_nc, padding) if output_nc else None
        self.size_multiple: int = 2**n_downsampling

    def forward(self, x: Tensor) -> Tensor:
        h = self.run_layers(self.body, x)
        return h if self.head is None else self.run_layers(self.head, h)


class LocalEnhancer(Checkpointable):
    """G2 of pix2pixHD (appendix B): c7s1-32, d64, [+ the coarser generator's last feature map],
    3 x R64, u32, c7s1-3 for ``ngf`` = 32 and ``n_blocks`` = 3.

    The input of the residual blocks is the element-wise sum of the front-end output (2 ``ngf`` channels at
    half the input resolution) and the last feature map of the coarser generator (§3.2, Fig. 2). Only the
    finest enhancer has the c7s1-3 ``head``; the others return their last feature map (u32).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int | None,
        ngf: int = 32,
        n_blocks: int = 3,
        norm: str = "instance",
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        self.front = nn.Sequential(*_c7s1(input_nc, ngf, norm, padding), *_down(ngf, 2 * ngf, norm))
        blocks: list[nn.Module] = [ResnetBlock(2 * ngf, norm=norm, padding=padding) for _ in range(n_blocks)]
        self.body = nn.Sequential(*blocks, *_up(2 * ngf, ngf, norm))
        self.head = _to_image(ngf, output_nc, padding) if output_nc else None

    def forward(self, x: Tensor, coarser: Tensor) -> Tensor:
        h = self.run_layers(self.body, self.run_layers(self.front, x) + coarser)
        return h if self.head is None else self.run_layers(self.head, h)


class CoarseToFineGenerator(nn.Module):
    """G = {G1, G2, ...} of pix2pixHD (§3.2, Fig. 2): a global generator and ``n_local_enhancers`` local
    enhancers, each doubling the output resolution.

    ``ngf`` is the global generator's width (c7s1-``ngf``); enhancer ``k`` (0 = coarsest) has
    ``ngf / 2^(k+1)`` filters, so its d-layer matches the width of the coarser stage's last feature map.
    The global generator sees the input downsampled ``n_local_enhancers`` times, enhancer ``k`` sees it
    downsampled ``n_local_enhancers - 1 - k`` times. Any size that is a multiple of :attr:`size_multiple`
    works, square or not.

    ``freeze_global`` is the first stage of the paper's schedule ("we first train the global generator and
    then train the local enhancer", §3.2): only the outermost (finest) enhancer trains. G1 and the inner
    enhancers run on detached parameters, so they get no gradient while their inputs still do: the feature
    encoder, whose output is part of every stage's input, is trained through G1 as well. This is what the
    authors' code does by leaving the other stages' parameters out of the optimiser (NVIDIA/pix2pixHD
    ``niter_fix_global``); it differs only in starting a fresh Adam for all of G when the stage ends.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        n_downsample_global: int = 4,
        n_blocks_global: int = 9,
        n_local_enhancers: int = 0,
        n_blocks_local: int = 3,
        norm: str = "instance",
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        n = n_local_enhancers
        if ngf % 2**n:
            raise PixforgeError(f"option ngf: {ngf} must be divisible by 2^n_local_enhancers = {2**n}")
        self.global_net = GlobalGenerator(
            input_nc, None if n else output_nc, ngf, n_downsample_global, n_blocks_global, norm, padding
        )
        heads = [output_nc if k == n - 1 else None for k in range(n)]
        self.enhancers = nn.ModuleList(
            LocalEnhancer(input_nc, heads[k], ngf // 2 ** (k + 1), n_blocks_local, norm, padding)
            for k in range(n)
        )
        self.size_multiple: int = 2 ** (n_downsample_global + n)
        init_weights(self)

    def forward(self, x: Tensor, freeze_global: bool = False) -> Tensor:
        check_side(x, self.size_multiple, "generator")
        pyramid = [x]
        for _ in self.enhancers:
            pyramid.append(downsample_input(pyramid[-1]))
        outermost = len(self.enhancers) - 1
        h = run_stage(self.global_net, freeze_global, pyramid[-1])
        for k, enhancer in enumerate(self.enhancers):
            h = run_stage(enhancer, freeze_global and k < outermost, pyramid[outermost - k], h)
        return h


def run_stage(stage: nn.Module, frozen: bool, *inputs: Tensor) -> Tensor:
    """``stage(*inputs)``; when ``frozen``, on detached parameters: the gradient reaches the inputs only."""
    if not frozen:
        return stage(*inputs)
    detached = {name: p.detach() for name, p in stage.named_parameters()}
    return torch.func.functional_call(stage, detached, inputs)


def instance_average(x: Tensor, segments: Tensor) -> Tensor:
    """Instance-wise average pooling (pix2pixHD §3.4): every pixel of ``x`` (N, C, H, W) gets the mean of
    ``x`` over the pixels of its sample with the same id in ``segments`` (N, 1, H, W) (int64, >= 0).

    Ids are grouped by sorting, so the number of instances never has to be read back to the host. Sums and
    counts accumulate in float32 whatever ``x``'s dtype: under bf16 autocast a bf16 counter stops at 256
    (256 + 1 rounds back to 256), which gave instances of 2048 px means ~8x too large; the means are
    returned in ``x``'s dtype.
    """
    n, c, h, w = x.shape
    sample = torch.arange(n, device=x.device).view(n, 1, 1, 1).expand(n, 1, h, w)
    keys = (segments.to(torch.int64) * n + sample).reshape(-1)
    sorted_keys, order = keys.sort()
    starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group = torch.empty_like(order).scatter_(0, order, starts.cumsum(0) - 1)
    flat = x.permute(0, 2, 3, 1).reshape(-1, c).float()
    sums = flat.new_zeros(keys.numel(), c).index_add(0, group, flat)
    counts = flat.new_zeros(keys.numel()).index_add(0, group, torch.ones_like(flat[:, 0]))
    means = sums[group] / counts[group].unsqueeze(1)
    return means.to(x.dtype).reshape(n, h, w, c).permute(0, 3, 1, 2)


class FeatureEncoder(Checkpointable):
    """The feature encoder E of pix2pixHD (§3.4, Fig. 5): an encoder-decoder c7s1-``nef``,
    ``n_downsampling`` x d, as many u, c7s1-``feat_num`` + Tanh, followed by instance-wise average pooling
    so that the features are constant within each instance."""

    def __init__(
        self,
        input_nc: int = 3,
        feat_num: int = 3,
        nef: int = 16,
        n_downsampling: int = 4,
        norm: str = "instance",
        padding: str = "reflect",
    ) -> None:
        super().__init__()
        layers = _c7s1(input_nc, nef, norm, padding)
        for i in range(n_downsampling):
            layers += _down(nef * 2**i, nef * 2 ** (i + 1), norm)
        for i in reversed(range(n_downsampling)):
            layers += _up(nef * 2 ** (i + 1), nef * 2**i, norm)
        self.model = nn.Sequential(*layers, _to_image(nef, feat_num, padding))
        self.size_multiple: int = 2**n_downsampling
        init_weights(self)

    def forward(self, image: Tensor, segments: Tensor) -> Tensor:
        check_side(image, self.size_multiple, "feature encoder")
        return instance_average(self.run_layers(self.model, image), segments)
