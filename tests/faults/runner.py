"""One scenario from start to verdict: deploy, publish the workload while a fault script runs,
wait (bounded) until every acknowledged user has all their commands, let duplicates settle,
compare the store with the activities topic, verify, stop everything.

Scenarios differ only in their fault script and in how they start the services."""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.faults.broker import SuiteBroker
from tests.faults.deployment import Deployment, DeploymentError
from tests.faults.group import GroupProbe
from tests.faults.observer import Observer
from tests.faults.publisher import Publisher
from tests.faults.report import VERDICT_COUNTS, Fault, ScenarioResult
from tests.faults.store_check import StoreCounts, StoreUnavailableError, wait_ready
from tests.faults.verify import Expectation, Verdict, verify
from tests.faults.waits import complete, settle, store_matching_topic
from tests.faults.workload import CAPS, CONFIG_ID, SEQUENCE_SPAN_S, STEPS, Workload

GATEWAY_READY_S = 120.0


Start = Literal["config-first", "services-first", "events-first"]
"""config-first: apply the config, start the services, publish. services-first: the services
start on topics that do not exist yet, then the config, then events. events-first: config and
events wait on the broker; the fault script starts the services."""


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    users: int
    rate: float
    engines: tuple[str, ...] = ("a",)
    seed: int = 0
    grace_s: float = 180.0  # after the workload and the faults, how long completion may take
    start: Start = "config-first"


@dataclass
class Context:
    """What a fault script works with."""

    plan: Plan
    deployment: Deployment
    observer: Observer
    probe: GroupProbe
    publisher: Publisher
    rng: random.Random
    started: float  # wall clock of the workload start
    publishing: asyncio.Task[None] | None = None
    faults: list[Fault] = field(default_factory=list)
    finishers: list[Callable[[ScenarioResult], None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, kind: str, target: str, wall: float, **details: object) -> Fault:
        fault = Fault(kind, target, round(wall - self.started, 2), wall, details=dict(details))
        self.faults.append(fault)
        return fault

    @property
    def publishing_done(self) -> bool:
        return self.publishing is not None and self.publishing.done()

    async def mid_work(self, since: float, commands: int, max_s: float) -> str:
        """Until engines produced `commands` new commands after `since` (wall clock), at most
        `max_s`: the fault then lands while outputs are in flight."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            if self.observer.produced_after(since) >= commands:
                return f"after {commands} new commands"
            await asyncio.sleep(0.1)
        return f"no {commands} new commands in {max_s:.0f}s"

    async def random_instant(self, low_s: float, high_s: float) -> str:
        """Fault timing, not a wait for an effect: any moment may be the unlucky one."""
        delay = self.rng.uniform(low_s, high_s)
        await asyncio.sleep(delay)
        return f"at a random instant ({delay:.1f}s)"


FaultScript = Callable[[Context], Awaitable[None]]


async def _nothing(_: Context) -> None:
    return None


async def run(
    broker: SuiteBroker, home: Path, plan: Plan, script: FaultScript = _nothing
) -> ScenarioResult:
    """Run one scenario; never raises (an error is part of the result)."""
    begun = time.monotonic()
    result = ScenarioResult(plan.name)
    deployment = Deployment.create(broker, home, plan.name.replace("-", "_"))
    observer = Observer(broker.bootstrap, deployment.commands_prefix, deployment.activities_topic)
    probe = GroupProbe(broker.bootstrap, deployment.engine_group)
    ctx: Context | None = None
    try:
        await _deploy(deployment, plan, result)
        await observer.start()
        await probe.start()
        workload = Workload(plan.users, plan.rate, plan.name.replace("-", "_"), plan.seed)
        publisher = Publisher(broker.bootstrap, deployment.events_topic)
        ctx = Context(
            plan, deployment, observer, probe, publisher, random.Random(plan.seed), time.time()
        )
        ctx.publishing = asyncio.create_task(publisher.run(workload.plan()))
        await asyncio.gather(ctx.publishing, script(ctx))
        expect = Expectation(
            frozenset(publisher.log.acked_users), CONFIG_ID, tuple(s for s, _, _ in STEPS), CAPS
        )
        due_by = publisher.log.finished_at + SEQUENCE_SPAN_S
        ending = await complete(observer, probe, deployment, expect, due_by, plan.grace_s)
        if ending != "complete":
            result.notes.append(f"stopped waiting for the missing commands: {ending}")
            if behind := probe.uncommitted():
                result.notes.append(f"engine group's commits behind the end offsets: {behind}")
        await settle(observer)
        _store_counts(result, await store_matching_topic(deployment, observer))
        _fill(result, verify(expect, observer.deliveries), observer, publisher)
        _recoveries(ctx)
        for finish in ctx.finishers:
            finish(result)
        result.notes.extend(ctx.notes)
    except (DeploymentError, StoreUnavailableError) as exc:
        result.error = str(exc)
    except Exception as exc:  # the suite reports; it must not die on an engine it measures
        result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
    finally:
        result.faults = ctx.faults if ctx is not None else []
        result.crashed = deployment.crashed()
        deployment.stop_all()
        await observer.stop()
        await probe.stop()
        result.duration_s = round(time.monotonic() - begun, 1)
        if result.error or result.crashed:
            result.notes.extend(
                f"{name} log tail: ...{tail[-600:]!r}"
                for name, tail in deployment.log_tails().items()
            )
    return result


def start_services(deployment: Deployment, engines: tuple[str, ...]) -> None:
    deployment.start_gateway()
    for instance in engines:
        deployment.start_engine(instance)


async def _deploy(deployment: Deployment, plan: Plan, result: ScenarioResult) -> None:
    if plan.start == "services-first":
        start_services(deployment, plan.engines)
    await deployment.apply_config()
    if plan.start == "config-first":
        start_services(deployment, plan.engines)
    if (
        plan.start != "events-first"
        and await wait_ready(deployment.gateway_url, GATEWAY_READY_S) is None
    ):
        result.notes.append(f"gateway not ready after {GATEWAY_READY_S:.0f}s")


def _store_counts(result: ScenarioResult, store: StoreCounts) -> None:
    result.store_rows = store.rows
    result.store_distinct = store.distinct_ids


def _fill(
    result: ScenarioResult, verdict: Verdict, observer: Observer, publisher: Publisher
) -> None:
    for name in VERDICT_COUNTS:
        setattr(result, name, getattr(verdict, name))
    result.samples = {
        "lost (user/step: the user's last activity)": [
            f"{lost}: {observer.last_activity.get(lost.rsplit('/', 1)[0], 'no activity at all')}"
            for lost in verdict.lost_sample
        ],
        "distinct-key duplicates": verdict.distinct_key_sample,
        "over cap": verdict.over_cap_sample,
    }
    result.topic_activity_ids = len(observer.activity_ids)
    result.unpublished_events = len(publisher.log.unacked)
    if publisher.log.unacked:
        result.notes.append(f"{len(publisher.log.unacked)} events never acked (users not owed)")


def _recoveries(ctx: Context) -> None:
    """Recovery of a fault the script did not time itself: from the fault (for a broker
    restart: from the stop, counting only commands made once it was ready again) to the first
    command any engine produced after it, by the records' CreateTime."""
    for fault in ctx.faults:
        if fault.recovery_s is not None or fault.kind == "engine_start":
            continue  # measured by the script itself (gateway kills), or not a fault
        since = fault.details.get("ready_wall", fault.wall)
        assert isinstance(since, float)
        first = ctx.observer.first_produced_after(since)
        if first is not None:
            fault.recovery_s = round(first - fault.wall, 2)
