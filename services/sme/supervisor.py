"""One owner for every background worker of a service (quix's `Application` owning its sinks).

A worker is either long-running (`forever`: a consumer loop, a topic mirror) or periodic
(`every`: a rollup refresh, an automation check). The supervisor runs each in a loop that never
lets an exception out: a failure (or a long-running worker that returns) is logged, counted in
`sme_worker_restarts_total{worker}`, and the worker is restarted (or its step retried) after a
capped exponential backoff. Each worker has a readiness flag, false while it is down or backing
off, and, for a periodic one, until its first step succeeded; an optional probe adds what only
the worker knows (a mirror caught up, a consumer started). `sme_worker_up{worker}` shows the
flag. Both services use it: the gateway starts and stops the tasks itself (`start`/`stop`),
the engine hands `Worker.run` to Faust (`app.task`), which cancels it on shutdown.

Time is injected (`sleep`, `clock`), so tests drive restarts without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Step = Callable[[], Awaitable[object]]
Probe = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the n-th consecutive restart: `initial * factor**(n-1)`, at most `cap`.
    A long-running worker that ran `reset_after` seconds before failing starts again at
    `initial`; a periodic one after any successful step."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.initial * self.factor ** max(failures - 1, 0)))


class WorkerMetrics:
    """The supervisor's metrics, on the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter(
            "sme_worker_restarts_total",
            "Background worker failures, each followed by a restart (or a retry of its step) "
            "after backoff, by worker.",
            ["worker"],
            registry=registry,
        )
        self.up = Gauge(
            "sme_worker_up",
            "1 while a background worker is running and ready, 0 while down or backing off.",
            ["worker"],
            registry=registry,
        )


class Worker:
    """One supervised worker: its loop (`run`) and its state."""

    def __init__(
        self,
        supervisor: Supervisor,
        name: str,
        step: Step,
        interval: float | None,
        probe: Probe | None,
    ) -> None:
        self.supervisor = supervisor
        self.name = name
        self.step = step
        self.interval = interval
        self.probe = probe
        self.running = False  # forever: its body is running; every: its last step succeeded
        self.failures = 0  # consecutive
        self.last_error: str | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.running and (self.probe is None or self.probe())

    async def run(self) -> None:
        """The supervised loop; ends only when cancelled."""
        try:
            if self.interval is None:
                await self._forever()
            else:
                await self._every(self.interval)
        finally:
            self.running = False

    async def _forever(self) -> None:
        sup = self.supervisor
        while True:
            started = sup.clock()
            self.running = True
            try:
                await self.step()
                error: BaseException = RuntimeError("returned")  # meant to run until cancelled
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
            self.running = False
            if sup.clock() - started >= sup.backoff.reset_after:
                self.failures = 0
            await self._failed(error)

    async def _every(self, interval: float) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.running = False
                await self._failed(exc)
                continue
            self.running, self.failures, self.last_error = True, 0, None
            await self.supervisor.sleep(interval)

    async def _failed(self, error: BaseException) -> None:
        sup = self.supervisor
        self.failures += 1
        self.last_error = type(error).__name__  # shown by /readyz: no message, no secrets
        if sup.metrics is not None:
            sup.metrics.restarts.labels(self.name).inc()
        delay = sup.backoff.delay(self.failures)
        log.error(
            "worker %s failed (%d in a row): %r; restarting in %.1fs",
            self.name,
            self.failures,
            error,
            delay,
            exc_info=error,
        )
        await sup.sleep(delay)


class Supervisor:
    def __init__(
        self,
        metrics: WorkerMetrics | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.clock = clock
        self.workers: dict[str, Worker] = {}

    def forever(self, name: str, run: Step, ready: Probe | None = None) -> Worker:
        """A long-running worker: `run` is restarted with backoff whenever it fails."""
        return self._add(Worker(self, name, run, None, ready))

    def every(self, name: str, interval: float, step: Step, ready: Probe | None = None) -> Worker:
        """A periodic worker: `step` every `interval` seconds; after a failure, retried with
        backoff (the worker is not ready until a step succeeds again)."""
        return self._add(Worker(self, name, step, interval, ready))

    def _add(self, worker: Worker) -> Worker:
        if worker.name in self.workers:
            raise ValueError(f"a worker named {worker.name!r} is already supervised")
        self.workers[worker.name] = worker
        if self.metrics is not None:
            self.metrics.up.labels(worker.name).set_function(lambda: float(worker.ready))
        return worker

    def readiness(self) -> dict[str, bool]:
        return {name: worker.ready for name, worker in self.workers.items()}

    def start(self) -> None:
        """Run every worker not yet started as a task on the running loop."""
        for worker in self.workers.values():
            if worker.task is None:
                worker.task = asyncio.create_task(worker.run(), name=worker.name)

    async def stop(self) -> None:
        """Cancel every task it started and wait for each to finish its clean-up."""
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("worker %s failed while stopping", task.get_name())
        for worker in self.workers.values():
            worker.task = None
