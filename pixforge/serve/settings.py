"""What ``pixforge serve`` is started with: :class:`ServeSettings` from flags, or from a YAML serve config file
(:func:`load_config`) whose per-model entries set each model's batching.

A serve config file::

    max_batch: 8            # any ServeSettings field, as a flag would set it
    max_wait_ms: 10
    max_queue: 64
    models:
      - runs/facades                      # a run, served with the settings above
      - run: runs/hd
        max_batch: 2                      # this model's own batching and queue bound
        max_wait_ms: 25
        max_queue: 16
      - run: exports/facades.onnx         # an exported file: served through onnxruntime
        name: facades-onnx
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from pixforge.errors import PixforgeError

#: the Host names a server answers to by default (:mod:`pixforge.serve.security`)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the default largest upload in pixels: one 2048x2048 image (a 4096x4096 one took the default pix2pix worker
#: past 6 GB; 2048x2048 stays under 1.5 GB)
DEFAULT_MAX_PIXELS = 2048 * 2048
#: the default pixels in one forward pass: same-sized requests are stacked while they fit, so a large image
#: (over half of this) runs alone and memory stays what one request needs
DEFAULT_BATCH_PIXELS = 1024 * 1024


@dataclass
class ModelSpec:
    """One served model: a run (or an exported ``.onnx`` file) and its own batching, where set."""

    run: str | Path
    name: str | None = None
    max_batch: int | None = None
    max_wait_ms: float | None = None
    max_queue: int | None = None

    def validate(self, where: str) -> None:
        check_batching(where, self.max_batch, self.max_wait_ms, self.max_queue)


@dataclass
class Batching:
    """The batching of one model, resolved: the model's own settings, else the server's."""

    max_batch: int
    max_wait_ms: float
    max_queue: int
    max_batch_pixels: int


@dataclass
class ServeSettings:
    """What ``pixforge serve`` is started with (see ``pixforge serve --help``)."""

    runs: list[str | Path | ModelSpec] = field(default_factory=list)
    device: str = "auto"
    max_batch: int = 8
    max_wait_ms: float = 10.0
    token: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 20 * 2**20
    amp: str = "none"
    max_queue: int = 64
    timeout_ms: float = 30_000.0
    max_batch_pixels: int = DEFAULT_BATCH_PIXELS
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    cors_origins: list[str] = field(default_factory=list)
    allowed_hosts: tuple[str, ...] = LOOPBACK
    """Host names answered to (:func:`pixforge.serve.security.allowed_hosts`; ``*``: any)."""

    def validate(self) -> None:
        check_batching("option", self.max_batch, self.max_wait_ms, self.max_queue)
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise PixforgeError("options --max-pixels/--max-bytes: must be positive")
        if self.max_batch_pixels < 1:
            raise PixforgeError("option --max-batch-pixels: must be positive")
        if self.timeout_ms <= 0:
            raise PixforgeError("option --timeout-ms: must be positive")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise PixforgeError("options --header-timeout-s/--body-timeout-s: must be positive")
        if self.amp not in ("none", "bf16"):
            raise PixforgeError(f"option --amp: '{self.amp}' is not one of none, bf16")
        for i, spec in enumerate(self.specs()):
            spec.validate(f"models[{i}]")

    def specs(self) -> list[ModelSpec]:
        """Every served model as a :class:`ModelSpec`."""
        return [r if isinstance(r, ModelSpec) else ModelSpec(r) for r in self.runs]

    def batching(self, spec: ModelSpec) -> Batching:
        """A model's batching: its own settings where the config file set them, else the server's."""
        return Batching(
            spec.max_batch or self.max_batch,
            self.max_wait_ms if spec.max_wait_ms is None else spec.max_wait_ms,
            spec.max_queue or self.max_queue,
            self.max_batch_pixels,
        )


def check_batching(
    where: str, max_batch: int | None, max_wait_ms: float | None, max_queue: int | None
) -> None:
    if max_batch is not None and max_batch < 1:
        raise PixforgeError(f"{where} max_batch: must be at least 1")
    if max_wait_ms is not None and max_wait_ms < 0:
        raise PixforgeError(f"{where} max_wait_ms: must not be negative")
    if max_queue is not None and max_queue < 1:
        raise PixforgeError(f"{where} max_queue: must be at least 1")


def load_config(path: Path, **overrides: Any) -> ServeSettings:
    """Settings from the YAML serve config file at ``path`` (see the module docstring), then ``overrides``."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PixforgeError(
            f"--config {path}: not a readable YAML file ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(data, dict):
        raise PixforgeError(f"--config {path}: must be a mapping of settings")
    known = {f.name for f in fields(ServeSettings)} - {"runs"}
    unknown = sorted(set(data) - known - {"models"})
    if unknown:
        raise PixforgeError(f"--config {path}: unknown setting '{unknown[0]}'")
    models = [_model_spec(path, i, m) for i, m in enumerate(data.pop("models", None) or [])]
    settings = ServeSettings(runs=list(models), **data)
    return replace(settings, **overrides)


def _model_spec(path: Path, index: int, entry: Any) -> ModelSpec:
    if isinstance(entry, str):
        entry = {"run": entry}
    names = {f.name for f in fields(ModelSpec)}
    if not isinstance(entry, dict) or "run" not in entry or set(entry) - names:
        raise PixforgeError(
            f"--config {path}: models[{index}] must be a run path or a mapping of {', '.join(sorted(names))}"
        )
    run = Path(entry.pop("run"))
    return ModelSpec(run if run.is_absolute() else path.parent / run, **entry)
