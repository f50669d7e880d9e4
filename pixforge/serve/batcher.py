"""Dynamic micro-batching: concurrent requests of the same model, input shapes and options become one
forward pass, run in a worker thread per device so that the event loop stays free.

A worker takes the oldest waiting request, then gathers requests with the same key (model, shapes, options)
until it has the model's ``max_batch`` of them, their pixels fill the per-batch budget (``max_batch_pixels``:
a request larger than half of it runs alone, so a pass needs what one large request needs), or the model's
``max_wait_ms`` have passed since it took the first; requests of other keys wait for the next pass, in order.

What a request costs is bounded before it reaches the model:

- each model queues at most ``max_queue`` requests; one more is refused at once (503 with ``Retry-After``);
- a request that waited longer than its deadline (``timeout_s``) is dropped (504) and never runs;
- a request whose client hung up (``disconnected`` returned) is dropped and never runs.

A request is either claimed by the worker for a forward pass or abandoned by its caller, never both
(:meth:`Job.claim`, :meth:`Job.abandon`); a claimed request runs to its end.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

import torch

from pixforge.serve.inputs import RequestError
from pixforge.serve.metrics import Metrics
from pixforge.serve.registry import ModelRegistry, ServedModel

#: seconds a refused client is asked to wait before it tries again (``Retry-After``)
RETRY_AFTER_S = 1


class Refused(RequestError):
    """A request the server cannot take now (503/504), with the seconds to wait before retrying."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(status, message)
        self.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}


class ClientGone(RequestError):
    """The client hung up before its answer was ready (nothing is sent)."""

    def __init__(self) -> None:
        super().__init__(499, "The client closed the connection before the answer was ready.")


