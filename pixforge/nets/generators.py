"""Generators: the pix2pix U-Net and the ResNet generator (Johnson et al. 2016, as used by CycleGAN)."""

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pixforge.errors import PixforgeError
from pixforge.nets.blocks import ResnetBlock, conv_bias, init_weights, norm_layer, pad_layer

GENERATORS = ("unet", "unet_128", "unet_256", "resnet_6blocks", "resnet_9blocks")
MAX_DROPOUT_LEVELS = 3


def unet_channels(level: int, ngf: int) -> int:
    """Encoder output channels of U-Net level ``level`` (0 = outermost): C64-C128-C256-C512-C512-..."""
    return ngf * min(2**level, 8)


def unet_dropout_levels(num_downs: int) -> range:
    """Levels whose decoder layer has dropout: the (at most 3) levels directly outside the innermost one,
    never the outermost two. ``num_downs`` = 8 gives the paper's CD512-CD512-CD512."""
    innermost = num_downs - 1
    return range(max(2, innermost - MAX_DROPOUT_LEVELS), innermost)


class UnetGenerator(nn.Module):
    """U-Net generator of pix2pix (Isola et al. 2017, §3.2.1 and appendix 6.1.1).

    Level ``i`` (0 = outermost) halves the resolution on the way down (conv 4x4 s2 p1) and doubles it on
    the way up (transposed conv 4x4 s2 p1); the decoder of every level but the innermost reads the
    concatenation of the level's encoder output (the skip) and the decoder output of the level below.
    Dropout is the generator's noise (§3.1).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.size_multiple: int = 2**num_downs
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        innermost = num_downs - 1
        dropout_levels = unet_dropout_levels(num_downs) if dropout > 0 else range(0)
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level in range(num_downs):
            channels = unet_channels(level, ngf)
            self.downs.append(self._down(level, innermost, input_nc, channels, ngf, make_norm, bias))
            up_in = channels if level == innermost else 2 * channels
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
            return nn.Sequential(nn.Conv2d(input_nc, channels, 4, 2, 1))
        conv_in = unet_channels(level - 1, ngf)
        if level == innermost:
            return nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(conv_in, channels, 4, 2, 1))
        return nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(conv_in, channels, 4, 2, 1, bias=bias), make_norm(channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.ups[-1](skips[-1])
        for level in reversed(range(len(self.ups) - 1)):
            h = self.ups[level](torch.cat([skips[level], h], dim=1))
        return h


def unet_depth(size: int) -> int:
    """Number of downsamplings that bring a ``size`` x ``size`` input to a 1x1 bottleneck."""
    if size < 8:
        raise PixforgeError(f"image size {size} is too small for the U-Net generator (use size >= 8)")
    return int(math.floor(math.log2(size)))


class ResnetGenerator(nn.Module):
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
        return self.model(x)


def build_generator(
    name: str, input_nc: int, output_nc: int, ngf: int, norm: str, dropout: float, size: int
) -> nn.Module:
    """Build and initialise generator ``name`` (one of :data:`GENERATORS`) for ``size`` x ``size`` images."""
    if name == "unet":
        net: nn.Module = UnetGenerator(input_nc, output_nc, unet_depth(size), ngf, norm, dropout)
    elif name == "unet_128":
        net = UnetGenerator(input_nc, output_nc, 7, ngf, norm, dropout)
    elif name == "unet_256":
        net = UnetGenerator(input_nc, output_nc, 8, ngf, norm, dropout)
    elif name == "resnet_6blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm, n_blocks=6, dropout=dropout)
    elif name == "resnet_9blocks":
        net = ResnetGenerator(input_nc, output_nc, ngf, norm, n_blocks=9, dropout=dropout)
    else:
        raise PixforgeError(f"unknown netG '{name}' (choose {', '.join(GENERATORS)})")
    init_weights(net)
    return net
