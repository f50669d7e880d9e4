"""Discriminators: the pix2pix PatchGAN (and PixelGAN), and the geometry that maps score cells to pixels."""

from dataclasses import dataclass

from torch import Tensor, nn

from pixforge.nets.blocks import conv_bias, init_weights, norm_layer


class PatchDiscriminator(nn.Module):
    """N-layer PatchGAN of pix2pix (Isola et al. 2017, §3.2.2 and appendix 6.1.2).

    ``n_layers`` = 0, 1, 3, 5 gives receptive fields 1 (PixelGAN), 16, 70 (the default) and 286.
    The output is a map of raw scores (no sigmoid), one per overlapping patch. The stages are kept in
    ``blocks`` so that :meth:`features` can return every intermediate activation.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if n_layers == 0:
            stages = self._pixel_stages(input_nc, ndf, norm)
        else:
            stages = self._patch_stages(input_nc, ndf, n_layers, norm)
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
    def _patch_stages(input_nc: int, ndf: int, n_layers: int, norm: str) -> list[nn.Sequential]:
        """C64-C128-C256-C512 (n_layers = 3): stride 2 but for the last two convs; no norm on the first."""
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        stages = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True))]
        channels = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 4, stride, 1, bias=bias), make_norm(out), nn.LeakyReLU(0.2, True)
                )
            )
            channels = out
        stages.append(nn.Sequential(nn.Conv2d(channels, 1, 4, 1, 1)))
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
