"""Reads every command topic and the activities topic of one deployment, from the beginning,
the way a channel sender and an auditor would: what is on these topics is what users get.

Topics are found by pattern (a plain subscription would make the broker auto-create them,
which would spoil the empty-cluster starts), re-checked every second. Reads are
`read_committed`: a command of an aborted transaction was never delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

LAG_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One command record as a sender would receive it."""

    command_id: str
    workspace_id: str
    user_id: str
    config_id: str
    step_id: str
    channel: str
    decided_at: datetime
    topic: str
    partition: int
    offset: int
    produced_ms: int  # the record's CreateTime: when an engine handed it to its producer

    @property
    def distinct_key(self) -> tuple[str, str, str, str]:
        return (self.workspace_id, self.user_id, self.config_id, self.step_id)


def parse_command(record: ConsumerRecord[bytes, bytes]) -> Delivery | None:
    try:
        body = orjson.loads(record.value or b"")
        return Delivery(
            command_id=str(body["command_id"]),
            workspace_id=str(body["workspace_id"]),
            user_id=str(body["user_id"]),
            config_id=str(body["config_id"]),
            step_id=str(body["step_id"]),
            channel=str(body["channel"]),
            decided_at=datetime.fromisoformat(str(body["decided_at"])),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            produced_ms=int(record.timestamp),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@dataclass
class Observer:
    bootstrap: str
    commands_prefix: str
    activities_topic: str
    deliveries: list[Delivery] = field(default_factory=list)
    first_by_step: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    activity_ids: set[str] = field(default_factory=set)
    activity_records: int = 0
    activity_types: Counter[str] = field(default_factory=Counter)
    last_activity: dict[str, str] = field(default_factory=dict)  # user -> "type step" (why lost)
    malformed: int = 0
    read_errors: int = 0
    behind: int | None = None  # records not yet read, at the last check
    last_new_command: float = 0.0  # monotonic
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pattern(self) -> str:
        commands = re.escape(self.commands_prefix) + r"\.[A-Za-z0-9_]+"
        return f"^(?:{commands}|{re.escape(self.activities_topic)})$"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="observer")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 30)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            metadata_max_age_ms=1000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def _run(self) -> None:
        consumer = self._consumer()
        while not self._stop.is_set():
            try:
                await consumer.start()
                break
            except KafkaError:
                self.read_errors += 1
                await asyncio.sleep(0.5)
        consumer.subscribe(pattern=self.pattern)
        next_lag = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                    for records in batches.values():
                        for record in records:
                            self._take(record)
                    if time.monotonic() >= next_lag:
                        self.behind = await self._behind(consumer)
                        next_lag = time.monotonic() + LAG_EVERY_S
                except KafkaError:
                    self.read_errors += 1
                    await asyncio.sleep(0.5)
        finally:
            await consumer.stop()

    @staticmethod
    async def _behind(consumer: AIOKafkaConsumer) -> int | None:
        assigned = list(consumer.assignment())
        if not assigned:
            return None
        ends = await consumer.end_offsets(assigned)
        behind = 0
        for tp in assigned:
            behind += max(int(ends[tp]) - int(await consumer.position(tp)), 0)
        return behind

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.topic == self.activities_topic:
            self.activity_records += 1
            try:
                body = orjson.loads(record.value or b"")
                # An ActivityBatch carries several activities of one user, in order.
                for activity in body.get("activities", [body]):
                    self.activity_ids.add(str(activity["activity_id"]))
                    kind = str(activity.get("type", ""))
                    self.activity_types[kind] += 1
                    if activity.get("user_id"):
                        step = str(activity.get("step_id") or "")
                        self.last_activity[str(activity["user_id"])] = f"{kind} {step}".strip()
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                self.malformed += 1
            return
        delivery = parse_command(record)
        if delivery is None:
            self.malformed += 1
            return
        self.deliveries.append(delivery)
        self.first_by_step.setdefault((delivery.user_id, delivery.step_id), delivery)
        self.last_new_command = time.monotonic()

    # --- questions the scenarios ask while faults happen -----------------------------------
    def delivered_pairs(self, users: set[str], steps: tuple[str, ...]) -> int:
        return sum(1 for user in users for step in steps if (user, step) in self.first_by_step)

    def first_produced_after(self, wall_s: float) -> float | None:
        """Wall-clock time of the first command an engine produced after `wall_s`."""
        after_ms = wall_s * 1000
        times = [d.produced_ms for d in self.deliveries if d.produced_ms > after_ms]
        return min(times) / 1000 if times else None

    def produced_after(self, wall_s: float) -> int:
        after_ms = wall_s * 1000
        return sum(1 for d in self.deliveries if d.produced_ms > after_ms)
