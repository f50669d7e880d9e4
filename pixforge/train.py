"""The method-agnostic Trainer: loop, schedule, checkpoints, logging, devices.

One iteration runs the method's shared forward pass, then each of its phases: the networks the phase trains
get gradients, the others are frozen, and the phase's optimiser steps. Scalars stay on the device and are
averaged and read back only every ``log_every`` steps (one host synchronisation per log, not per step).

Resume is exact on CPU with a fixed seed: the checkpoint holds the weights, optimisers, schedulers, step and
the torch RNG, and the data order and augmentation are functions of (seed, epoch, position), so
10 steps + resume + 10 steps equals 20 steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pixforge import checkpoint, pages, visual
from pixforge.config import Config, from_dict
from pixforge.data import formats
from pixforge.data.dataset import EpochSampler, TranslationDataset, data_channels
from pixforge.devices import pick_device
from pixforge.errors import PixforgeError
from pixforge.methods import get_method
from pixforge.methods.base import Batch, DataInfo, Method
from pixforge.nets.blocks import set_requires_grad

log = logging.getLogger("pixforge")

#: options that may change when a run is resumed; anything else must match the checkpoint.
RESUMABLE = {
    "train": {
        "steps",
        "steps_decay",
        "epochs",
        "epochs_decay",
        "device",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "sample_count",
        "compile",
        "amp",
        "channels_last",
    },
    "data": {"root", "num_workers", "max_broken"},
}


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    scalars: dict[str, float]
    interrupted: bool


def build_method(cfg: Config, info: DataInfo) -> Method:
    return get_method(cfg.method)(cfg.model, info)


def data_info(cfg: Config, fmt: str) -> DataInfo:
    input_nc, output_nc, label_nc = data_channels(Path(cfg.data.root), fmt, cfg.data)
    return DataInfo(input_nc, output_nc, (cfg.data.crop_size, cfg.data.crop_size), label_nc)


def lr_factor(step: int, total: int, decay: int) -> float:
    """Constant, then linear decay to zero over the last ``decay`` steps (pix2pix §4 / appendix 6.2)."""
    if decay <= 0:
        return 1.0
    return max(0.0, min(1.0, (total - step) / decay))


def check_resumable(saved: Config, new: Config) -> None:
    """Refuse to resume with options that change the model or the data it was trained on."""
    old_d, new_d = saved.to_dict(), new.to_dict()
    diffs = []
    for section in ("model", "data", "train"):
        for key, value in old_d[section].items():
            if key not in RESUMABLE.get(section, set()) and new_d[section][key] != value:
                diffs.append(f"{section}.{key} {value!r} -> {new_d[section][key]!r}")
    if diffs:
        raise PixforgeError(f"--resume with an incompatible config: {'; '.join(diffs)} (use a new --out)")


class StopFlag:
    """Ctrl-C asks the loop to stop at the end of the current step (a second Ctrl-C stops at once)."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupted: finishing this step and writing a checkpoint (Ctrl-C again to abort)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class Trainer:
    """Trains one method on one dataset into a run directory."""

    def __init__(
        self, cfg: Config, run_dir: Path, *, resume: bool = False, init_from: Path | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.resume_from = self._prepare_run_dir(resume)
        if self.resume_from is not None:
            check_resumable(self._saved_config(), cfg)
        self.cfg = cfg
        self.device = pick_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.fmt = formats.resolve_format(Path(cfg.data.root), cfg.data.format)
        self.method = build_method(cfg, data_info(cfg, self.fmt)).to(self.device)
        self.dataset = TranslationDataset(
            Path(cfg.data.root),
            "train",
            cfg.data,
            train=True,
            size_multiple=self.method.size_multiple,
            fmt=self.fmt,
        )
        self.method.steps_per_epoch = self.steps_per_epoch()
        self.method.before_training(self.dataset)
        self.phases = self.method.phases()
        self.optimizers = self._optimizers()
        self.total = self._total_steps()
        decay = self._decay_steps()
        self.schedulers = {
            k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, self.total, decay))
            for k, o in self.optimizers.items()
        }
        self.step = 0
        if self.resume_from is not None:
            self._restore(self.resume_from)
        elif init_from is not None:
            self._init_from(Path(init_from))
        self._configure_speed()
        self.sample_batch = self._sample_batch()
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.last: dict[str, float] = {}

    # set-up -------------------------------------------------------------------------------------------------

    def _prepare_run_dir(self, resume: bool) -> Path | None:
        latest = checkpoint.latest_checkpoint(self.run_dir)
        if resume:
            if latest is None:
                raise PixforgeError(f"--resume: {self.run_dir} holds no checkpoint to resume from")
            return latest / checkpoint.WEIGHTS
        if latest is not None:
            raise PixforgeError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        return None

    def _saved_config(self) -> Config:
        assert self.resume_from is not None
        loaded = checkpoint.read(self.resume_from)
        return from_dict(loaded.config, get_method(loaded.method).config_type)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per phase over the parameters of the networks it trains (fused on CUDA)."""
        t = self.cfg.train
        fused = self.device.type == "cuda"
        out = {}
        for phase in self.phases:
            params = [p for name in phase.nets for p in self.method.nets[name].parameters()]
            out[phase.name] = torch.optim.Adam(params, lr=t.lr, betas=(t.beta1, t.beta2), fused=fused or None)
        return out

    def steps_per_epoch(self) -> int:
        return max(1, len(self.dataset) // self.cfg.train.batch_size)

    def _total_steps(self) -> int:
        t = self.cfg.train
        return t.steps or (t.epochs + t.epochs_decay) * self.steps_per_epoch()

    def _decay_steps(self) -> int:
        t = self.cfg.train
        return t.steps_decay if t.steps else t.epochs_decay * self.steps_per_epoch()

    def _restore(self, weights: Path) -> None:
        loaded = checkpoint.read(weights)
        if loaded.method != self.cfg.method:
            raise PixforgeError(
                f"{weights}: a {loaded.method} checkpoint cannot resume a {self.cfg.method} run"
            )
        self.method.load_state_dict(loaded.weights)
        self.method.load_extra_state(loaded.extra)
        state = checkpoint.read_state(weights)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        torch.set_rng_state(state["rng"])
        self.step = int(state["step"])
        log.info("resumed %s at step %d", self.run_dir, self.step)

    def _init_from(self, path: Path) -> None:
        """Start from another run's weights (e.g. a trained global generator for a pix2pixHD enhancer run)."""
        loaded = checkpoint.read(path)
        copied = self.method.load_init(loaded.weights)
        if not copied:
            raise PixforgeError(
                f"--init-from {path}: no weights of that {loaded.method} run fit this {self.cfg.method} model"
            )
        log.info("initialised %d tensors from %s (step %d)", len(copied), loaded.path, loaded.step)

    def _configure_speed(self) -> None:
        t = self.cfg.train
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        elif t.amp != "none" or t.channels_last:
            raise PixforgeError("options amp/channels_last: supported on CUDA only (use --device cuda)")
        if t.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if t.compile:
            for net in self.method.nets.values():
                net.compile()

    def _sample_batch(self) -> Batch:
        """A fixed batch for sample grids, from the val or test split when there is one."""
        split = next(
            (s for s in ("val", "test") if formats.has_targets(Path(self.cfg.data.root), self.fmt, s)),
            "train",
        )
        ds = TranslationDataset(
            Path(self.cfg.data.root),
            split,
            self.cfg.data,
            train=False,
            size_multiple=self.method.size_multiple,
            fmt=self.fmt,
        )
        n = min(self.cfg.train.sample_count, len(ds))
        items = [ds[i] for i in range(n)]
        return self._to_device(torch.utils.data.default_collate(items))

    # the loop -----------------------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        t = self.cfg.train
        sampler = EpochSampler(len(self.dataset), t.batch_size, t.seed, start=self.step * t.batch_size)
        return DataLoader(
            self.dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            generator=torch.Generator().manual_seed(t.seed),  # keeps the global RNG (dropout) untouched
        )

    def _to_device(self, batch: Batch) -> Batch:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.cfg.train.channels_last and v.dim() == 4 and v.is_floating_point():
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.train.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One iteration: the shared forward pass, then every phase in order."""
        self.method.current_step = self.step
        set_requires_grad(self.method.nets.values(), True)
        with self._autocast():
            state = self.method.forward_step(batch)
        scalars: dict[str, torch.Tensor] = {}
        for phase in self.phases:
            for name, net in self.method.nets.items():
                set_requires_grad([net], name in phase.nets)
            opt = self.optimizers[phase.name]
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                loss, out = phase.loss(state)
            loss.backward()
            opt.step()
            scalars.update(out)
        for sched in self.schedulers.values():
            sched.step()
        return scalars

    def _accumulate(self, scalars: dict[str, torch.Tensor]) -> None:
        for k, v in scalars.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def _flush(self, writer: Any, bar: tqdm | None) -> None:
        """Average the accumulated scalars (one host sync) and log them."""
        if not self.count:
            return
        names = list(self.sums)
        values = torch.stack([self.sums[k] for k in names]).div(self.count).tolist()
        self.last = {k: float(v) for k, v in zip(names, values, strict=True)}
        self.sums, self.count = {}, 0
        lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        row = {"step": self.step, "lr": lr, **self.last, "time": round(time.time(), 3)}
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in self.last.items():
            writer.add_scalar(f"loss/{k}", v, self.step)
        writer.add_scalar("lr", lr, self.step)
        text = " ".join(f"{k}={v:.4g}" for k, v in self.last.items())
        if bar is not None:
            bar.set_postfix_str(text)
        else:
            log.info("step %d/%d %s", self.step, self.total, text)

    def _checkpoint(self, writer: Any) -> Path:
        state = {
            "step": self.step,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": torch.get_rng_state(),
        }
        path = checkpoint.save_checkpoint(
            self.run_dir, self.method, self.cfg.to_yaml(), self.step, state, self.cfg.train.keep_checkpoints
        )
        self._samples(writer)
        pages.write_run_page(self.run_dir)
        return path

    def _samples(self, writer: Any) -> None:
        """Sample grid of the fixed batch; the RNG is forked so samples never change the training run."""
        with torch.random.fork_rng(devices=[]):
            image = visual.grid(self.method.visuals(self.sample_batch))
        folder = self.run_dir / "samples"
        folder.mkdir(exist_ok=True)
        image.save(folder / f"step_{self.step:08d}.png")
        image.save(folder / "latest.png")
        writer.add_image("samples", np.array(image), self.step, dataformats="HWC")

    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train until the schedule's last step (or ``stop_after`` more steps, or Ctrl-C); checkpoint on the way."""
        from torch.utils.tensorboard import SummaryWriter

        t = self.cfg.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        end = self.total if stop_after is None else min(self.total, self.step + stop_after)
        stop = StopFlag()
        writer = SummaryWriter(str(self.run_dir / "tb"))
        bar = (
            tqdm(total=self.total, initial=self.step, desc=self.cfg.method, dynamic_ncols=True)
            if sys.stderr.isatty()
            else None
        )
        self.method.train()
        try:
            with stop.installed():
                batches = iter(self._loader())
                while self.step < end and not stop.requested:
                    self._accumulate(self.train_step(self._to_device(next(batches))))
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                    if self.step % t.log_every == 0 or self.step == end:
                        self._flush(writer, bar)
                    if self.step % t.checkpoint_every == 0 and self.step != end:
                        self._checkpoint(writer)
                self._flush(writer, bar)
                if self.step == self.total and not stop.requested:
                    self.method.after_training(self.dataset, self.device)
                self._checkpoint(writer)
        finally:
            if bar is not None:
                bar.close()
            writer.close()
        if not all(math.isfinite(v) for v in self.last.values()):
            log.warning("losses are not finite: %s", self.last)
        return TrainResult(self.run_dir, self.step, self.last, stop.requested)
