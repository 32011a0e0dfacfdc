"""Watches the engines' consumer group from the outside: committed offsets, end offsets and
members, sampled twice a second.

Why: no command says which engine decided it, but the group's committed offsets do say which
partitions are being worked on. After one of two engines is killed, the partitions whose
commits stop while records wait are the ones it owned; the moment their commits move again is
when another engine has taken them over and works them (its outputs are flushed before it
commits). That is the failover time, measured without asking the engine anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

TP = tuple[str, int]
MAX_SAMPLES = 20_000  # about 3 hours at two samples a second


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # wall clock
    committed: dict[TP, int]
    ends: dict[TP, int]
    members: int | None
    state: str | None

    @property
    def lag(self) -> int:
        return sum(max(self.ends.get(tp, off) - off, 0) for tp, off in self.committed.items())


@dataclass(frozen=True, slots=True)
class Stall:
    """A partition that stopped being worked on after a kill, and when it resumed."""

    topic: str
    partition: int
    resumed_after_s: float | None  # None: not before the probe stopped


@dataclass
class GroupProbe:
    bootstrap: str
    group_id: str
    interval_s: float = 0.5
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    errors: int = 0
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-probe")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 30)

    async def _run(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        ends = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        started = False
        try:
            while not self._stop.is_set():
                try:
                    if not started:
                        await admin.start()
                        await ends.start()
                        started = True
                    self.samples.append(await self._sample(admin, ends))
                except (KafkaError, OSError, KeyError, IndexError, AttributeError):
                    self.errors += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval_s)
        finally:
            if started:
                await ends.stop()
                await admin.close()

    async def _sample(self, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer) -> Sample:
        at = time.time()
        offsets = await admin.list_consumer_group_offsets(self.group_id)
        committed = {(tp.topic, tp.partition): int(om.offset) for tp, om in offsets.items()}
        high: dict[TP, int] = {}
        if committed:
            found = await ends.end_offsets([TopicPartition(t, p) for t, p in committed])
            high = {(tp.topic, tp.partition): int(off) for tp, off in found.items()}
        members, state = await self._members(admin)
        return Sample(at, committed, high, members, state)

    async def _members(self, admin: AIOKafkaAdminClient) -> tuple[int | None, str | None]:
        responses = await admin.describe_consumer_groups([self.group_id])
        for response in responses:
            groups: list[dict[str, Any]] = response.to_object()["groups"]
            for group in groups:
                if group["group"] == self.group_id:
                    return len(group["members"]), str(group["state"])
        return None, None

    # --- questions ---------------------------------------------------------------------------
    async def wait_members(self, count: int, timeout_s: float) -> bool:
        """Until the group is Stable with `count` members (bounded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last = self.samples[-1] if self.samples else None
            if last is not None and last.members == count and last.state == "Stable":
                return True
            await asyncio.sleep(self.interval_s)
        return False

    def latest_lag(self) -> int | None:
        return self.samples[-1].lag if self.samples else None

    def uncommitted(self) -> dict[str, int]:
        """Partitions whose committed offset is behind their end in the latest sample."""
        if not self.samples:
            return {}
        last = self.samples[-1]
        behind = {tp: last.ends.get(tp, off) - off for tp, off in last.committed.items()}
        return {f"{t}[{p}]": n for (t, p), n in sorted(behind.items()) if n > 0}

    def stalls_after(self, kill_at: float, window_s: float = 5.0) -> list[Stall]:
        """Partitions whose commits did not move in the `window_s` after `kill_at` although
        records were waiting, with the time their commits moved again. The baseline is the
        first sample after the kill: it already holds the killed engine's last commits."""
        after = [s for s in self.samples if s.at > kill_at]
        if len(after) < 2:
            return []
        base, later = after[0].committed, after[1:]
        early = [s for s in later if s.at <= kill_at + window_s]
        stalls: list[Stall] = []
        for tp, offset in base.items():
            moved_early = any(s.committed.get(tp, offset) > offset for s in early)
            waiting = any(s.ends.get(tp, offset) > offset for s in [after[0], *early])
            if moved_early or not waiting:
                continue
            resumed = next((s.at for s in later if s.committed.get(tp, offset) > offset), None)
            stalls.append(
                Stall(tp[0], tp[1], None if resumed is None else round(resumed - kill_at, 2))
            )
        return stalls
