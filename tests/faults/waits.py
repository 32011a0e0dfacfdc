"""The bounded waits at the end of a scenario: for the last commands, for duplicates to
settle, for the store to catch up with the activities topic. Each ends on its condition or
on a deadline, never after a fixed time."""

from __future__ import annotations

import asyncio
import time

from tests.faults.deployment import Deployment
from tests.faults.group import GroupProbe
from tests.faults.observer import Observer
from tests.faults.store_check import StoreCounts, StoreUnavailableError, counts
from tests.faults.verify import Expectation
from tests.faults.workload import SEQUENCE_SPAN_S

QUIET_S = 3.0  # no new command for this long: duplicates have settled
STUCK_IDLE_S = 20.0  # caught up and silent this long after all was due: the rest is lost
SETTLE_MAX_S = 30.0
STORE_WAIT_S = 90.0


def _idle_and_caught_up(probe: GroupProbe, deployment: Deployment) -> bool:
    """Every live engine is in a stable group and has committed everything on its inputs:
    nothing is in flight, so a missing command is not coming any more."""
    last = probe.samples[-1] if probe.samples else None
    if last is None or time.time() - last.at > 3 * probe.interval_s + 1:
        return False
    alive = sum(1 for engine in deployment.engines.values() if engine.alive)
    return last.state == "Stable" and last.members == alive and last.lag == 0


def all_due_at(observer: Observer, expect: Expectation, due_by: float) -> float | None:
    """When the last expected step was due (wall clock): a user's steps are timed from their
    first command, which a late or recovering engine decides after the events were published,
    so `due_by` (from the publishing) is only a lower bound. None while a user has no first
    command yet: their sequence has not begun, nothing of it is due."""
    first_step = expect.steps[0]
    latest = due_by
    for user in expect.users:
        first = observer.first_by_step.get((user, first_step))
        if first is None:
            return None
        latest = max(latest, first.decided_at.timestamp() + SEQUENCE_SPAN_S)
    return latest


async def complete(
    observer: Observer,
    probe: GroupProbe,
    deployment: Deployment,
    expect: Expectation,
    due_by: float,
    grace_s: float,
) -> str:
    """Until every expected (user, step) has a command ("complete"), the grace after the
    last due time runs out, or the engines sat idle and caught up for STUCK_IDLE_S after
    everything was due: what is missing then is lost, not late. Silence is counted from the
    later of the last new command and the moment all was due, never from before the first
    command (an engine still starting is silent and has nothing in its inputs yet)."""
    users = set(expect.users)
    deadline = time.monotonic() + max(due_by - time.time(), 0.0) + grace_s
    while time.monotonic() < deadline:
        if observer.delivered_pairs(users, expect.steps) >= expect.expected:
            return "complete"
        due_at = all_due_at(observer, expect, due_by)
        if due_at is not None and time.time() > due_at:
            idle = min(time.monotonic() - observer.last_new_command, time.time() - due_at)
            if idle >= STUCK_IDLE_S and _idle_and_caught_up(probe, deployment):
                return f"engines caught up and silent for {STUCK_IDLE_S:.0f}s after all was due"
        await asyncio.sleep(0.5)
    return f"{grace_s:.0f}s after the last step was due"


async def settle(observer: Observer) -> None:
    """Until no new command arrived for QUIET_S and the observer read everything (bounded):
    late re-sends after a recovery are counted too."""
    deadline = time.monotonic() + SETTLE_MAX_S
    while time.monotonic() < deadline:
        quiet = time.monotonic() - observer.last_new_command >= QUIET_S
        if quiet and observer.behind == 0:
            return
        await asyncio.sleep(0.5)


async def store_matching_topic(deployment: Deployment, observer: Observer) -> StoreCounts:
    """The store's counts once they match the topic's distinct activity ids (the sink may
    lag behind), or the last counts at the deadline."""
    deadline = time.monotonic() + STORE_WAIT_S
    last: StoreCounts | None = None
    while time.monotonic() < deadline:
        try:
            last = await counts(deployment.gateway_url)
        except StoreUnavailableError:
            last = None
        caught_up = observer.behind == 0
        if last is not None and caught_up and last.distinct_ids == len(observer.activity_ids):
            return last
        await asyncio.sleep(1.0)
    if last is None:
        return await counts(deployment.gateway_url)  # raises with the gateway's answer
    return last
