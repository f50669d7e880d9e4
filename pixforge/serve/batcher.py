"""Dynamic micro-batching: concurrent requests of the same model, input shapes and options become one
forward pass, run in a worker thread per device so that the event loop stays free.

A worker takes the oldest waiting request, then gathers requests with the same key (model, shapes, options)
until it has ``max_batch`` of them or ``max_wait_ms`` have passed since it took the first; requests of other
keys wait for the next pass, in order. A request whose caller has gone (its future cancelled: the client
disconnected) is dropped before it reaches the model.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Hashable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from pixforge.serve.metrics import Metrics
from pixforge.serve.registry import ModelRegistry, ServedModel

Maps = dict[str, Tensor]


def freeze(value: Any) -> Hashable:
    """A hashable form of translation options (dicts and lists inside, e.g. pix2pixHD's ``clusters``)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Tensor):
        return tuple(value.flatten().tolist())
    return value


@dataclass
class Job:
    """One request waiting for its forward pass."""

    model: ServedModel
    batch: Maps
    options: dict[str, Any]
    future: asyncio.Future[Maps]
    loop: asyncio.AbstractEventLoop
    key: Hashable = field(init=False)

    def __post_init__(self) -> None:
        shapes = tuple((k, tuple(v.shape), str(v.dtype)) for k, v in sorted(self.batch.items()))
        self.key = (self.model.name, shapes, freeze(self.options))

    def alive(self) -> bool:
        return not self.future.done()

    def resolve(self, result: Maps | None = None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the waiting coroutine, from the worker thread."""

        def deliver() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result or {})

        self.loop.call_soon_threadsafe(deliver)


_STOP = object()


class Worker(threading.Thread):
    """The inference thread of one device."""

    def __init__(self, device: str, max_batch: int, max_wait_s: float, metrics: Metrics, amp: str) -> None:
        super().__init__(name=f"pixforge-infer-{device}", daemon=True)
        self.device = device
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.metrics = metrics
        self.amp = amp
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.held: deque[Job] = deque()
        self.stopping = False

    def put(self, job: Job) -> None:
        self.inbox.put(job)

    def stop(self) -> None:
        """Finish every job already submitted, then end."""
        self.inbox.put(_STOP)

    def _next(self, timeout: float | None) -> Job | None:
        """The next job from the inbox (None on timeout or after the stop mark)."""
        try:
            item = (
                self.inbox.get(timeout=timeout) if timeout is None or timeout > 0 else self.inbox.get_nowait()
            )
        except queue.Empty:
            return None
        if item is _STOP:
            self.stopping = True
            return None
        return item

    def gather(self, first: Job) -> list[Job]:
        """``first`` and the waiting jobs of the same key, up to ``max_batch`` and ``max_wait_s``."""
        group = [first]
        rest: deque[Job] = deque()
        while self.held and len(group) < self.max_batch:
            job = self.held.popleft()
            (group if job.key == first.key else rest).append(job)
        rest.extend(self.held)
        self.held = rest
        deadline = time.monotonic() + self.max_wait_s
        while len(group) < self.max_batch and not self.stopping:
            job = self._next(deadline - time.monotonic())
            if job is None:
                if time.monotonic() >= deadline or self.stopping:
                    break
                continue
            (group if job.key == first.key else self.held).append(job)
        return [j for j in group if j.alive()]

    def run(self) -> None:
        while True:
            first = self.held.popleft() if self.held else self._next(None if not self.stopping else 0)
            if first is None:
                if self.stopping and not self.held:
                    return
                continue
            group = self.gather(first)
            if group:
                self.forward(group)

    def forward(self, group: list[Job]) -> None:
        """One forward pass for ``group`` (same model, shapes and options); results split per request."""
        model = group[0].model
        translator = model.translator
        try:
            stacked = {
                k: torch.cat([j.batch[k] for j in group]).to(translator.device) for k in group[0].batch
            }
            start = time.perf_counter()
            with self._autocast(translator.device):
                maps = translator.translate_batch(stacked, **group[0].options)
            maps = {k: v.float().cpu() for k, v in maps.items()}
            self.metrics.forward.labels(model.name).observe(time.perf_counter() - start)
            self.metrics.batch_size.labels(model.name).observe(len(group))
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for job in group:
                job.resolve(error=exc)
            return
        for i, job in enumerate(group):
            job.resolve({k: v[i : i + 1] for k, v in maps.items()})

    def _autocast(self, device: torch.device) -> Any:
        if self.amp == "bf16" and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


class Batcher:
    """Submits requests to the worker of their model's device (see the module docstring)."""

    def __init__(
        self, registry: ModelRegistry, max_batch: int, max_wait_ms: float, metrics: Metrics, amp: str = "none"
    ) -> None:
        self.registry = registry
        self.workers: dict[str, Worker] = {}
        for model in registry:
            device = str(model.translator.device)
            if device not in self.workers:
                self.workers[device] = Worker(device, max_batch, max_wait_ms / 1000, metrics, amp)

    def start(self) -> None:
        for worker in self.workers.values():
            if not worker.is_alive():
                worker.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the submitted jobs and end the workers."""
        for worker in self.workers.values():
            if worker.is_alive():
                worker.stop()
        for worker in self.workers.values():
            if worker.is_alive():
                worker.join(timeout)

    async def submit(self, name: str, batch: Maps, options: dict[str, Any] | None = None) -> Maps:
        """Translate one prepared batch (``Translator.batch_for``) of model ``name``; see the module docstring.

        Raises ``KeyError`` for an unknown model and whatever the translation raises (a
        :class:`~pixforge.errors.PixforgeError` for a bad option).
        """
        model = self.registry.get(name)
        worker = self.workers[str(model.translator.device)]
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Maps] = loop.create_future()
        worker.put(Job(model, {k: v.cpu() for k, v in batch.items()}, dict(options or {}), future, loop))
        return await future
