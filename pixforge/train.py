"""The method-agnostic Trainer: loop, schedule, checkpoints, logging, devices.

One iteration runs the method's shared forward pass, then each of its phases: the networks the phase trains
get gradients, the others are frozen, and the phase's optimiser steps. Scalars stay on the device and are
averaged and read back only every ``log_every`` steps (one host synchronisation per log, not per step).

Resume is exact on CPU with a fixed seed: the checkpoint holds the weights, optimisers, schedulers, step and
the torch RNG, and the data order and augmentation are functions of (seed, epoch, position), so
10 steps + resume + 10 steps equals 20 steps.

Under torchrun (:mod:`pixforge.distributed`) every rank builds the same method from the same config (checked),
takes rank 0's weights, trains on its block of each global batch (:class:`EpochSampler`) and averages each
phase's gradients over the ranks after the phase's backward. Rank 0 alone writes the run directory; the
logged losses are averaged over the ranks. The checkpoint also holds every rank's RNG and the rank's own
method state (CycleGAN's image pool), so a resume on the same number of processes is exact; on another
number of processes the data order continues at the same epoch and position of its permutation (past
the new epoch length: at the next epoch), rank r > 0 draws a fresh random stream seeded
from (seed, step, r), and ranks that had no state of their own start from rank 0's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
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

from pixforge import checkpoint, distributed, pages, visual
from pixforge.config import Config, from_dict
from pixforge.data import formats
from pixforge.data.dataset import EpochSampler, TranslationDataset, data_channels
from pixforge.devices import pick_device
from pixforge.errors import PixforgeError
from pixforge.methods import get_method
from pixforge.methods.base import Batch, DataInfo, Method
from pixforge.nets.blocks import set_requires_grad

log = logging.getLogger("pixforge")

#: training geometries whose batches all have one size (cuDNN's autotuner then pays off: it tunes per shape)
FIXED_SIZE = {"resize_and_crop", "crop"}

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
        "compile_backend",
        "amp",
        "channels_last",
        "fused_adam",
        "backend",
        "sync_bn",
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


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_text(step: int, total: int, start_step: int, elapsed: float) -> str:
    """Elapsed time and the ETA at this run's pace since it started (or resumed) at ``start_step``."""
    done = max(step - start_step, 1)
    return f"elapsed {_clock(elapsed)}, ETA {_clock(elapsed / done * max(total - step, 0))}"


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


