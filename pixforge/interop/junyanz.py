"""pix2pix and CycleGAN checkpoints of junyanz/pytorch-CycleGAN-and-pix2pix (``latest_net_G.pth``, ...).

The reference saves each network's ``state_dict`` in its own file (``{epoch}_net_{G,D}.pth`` for pix2pix,
``{epoch}_net_{G_A,G_B,D_A,D_B}.pth`` for CycleGAN; the published models are one generator each). What
its ``define_G``/``define_D`` options were is read from the tensors where the shapes tell it:

- ``netG``: nested ``model.model.`` keys are its ``UnetGenerator`` (depth = half the number of 4-D
  weights: 7 is unet_128, 8 unet_256), ``conv_block`` keys its ``ResnetGenerator`` (blocks counted);
- ``ngf`` and the input channels from the first conv, the output channels from the last;
- ``norm``: batch norm leaves affine weights and running statistics; instance norm (affine-free) leaves
  nothing, so ``none`` is told from ``instance`` only by the option;
- the discriminator's ``ndf`` and ``n_layers_D`` (``n_layers`` + 2 convs, 1x1 kernels for ``pixel``).

Dropout holds no tensor: pix2pix runs get the reference's default (0.5, ``use_dropout``), CycleGAN runs
none (``--no_dropout`` is CycleGAN's default). pix2pix runs keep the reference ``test.py``'s default of
translating in train mode (no ``--eval``), which is pixforge's ``test_mode=paper``. The reference saves no
optimiser state, so training an imported run starts fresh Adam moments.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from pixforge.config import Config, DataConfig
from pixforge.errors import PixforgeError
from pixforge.interop.runs import ImportOptions, meta_method, reference_files, write_run
from pixforge.interop.statedict import execution_order, infer_norm, input_channels, match, read_pth
from pixforge.methods.base import DataInfo
from pixforge.methods.cyclegan import CycleGANConfig
from pixforge.methods.pix2pix import Pix2PixConfig

log = logging.getLogger("pixforge")

#: the roles of each method's networks, and which role a file whose name tells none plays
ROLES = {"pix2pix": ("G", "D"), "cyclegan": ("G_A", "G_B", "D_A", "D_B")}
UNET_NAMES = {7: "unet_128", 8: "unet_256"}
RESNET_NAMES = {6: "resnet_6blocks", 9: "resnet_9blocks"}


def conv_weights(state: dict[str, Tensor]) -> list[tuple[str, Tensor]]:
    """The 4-D (convolution) weights of a state dict, in its order."""
    return [(k, v) for k, v in state.items() if k.endswith(".weight") and v.ndim == 4]


def infer_netG(state: dict[str, Tensor], source: Path) -> str:
    """The reference ``netG`` that saved ``state`` (see the module docstring)."""
    if any(k.startswith("model.model.") for k in state):
        depth = len(conv_weights(state)) // 2
        if depth not in UNET_NAMES:
            raise PixforgeError(f"{source}: a U-Net of depth {depth}; pixforge imports unet_128 and unet_256")
        return UNET_NAMES[depth]
    blocks = {k.split(".conv_block.")[0] for k in state if ".conv_block." in k}
    if blocks:
        if len(blocks) not in RESNET_NAMES:
            raise PixforgeError(f"{source}: a ResNet with {len(blocks)} blocks; pixforge imports 6 and 9")
        return RESNET_NAMES[len(blocks)]
    raise PixforgeError(f"{source}: not a junyanz generator (neither UnetGenerator nor ResnetGenerator keys)")


def generator_channels(state: dict[str, Tensor], netG: str) -> tuple[int, int, int]:
    """(input channels, output channels, ngf) from the first and last convolutions."""
    weights = [v for _, v in conv_weights(state)]
    first, last = weights[0], weights[-1]
    output_nc = last.shape[1] if netG.startswith("unet") else last.shape[0]
    return first.shape[1], output_nc, first.shape[0]


def discriminator_options(state: dict[str, Tensor]) -> tuple[int, int]:
    """(ndf, n_layers) of a reference ``NLayerDiscriminator`` or ``PixelDiscriminator``."""
    weights = [v for _, v in conv_weights(state)]
    if weights[0].shape[-1] == 1:
        return weights[0].shape[0], 0
    return weights[0].shape[0], len(weights) - 2


def import_junyanz(paths: list[Path], out: Path, options: ImportOptions) -> Path:
    """Import a junyanz pix2pix or CycleGAN checkpoint (files or a checkpoint folder) into the run ``out``."""
    if options.method not in ROLES:
        raise PixforgeError(f"--method {options.method}: junyanz checkpoints are pix2pix or cyclegan")
    roles = ROLES[options.method]
    files = reference_files(paths, options.epoch, roles[0])
    unknown = sorted(set(files) - set(roles))
    if unknown:
        raise PixforgeError(f"{files[unknown[0]]}: a {unknown[0]} network, which {options.method} has not")
    generators = [r for r in roles if r.startswith("G") and r in files]
    if not generators:
        raise PixforgeError(f"no generator among {', '.join(str(p) for p in paths)}")
    states = {role: read_pth(path) for role, path in files.items()}
    cfg, info = _config(states, files, generators[0], options)
    meta = meta_method(cfg, info)
    size = info.size[0]
    loaded = {}
    for role, state in states.items():
        net = meta.nets[role]
        channels = input_channels(net)
        order = execution_order(net, torch.empty(1, channels, size, size, device="meta"))
        loaded[role] = match(net, order, state, str(files[role]))
    if options.method == "cyclegan" and len(generators) == 1:
        log.warning(
            "only %s was given: the run's other direction keeps an untrained generator", generators[0]
        )
    return write_run(out, cfg, info, loaded)


def _config(
    states: dict[str, dict[str, Tensor]], files: dict[str, Path], g_role: str, options: ImportOptions
) -> tuple[Config, DataInfo]:
    """The run's config and data info from the generator's tensors and the options."""
    g_state, g_file = states[g_role], files[g_role]
    netG = options.netG or infer_netG(g_state, g_file)
    norm = options.norm or infer_norm(g_state)
    input_nc, output_nc, ngf = generator_channels(g_state, netG)
    ngf = options.ngf or ngf
    if g_role == "G_B":
        input_nc, output_nc = output_nc, input_nc
    d_role = next((r for r in ("D", "D_A", "D_B") if r in states), None)
    ndf, n_layers = discriminator_options(states[d_role]) if d_role else (64, 3)
    crop = options.crop_size or (128 if netG == "unet_128" else 256)
    common = {"netG": netG, "ngf": ngf, "ndf": ndf, "n_layers": n_layers, "norm": norm}
    if options.method == "pix2pix":
        model: Pix2PixConfig | CycleGANConfig = Pix2PixConfig(**common)
    else:
        model = CycleGANConfig(**common)
    data = DataConfig(direction=options.direction, crop_size=crop, load_size=round(crop * 286 / 256))
    cfg = Config(method=options.method, model=model, data=data)
    return cfg, DataInfo(input_nc=input_nc, output_nc=output_nc, size=(crop, crop))
