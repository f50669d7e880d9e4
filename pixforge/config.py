"""Typed configuration: dataclass sections, presets, YAML round trip, KEY=VALUE overrides, validation.

A run's configuration is a :class:`Config` with three sections: ``data`` (:class:`DataConfig`), ``train``
(:class:`TrainConfig`) and ``model`` (the method's own dataclass, e.g. ``Pix2PixConfig``). It is resolved
once, from lowest to highest priority: the method's defaults, a preset, a YAML file, the CLI flags, and
``--set KEY=VALUE`` overrides. The resolved config is saved with every checkpoint, so loading needs no flags.

Keys may be written plain (``lambda_l1``) when the name is unique across sections, or qualified
(``model.lambda_l1``). Unknown keys are refused with the closest valid name.

Every option documents itself where it is declared: a one-line docstring on the line right below the
field (an attribute docstring, as Sphinx reads them; see :class:`DataConfig`), and its restrictions in the
field's metadata (:func:`choice`, :func:`bounded`). :func:`describe` collects both for
``pixforge options METHOD``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import textwrap
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pixforge.errors import PixforgeError

FORMATS = ("auto", "aligned", "paired", "unaligned", "labeled", "colorization")
DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "none")
DEVICES = ("auto", "cpu", "cuda")
AMP = ("none", "bf16")
COMPILE_BACKENDS = ("inductor", "aot_eager", "cudagraphs")
BACKENDS = ("auto", "gloo", "nccl")
LR_SCALES = ("none", "linear")


def choice(default: str, choices: tuple[str, ...]) -> Any:
    """A string field restricted to ``choices`` (checked by :func:`validate`)."""
    return field(default=default, metadata={"choices": choices})


def bounded(default: float | None, low: float, high: float, *, include_high: bool = True) -> Any:
    """A number field restricted to [low, high], or [low, high) (checked by :func:`validate`; None passes)."""
    return field(default=default, metadata={"range": (low, high, include_high)})


def at_least(default: int, low: int) -> Any:
    """An integer field of at least ``low`` (checked by :func:`validate`)."""
    return bounded(default, low, math.inf)


def _range_text(bounds: tuple[float, float, bool]) -> str:
    low, high, include_high = bounds
    if high == math.inf:
        return f">= {low:g}"
    return f"[{low:g}, {high:g}{']' if include_high else ')'}"


def _check_range(name: str, value: Any, bounds: tuple[float, float, bool]) -> None:
    low, high, include_high = bounds
    if value is None or low <= value <= high and (include_high or value < high):
        return
    wanted = f"at least {low:g}" if high == math.inf else f"in {_range_text(bounds)}"
    raise PixforgeError(f"option {name}: must be {wanted} (got {value})")


@dataclass
class DataConfig:
    """Where the data is and how it is read (DESIGN.md, "Data formats")."""

    root: str = ""
    """Dataset folder (train --data)."""
    format: str = choice("auto", FORMATS)
    """Layout of the dataset; auto detects it (all but colorization, which is asked for)."""
    direction: str = choice("AtoB", DIRECTIONS)
    """Which side is the input: AtoB translates A into B, BtoA the reverse (pix2pix)."""
    preprocess: str = choice("resize_and_crop", PREPROCESS)
    """Training geometry: resize to load_size, random crop_size crop (pix2pix §6.2); crop; scale_width; none."""
    load_size: int = at_least(286, 1)
    """Side (or width, with scale_width) images are resized to before cropping, in pixels."""
    crop_size: int = at_least(256, 1)
    """Training crop side in pixels (train --size)."""
    flip: bool = True
    """Random horizontal flips at training (the same flip for every map of a sample)."""
    label_nc: int = 0
    """Number of label classes of labeled data (0: read classes.txt, or RGB input)."""
    num_workers: int = at_least(-1, -1)
    """Data-loader processes: 0 loads in the training process; -1 auto (CPU 0, CUDA min(8, CPUs/process))."""
    max_broken: float = 0.05
    """Largest share of unreadable images that are skipped with a warning; more is an error."""


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
    """Train this many steps in all instead of the epochs (0: use epochs and epochs_decay)."""
    steps_decay: int = 0
    """With steps: the last this many steps decay the learning rate linearly to zero."""
    epochs: int = 100
    """Epochs at the initial learning rate."""
    epochs_decay: int = 100
    """Epochs over which the learning rate then decays linearly to zero."""
    batch_size: int = at_least(1, 1)
    """Samples per step (per process under torchrun)."""
    lr: float = 2e-4
    """Adam learning rate of every phase."""
    beta1: float = 0.5
    """Adam's beta1."""
    beta2: float = 0.999
    """Adam's beta2."""
    seed: int = 0
    """Seed of the initialisation, the data order and the augmentation."""
    device: str = choice("auto", DEVICES)
    """Where to train: auto picks CUDA when there is a GPU."""
    amp: str = choice("none", AMP)
    """Mixed precision: bf16 autocast (CUDA, and the CPU where it runs the same code path)."""
    channels_last: bool = False
    """channels_last memory format for weights, optimiser state and image batches (CUDA and CPU)."""
    compile: bool = False
    """torch.compile every network."""
    compile_backend: str = choice("inductor", COMPILE_BACKENDS)
    """torch.compile backend: inductor builds kernels; aot_eager traces only (the tests' choice on the CPU)."""
    log_every: int = at_least(50, 1)
    """Average and log the losses every this many steps."""
    checkpoint_every: int = at_least(1000, 1)
    """Write a checkpoint (and sample grid) every this many steps, and at the end."""
    keep_checkpoints: int = at_least(3, 1)
    """How many of the newest checkpoints to keep."""
    sample_count: int = 4
    """Images in each sample grid (from the val or test split when there is one)."""
    fused_adam: bool = True
    """Fused Adam (one kernel for all parameters; CPU and CUDA), else torch's for-each Adam."""
    backend: str = choice("auto", BACKENDS)
    """Process-group backend under torchrun; auto: nccl with CUDA, gloo on the CPU."""
    sync_bn: bool = False
    """Under torchrun: batch-norm statistics of the global batch (SyncBatchNorm), else per process."""
    lr_scale: str = choice("none", LR_SCALES)
    """none: the lr as given; linear: the lr times the number of processes."""


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
            if (
                "range" not in f.metadata
                and isinstance(value, int | float)
                and not isinstance(value, bool)
                and value < 0
            ):
                raise PixforgeError(f"option {f.name}: must not be negative (got {value})")
    if cfg.train.steps and cfg.train.steps_decay > cfg.train.steps:
        raise PixforgeError("option steps_decay: cannot exceed steps")
    validate_model = getattr(cfg.model, "validate", None)
    if validate_model is not None:
        validate_model()