class RunLock:
    """An exclusive lock on a run directory while a job trains in it: ``RUN/.lock`` held with ``flock`` and
    holding the job's pid. A second job refuses, naming that pid; the kernel drops the lock when its holder
    dies, so a killed job's stale lock is taken over."""

    NAME = ".lock"

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / self.NAME
        self.file: Any = None

    def acquire(self) -> None:
        """Hold the lock (a no-op while held), or refuse naming the pid of the job that holds it."""
        if self.file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise PixforgeError(
                f"{self.path.parent}: another job (pid {holder}) is training in this run directory; "
                "stop it first, or choose another --out"
            ) from None
        file.truncate(0)
        file.write(str(os.getpid()))
        file.flush()
        self.file = file

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    @contextlib.contextmanager
    def released_on_error(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.release()
            raise


class StopFlag:
    """Ctrl-C or SIGTERM (a SLURM preemption) asks the loop to stop at the end of the current step, with a
    checkpoint; a second Ctrl-C stops at once.

    Signals within ``grace`` seconds of the first count as the same request: under torchrun a Ctrl-C reaches
    a worker twice, from the terminal and forwarded by the launcher.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, grace: float = 2.0) -> None:
        self.requested = False
        self.grace = grace
        self.since = 0.0

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            if signum == signal.SIGINT and time.monotonic() - self.since > self.grace:
                raise KeyboardInterrupt
            return
        self.requested = True
        self.since = time.monotonic()
        log.warning(
            "%s: finishing this step and writing a checkpoint (Ctrl-C again to abort)",
            signal.Signals(signum).name,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def comparable(cfg: Config) -> dict[str, Any]:
    """The options every rank must agree on: all but where this machine keeps the data and how it reads it."""
    flat = {f"{s}.{k}": v for s in ("model", "data", "train") for k, v in cfg.to_dict()[s].items()}
    return {"method": cfg.method, **{k: v for k, v in flat.items() if k not in LOCAL_OPTIONS}}


#: options that may differ between machines of one job
LOCAL_OPTIONS = {"data.root", "data.num_workers"}


class Trainer:
    """Trains one method on one dataset into a run directory."""

    def __init__(
        self, cfg: Config, run_dir: Path, *, resume: bool = False, init_from: Path | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.world = distributed.world()
        distributed.check_same("the config", comparable(cfg))
        self.lock = RunLock(self.run_dir)
        with self.lock.released_on_error():
            self.resume_from = distributed.on_main(lambda: self._prepare_run_dir(resume))
            if self.resume_from is not None:
                check_resumable(distributed.on_main(self._saved_config), cfg)
            self.cfg = cfg
            self.device = distributed.local_device(pick_device(cfg.train.device))
            torch.manual_seed(cfg.train.seed)
            self.fmt = formats.resolve_format(Path(cfg.data.root), cfg.data.format)
            self.method = build_method(cfg, data_info(cfg, self.fmt)).to(self.device)
            #: floating inputs are cast to the networks' dtype: float32, or float64 for a run built under
            #: ``torch.set_default_dtype(torch.float64)`` (the tests' exact comparisons of training paths)
            self.dtype = next(self.method.parameters()).dtype
            self.dataset = TranslationDataset(
                Path(cfg.data.root),
                "train",
                cfg.data,
                train=True,
                size_multiple=self.method.size_multiple,
                fmt=self.fmt,
            )
            self._check_world()
            self.method.steps_per_epoch = self.steps_per_epoch()
            self.method.before_training(self.dataset)
            if cfg.train.sync_bn:
                for name, net in self.method.nets.items():
                    self.method.nets[name] = distributed.convert_sync_batchnorm(net, self.device)
            self.phases = self.method.phases()
            self.phase_params = {
                p.name: [q for n in p.nets for q in self.method.nets[n].parameters()] for p in self.phases
            }
            self.optimizers = self._optimizers()
            self.reducers = (
                {p.name: distributed.GradientReducer(self.phase_params[p.name]) for p in self.phases}
                if self.world.active
                else {}
            )
            self.total = self._total_steps()
            decay = self._decay_steps()
            self.schedulers = {
                k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, self.total, decay))
                for k, o in self.optimizers.items()
            }
            self.step = 0
            #: the global data position (epoch * per_epoch + position) of the batch of step ``data_step``
            self.data_start, self.data_step = 0, 0
            restored = False
            if self.resume_from is not None:
                restored = self._restore(self.resume_from)
            elif init_from is not None:
                distributed.on_main(lambda: self._init_from(Path(init_from)))
            distributed.broadcast_module(self.method)
            if self.world.rank and not restored:
                torch.manual_seed(self._stream_seed())
            self._configure_speed()
            self.sample_batch = self._sample_batch()
            self.sums: dict[str, torch.Tensor] = {}
            self.count = 0
            self.last: dict[str, float] = {}

    # set-up -------------------------------------------------------------------------------------------------

    def _prepare_run_dir(self, resume: bool) -> Path | None:
        """Lock the run directory (held from here to the end of :meth:`fit`) and find what to resume."""
        self.lock.acquire()
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

    def _check_world(self) -> None:
        """Under torchrun, one epoch must hold at least one global batch."""
        b, w = self.cfg.train.batch_size, self.world.size
        if w > 1 and len(self.dataset) < w * b:
            raise PixforgeError(
                f"{self.cfg.data.root}: {len(self.dataset)} training samples are fewer than {w} processes x "
                f"batch {b} = {w * b}; lower --batch-size or the number of processes"
            )

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per phase over the parameters of the networks it trains (fused: one kernel per step, on
        the CPU as on CUDA). With ``lr_scale=linear`` the lr is multiplied by the world size."""
        t = self.cfg.train
        lr = t.lr * (self.world.size if t.lr_scale == "linear" else 1)
        return {
            phase.name: torch.optim.Adam(
                self.phase_params[phase.name], lr=lr, betas=(t.beta1, t.beta2), fused=t.fused_adam or None
            )
            for phase in self.phases
        }

    @property
    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.world.size

    def steps_per_epoch(self) -> int:
        return max(1, len(self.dataset) // self.global_batch)

    def _total_steps(self) -> int:
        t = self.cfg.train
        return t.steps or (t.epochs + t.epochs_decay) * self.steps_per_epoch()

    def _decay_steps(self) -> int:
        t = self.cfg.train
        return t.steps_decay if t.steps else t.epochs_decay * self.steps_per_epoch()

    def _read_resume(self, weights: Path) -> tuple[checkpoint.Loaded, dict[str, Any]]:
        loaded = checkpoint.read(weights)
        if loaded.method != self.cfg.method:
            raise PixforgeError(
                f"{weights}: a {loaded.method} checkpoint cannot resume a {self.cfg.method} run"
            )
        return loaded, checkpoint.read_state(weights)

    def _restore(self, weights: Path) -> bool:
        """Load the checkpoint (read by rank 0, sent to all); True if this rank got its own RNG back."""
        loaded, state = distributed.on_main(lambda: self._read_resume(weights))
        self.method.load_state_dict(loaded.weights)
        self.method.load_extra_state(loaded.extra)
        ranks = state.get("ranks") or [{"rng": state["rng"]}]
        rank = self.world.rank if len(ranks) == self.world.size else 0
        own = ranks[rank] if rank == self.world.rank else {}
        self.method.load_training_state(checkpoint.training_state(state, rank))
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.step = int(state["step"])
        if "rng" in own:
            torch.set_rng_state(own["rng"])
        self._restore_cuda_rng(own.get("cuda_rng"))
        self.data_step = self.step
        self.data_start = self._continue_data(state, len(ranks))
        log.info("resumed %s at step %d", self.run_dir, self.step)
        return "rng" in own

    def _stream_seed(self) -> int:
        """The seed of a random stream this rank starts afresh at this step (ranks > 0 get streams of their own)."""
        return self.cfg.train.seed + 1_000_003 * self.world.rank + 7_919 * self.step

    def _restore_cuda_rng(self, saved: torch.Tensor | None) -> None:
        """This rank's CUDA generator (dropout, DRPAN's penalty noise on the GPU) as saved, else a fresh stream
        of its own: never every rank replaying one stream from step 0."""
        if self.device.type != "cuda":
            return
        if saved is not None:
            torch.cuda.set_rng_state(saved, self.device)
        else:
            torch.cuda.manual_seed(self._stream_seed())

    def _continue_data(self, state: dict[str, Any], old_world: int) -> int:
        """The global data position of the next step: where the checkpoint's run stopped in the epoch's order."""
        per_epoch = self.steps_per_epoch() * self.global_batch
        if "data_position" not in state:
            return self.step * self.global_batch
        epoch, pos = state["data_position"]
        if pos >= per_epoch:
            epoch, pos = epoch + 1, 0
        if old_world != self.world.size:
            log.warning(
                "resuming a run of %d process(es) on %d: the data continues at epoch %d, position %d of its "
                "order (global batch %d); the random streams of ranks > 0 and the per-rank state are new",
                old_world,
                self.world.size,
                epoch,
                pos,
                self.global_batch,
            )
        return epoch * per_epoch + pos

    def data_position(self) -> tuple[int, int]:
        """(epoch, position in its order) of the next sample this run would train on."""
        per_epoch = self.steps_per_epoch() * self.global_batch
        return divmod(self.data_start + (self.step - self.data_step) * self.global_batch, per_epoch)

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
            torch.backends.cudnn.benchmark = self.cfg.data.preprocess in FIXED_SIZE
        if t.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self._match_optimizer_layouts()
        if t.compile:
            for net in self.method.nets.values():
                net.compile(backend=t.compile_backend)

    def _match_optimizer_layouts(self) -> None:
        """Give each optimiser state tensor its parameter's memory layout.

        ``channels_last`` may change on resume: the parameters take the new layout but Adam's moments keep
        the one they were saved with, which CUDA's fused Adam refuses and the CPU's fused kernel silently
        mis-applies (an update off by 0.16 in an experiment).
        """
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    for key, value in state.items():
                        if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                            state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)

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
        epoch, pos = self.data_position()
        sampler = EpochSampler(
            len(self.dataset),
            t.batch_size,
            t.seed,
            start=epoch * self.steps_per_epoch() * self.global_batch + pos,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        workers = self._workers()
        return DataLoader(
            self.dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            drop_last=True,
            generator=torch.Generator().manual_seed(t.seed),  # keeps the global RNG (dropout) untouched
        )

    def _workers(self) -> int:
        """``data.num_workers``; auto (-1): none on the CPU (the training threads use the cores), on CUDA
        min(8, this process's share of the CPUs)."""
        if self.cfg.data.num_workers >= 0:
            return self.cfg.data.num_workers
        if self.device.type != "cuda":
            return 0
        share = len(os.sched_getaffinity(0)) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return max(1, min(8, share))

    def _to_device(self, batch: Batch) -> Batch:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, self.dtype if v.is_floating_point() else None, non_blocking=True)
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
        distributed.broadcast_tensors([b for net in self.method.nets.values() for b in net.buffers()])
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
            reducer = self.reducers.get(phase.name)
            if reducer is not None:
                reducer.arm()
            loss.backward()
            if reducer is not None:
                reducer.finish()
            opt.step()
            scalars.update(out)
        for sched in self.schedulers.values():
            sched.step()
        return scalars

    def _accumulate(self, scalars: dict[str, torch.Tensor]) -> None:
        for k, v in scalars.items():
            v = v.detach().to(self.dtype)
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def _flush(self, writer: Any, bar: tqdm | None) -> None:
        """Average the accumulated scalars (one host sync) and log them."""
        if not self.count:
            return
        names = list(self.sums)
        values = distributed.average(torch.stack([self.sums[k] for k in names]).div(self.count)).tolist()
        self.last = {k: float(v) for k, v in zip(names, values, strict=True)}
        self.sums, self.count = {}, 0
        if writer is None:
            return
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
            started, start_step = self.started
            progress = progress_text(self.step, self.total, start_step, time.monotonic() - started)
            log.info("step %d/%d %s (%s)", self.step, self.total, text, progress)

    def _rank_states(self) -> list[dict[str, Any]]:
        """Every rank's RNGs (CPU, and CUDA on a GPU) and training state (gathered on all ranks): all of rank 0's, and of the other
        ranks' only the tensors that differ from rank 0's (layout: :func:`checkpoint.training_state`)."""
        training = {k: v.detach().cpu() for k, v in self.method.training_state().items()}
        own: dict[str, Any] = {"rng": torch.get_rng_state(), "training": training, "keys": list(training)}
        if self.device.type == "cuda":
            own["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        ranks = distributed.all_gather_objects(own)
        main = ranks[0]["training"]
        for r in ranks[1:]:
            r["training"] = {
                k: v for k, v in r["training"].items() if k not in main or not torch.equal(v, main[k])
            }
        return ranks

    def _checkpoint(self, writer: Any) -> Path | None:
        """Rank 0 writes the checkpoint, the sample grid and the run page; every rank takes part in gathers."""
        ranks = self._rank_states()
        state = {
            "step": self.step,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": torch.get_rng_state(),
            "ranks": ranks,
            "world_size": self.world.size,
            "global_batch": self.global_batch,
            "data_position": self.data_position(),
        }
        samples = self._samples() if self.world.main or self.cfg.train.sync_bn else None
        if writer is None or samples is None:
            return None
        path = checkpoint.save_checkpoint(
            self.run_dir, self.method, self.cfg.to_yaml(), self.step, state, self.cfg.train.keep_checkpoints
        )
        self._save_samples(samples, writer)
        pages.write_run_page(self.run_dir)
        return path

    def _samples(self) -> Any:
        """Sample grid of the fixed batch; the CPU and CUDA RNGs are forked so samples never change the training run.

        With ``sync_bn`` every rank computes it (batch statistics in the paper's test mode are a collective).
        """
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            return visual.grid(self.method.visuals(self.sample_batch))

    def _save_samples(self, image: Any, writer: Any) -> None:
        folder = self.run_dir / "samples"
        folder.mkdir(exist_ok=True)
        image.save(folder / f"step_{self.step:08d}.png")
        image.save(folder / "latest.png")
        writer.add_image("samples", np.array(image), self.step, dataformats="HWC")

    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train until the schedule's last step (or ``stop_after`` more steps, or Ctrl-C); checkpoint on the way."""
        from torch.utils.tensorboard import SummaryWriter

        t = self.cfg.train
        main = self.world.main
        distributed.on_main(self.lock.acquire)
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        if self.world.active:
            log.info(
                "%d processes (%s), batch %d per process, global batch %d",
                self.world.size,
                distributed.backend_name(),
                t.batch_size,
                self.global_batch,
            )
        end = self.total if stop_after is None else min(self.total, self.step + stop_after)
        stop, vote = StopFlag(), distributed.StopVote()
        writer = SummaryWriter(str(self.run_dir / "tb")) if main else None
        bar = (
            tqdm(total=self.total, initial=self.step, desc=self.cfg.method, dynamic_ncols=True)
            if main and sys.stderr.isatty()
            else None
        )
        self.method.train()
        self.started = (time.monotonic(), self.step)
        stopped = False
        try:
            with stop.installed():
                batches = iter(self._loader())
                while self.step < end and not stopped:
                    self._accumulate(self.train_step(self._to_device(next(batches))))
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                    if self.step % t.log_every == 0 or self.step == end:
                        self._flush(writer, bar)
                    if self.step % t.checkpoint_every == 0 and self.step != end:
                        self._checkpoint(writer)
                    stopped = vote(stop.requested)
                stopped = vote.settle() or stopped or (stop.requested and not self.world.active)
                if stopped and not stop.requested:
                    log.warning("another rank was asked to stop: writing a checkpoint at step %d", self.step)
                self._flush(writer, bar)
                if self.step == self.total and not stopped:
                    self.method.after_training(self.dataset, self.device)
                self._checkpoint(writer)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            self.lock.release()
        if not all(math.isfinite(v) for v in self.last.values()):
            log.warning("losses are not finite: %s", self.last)
        return TrainResult(self.run_dir, self.step, self.last, stopped)
