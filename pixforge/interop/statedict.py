"""Reading a reference implementation's ``.pth`` and matching its tensors to a pixforge network.

The reference codes save ``net.state_dict()`` with ``torch.save``; the keys name their modules
(``model.model.1.model.3.weight``), which pixforge's do not. pixforge's networks compute the same layers
in the same order, so the match is by order: the reference file lists its layers in registration order,
which for the reference networks is the order they run in, and pixforge's layers are put in the order
they run in by one forward pass on the ``meta`` device (shapes only, no memory, no arithmetic). Layer
``i`` of one takes layer ``i`` of the other; every tensor name and shape is checked, so a wrong option
fails at the first layer that differs, with a one-line error naming both keys and both shapes.

Old formats are read as the reference codes read them: a ``module.`` prefix (``DataParallel``) is dropped,
and the running-statistics keys that torch < 0.4 wrote for ``InstanceNorm`` layers without affine
parameters (junyanz ``BaseModel.__patch_instance_norm_state_dict``) are dropped, as is a missing
``num_batches_tracked`` of batch norm filled with pixforge's own.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from pixforge.errors import PixforgeError

DATA_PARALLEL_PREFIX = "module."
#: keys an affine-free InstanceNorm of torch < 0.4 saved, which hold nothing a forward pass reads
STAT_KEYS = frozenset({"running_mean", "running_var", "num_batches_tracked"})
#: the batch-norm step counter that torch < 0.4.1 did not save; a missing one keeps pixforge's
OPTIONAL_KEYS = frozenset({"num_batches_tracked"})

Layer = tuple[str, dict[str, Tensor]]


def read_pth(path: Path) -> OrderedDict[str, Tensor]:
    """The state dict in ``path`` (``torch.load(weights_only=True)``), ``module.`` prefixes dropped."""
    if not path.is_file():
        raise PixforgeError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise PixforgeError(f"{path}: not a readable PyTorch state dict ({_first_line(exc)})") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise PixforgeError(f"{path}: not a state dict of tensors (expected what net.state_dict() saves)")
    return OrderedDict(
        (k[len(DATA_PARALLEL_PREFIX) :] if k.startswith(DATA_PARALLEL_PREFIX) else k, v)
        for k, v in state.items()
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


def layers(state: dict[str, Tensor]) -> list[Layer]:
    """The layers of a state dict in its order, each (module path, {tensor name: tensor}); layers that hold
    only running statistics (an old affine-free ``InstanceNorm``) are dropped."""
    grouped: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
    for key, value in state.items():
        prefix, leaf = _split(key)
        grouped.setdefault(prefix, {})[leaf] = value
    return [(prefix, leaves) for prefix, leaves in grouped.items() if not set(leaves) <= STAT_KEYS]


def execution_order(net: nn.Module, *example: Tensor) -> list[str]:
    """The paths of ``net``'s modules that hold tensors, in the order a forward pass on ``example`` runs them.

    ``net`` and ``example`` should live on the ``meta`` device, where the pass costs nothing.
    """
    order: list[str] = []
    handles = []
    for name, module in net.named_modules():
        if _holds_tensors(module):
            handles.append(
                module.register_forward_pre_hook(
                    lambda _m, _i, name=name: order.append(name) if name not in order else None
                )
            )
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(*example)
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    return order


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def match(net: nn.Module, order: list[str], reference: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``net``'s state dict filled from ``reference`` layer by layer in ``order`` (see the module docstring).

    Raises a one-line :class:`PixforgeError` naming ``source`` at the first layer that differs.
    """
    own = net.state_dict()
    own_layers: OrderedDict[str, dict[str, Tensor]] = OrderedDict((p, {}) for p in order)
    for key, value in own.items():
        prefix, leaf = _split(key)
        own_layers.setdefault(prefix, {})[leaf] = value
    theirs = layers(reference)
    mapped: dict[str, Tensor] = {}
    for (prefix, mine), (their_prefix, their_leaves) in zip(own_layers.items(), theirs, strict=False):
        mapped.update(_match_layer(prefix, mine, their_prefix, their_leaves, source))
    if len(theirs) != len(own_layers):
        raise PixforgeError(
            f"{source}: {len(theirs)} layers with weights where the pixforge network has {len(own_layers)}; "
            "check the import options (netG, n_blocks, n_local_enhancers, ...)"
        )
    return mapped


def _match_layer(
    prefix: str, mine: dict[str, Tensor], their_prefix: str, theirs: dict[str, Tensor], source: str
) -> dict[str, Tensor]:
    """One layer's tensors under pixforge's names, checked name by name and shape by shape."""
    extra = sorted(set(theirs) - set(mine) - OPTIONAL_KEYS)
    if extra:
        raise PixforgeError(
            f"{source}: {their_prefix}.{extra[0]} has no counterpart in the pixforge layer {prefix} "
            f"(which holds {', '.join(mine)}); check the import options (norm, netG, ...)"
        )
    out = {}
    for leaf, value in mine.items():
        if leaf not in theirs:
            if leaf in OPTIONAL_KEYS:
                out[f"{prefix}.{leaf}"] = value
                continue
            raise PixforgeError(
                f"{source}: layer {their_prefix} has no {leaf} where the pixforge layer {prefix} needs one "
                "(check the import options: norm, ...)"
            )
        given = theirs[leaf]
        if given.shape != value.shape:
            raise PixforgeError(
                f"{source}: {their_prefix}.{leaf} has shape {tuple(given.shape)} where the pixforge "
                f"{prefix}.{leaf} needs {tuple(value.shape)}; check the import options"
            )
        out[f"{prefix}.{leaf}"] = given.to(value.dtype)
    return out


def infer_norm(state: dict[str, Tensor]) -> str:
    """``batch`` when a layer holds an affine weight beside running statistics, else ``instance``."""
    for key in state:
        if key.endswith(".running_mean") and key[: -len("running_mean")] + "weight" in state:
            return "batch"
    return "instance"


def input_channels(net: torch.nn.Module) -> int:
    """The input channels of a network: those of its first convolution."""
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d))
    return first.in_channels
