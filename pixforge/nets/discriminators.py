"""Discriminators: the pix2pix PatchGAN (and PixelGAN), and the geometry that maps score cells to pixels."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixforge.errors import PixforgeError
from pixforge.nets.blocks import conv_bias, init_weights, norm_layer


class PatchDiscriminator(nn.Module):
    """N-layer PatchGAN of pix2pix (Isola et al. 2017, §3.2.2 and appendix 6.1.2).

    ``n_layers`` = 0, 1, 3, 5 gives receptive fields 1 (PixelGAN), 16, 70 (the default) and 286.
    The output is a map of raw scores (no sigmoid), one per overlapping patch. The stages are kept in
    ``blocks`` so that :meth:`features` can return every intermediate activation. ``padding`` is that of
    every 4x4 conv: 1 in pix2pix's code, 2 (= ceil((4 - 1) / 2)) in pix2pixHD's (see
    :class:`MultiScaleDiscriminator`); it changes the score map's size, not the parameters.
    """

    def __init__(
        self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch", padding: int = 1
    ) -> None:
        super().__init__()
        if n_layers == 0:
            stages = self._pixel_stages(input_nc, ndf, norm)
        else:
            stages = self._patch_stages(input_nc, ndf, n_layers, norm, padding)
        self.blocks = nn.ModuleList(stages)
        init_weights(self)

    @staticmethod
    def _pixel_stages(input_nc: int, ndf: int, norm: str) -> list[nn.Sequential]:
        """PixelGAN: 1x1 convolutions only."""
        return [
            nn.Sequential(nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True)),
            nn.Sequential(
                nn.Conv2d(ndf, 2 * ndf, 1, bias=conv_bias(norm)),
                norm_layer(norm)(2 * ndf),
                nn.LeakyReLU(0.2, True),
            ),
            nn.Sequential(nn.Conv2d(2 * ndf, 1, 1)),
        ]

    @staticmethod
    def _patch_stages(input_nc: int, ndf: int, n_layers: int, norm: str, padding: int) -> list[nn.Sequential]:
        """C64-C128-C256-C512 (n_layers = 3): stride 2 but for the last two convs; no norm on the first."""
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        stages = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, 2, padding), nn.LeakyReLU(0.2, True))]
        channels = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 4, stride, padding, bias=bias),
                    make_norm(out),
                    nn.LeakyReLU(0.2, True),
                )
            )
            channels = out
        stages.append(nn.Sequential(nn.Conv2d(channels, 1, 4, 1, padding)))
        return stages

    def features(self, x: Tensor) -> list[Tensor]:
        """Output of every block in order; the last one is the score map (N, 1, h, w)."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@dataclass(frozen=True)
class Geometry:
    """Where the score cells of a conv stack look in the image (along one axis; the nets are square).

    Pixel ``i`` spans ``[i, i + 1)``. Score cell ``j`` is centred at ``start + j * jump`` and sees
    the pixels in ``[start + j * jump - receptive_field / 2, start + j * jump + receptive_field / 2)``.
    """

    receptive_field: int
    jump: int
    start: float


def conv_geometry(net: nn.Module) -> Geometry:
    """Receptive field, jump (product of strides) and centre of score cell 0 of the Conv2d modules of
    ``net``, walked in registration order (which must be the order they are applied in).

    DRPAN (Wang et al. 2018, §3.2) uses this to map a window of the patch discriminator's score map to
    the image region that produced it, instead of the paper's approximate scale τ of eq. 1-4.
    """
    receptive_field, jump, start = 1, 1, 0.5
    for module in net.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        kernel = module.dilation[0] * (module.kernel_size[0] - 1) + 1
        padding = module.padding[0]
        receptive_field += (kernel - 1) * jump
        start += ((kernel - 1) / 2 - padding) * jump
        jump *= module.stride[0]
    return Geometry(receptive_field=receptive_field, jump=jump, start=start)


def receptive_field(n_layers: int) -> int:
    """Receptive field in pixels of a :class:`PatchDiscriminator` with ``n_layers``."""
    return conv_geometry(PatchDiscriminator(1, ndf=1, n_layers=n_layers, norm="none")).receptive_field


