"""The background-worker supervisor with injected time: a failed worker is restarted after a
capped exponential backoff, each failure is counted per worker, its readiness is false while
it is down and true once it recovered, and cancelling stops it cleanly whatever it is doing."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from sme.supervisor import Backoff, Supervisor, WorkerMetrics


class ManualTime:
    """A sleep that returns only when the test lets it, and a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []
        self._gates: list[asyncio.Future[None]] = []

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates.append(gate)
        await gate

    def clock(self) -> float:
        return self.now

    async def sleeping(self, count: int) -> None:
        """Let the loop run until `count` sleeps have been asked for."""
        for _ in range(1000):
            if len(self.delays) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"expected {count} sleeps, saw {self.delays}")

    def wake(self) -> None:
        """End every pending sleep."""
        gates, self._gates = self._gates, []
        for gate in gates:
            if not gate.done():
                gate.set_result(None)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def supervised(time: ManualTime, backoff: Backoff | None = None) -> Supervisor:
    registry = CollectorRegistry()
    supervisor = Supervisor(
        WorkerMetrics(registry),
        backoff or Backoff(initial=0.5, factor=2.0, cap=4.0, reset_after=60.0),
        sleep=time.sleep,
        clock=time.clock,
    )
    REGISTRIES[id(supervisor)] = registry
    return supervisor


REGISTRIES: dict[int, CollectorRegistry] = {}


def restarts(supervisor: Supervisor, worker: str) -> float | None:
    registry = REGISTRIES[id(supervisor)]
    return registry.get_sample_value("sme_worker_restarts_total", {"worker": worker})


def up(supervisor: Supervisor, worker: str) -> float | None:
    registry = REGISTRIES[id(supervisor)]
    return registry.get_sample_value("sme_worker_up", {"worker": worker})


async def test_a_failing_worker_is_restarted_with_capped_exponential_backoff() -> None:
    time = ManualTime()
    supervisor = supervised(time)
    attempts = 0
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 5:
            raise ConnectionError(f"broker gone ({attempts})")
        await release.wait()

    worker = supervisor.forever("mirror", flaky)
    supervisor.start()
    for n in range(1, 6):
        await time.sleeping(n)
        assert not worker.ready
        assert up(supervisor, "mirror") == 0.0
        time.wake()
    await settle()
    assert time.delays == [0.5, 1.0, 2.0, 4.0, 4.0]  # doubling, capped at 4
    assert restarts(supervisor, "mirror") == 5
    assert worker.ready and up(supervisor, "mirror") == 1.0
    assert worker.failures == 5 and worker.last_error == "ConnectionError"
    await supervisor.stop()


async def test_a_worker_that_ran_long_before_failing_restarts_at_the_initial_delay() -> None:
    time = ManualTime()
    supervisor = supervised(time)
    attempts = 0

    async def fails_after_a_while() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 3:
            time.now += 120.0  # this run lasted two minutes
        raise ConnectionError("lost")

    supervisor.forever("sink", fails_after_a_while)
    supervisor.start()
    for n in range(1, 5):
        await time.sleeping(n)
        time.wake()
    assert time.delays[:4] == [0.5, 1.0, 0.5, 1.0]
    await supervisor.stop()


async def test_a_worker_that_returns_is_restarted_like_a_failed_one() -> None:
    time = ManualTime()
    supervisor = supervised(time)
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    supervisor.forever("history", returns)
    supervisor.start()
    for n in (1, 2):
        await time.sleeping(n)
        time.wake()
    await time.sleeping(3)
    assert runs == 3 and restarts(supervisor, "history") == 3
    await supervisor.stop()


async def test_a_periodic_worker_is_ready_after_a_good_step_and_retries_with_backoff() -> None:
    time = ManualTime()
    supervisor = supervised(time)
    outcomes = [ConnectionError("clickhouse down"), ConnectionError("still down"), None, None]
    steps = 0

    async def refresh() -> None:
        nonlocal steps
        outcome = outcomes[min(steps, len(outcomes) - 1)]
        steps += 1
        if outcome is not None:
            raise outcome

    worker = supervisor.every("rollup", 5.0, refresh)
    assert not worker.ready  # never ran
    supervisor.start()
    await time.sleeping(1)
    assert not worker.ready and restarts(supervisor, "rollup") == 1
    time.wake()
    await time.sleeping(2)
    assert not worker.ready and restarts(supervisor, "rollup") == 2
    time.wake()
    await time.sleeping(3)
    assert worker.ready and up(supervisor, "rollup") == 1.0
    assert time.delays == [0.5, 1.0, 5.0]  # backoff while failing, the interval once it works
    assert worker.last_error is None
    await supervisor.stop()


async def test_readiness_also_asks_the_workers_own_probe() -> None:
    time = ManualTime()
    supervisor = supervised(time)
    caught_up = asyncio.Event()
    forever = asyncio.Event()

    async def mirror() -> None:
        await forever.wait()

    supervisor.forever("config-mirror", mirror, ready=caught_up.is_set)
    supervisor.start()
    await settle()
    assert supervisor.readiness() == {"config-mirror": False}
    caught_up.set()
    assert supervisor.readiness() == {"config-mirror": True}
    await supervisor.stop()
    assert supervisor.readiness() == {"config-mirror": False}


async def test_stopping_cancels_workers_running_or_backing_off_and_runs_their_clean_up() -> None:
    time = ManualTime()
    supervisor = supervised(time)
    cleaned: list[str] = []
    forever = asyncio.Event()

    async def consumer() -> None:
        try:
            await forever.wait()
        finally:
            cleaned.append("consumer")

    async def broken() -> None:
        raise ConnectionError("down")

    supervisor.forever("sink", consumer)
    supervisor.forever("mirror", broken)
    supervisor.every("rollup", 5.0, broken)
    supervisor.start()
    await time.sleeping(2)  # both broken workers are backing off
    tasks = [w.task for w in supervisor.workers.values()]
    await asyncio.wait_for(supervisor.stop(), 5)
    assert cleaned == ["consumer"]
    assert all(t is not None and t.cancelled() for t in tasks)
    assert not any(supervisor.readiness().values())
