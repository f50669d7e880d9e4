"""Checkpoints: weights in safetensors with the resolved config, training state beside them.

Layout of a run directory::

    RUN/checkpoints/step_00001000/model.safetensors   weights + inference state (``extra.<name>``: pix2pixHD's
                                                      centres) + metadata (format, method, step, config, data info)
    RUN/checkpoints/step_00001000/state.pt           optimisers, schedulers, step, data position, and
                                                      ``ranks``: per rank its RNG and its training state
                                                      (pools, attention caches; see :func:`training_state`)
    RUN/checkpoints/latest                           name of the newest complete checkpoint

The weights file holds what translating needs and nothing that only training needs, so what
:func:`pixforge.load`, ``pixforge export``, the server and the studio read does not depend on training.

A checkpoint is written into a temporary folder and renamed into place, then ``latest`` is replaced
atomically, so a crash or a full disk never leaves a broken latest checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pixforge.errors import PixforgeError
from pixforge.methods.base import DataInfo, Method

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
STATE = "state.pt"
LATEST = "latest"
EXTRA_PREFIX = "extra."


@dataclass
class Loaded:
    """What a checkpoint holds, read back."""

    path: Path
    method: str
    step: int
    config: dict[str, Any]
    info: DataInfo
    weights: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor]


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    folder = checkpoints_dir(run_dir)
    pointer = folder / LATEST
    if pointer.is_file():
        candidate = folder / pointer.read_text().strip()
        if (candidate / WEIGHTS).is_file():
            return candidate
    steps = sorted(p for p in folder.glob("step_*") if (p / WEIGHTS).is_file()) if folder.is_dir() else []
    return steps[-1] if steps else None


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write(tmp: Path, method: Method, cfg_yaml: str, step: int, state: dict[str, Any]) -> None:
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in method.state_dict().items()}
    tensors.update(
        {EXTRA_PREFIX + k: v.detach().cpu().clone().contiguous() for k, v in method.extra_state().items()}
    )
    metadata = {
        "format": "pixforge",
        "version": str(FORMAT_VERSION),
        "method": method.name,
        "step": str(step),
        "config": cfg_yaml,
        "info": json.dumps(asdict(method.info)),
    }
    save_file(tensors, str(tmp / WEIGHTS), metadata=metadata)
    torch.save(state, tmp / STATE)
    for name in (WEIGHTS, STATE):
        _fsync(tmp / name)


def save_checkpoint(
    run_dir: Path, method: Method, cfg_yaml: str, step: int, state: dict[str, Any], keep: int
) -> Path:
    """Write checkpoint ``step`` atomically and keep only the newest ``keep``; returns its folder.

    A write that fails for any reason (a full disk, which safetensors reports as its own error and
    ``torch.save`` as a RuntimeError; a permission) removes what it wrote, leaves ``latest`` on the last
    good checkpoint (a checkpoint of the same step that is rewritten, as ``cluster_run`` does, is put back),
    and raises a one-line :class:`PixforgeError`.
    """
    folder = checkpoints_dir(run_dir)
    final = folder / f"step_{step:08d}"
    tmp = folder / f".tmp_{final.name}_{os.getpid()}"
    backup = folder / f".old_{final.name}_{os.getpid()}"
    pointer_tmp = folder / f".{LATEST}.tmp"
    placed = False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write(tmp, method, cfg_yaml, step, state)
        if final.exists():
            os.rename(final, backup)
        os.rename(tmp, final)
        placed = True
        pointer_tmp.write_text(final.name)
        os.replace(pointer_tmp, folder / LATEST)
    except (OSError, RuntimeError, SafetensorError) as exc:
        full = _disk_full(exc, folder)
        _undo(tmp, final, placed, backup, pointer_tmp)
        raise PixforgeError(_failure_message(step, full, exc, latest_checkpoint(run_dir), folder)) from None
    shutil.rmtree(backup, ignore_errors=True)
    _prune(folder, keep, final)
    return final


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC, or (torch.save says only "unexpected pos") a disk
    left with less than 1 MiB free while the partial files still take their place."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if "No space left" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def _undo(tmp: Path, final: Path, placed: bool, backup: Path, pointer_tmp: Path) -> None:
    """Remove a failed write's files (``final`` too when it was already ``placed``) and put a rewritten
    checkpoint of the same step back."""
    shutil.rmtree(tmp, ignore_errors=True)
    pointer_tmp.unlink(missing_ok=True)
    if placed:
        shutil.rmtree(final, ignore_errors=True)
    if backup.exists():
        os.rename(backup, final)


def _failure_message(step: int, full: bool, exc: BaseException, good: Path | None, folder: Path) -> str:
    what = "disk full" if full else f"cannot write ({_reason(exc)})"
    last = f"the last good one is step {int(good.name.split('_')[1])}" if good else "there is no earlier one"
    return f"{what} while writing checkpoint step {step}; {last} (in {folder})"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc.strerror or exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _prune(folder: Path, keep: int, newest: Path) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for old in steps[: max(0, len(steps) - max(keep, 1))]:
        if old != newest:
            shutil.rmtree(old, ignore_errors=True)


def resolve(path: Path) -> Path:
    """The weights file of a run directory (its latest checkpoint), a checkpoint folder or a weights file."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / WEIGHTS).is_file():
        return path / WEIGHTS
    if path.is_dir() and (latest := latest_checkpoint(path)) is not None:
        return latest / WEIGHTS
    if not path.exists():
        raise PixforgeError(f"no such run or checkpoint: {path}")
    raise PixforgeError(
        f"{path}: no checkpoint found (expected a run directory, a checkpoint folder or {WEIGHTS})"
    )


def read(path: Path) -> Loaded:
    """Read a checkpoint's weights and metadata; refuse files that are not pixforge checkpoints or are newer."""
    file = resolve(path)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except (SafetensorError, OSError, ValueError) as exc:
        raise PixforgeError(f"{file}: not a readable checkpoint ({str(exc).splitlines()[0]})") from None
    if meta.get("format") != "pixforge":
        raise PixforgeError(f"{file}: not a pixforge checkpoint (no pixforge metadata)")
    version = int(meta.get("version", "0"))
    if version > FORMAT_VERSION:
        raise PixforgeError(
            f"{file}: checkpoint format {version} is newer than this pixforge supports ({FORMAT_VERSION}); upgrade pixforge"
        )
    info = DataInfo(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(meta["info"]).items()}
    )
    weights = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    extra = {k[len(EXTRA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    return Loaded(
        file, meta["method"], int(meta["step"]), yaml.safe_load(meta["config"]), info, weights, extra
    )


def training_state(state: dict[str, Any], rank: int = 0) -> dict[str, torch.Tensor]:
    """Rank ``rank``'s training state (:meth:`Method.training_state`) from a ``state.pt``.

    ``state["ranks"][r]`` holds rank r's ``keys`` and, under ``training``, its tensors: all of rank 0's,
    and for the other ranks only those that differ from rank 0's (GuideGAN's cache is the same on every
    rank; CycleGAN's pools are not). A rank the checkpoint has no entry for gets rank 0's.
    """
    ranks = state.get("ranks") or [{}]
    main = ranks[0].get("training", {})
    own = ranks[rank] if rank < len(ranks) else ranks[0]
    tensors = own.get("training", {})
    return {k: tensors[k] if k in tensors else main[k] for k in own.get("keys", list(main))}


def read_state(checkpoint_weights: Path) -> dict[str, Any]:
    """The training state saved beside a weights file."""
    path = Path(checkpoint_weights).parent / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise PixforgeError(f"{path}: cannot read the training state ({str(exc).splitlines()[0]})") from None
