"""Building blocks shared by every network: norm and padding factories, the residual block, init, and
activation checkpointing."""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

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


# activation checkpointing ---------------------------------------------------------------------------------

#: layers after which a run of plain layers ends a checkpoint unit (conv-norm-ReLU, pad-conv-Tanh, ...)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh)
#: norms whose running statistics a training-mode forward updates
RUNNING_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)


def activation_units(layers: Iterable[nn.Module]) -> list[list[nn.Module]]:
    """Split a stack of layers into the units that activation checkpointing stores the input of and
    recomputes: every residual block alone, the other layers in runs that end at an activation."""
    units: list[list[nn.Module]] = []
    run: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, ResnetBlock):
            units += [run, [layer]] if run else [[layer]]
            run = []
            continue
        run.append(layer)
        if isinstance(layer, ACTIVATIONS):
            units.append(run)
            run = []
    return units + [run] if run else units


@contextmanager
def running_stats_kept(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Leave the running statistics of the batch norms in ``modules`` as found on exit.

    A training-mode forward updates them; checkpointing runs a unit's forward a second time in the backward
    pass, which must not count the batch twice.
    """
    norms = [m for module in modules for m in module.modules() if isinstance(m, RUNNING_NORMS)]
    kept = [[b.clone() for b in norm.buffers()] for norm in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, buffers in zip(norms, kept, strict=True):
                for buffer, value in zip(norm.buffers(), buffers, strict=True):
                    buffer.copy_(value)


class Recomputable:
    """The function of one checkpoint unit: the first call is the forward pass; later calls are the
    recomputation in the backward pass, which leaves the batch norms' running statistics alone."""

    def __init__(self, fn: Callable[..., Tensor], modules: list[nn.Module]) -> None:
        self.fn = fn
        self.modules = modules
        self.calls = 0

    def __call__(self, *args: Any) -> Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.fn(*args)
        with running_stats_kept(self.modules):
            return self.fn(*args)


def run_sequence(layers: list[nn.Module], x: Tensor) -> Tensor:
    for layer in layers:
        x = layer(x)
    return x


class Checkpointable(nn.Module):
    """A network that can trade compute for memory: with :attr:`checkpoint_activations` set, a training
    forward with gradients stores only the input of each unit (:func:`activation_units`) and recomputes the
    rest in the backward pass (``torch.utils.checkpoint``, non-reentrant: the autograd graph is the one of
    the plain forward, so outputs and gradients are the same; the CPU and CUDA random states are replayed,
    so dropout draws the same masks). Inference and ``torch.no_grad`` always run plainly.

    Not in the papers: an implementation choice for high resolutions (pix2pixHD at 2048x1024), off by
    default; the weights and their names do not change.
    """

    checkpoint_activations: bool = False

    def checkpointing(self) -> bool:
        return self.checkpoint_activations and self.training and torch.is_grad_enabled()

    def checkpointed(self, modules: list[nn.Module], fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
        """``fn(*args)``, the computation of ``modules``, as one checkpoint unit when checkpointing."""
        if not self.checkpointing():
            return fn(*args)
        return checkpoint(Recomputable(fn, modules), *args, use_reentrant=False)

    def run_layers(self, layers: nn.Sequential, x: Tensor) -> Tensor:
        """``layers(x)``, one checkpoint unit after the other when checkpointing."""
        if not self.checkpointing():
            return layers(x)
        for unit in activation_units(layers):
            x = self.checkpointed(unit, lambda h, unit=unit: run_sequence(unit, h), x)
        return x


def use_checkpointing(net: nn.Module, enabled: bool) -> nn.Module:
    """Switch activation checkpointing of every :class:`Checkpointable` in ``net`` on or off; returns ``net``."""
    for module in net.modules():
        if isinstance(module, Checkpointable):
            module.checkpoint_activations = enabled
    return net
