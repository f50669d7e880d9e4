"""Typed configuration: dataclass sections, presets, YAML round trip, KEY=VALUE overrides, validation.

A run's configuration is a :class:`Config` with three sections: ``data`` (:class:`DataConfig`), ``train``
(:class:`TrainConfig`) and ``model`` (the method's own dataclass, e.g. ``Pix2PixConfig``). It is resolved
once, from lowest to highest priority: the method's defaults, a preset, a YAML file, the CLI flags, and
``--set KEY=VALUE`` overrides. The resolved config is saved with every checkpoint, so loading needs no flags.

Keys may be written plain (``lambda_l1``) when the name is unique across sections, or qualified
(``model.lambda_l1``). Unknown keys are refused with the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pixforge.errors import PixforgeError

FORMATS = ("auto", "aligned", "paired", "unaligned", "labeled")
DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "none")
DEVICES = ("auto", "cpu", "cuda")
AMP = ("none", "bf16")
BACKENDS = ("auto", "gloo", "nccl")
LR_SCALES = ("none", "linear")


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A string field restricted to ``choices`` (checked by :func:`validate`)."""
    return field(default=default, metadata={"choices": choices})


def bounded(default: float | None, low: float, high: float, *, include_high: bool = True) -> Any:
    """A number field restricted to [low, high], or [low, high) (checked by :func:`validate`; None passes)."""
    return field(default=default, metadata={"range": (low, high, include_high)})


def _check_range(name: str, value: Any, bounds: tuple[float, float, bool]) -> None:
    low, high, include_high = bounds
    if value is None or low <= value <= high and (include_high or value < high):
        return
    raise PixforgeError(
        f"option {name}: must be in [{low:g}, {high:g}{']' if include_high else ')'} (got {value})"
    )


@dataclass
class DataConfig:
    """Where the data is and how it is read (DESIGN.md, "Data formats")."""

    root: str = ""
    format: str = choice("auto", FORMATS)
    direction: str = choice("AtoB", DIRECTIONS)
    preprocess: str = choice("resize_and_crop", PREPROCESS)
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    label_nc: int = 0
    num_workers: int = 0
    max_broken: float = 0.05


@dataclass
class TrainConfig:
    """The method-agnostic training loop: schedule, optimiser, devices, logging, checkpoints.

    The schedule is ``epochs`` at a constant learning rate then ``epochs_decay`` decaying linearly to zero
    (pix2pix §4). ``steps`` > 0 replaces it for short runs: ``steps`` in all, of which the last
    ``steps_decay`` decay linearly.

    Under torchrun ``batch_size`` is per process (the global batch is world size x batch_size); ``lr_scale``
    ``linear`` multiplies ``lr`` by the world size (off by default: the lr is never rescaled silently).
    ``sync_bn`` computes batch-norm statistics over the global batch; ``backend`` is the process group's
    (``auto``: NCCL on CUDA, gloo on the CPU). ``fused_adam`` uses torch's fused Adam kernel (CPU and CUDA).
    """

    steps: int = 0
    steps_decay: int = 0
    epochs: int = 100
    epochs_decay: int = 100
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = choice("auto", DEVICES)
    amp: str = choice("none", AMP)
    channels_last: bool = False
    compile: bool = False
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_count: int = 4
    fused_adam: bool = True
    backend: str = choice("auto", BACKENDS)
    sync_bn: bool = False
    lr_scale: str = choice("none", LR_SCALES)


SECTIONS = ("data", "train", "model")


