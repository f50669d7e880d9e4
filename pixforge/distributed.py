"""Many processes, one run: the torchrun process group, rank-0 duties, gradient all-reduce, gathers.

A job is launched by ``torchrun`` (or ``pixforge train --nproc N``, which runs torch.distributed.run for the
user); every process reads its rank from the environment torchrun sets and joins the group in
:func:`session` (NCCL on CUDA, gloo on CPU). One process is the ordinary case: every helper here is then a
no-op and costs nothing.

Gradients are all-reduced explicitly, per phase, by a :class:`GradientReducer` (armed before each phase's
backward, which starts each bucket's all-reduce as soon as its gradients are accumulated, and finished
before the phase's optimiser steps), not by wrapping the networks in ``DistributedDataParallel``. The result is what DDP computes — the gradient of the loss averaged over all
ranks' samples — but it fits the phase design, which DDP's reducer does not: a method's shared forward
pass runs G before the phases and G's backward happens in a later phase, after D's; D is run again, frozen,
inside the G phase; CycleGAN runs each generator three times per iteration; pix2pixHD freezes its global
generator for part of the schedule. DDP expects each wrapped module's forward to be followed by one
backward that reaches all its parameters, so these would need ``no_sync`` bookkeeping per phase and
``find_unused_parameters`` (a graph walk every step) or hang. Here a phase reduces exactly the parameters
of the networks it trains, once, overlapped with its backward as DDP's reducer does; a parameter no rank
gave a gradient (a frozen stage) is neither reduced nor stepped. A test checks the result against torch's
``DistributedDataParallel`` on the same start and data.

Buffers (batch-norm running statistics) are broadcast from rank 0 before every step, as DDP does by default;
with ``sync_bn`` the statistics are computed over the global batch (:func:`convert_sync_batchnorm`) and agree
on every rank without it.

Collectives time out after ``PIXFORGE_DIST_TIMEOUT`` seconds (default 600): a rank that dies or stalls ends
the others with :class:`PeerError` instead of a hang. Control traffic (stop requests, gathered objects)
goes through a separate gloo group on the CPU, so it never synchronises a GPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pixforge.config import BACKENDS
from pixforge.errors import PixforgeError

T = TypeVar("T")

TIMEOUT_ENV = "PIXFORGE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
#: the size of one flat all-reduce of gradients (DDP's default bucket is 25 MiB)
BUCKET_BYTES = 25 * 2**20

_control: Any = None


class PeerError(RuntimeError):
    """Another rank died, stalled past the timeout, or disagreed: this rank cannot go on."""


@dataclass(frozen=True)
class World:
    """Where this process stands: its global rank, the number of processes, its rank on this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_name() -> str:
    """The process group's backend (``gloo``, ``nccl``), or ``none`` for one process."""
    return str(dist.get_backend()) if world().active else "none"


