"""What every import shares: its options, the reference files of a checkpoint folder, writing the run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from pixforge import checkpoint
from pixforge.config import Config, validate
from pixforge.errors import PixforgeError
from pixforge.methods.base import DataInfo
from pixforge.train import build_method

#: a reference file's role from its name: ``latest_net_G_A.pth`` is G_A, ``200_net_D.pth`` is D
ROLE = re.compile(r"net_(?P<role>[GDE](?:_[AB])?)\.pth$")


@dataclass
class ImportOptions:
    """What the reference code needs to rebuild its networks; ``None`` is inferred from the tensor shapes.

    Names and meanings are the reference codes' options (``--netG``, ``--ngf``, ``--norm``, ``--label_nc``,
    ``--no_instance``, ``--n_local_enhancers``, ``--direction``, ``--crop_size``).
    """

    method: str
    netG: str | None = None
    ngf: int | None = None
    norm: str | None = None
    label_nc: int | None = None
    instances: bool | None = None
    direction: str = "AtoB"
    crop_size: int | None = None
    epoch: str = "latest"


def reference_files(paths: list[Path], epoch: str, default_role: str) -> dict[str, Path]:
    """Each file's role (G, D, G_A, ...) from its name; a folder gives its ``{epoch}_net_*.pth`` files.

    A file whose name names no role (a published ``facades_label2photo.pth``) is ``default_role``.
    """
    roles: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob(f"{epoch}_net_*.pth"))
            if not found:
                raise PixforgeError(
                    f"{path}: no {epoch}_net_*.pth files (the reference code's checkpoint folder)"
                )
        elif path.is_file():
            found = [path]
        else:
            raise PixforgeError(f"{path}: no such checkpoint file or folder")
        for file in found:
            named = ROLE.search(file.name)
            role = named["role"] if named else default_role
            if role in roles:
                raise PixforgeError(f"{file}: a second {role} network (the first: {roles[role]})")
            roles[role] = file
    return roles


def write_run(out: Path, cfg: Config, info: DataInfo, states: dict[str, dict[str, Tensor]]) -> Path:
    """Write an ordinary run at step 0 into ``out`` whose networks ``states`` names hold those weights
    (the others keep pixforge's initialisation); returns the checkpoint folder."""
    if checkpoint.latest_checkpoint(out) is not None:
        raise PixforgeError(f"--out {out}: already holds a run; choose a new folder")
    validate(cfg)
    method = build_method(cfg, info)
    for name, state in states.items():
        method.nets[name].load_state_dict(state)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    saved = checkpoint.save_checkpoint(out, method, cfg.to_yaml(), 0, {"step": 0}, keep=1)
    return saved


def meta_method(cfg: Config, info: DataInfo) -> torch.nn.Module:
    """The method built on the ``meta`` device: shapes and layer order, no memory (see
    :func:`pixforge.interop.statedict.execution_order`)."""
    with torch.device("meta"):
        return build_method(cfg, info)