class ImageDiscriminator(nn.Module):
    """DCGAN-like full-image discriminator with one raw score per image (DRPAN's reviser R(x, y): Wang et al.
    2018, §3.3; Radford et al. 2016).

    ``n_layers`` stride-2 4x4 convs (``ndf`` doubling up to 8 * ``ndf``, LeakyReLU 0.2, no norm on the first),
    then DCGAN's head, a 4x4 conv over a 4x4 map, after an adaptive average pool to 4x4, so that the score
    sees the whole image at any size of at least :attr:`min_size` pixels per side, square or not.
    Returns raw scores (N, 1); the losses apply the sigmoid.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1:
            raise PixforgeError(f"ImageDiscriminator: n_layers must be at least 1 (got {n_layers})")
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for i in range(1, n_layers):
            out = ndf * min(2**i, 8)
            layers += [nn.Conv2d(channels, out, 4, 2, 1, bias=bias), make_norm(out), nn.LeakyReLU(0.2, True)]
            channels = out
        self.n_layers = n_layers
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(channels, 1, 4))
        init_weights(self)

    @property
    def min_size(self) -> int:
        """The smallest image side the stride-2 convs can take (each halves it)."""
        return 2**self.n_layers

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise PixforgeError(
                f"ImageDiscriminator with n_layers={self.n_layers} needs images of at least "
                f"{self.min_size} px per side (got {h}x{w}): use fewer layers or larger images"
            )
        return self.head(self.body(x)).flatten(1)


class AttentionPatchDiscriminator(PatchDiscriminator):
    """PatchGAN with GuideGAN's trainable attention module (TAM; papers/002_*, §3.2 eq. 3 and appendix A).

    The first conv is the feature extractor F; the next ``n_layers`` convs of the PatchGAN are the trunk T;
    a mask branch on F (two stride-2 downsamplings, two convs, one bilinear upsampling, a sigmoid) gives
    M(F) in (0, 1) with the trunk's channels, and the last conv classifies E = (M + 1) * T (eq. 3). The
    upsampling goes to the trunk's own size rather than by a fixed factor, and the downsamplings (3x3,
    stride 2, padding 1) never take a side below 1 px, so it works at every input size the PatchGAN takes;
    the branch has no norm layers, which a 1 px map could not feed.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        if n_layers < 1:
            raise PixforgeError(f"the attention PatchGAN needs n_layers >= 1 (got {n_layers})")
        super().__init__(input_nc, ndf, n_layers, norm)
        trunk_nc = ndf * min(2**n_layers, 8)
        self.mask = nn.Sequential(
            nn.Conv2d(ndf, 2 * ndf, 3, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * ndf, 4 * ndf, 3, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * ndf, 4 * ndf, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * ndf, trunk_nc, 1),
        )
        init_weights(self.mask)

    def _run(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        features = self.blocks[0](x)
        outputs = [features]
        for block in self.blocks[1:-1]:
            outputs.append(block(outputs[-1]))
        trunk = outputs[-1]
        mask = torch.sigmoid(
            F.interpolate(self.mask(features), size=trunk.shape[-2:], mode="bilinear", align_corners=False)
        )
        outputs[-1] = (mask + 1) * trunk
        outputs.append(self.blocks[-1](outputs[-1]))
        return outputs, mask

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The score map and the attention mask M (N, C, h, w) of the trunk output, in (0, 1)."""
        outputs, mask = self._run(x)
        return outputs[-1], mask

    def features(self, x: Tensor) -> list[Tensor]:
        """Output of every block in order, the trunk's last one weighted by (M + 1); the last is the score map."""
        return self._run(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x)[0][-1]


class MultiScaleDiscriminator(nn.Module):
    """``num_D`` identical PatchGANs on an image pyramid (pix2pixHD §3.2, eq. 3; appendix C).

    D_1 sees the input, D_k the input downsampled k - 1 times by 3x3 average pooling with stride 2 (so the
    coarsest one has the largest receptive field). :meth:`forward` returns, per discriminator (finest
    first), the output of every block: the intermediate features used by feature matching, then the score
    map last.

    The paper gives the PatchGAN's layers but not its padding; every conv here pads by
    ``padding`` = ceil((kw - 1) / 2) = 2 as the authors' code does (NVIDIA/pix2pixHD ``NLayerDiscriminator``),
    so a 256x512 input gives score maps of 35x67, 19x35 and 11x19 (pix2pix's padding 1 gives 30x62,
    14x30, 6x14).
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        num_D: int = 3,
        padding: int = 2,
    ) -> None:
        super().__init__()
        if num_D < 1:
            raise PixforgeError(f"option num_D: at least one discriminator is needed (got {num_D})")
        self.n_layers = n_layers
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(input_nc, ndf, n_layers, norm, padding) for _ in range(num_D)
        )

    @property
    def min_side(self) -> int:
        """The smallest image side the coarsest discriminator's input may have (its convs shrink it)."""
        return 1 if self.n_layers == 0 else 3 * 2**self.n_layers

    def check_size(self, height: int, width: int) -> None:
        """Fail clearly when the coarsest scale of an (height, width) input is too small for its PatchGAN."""
        h, w = height, width
        for _ in range(len(self.discriminators) - 1):
            h, w = (h + 1) // 2, (w + 1) // 2
        if min(h, w) < self.min_side:
            raise PixforgeError(
                f"images of {width}x{height} are too small for num_D={len(self.discriminators)} "
                f"discriminators with n_layers_D={self.n_layers} (the coarsest sees {w}x{h}, needs "
                f"{self.min_side} px per side): use larger images, fewer num_D or n_layers_D"
            )

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        self.check_size(x.shape[-2], x.shape[-1])
        outputs = []
        for k, net in enumerate(self.discriminators):
            if k:
                x = nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(net.features(x))
        return outputs