@dataclass
class Job:
    """One request waiting for its forward pass."""

    model: ServedModel
    payload: Any
    options: dict[str, Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    key: Hashable = field(init=False)
    pixels: int = field(init=False)
    warm_up: bool = False  # a start-up run: alone, not queued, not in the metrics
    state: str = "queued"  # queued -> claimed (by the worker) | abandoned (by the caller)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.key = ("warm-up", id(self)) if self.warm_up else self.model.batch_key(self.payload, self.options)
        self.pixels = self.model.pixels(self.payload)

    def claim(self) -> bool:
        """The worker takes the job for a forward pass; False when its caller abandoned it."""
        with self.lock:
            if self.state != "queued":
                return False
            self.state = "claimed"
            return True

    def abandon(self) -> bool:
        """The caller gives up on the job; False when the worker already claimed it (it will run)."""
        with self.lock:
            if self.state != "queued":
                return False
            self.state = "abandoned"
            return True

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the waiting coroutine, from the worker thread."""

        def deliver() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(deliver)


_STOP = object()


class Worker(threading.Thread):
    """The inference thread of one device."""

    def __init__(self, device: str, metrics: Metrics, amp: str, settle: Callable[[Job], None]) -> None:
        super().__init__(name=f"pixforge-infer-{device}", daemon=True)
        self.device = device
        self.metrics = metrics
        self.amp = amp
        self.settle = settle
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
        """``first`` and the waiting jobs of its key, within the model's batch size, wait and pixel budget."""
        batching = first.model.batching
        group, pixels = [first], first.pixels

        def fits(job: Job) -> bool:
            return job.key == first.key and pixels + job.pixels <= batching.max_batch_pixels

        def full() -> bool:
            return len(group) >= batching.max_batch or pixels + first.pixels > batching.max_batch_pixels

        rest: deque[Job] = deque()
        while self.held:
            job = self.held.popleft()
            if not full() and fits(job):
                group.append(job)
                pixels += job.pixels
            else:
                rest.append(job)
        self.held = rest
        deadline = time.monotonic() + batching.max_wait_ms / 1000
        while not full() and not self.stopping:
            job = self._next(deadline - time.monotonic())
            if job is None:
                if time.monotonic() >= deadline:
                    break
                continue
            if fits(job):
                group.append(job)
                pixels += job.pixels
            else:
                self.held.append(job)
        return [j for j in group if self._claim(j)]

    def _claim(self, job: Job) -> bool:
        claimed = job.claim()
        if claimed and not job.warm_up:
            self.settle(job)
        return claimed

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
        gauge = self.metrics.in_forward.labels(model.name)
        gauge.inc(len(group))
        try:
            start = time.perf_counter()
            with self._autocast(model.device):
                results = model.run([j.payload for j in group], group[0].options)
            if not group[0].warm_up:
                self.metrics.forward.labels(model.name).observe(time.perf_counter() - start)
                self.metrics.batch_size.labels(model.name).observe(len(group))
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for job in group:
                job.resolve(error=exc)
            return
        finally:
            gauge.dec(len(group))
        for job, result in zip(group, results, strict=True):
            job.resolve(result)

    def _autocast(self, device: torch.device) -> Any:
        if self.amp == "bf16" and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


class Batcher:
    """Submits requests to the worker of their model's device (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, amp: str = "none") -> None:
        self.registry = registry
        self.metrics = metrics
        self.lock = threading.Lock()
        self.queued = {name: 0 for name in registry.names()}
        self.workers: dict[str, Worker] = {}
        for model in registry:
            device = str(model.device)
            if device not in self.workers:
                self.workers[device] = Worker(device, metrics, amp, self._settle)

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

    def depth(self, name: str) -> int:
        """Requests of model ``name`` waiting for a forward pass."""
        return self.queued[name]

    def _enqueue(self, model: ServedModel) -> None:
        with self.lock:
            waiting = self.queued[model.name]
            if waiting >= model.batching.max_queue:
                self.metrics.dropped.labels(model.name, "queue_full").inc()
                raise Refused(
                    503,
                    f"Model {model.name} has {waiting} requests waiting, its limit; try again shortly.",
                    RETRY_AFTER_S,
                )
            self.queued[model.name] = waiting + 1
            self.metrics.queue_depth.labels(model.name).set(waiting + 1)

    def _settle(self, job: Job) -> None:
        """A job left the queue (claimed for a pass, or abandoned)."""
        with self.lock:
            self.queued[job.model.name] -= 1
            self.metrics.queue_depth.labels(job.model.name).set(self.queued[job.model.name])

    def _drop(self, job: Job, reason: str) -> bool:
        """Abandon a queued job (it will not run); False when it is already in its forward pass."""
        if not job.abandon():
            return False
        self._settle(job)
        self.metrics.dropped.labels(job.model.name, reason).inc()
        return True

    async def warm(self, name: str, payload: Any) -> None:
        """Run model ``name`` once on ``payload`` in its worker, outside the queue and the metrics."""
        model = self.registry.get(name)
        loop = asyncio.get_running_loop()
        job = Job(model, payload, {}, loop.create_future(), loop, warm_up=True)
        self.workers[str(model.device)].put(job)
        await job.future

    async def submit(
        self,
        name: str,
        payload: Any,
        options: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        disconnected: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """Run one prepared request (``ServedModel.prepare``'s payload; for a torch model, a
        ``Translator.batch_for`` batch) of model ``name``; see the module docstring.

        Raises ``KeyError`` for an unknown model, :class:`Refused` (503 queue full, 504 past ``timeout_s``),
        :class:`ClientGone` once ``disconnected()`` returns, and whatever the translation raises (a
        :class:`~pixforge.errors.PixforgeError` for a bad option).
        """
        model = self.registry.get(name)
        worker = self.workers[str(model.device)]
        self.start()
        self._enqueue(model)
        loop = asyncio.get_running_loop()
        job = Job(model, payload, dict(options or {}), loop.create_future(), loop)
        worker.put(job)
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            return await self._wait(job, timeout_s, watcher)
        finally:
            if watcher is not None:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher

    async def _wait(self, job: Job, timeout_s: float | None, watcher: asyncio.Future[Any] | None) -> Any:
        waiting = {job.future} | ({watcher} if watcher is not None else set())
        done, _ = await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if job.future in done:
            return job.future.result()
        if watcher is not None and watcher in done:
            self._drop(job, "disconnected")
            raise ClientGone()
        if self._drop(job, "deadline"):
            raise Refused(
                504,
                f"The request waited over its deadline of {timeout_s * 1000:.0f} ms for model {job.model.name} "
                "and was dropped.",
                RETRY_AFTER_S,
            )
        return await job.future  # already in its forward pass: it runs to its end
