"""pix2pixHD checkpoints of NVIDIA/pix2pixHD (``latest_net_G.pth``, ``latest_net_D.pth``, ``latest_net_E.pth``).

Read from the tensors (NVIDIA's option names):

- ``netG``: ``model{n}_1`` keys are its ``LocalEnhancer`` with ``n_local_enhancers`` = the largest n,
  else its ``GlobalGenerator``. pixforge's ``ngf`` is the global generator's width: NVIDIA's ``--ngf``
  times 2^``n_local_enhancers`` (its local enhancer's ``ngf_global``), read from the first conv;
- ``n_downsample_global`` (half the 3x3 convs whose output has twice or half the input's channels: one
  down- and one up-sampling per level), ``n_blocks_global`` and ``n_blocks_local`` (``conv_block`` modules);
- the generator's input channels: ``label_nc`` (one-hot; 0 for RGB input: 3 channels) + 1 with instance
  maps + ``feat_num`` with the feature encoder. The encoder file gives ``feat_num``, ``nef`` and
  ``n_downsample_E``; instance maps are assumed (NVIDIA's default) unless ``instances`` says otherwise,
  and ``label_nc`` is what is left;
- the discriminator's ``num_D``, ``n_layers_D`` and ``ndf``, with or without ``getIntermFeat``
  (``scale{i}_layer{j}`` or ``layer{i}`` keys). NVIDIA's D ``scale{num_D-1}`` sees the full-resolution image,
  pixforge's first discriminator does; the layers are matched in that order.

What NVIDIA's test script needs from ``features_clustered_*.npy`` (the K-means styles) is not imported:
the run has no cluster centres until ``pixforge pix2pixhd cluster`` computes them. NVIDIA's checkpoints
hold no optimiser state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from pixforge.config import Config, DataConfig
from pixforge.errors import PixforgeError
from pixforge.interop.runs import ImportOptions, meta_method, reference_files, write_run
from pixforge.interop.statedict import execution_order, infer_norm, input_channels, match, read_pth
from pixforge.methods.base import DataInfo
from pixforge.methods.pix2pixhd import Pix2PixHDConfig

ENHANCER = re.compile(r"^model(\d+)_[12]\.")
D_SCALE = re.compile(r"^(?:scale(\d+)_layer\d+|layer(\d+))\.")
#: NVIDIA's training crop of Cityscapes at 1024x512 (--loadSize 1024 --fineSize 512 ... scale_width)
DEFAULT_SIZE = 512


@dataclass(frozen=True)
class GeneratorShape:
    """The options of NVIDIA's generator read from its tensors."""

    input_nc: int
    output_nc: int
    ngf: int
    n_downsample_global: int
    n_blocks_global: int
    n_local_enhancers: int
    n_blocks_local: int


def _convs(state: dict[str, Tensor], prefix: str) -> list[Tensor]:
    return [v for k, v in state.items() if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 4]


def _blocks(state: dict[str, Tensor], prefix: str) -> int:
    return len({k.split(".conv_block.")[0] for k in state if k.startswith(prefix) and ".conv_block." in k})


def _levels(convs: list[Tensor]) -> int:
    """Sampling levels: 3x3 convs that double or halve the channels come in down/up pairs."""
    scaling = [w for w in convs if w.shape[-1] == 3 and w.shape[0] != w.shape[1]]
    return len(scaling) // 2


def generator_shape(state: dict[str, Tensor], source: Path) -> GeneratorShape:
    """The generator's options from its tensors (see the module docstring)."""
    global_convs = _convs(state, "model.")
    if not global_convs:
        raise PixforgeError(f"{source}: not an NVIDIA pix2pixHD generator (no model.* convolution weights)")
    enhancers = {int(m[1]) for k in state if (m := ENHANCER.match(k))}
    n_local = max(enhancers, default=0)
    last = _convs(state, f"model{n_local}_2.")[-1] if n_local else global_convs[-1]
    return GeneratorShape(
        input_nc=global_convs[0].shape[1],
        output_nc=last.shape[0],
        ngf=global_convs[0].shape[0],
        n_downsample_global=_levels(global_convs),
        n_blocks_global=_blocks(state, "model."),
        n_local_enhancers=n_local,
        n_blocks_local=_blocks(state, "model1_2.") if n_local else 3,
    )