def launch_rank() -> int:
    """The global rank torchrun gave this process (0 when not launched by it), with or without a group."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world() -> World:
    """The process group this process belongs to (one process when none was joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise PixforgeError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None


def resolve_backend(name: str, device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL on CUDA and gloo on the CPU for ``auto``."""
    if name not in BACKENDS:
        raise PixforgeError(f"option backend: '{name}' is not one of {', '.join(BACKENDS)}")
    if name == "nccl" and (device.type != "cuda" or not torch.cuda.is_available()):
        raise PixforgeError("option backend: nccl needs CUDA devices (training on the CPU: use gloo)")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return name


def check_nproc(nproc: int, device: str) -> None:
    """``--nproc``: at least one process, and on CUDA no more processes than this machine has GPUs."""
    if nproc < 1:
        raise PixforgeError(f"--nproc: at least one process is needed (got {nproc})")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and not gpus:
        raise PixforgeError("option device: cuda requested but no CUDA device is available")
    if device in ("cuda", "auto") and gpus and nproc > gpus:
        raise PixforgeError(
            f"--nproc {nproc}: this machine has {gpus} GPU(s); one process per GPU (or --device cpu)"
        )


def local_device(device: torch.device) -> torch.device:
    """On CUDA under torchrun, this process's own GPU (``LOCAL_RANK``); otherwise ``device`` unchanged.

    A launcher that gives each process one visible GPU (``CUDA_VISIBLE_DEVICES`` set per rank, as SLURM and
    others do) leaves a single device: every local rank then uses device 0.
    """
    if device.type != "cuda" or not launched():
        return device
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.device_count() == 1:
        index = 0
    if index >= torch.cuda.device_count():
        raise PixforgeError(
            f"local rank {index}: this machine has {torch.cuda.device_count()} GPU(s); "
            "start at most one process per GPU"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@contextlib.contextmanager
def session(backend: str = "gloo") -> Iterator[World]:
    """Join the torchrun job described by the environment for the duration of the block.

    A single process (no ``WORLD_SIZE`` > 1), or a group joined already by the caller, is used as it is.
    """
    global _control
    if not launched() or dist.is_initialized():
        yield world()
        return
    die_with_launcher()
    timeout = timedelta(seconds=timeout_s())
    try:
        dist.init_process_group(backend, timeout=timeout)
        _control = dist.new_group(backend="gloo", timeout=timeout)
    except (RuntimeError, ValueError) as exc:
        raise PeerError(f"cannot join the process group ({first_line(exc)})") from None
    try:
        yield world()
    finally:
        _control = None
        dist.destroy_process_group()


def die_with_launcher() -> None:
    """Ask the kernel to send this rank SIGTERM when its launcher dies (Linux ``PR_SET_PDEATHSIG``).

    A launcher killed with SIGKILL (an OOM kill, a closed terminal) cannot stop its workers itself, and they
    would train on as orphans. SIGTERM is the preemption signal the trainer already handles: every rank
    finishes its step and rank 0 writes a checkpoint. If the launcher died before this call, exit at once.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        raise PeerError("the launcher of this rank is gone")


#: prctl's option number (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def collective_errors() -> Iterator[None]:
    """Turn a failed collective (a peer died, or stalled past the timeout) into :class:`PeerError`."""
    try:
        yield
    except (dist.DistError, RuntimeError) as exc:
        raise PeerError(
            f"rank {world().rank}: lost contact with the other ranks ({first_line(exc)}); "
            f"collectives time out after {timeout_s():g} s ({TIMEOUT_ENV})"
        ) from None


def _control_group() -> Any:
    return _control if _control is not None else dist.group.WORLD


# weights and gradients ------------------------------------------------------------------------------------


def _flat_groups(tensors: Sequence[Tensor], limit: int = BUCKET_BYTES) -> list[list[Tensor]]:
    """Consecutive tensors of one dtype and device, in buckets of about ``limit`` bytes."""
    buckets: list[list[Tensor]] = []
    size = 0
    for t in tensors:
        last = buckets[-1] if buckets else None
        fits = last is not None and last[0].dtype == t.dtype and last[0].device == t.device
        if not fits or size + t.numel() * t.element_size() > limit:
            buckets.append([])
            size = 0
        buckets[-1].append(t)
        size += t.numel() * t.element_size()
    return buckets


def broadcast_tensors(tensors: Sequence[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values, in place: grouped by dtype and
    device, so a step's buffers (running statistics and their int64 counters, interleaved) travel as a few
    flat broadcasts rather than one per change of dtype."""
    if not world().active:
        return
    grouped = sorted((t for t in tensors if t.numel()), key=lambda t: (str(t.device), str(t.dtype)))
    with collective_errors():
        for bucket in _flat_groups(grouped):
            flat = torch.cat([t.detach().reshape(-1) for t in bucket])
            dist.broadcast(flat, src)
            offset = 0
            for t in bucket:
                t.data.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


def broadcast_module(module: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (the start of a run, and after a resume)."""
    broadcast_tensors([*module.parameters(), *module.buffers()])


class GradientReducer:
    """Averages a phase's gradients over the ranks while its backward pass runs (see the module docstring).

    The parameters are split into buckets in reverse order (about the order in which the backward produces
    their gradients), of one dtype and at most :data:`BUCKET_BYTES` each. A post-accumulate-grad hook counts
    each bucket's gradients as they arrive; a full bucket is flattened and its all-reduce started at once,
    buckets always in index order so every rank issues the same collectives in the same sequence. When the
    backward ends, :meth:`finish` reduces what is left (the gradients of parameters that got one, in
    bucket order) and writes the averages back.

    As with DDP without ``find_unused_parameters``, every rank must produce gradients for the same
    parameters in a phase: true of every method here (none branches on its data; a frozen network, such as
    pix2pixHD's global generator early in its schedule, is frozen on every rank and gets no gradient, so it
    is neither reduced nor stepped). No host round trip asks which gradients exist.
    """

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.size = world().size
        self.buckets = _flat_groups(list(reversed([p for p in params if p.requires_grad])))
        self.where = {id(p): b for b, bucket in enumerate(self.buckets) for p in bucket}
        self.armed = False
        self.reset()
        for bucket in self.buckets:
            for p in bucket:
                p.register_post_accumulate_grad_hook(self._arrived)

    def reset(self) -> None:
        self.arrived: list[set[int]] = [set() for _ in self.buckets]
        self.launched = 0
        self.pending: list[tuple[list[Tensor], Tensor, Any]] = []

    def arm(self) -> None:
        """Reduce the gradients the next backward pass accumulates."""
        self.reset()
        self.armed = True

    def _arrived(self, p: Tensor) -> None:
        if not self.armed or id(p) not in self.where:
            return
        b = self.where[id(p)]
        self.arrived[b].add(id(p))
        while self.launched < len(self.buckets) and len(self.arrived[self.launched]) == len(
            self.buckets[self.launched]
        ):
            self._launch(self.buckets[self.launched])
            self.launched += 1

    def _launch(self, params: list[Tensor]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        with collective_errors():
            self.pending.append((grads, flat, dist.all_reduce(flat, async_op=True)))

    def finish(self) -> None:
        """After the backward: reduce the buckets not started, wait for all, write the averages back."""
        self.armed = False
        for bucket in self.buckets[self.launched :]:
            self._launch(bucket)
        with collective_errors():
            for grads, flat, work in self.pending:
                work.wait()
                flat.div_(self.size)
                offset = 0
                for g in grads:
                    g.copy_(flat[offset : offset + g.numel()].view_as(g))
                    offset += g.numel()
        self.reset()


def average(values: Tensor) -> Tensor:
    """The mean over ranks of a tensor (e.g. the logged losses)."""
    w = world()
    if not w.active:
        return values
    with collective_errors():
        out = values.clone()
        dist.all_reduce(out)
        return out / w.size


# objects and rows ---------------------------------------------------------------------------------------


def all_gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Every rank's rows of each tensor, concatenated in rank order (each rank gives the same shapes)."""
    w = world()
    if not w.active:
        return tensors
    out = []
    with collective_errors():
        for t in tensors:
            sent = t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous()
            parts = [torch.empty_like(sent) for _ in range(w.size)]
            dist.all_gather(parts, sent)
            out.append(torch.cat(parts).to(t.dtype))
    return tuple(out)


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order."""
    w = world()
    if not w.active:
        return [obj]
    out: list[Any] = [None] * w.size
    with collective_errors():
        dist.all_gather_object(out, obj, group=_control_group())
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank."""
    if not world().active:
        return obj
    box = [obj]
    with collective_errors():
        dist.broadcast_object_list(box, src, group=_control_group())
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and give its result to every rank; if it raised PixforgeError, every rank raises it.

    For work only rank 0 may do (reading a checkpoint that other machines may not see), without leaving the
    other ranks waiting in a collective when it fails.
    """
    w = world()
    if not w.active:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if w.main:
        try:
            outcome = (True, fn())
        except PixforgeError as exc:
            outcome = (False, str(exc))
    ok, value = broadcast_object(outcome)
    if not ok:
        raise PixforgeError(value)
    return value


def check_same(what: str, value: dict[str, Any]) -> None:
    """Fail on every rank, naming the keys, when ranks disagree on ``value`` (e.g. the resolved config)."""
    values = all_gather_objects(value)
    for rank, other in enumerate(values):
        diffs = sorted(k for k in set(other) | set(values[0]) if other.get(k) != values[0].get(k))
        if diffs:
            shown = "; ".join(f"{k} {values[0].get(k)!r} vs {other.get(k)!r}" for k in diffs[:3])
            raise PixforgeError(f"{what} differs between rank 0 and rank {rank}: {shown}")


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``size``-th item from position ``rank`` (all of them alone)."""
    w = world()
    return list(items[w.rank :: w.size])


def barrier() -> None:
    if world().active:
        with collective_errors():
            dist.barrier(group=_control_group())


class StopVote:
    """Agree, without a host sync on the GPU, whether any rank was asked to stop.

    Each step casts this rank's flag into an asynchronous all-reduce (MAX) on the CPU control group and reads
    the previous step's result, so a stop requested on any rank ends every rank one or two steps later, at
    the same step.
    """

    def __init__(self) -> None:
        self.pending: tuple[Tensor, Any] | None = None

    def __call__(self, requested: bool) -> bool:
        if not world().active:
            return requested
        with collective_errors():
            decided = False
            if self.pending is not None:
                flag, work = self.pending
                work.wait()
                decided = bool(flag.item())
            flag = torch.tensor([int(requested)], dtype=torch.int32)
            work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_control_group(), async_op=True)
            self.pending = (flag, work)
            return decided

    def settle(self) -> bool:
        """Wait for the vote in flight and return it (False when none is), so no collective is left open."""
        if self.pending is None:
            return False
        flag, work = self.pending
        self.pending = None
        with collective_errors():
            work.wait()
        return bool(flag.item())


# batch statistics over all ranks ------------------------------------------------------------------------


class _SumOverRanks(torch.autograd.Function):
    """y = sum over ranks of x; its gradient is again the sum over ranks of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return _summed_over_ranks(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return _summed_over_ranks(grad)


def _summed_over_ranks(x: Tensor) -> Tensor:
    """A copy of ``x`` summed over all ranks (``x`` itself is left as it is)."""
    out = x.clone()
    with collective_errors():
        dist.all_reduce(out)
    return out


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the global batch (all ranks' samples).

    For the CPU, where torch's :class:`torch.nn.SyncBatchNorm` refuses to run; on CUDA that one is used.
    Sums are all-reduced with a differentiable sum over ranks, so the backward pass carries every rank's
    gradient through the shared mean and variance (two passes: the mean, then the centred squares). Without a process group, or in eval mode, it is plain batch norm.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and world().active):
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1].detach()
        mean = sums[:-1] / n
        centred = x - mean.view(1, -1, 1, 1)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            self._update_running(mean.detach(), var.detach() * n / max(float(n) - 1, 1.0))
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y

    @torch.no_grad()
    def _update_running(self, mean: Tensor, unbiased_var: Tensor) -> None:
        assert self.num_batches_tracked is not None
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased_var, momentum)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm2d computing global-batch statistics (torch's SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        out = SyncBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        ).to(next(module.buffers(), torch.empty(0)).device)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module


# launching -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """How ``pixforge train --nproc N`` starts a job: processes per machine, machines, this machine's rank
    and the rendezvous address (the machine of rank 0 listens there)."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int | None = None
    endpoint: str | None = None

    @property
    def needed(self) -> bool:
        """Whether the command must go through torch.distributed.run (any launch option given)."""
        return (self.nproc, self.nnodes, self.node_rank, self.endpoint) != (1, 1, None, None)

    def check(self, device: str) -> None:
        """Refuse impossible launches with one line, before any process starts."""
        if launched():
            raise PixforgeError("--nproc/--nnodes: this process was started by torchrun already; drop them")
        check_nproc(self.nproc, device)
        if self.nnodes < 1:
            raise PixforgeError(f"--nnodes: at least one machine is needed (got {self.nnodes})")
        if self.nnodes > 1 and self.endpoint is None:
            raise PixforgeError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the machine of node rank 0)")
        if self.node_rank is not None and not 0 <= self.node_rank < self.nnodes:
            raise PixforgeError(f"--node-rank: must be in 0..{self.nnodes - 1} (got {self.node_rank})")
        if self.endpoint is not None:
            host, port = self.address()
            if self.node_rank in (None, 0) and is_local(host):
                check_port_free(host, port)

    def address(self) -> tuple[str, int]:
        assert self.endpoint is not None
        host, sep, port = self.endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise PixforgeError(f"--rdzv-endpoint {self.endpoint!r}: expected HOST:PORT")
        return host, int(port)

    def torchrun_args(self, log_dir: str) -> list[str]:
        """The torch.distributed.run options: a private port on one machine; with ``--node-rank`` the static
        rendezvous (ranks by machine order); without it torchrun's c10d rendezvous at the endpoint."""
        args = [
            f"--nproc-per-node={self.nproc}",
            f"--nnodes={self.nnodes}",
            f"--log-dir={log_dir}",
            "--shutdown-timeout=60",
        ]
        if self.nproc > 1:
            args.append("--redirects=" + ",".join(f"{r}:3" for r in range(1, self.nproc)))
        if self.endpoint is None:
            return [*args, "--standalone"]
        host, port = self.address()
        if self.node_rank is not None:
            return [
                *args,
                "--rdzv-backend=static",
                f"--node-rank={self.node_rank}",
                f"--master-addr={host}",
                f"--master-port={port}",
            ]
        return [*args, "--rdzv-backend=c10d", f"--rdzv-endpoint={self.endpoint}"]


def is_local(host: str) -> bool:
    import socket

    if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        return True
    try:
        names = {socket.gethostname(), socket.getfqdn()}
        return host in names or socket.gethostbyname(host) in {socket.gethostbyname(n) for n in names}
    except OSError:
        return False


def check_port_free(host: str, port: int) -> None:
    import errno
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PixforgeError(
                    f"--rdzv-endpoint {host}:{port}: the port is already in use on this machine; choose another"
                ) from None
            raise PixforgeError(
                f"--rdzv-endpoint {host}:{port}: cannot listen there ({exc.strerror})"
            ) from None


def launch(spec: Launch, module_args: Sequence[str]) -> int:
    """Run ``python -m pixforge MODULE_ARGS`` as ``spec.nproc`` processes through torch.distributed.run.

    Local rank 0's output is shown; the other ranks' is kept in a temporary log folder. Every rank records
    its ``error:`` line there (:func:`record_error`), and the lines rank 0 did not print are shown at the end. Returns the exit code for the shell: 0, 2 when a rank
    refused bad input, 130 when interrupted, 1 otherwise (with a line naming the rank that died).
    """
    import logging
    import shutil
    import tempfile

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.nproc)))
    log_dir = tempfile.mkdtemp(prefix="pixforge-launch-")
    os.environ[ERROR_DIR_ENV] = log_dir
    argv = [*spec.torchrun_args(log_dir), "-m", "pixforge", *module_args]
    try:
        torchrun.run(torchrun.get_args_parser().parse_args(argv))
        return 0
    except ChildFailedError as exc:
        return _report_failures(exc.failures, log_dir)
    except SignalException:
        return 130
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _report_failures(failures: dict[int, Any], log_dir: str) -> int:
    import signal
    from pathlib import Path

    files = sorted(Path(log_dir).glob("rank*_local*.err"), key=lambda p: int(p.stem[4:].split("_")[0]))
    shown = {line for p in files if p.stem.endswith("_local0") for line in p.read_text().splitlines()}
    for path in files:
        rank, lines = int(path.stem[4:].split("_")[0]), path.read_text().splitlines()
        for line in lines:
            if line not in shown:
                shown.add(line)
                print(f"{line} (rank {rank})", file=sys.stderr)
    if any(f.exitcode == 2 for f in failures.values()):
        return 2
    # the root cause: not a rank the launcher itself stopped (SIGTERM), else the first to fail
    rank, failure = min(
        failures.items(), key=lambda rf: (rf[1].exitcode == -signal.SIGTERM, rf[1].timestamp, rf[0])
    )
    if failure.exitcode < 0:
        cause = f"was killed by {signal.Signals(-failure.exitcode).name}"
    else:
        cause = f"exited with code {failure.exitcode}"
    print(f"error: rank {rank} {cause}; the other ranks were stopped", file=sys.stderr)
    return 1


ERROR_DIR_ENV = "PIXFORGE_ERROR_DIR"


def record_error(line: str) -> None:
    """Keep this rank's one-line error where :func:`launch` looks for it (when launched by it)."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder and launched():
        name = f"rank{os.environ.get('RANK', '0')}_local{os.environ.get('LOCAL_RANK', '0')}.err"
        with open(os.path.join(folder, name), "a") as f:
            f.write(line + "\n")
