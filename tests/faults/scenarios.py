"""The fault scenarios of issue 9. Each is a fault script for the runner plus its plan; the
sizes come from `Sizes` so the CLI (full) and CI (reduced) run the same code."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from tests.faults import store_check
from tests.faults.broker import SuiteBroker
from tests.faults.report import VERDICT_COUNTS, ScenarioResult
from tests.faults.runner import Context, Plan, Start, run, start_services

MEMBERS_WAIT_S = 150.0
FIRST_START_GRACE_S = 120.0
MID_WORK_MAX_S = 180.0  # a restarted engine that produces nothing for this long is killed anyway


@dataclass(frozen=True, slots=True)
class Sizes:
    users: int = 3000
    rate: float = 100.0
    kills: int = 5
    kill_every_s: tuple[float, float] = (2.0, 10.0)  # random instant after each (re)start
    failover_users: int = 3000
    gateway_users: int = 2000
    broker_users: int = 2000
    first_starts: int = 10
    first_start_users: int = 100
    first_starts_at_once: int = 2
    seed: int = 9


FULL = Sizes()
CI = Sizes(
    users=300,
    rate=20.0,
    kills=2,
    kill_every_s=(2.0, 6.0),
    failover_users=300,
    gateway_users=300,
    broker_users=300,
    first_starts=3,
    first_start_users=40,
    first_starts_at_once=3,
)


# --- 1. kill -9 the single engine at random moments, restart it each time ------------------
async def _engine_kills(ctx: Context, kills: int, every: tuple[float, float]) -> None:
    """The 1st, 3rd, ... kill lands mid-work (once the (re)started engine produced a random
    number of new commands: between its sends and its commits is where a command can be
    lost); the others at a random instant after the spawn (start-up, restore, rebalance)."""
    engine = ctx.deployment.engine("a")
    for i in range(kills):
        since = engine.started_at
        if i % 2 == 0:
            trigger = await ctx.mid_work(since, ctx.rng.randint(1, 400), MID_WORK_MAX_S)
        else:
            trigger = await ctx.random_instant(*every)
        exited_before = engine.crashed()
        produced = ctx.observer.produced_after(since)
        wall = engine.kill9()
        ctx.record(
            "engine_kill",
            engine.name,
            wall,
            trigger=trigger,
            up_s=round(wall - since, 1),
            new_commands=produced,
            **({"had_exited_by_itself": True} if exited_before else {}),
        )
        engine.spawn()


async def engine_kills(broker: SuiteBroker, home: Path, sizes: Sizes) -> ScenarioResult:
    plan = Plan("engine-kill", sizes.users, sizes.rate, seed=sizes.seed)
    return await run(
        broker, home, plan, lambda ctx: _engine_kills(ctx, sizes.kills, sizes.kill_every_s)
    )


# --- 2. two engines, kill -9 one, start a third (2 -> 1 -> 2) ------------------------------
async def _failover(ctx: Context) -> None:
    """Recovery: kill -> the survivor's first new command. Failover: kill -> the killed
    engine's partitions committed again (an upper bound of "produce again": the engine
    commits only after its outputs were acknowledged)."""
    dep, rng = ctx.deployment, ctx.rng
    started = time.monotonic()
    if not await ctx.probe.wait_members(2, MEMBERS_WAIT_S):
        ctx.notes.append(f"two engines were not one stable group within {MEMBERS_WAIT_S:.0f}s")
    grouped_s = round(time.monotonic() - started, 1)
    kill_trigger = await ctx.mid_work(time.time(), rng.randint(50, 400), MID_WORK_MAX_S)
    victim = dep.engine(rng.choice(("a", "b")))
    wall = victim.kill9()
    kill = ctx.record(
        "engine_kill", victim.name, wall, trigger=kill_trigger, two_members_after_s=grouped_s
    )
    await ctx.random_instant(2.0, 6.0)  # on one engine for a random while
    ctx.record("engine_start", "engine-c", dep.start_engine("c"))
    regrouped = await ctx.probe.wait_members(2, MEMBERS_WAIT_S)
    kill.details["group_of_two_again_after_s"] = round(time.time() - wall, 1) if regrouped else None

    def finish(result: ScenarioResult) -> None:
        stalls = ctx.probe.stalls_after(wall)
        kill.details["stalled_partitions"] = [f"{s.topic}[{s.partition}]" for s in stalls]
        resumed = [s.resumed_after_s for s in stalls]
        if stalls and all(r is not None for r in resumed):
            result.failover_s = max(r for r in resumed if r is not None)
        elif stalls:
            result.notes.append("some of the killed engine's partitions never resumed")
        else:
            result.notes.append("no partition stalled after the kill (failover not measured)")

    ctx.finishers.append(finish)


async def failover(broker: SuiteBroker, home: Path, sizes: Sizes) -> ScenarioResult:
    plan = Plan("failover", sizes.failover_users, sizes.rate, engines=("a", "b"), seed=sizes.seed)
    return await run(broker, home, plan, _failover)


# --- 3a. broker restart mid-stream ------------------------------------------------------------
async def _broker_restart(ctx: Context) -> None:
    trigger = await ctx.mid_work(ctx.started, ctx.rng.randint(200, 600), MID_WORK_MAX_S)
    stopped, ready = await asyncio.to_thread(ctx.deployment.broker.restart)
    ctx.record(
        "broker_restart",
        "broker",
        stopped,
        trigger=trigger,
        ready_wall=ready,
        down_s=round(ready - stopped, 1),
    )


async def broker_restart(broker: SuiteBroker, home: Path, sizes: Sizes) -> ScenarioResult:
    plan = Plan("broker-restart", sizes.broker_users, sizes.rate, seed=sizes.seed)
    return await run(broker, home, plan, _broker_restart)


# --- 3b. gateway kill -9 mid-sink -------------------------------------------------------------
async def _gateway_kill(ctx: Context) -> None:
    dep, rng = ctx.deployment, ctx.rng
    trigger = await ctx.mid_work(ctx.started, rng.randint(100, 600), MID_WORK_MAX_S)
    try:
        stored_before = (await store_check.counts(dep.gateway_url)).distinct_ids
    except store_check.StoreUnavailableError:
        stored_before = 0
    gateway = dep.gateway
    assert gateway is not None
    wall = gateway.kill9()
    fault = ctx.record(
        "gateway_kill",
        gateway.name,
        wall,
        trigger=trigger,
        stored_before=stored_before,
        on_topic_before=len(ctx.observer.activity_ids),
    )
    gateway.spawn()
    ready = await store_check.wait_ready(dep.gateway_url, 120.0)
    fault.details["ready_after_s"] = None if ready is None else round(ready - wall, 1)
    deadline = time.monotonic() + 120.0
    while ready is not None and time.monotonic() < deadline:
        try:
            stored = (await store_check.counts(dep.gateway_url)).distinct_ids
        except store_check.StoreUnavailableError:
            stored = stored_before
        if stored > stored_before:
            fault.recovery_s = round(time.time() - wall, 2)  # the sink stores again
            return
        await asyncio.sleep(0.5)


async def gateway_kill(broker: SuiteBroker, home: Path, sizes: Sizes) -> ScenarioResult:
    plan = Plan("gateway-kill", sizes.gateway_users, sizes.rate, seed=sizes.seed)
    return await run(broker, home, plan, _gateway_kill)


# --- 4. first start on an empty cluster, repeated -----------------------------------------------
async def _first_start(ctx: Context) -> None:
    dep = ctx.deployment
    if ctx.plan.start == "events-first":
        await ctx.random_instant(1.0, 3.0)  # a backlog builds up before anything runs
        start_services(dep, ctx.plan.engines)
    engine = dep.engine("a")
    ctx.record("first_start", engine.name, engine.started_at, order=ctx.plan.start)


async def first_starts(broker: SuiteBroker, home: Path, sizes: Sizes) -> ScenarioResult:
    """Fresh topics, groups, database and data directory each time; the start order alternates
    between services on a cluster without their topics and a backlog waiting for them. A few
    run at once (each is mostly waiting)."""
    orders: tuple[Start, Start] = ("services-first", "events-first")
    slots = asyncio.Semaphore(max(1, sizes.first_starts_at_once))

    async def one(i: int) -> ScenarioResult:
        plan = Plan(
            f"first-start-{i + 1}",
            sizes.first_start_users,
            sizes.rate,
            seed=i,
            start=orders[i % 2],
            grace_s=FIRST_START_GRACE_S,
        )
        async with slots:
            return await run(broker, home / f"{i + 1:02d}", plan, _first_start)

    begun = time.monotonic()
    total = ScenarioResult("first-start")
    total.parts = list(await asyncio.gather(*(one(i) for i in range(sizes.first_starts))))
    _sum_parts(total)
    total.duration_s = round(time.monotonic() - begun, 1)
    return total


def _sum_parts(total: ScenarioResult) -> None:
    for name in (*VERDICT_COUNTS, "unpublished_events", "topic_activity_ids"):
        setattr(total, name, sum(getattr(p, name) for p in total.parts))
    distinct = [p.store_distinct for p in total.parts]
    rows = [p.store_rows for p in total.parts]
    # One part the store did not answer for makes the total unknown: nothing may hide.
    total.store_distinct = None if None in distinct else sum(d or 0 for d in distinct)
    total.store_rows = None if None in rows else sum(r or 0 for r in rows)
    total.faults = [f for p in total.parts for f in p.faults]
    total.crashed = [f"{p.name}:{name}" for p in total.parts for name in p.crashed]
    errors = [f"{p.name}: {p.error}" for p in total.parts if p.error]
    total.error = "\n".join(errors) or None
    total.notes = [f"{p.name}: {note}" for p in total.parts for note in p.notes]
    for p in total.parts:
        for key, sample in p.samples.items():
            total.samples[key] = [*total.samples.get(key, []), *sample][:10]


SCENARIOS = {
    "engine-kill": engine_kills,
    "failover": failover,
    "broker-restart": broker_restart,
    "gateway-kill": gateway_kill,
    "first-start": first_starts,
}
