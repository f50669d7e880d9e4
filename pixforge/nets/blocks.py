"""Building blocks shared by every network: norm and padding factories, the residual block, init."""

from collections.abc import Callable, Iterable

from torch import Tensor, nn

from pixforge.errors import PixforgeError

NORMS = ("batch", "instance", "none")
PADDINGS = ("reflect", "replicate", "zero")


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """Return a factory ``channels -> norm module`` for ``kind`` (batch, instance or none).

    Instance norm has no affine parameters and no running statistics, as in pix2pix/CycleGAN.
    """
    if kind == "batch":
        return lambda channels: nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise PixforgeError(f"unknown norm '{kind}' (choose {', '.join(NORMS)})")


def conv_bias(kind: str) -> bool:
    """Whether a conv followed by a ``kind`` norm needs a bias: not when an affine batch norm follows."""
    return kind != "batch"


def pad_layer(kind: str, p: int) -> nn.Module:
    """Padding module of width ``p`` for ``kind`` (reflect, replicate or zero)."""
    if kind == "reflect":
        return nn.ReflectionPad2d(p)
    if kind == "replicate":
        return nn.ReplicationPad2d(p)
    if kind == "zero":
        return nn.ZeroPad2d(p)
    raise PixforgeError(f"unknown padding '{kind}' (choose {', '.join(PADDINGS)})")


class ResnetBlock(nn.Module):
    """Residual block R``dim``: ``x + [pad, conv3, norm, ReLU, (dropout), pad, conv3, norm](x)``."""

    def __init__(self, dim: int, norm: str = "batch", padding: str = "reflect", dropout: float = 0.0) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            pad_layer(padding, 1),
            nn.Conv2d(dim, dim, kernel_size=3, bias=bias),
            make_norm(dim),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [pad_layer(padding, 1), nn.Conv2d(dim, dim, kernel_size=3, bias=bias), make_norm(dim)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """DCGAN/pix2pix init (Isola et al. 2017, §6.2): conv and linear weights ~ N(0, gain), biases 0;
    batch-norm weights ~ N(1, gain), biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    """Switch gradients of all parameters of ``nets`` on or off (e.g. freeze D during the G step)."""
    for net in nets:
        for param in net.parameters():
            param.requires_grad_(flag)