@dataclass
class Config:
    """A complete, resolved run configuration."""

    method: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **{s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _field_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def parse_value(raw: Any, typ: Any, key: str) -> Any:
    """Convert ``raw`` (a YAML value or a CLI string) to the field type ``typ``."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            return None
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)
        if typ is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if typ is float:
            return float(raw)
        if typing.get_origin(typ) in (list, tuple):
            items = raw if isinstance(raw, list | tuple) else yaml.safe_load(f"[{raw}]")
            (inner, *_) = typing.get_args(typ) or (str,)
            return typing.get_origin(typ)(parse_value(v, inner, key) for v in items)
        return str(raw)
    except (TypeError, ValueError):
        name = getattr(typ, "__name__", str(typ))
        raise PixforgeError(f"option {key}: {raw!r} is not a valid {name}") from None


def _all_keys(cfg: Config) -> dict[str, list[str]]:
    """Map each plain field name to the sections that define it."""
    keys: dict[str, list[str]] = {}
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            keys.setdefault(f.name, []).append(section)
    return keys


def _closest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return f" (did you mean {match[0]}?)" if match else ""


def locate(cfg: Config, key: str) -> tuple[str, str]:
    """Resolve ``key`` (plain or ``section.name``) to (section, name), or fail with the closest valid key."""
    keys = _all_keys(cfg)
    qualified = [f"{s}.{k}" for k, ss in keys.items() for s in ss]
    if "." in key:
        section, name = key.split(".", 1)
        if section in SECTIONS and name in keys and section in keys[name]:
            return section, name
        raise PixforgeError(f"unknown config key '{key}' for {cfg.method}{_closest(key, qualified)}")
    if key not in keys:
        raise PixforgeError(f"unknown config key '{key}' for {cfg.method}{_closest(key, list(keys))}")
    if len(keys[key]) > 1:
        raise PixforgeError(
            f"config key '{key}' is ambiguous: write one of {', '.join(f'{s}.{key}' for s in keys[key])}"
        )
    return keys[key][0], key


def set_value(cfg: Config, key: str, raw: Any) -> None:
    """Set one option from a raw value, converting it to the field's type."""
    section, name = locate(cfg, key)
    target = getattr(cfg, section)
    setattr(target, name, parse_value(raw, _field_types(target)[name], key))


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> None:
    """Apply a nested ({section: {key: value}}) or flat ({key: value}) mapping of options."""
    for key, value in overrides.items():
        if key == "method":
            if value != cfg.method:
                raise PixforgeError(f"config is for method '{value}', not '{cfg.method}'")
        elif key in SECTIONS and isinstance(value, dict):
            for name, raw in value.items():
                set_value(cfg, f"{key}.{name}", raw)
        else:
            set_value(cfg, key, value)


def parse_assignments(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` strings from ``--set``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PixforgeError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PixforgeError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PixforgeError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PixforgeError(f"config file {path} must hold a mapping of options")
    return data


def preset_names(method: str) -> list[str]:
    folder = resources.files("pixforge") / "configs" / method
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(method: str, name: str) -> dict[str, Any]:
    names = preset_names(method)
    if name not in names:
        raise PixforgeError(
            f"unknown preset '{name}' for {method}{_closest(name, names)}; presets: {', '.join(names) or 'none'}"
        )
    text = (resources.files("pixforge") / "configs" / method / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def validate(cfg: Config) -> None:
    """Check choices and ranges of every section; fail on the first bad option."""
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise PixforgeError(
                    f"option {f.name}: '{value}' is not one of {', '.join(choices)}{_closest(str(value), list(choices))}"
                )
            if "range" in f.metadata:
                _check_range(f.name, value, f.metadata["range"])
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise PixforgeError(f"option {f.name}: must not be negative (got {value})")
    if cfg.train.batch_size < 1:
        raise PixforgeError("option batch_size: must be at least 1")
    if cfg.train.steps and cfg.train.steps_decay > cfg.train.steps:
        raise PixforgeError("option steps_decay: cannot exceed steps")
    if cfg.data.crop_size < 1 or cfg.data.load_size < 1:
        raise PixforgeError("option crop_size/load_size: must be positive")
    validate_model = getattr(cfg.model, "validate", None)
    if validate_model is not None:
        validate_model()


def from_dict(data: dict[str, Any], model_type: type) -> Config:
    """Rebuild a Config saved with :meth:`Config.to_dict` (unknown keys are refused)."""
    cfg = Config(method=str(data.get("method", "")), model=model_type())
    apply_overrides(cfg, {k: v for k, v in data.items() if k != "method"})
    return cfg