def from_dict(data: dict[str, Any], model_type: type) -> Config:
    """Rebuild a Config saved with :meth:`Config.to_dict` (unknown keys are refused)."""
    cfg = Config(method=str(data.get("method", "")), model=model_type())
    apply_overrides(cfg, {k: v for k, v in data.items() if k != "method"})
    return cfg


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The one-line doc of every field of the dataclass ``cls`` and its bases: the string literal right
    below the field's declaration, whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


@dataclass(frozen=True)
class OptionInfo:
    """One option as ``pixforge options`` shows it."""

    key: str
    short: str | None
    type: str
    value: str
    allowed: str
    help: str


def _type_name(typ: Any) -> str:
    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        return " or ".join("none" if a is type(None) else _type_name(a) for a in args)
    if typing.get_origin(typ) in (list, tuple):
        return f"list of {_type_name(args[0]) if args else 'str'}"
    return getattr(typ, "__name__", str(typ))


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(_format_value(v) for v in value)
    return '""' if value == "" else str(value)


def _allowed(f: dataclasses.Field, typ: Any) -> str:
    """What :func:`validate` accepts: the choices, the range, or (numbers) non-negative values."""
    if "choices" in f.metadata:
        return " | ".join(f.metadata["choices"])
    if "range" in f.metadata:
        return _range_text(f.metadata["range"])
    if typ is bool:
        return "true | false"
    numeric = {int, float} & {typ, *typing.get_args(typ)}
    return ">= 0" if numeric else "text"


def describe(cfg: Config) -> list[OptionInfo]:
    """Every option of ``cfg`` (sections data, train, model; in a section the class's own fields before
    those it inherits, e.g. pix2pixHD's before the reviser's): qualified and short key (None where the short
    one is ambiguous), type, current value, what is allowed and the field's own one-line doc."""
    keys = _all_keys(cfg)
    out = []
    for section in SECTIONS:
        target = getattr(cfg, section)
        hints, docs = _field_types(target), field_docs(type(target))
        own = set(vars(type(target)).get("__annotations__", {}))
        for f in sorted(dataclasses.fields(target), key=lambda f: f.name not in own):
            out.append(
                OptionInfo(
                    key=f"{section}.{f.name}",
                    short=f.name if len(keys[f.name]) == 1 else None,
                    type=_type_name(hints[f.name]),
                    value=_format_value(getattr(target, f.name)),
                    allowed=_allowed(f, hints[f.name]),
                    help=docs.get(f.name, ""),
                )
            )
    return out