def encoder_options(state: dict[str, Tensor]) -> dict[str, int]:
    """``nef``, ``feat_num`` and ``n_downsample_E`` of NVIDIA's feature encoder."""
    convs = _convs(state, "model.")
    return {"nef": convs[0].shape[0], "feat_num": convs[-1].shape[0], "n_downsample_E": _levels(convs)}


def discriminator_options(state: dict[str, Tensor]) -> dict[str, int]:
    """``num_D``, ``n_layers_D`` and ``ndf`` of NVIDIA's multi-scale discriminator."""
    scales = {_scale(k) for k in state}
    convs = [v for k, v in state.items() if _scale(k) == 0 and k.endswith(".weight") and v.ndim == 4]
    return {"num_D": len(scales), "n_layers_D": len(convs) - 2, "ndf": convs[0].shape[0]}


def _scale(key: str) -> int:
    found = D_SCALE.match(key)
    if not found:
        raise PixforgeError(f"{key}: not a key of NVIDIA's MultiscaleDiscriminator")
    return int(found[1] or found[2])


def finest_first(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """NVIDIA's discriminator tensors reordered so that the full-resolution scale comes first."""
    return dict(sorted(state.items(), key=lambda kv: -_scale(kv[0])))


def import_nvidia(paths: list[Path], out: Path, options: ImportOptions) -> Path:
    """Import an NVIDIA pix2pixHD checkpoint (files or a checkpoint folder) into the run ``out``."""
    if options.method != "pix2pixhd":
        raise PixforgeError(f"--method {options.method}: NVIDIA checkpoints are pix2pixhd")
    files = reference_files(paths, options.epoch, "G")
    if "G" not in files:
        raise PixforgeError(f"no generator (net_G) among {', '.join(str(p) for p in paths)}")
    unknown = sorted(set(files) - {"G", "D", "E"})
    if unknown:
        raise PixforgeError(f"{files[unknown[0]]}: a {unknown[0]} network, which pix2pixhd has not")
    states = {role: read_pth(path) for role, path in files.items()}
    if "D" in states:
        states["D"] = finest_first(states["D"])
    cfg, info = _config(states, files["G"], options)
    meta = meta_method(cfg, info)
    side = max(meta.size_multiple * 2, 64)
    loaded = {}
    for role, state in states.items():
        net = meta.nets[role]
        example = [torch.empty(1, input_channels(net), side, side, device="meta")]
        if role == "E":
            example.append(torch.zeros(1, 1, side, side, dtype=torch.long, device="meta"))
        loaded[role] = match(net, execution_order(net, *example), state, str(files[role]))
    return write_run(out, cfg, info, loaded)


def _config(
    states: dict[str, dict[str, Tensor]], g_file: Path, options: ImportOptions
) -> tuple[Config, DataInfo]:
    """The run's config and data info from the tensors and the options."""
    shape = generator_shape(states["G"], g_file)
    encoder = encoder_options(states["E"]) if "E" in states else {}
    feat_num = encoder.get("feat_num", 0)
    instances = True if options.instances is None else options.instances
    label_nc = options.label_nc
    if label_nc is None:
        label_nc = shape.input_nc - int(instances) - feat_num
    input_nc = label_nc or 3
    if input_nc + int(instances and label_nc > 0) + feat_num != shape.input_nc:
        raise PixforgeError(
            f"{g_file}: the generator takes {shape.input_nc} input channels, not label_nc {label_nc} "
            f"+ {int(instances)} instance + {feat_num} feature channels; check --label-nc and --no-instance"
        )
    model = Pix2PixHDConfig(
        ngf=options.ngf or shape.ngf,
        n_downsample_global=shape.n_downsample_global,
        n_blocks_global=shape.n_blocks_global,
        n_local_enhancers=shape.n_local_enhancers,
        n_blocks_local=shape.n_blocks_local,
        norm=options.norm or infer_norm(states["G"]),
        instances=instances,
        encoder=bool(encoder),
        **encoder,
        **(discriminator_options(states["D"]) if "D" in states else {}),
    )
    size = options.crop_size or DEFAULT_SIZE
    data = DataConfig(
        format="labeled" if label_nc else "auto",
        label_nc=label_nc,
        direction=options.direction,
        preprocess="scale_width",
        load_size=size,
        crop_size=size,
    )
    cfg = Config(method="pix2pixhd", model=model, data=data)
    return cfg, DataInfo(input_nc=input_nc, output_nc=shape.output_nc, size=(size, size), label_nc=label_nc)
