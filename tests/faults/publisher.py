"""Publishes a workload at its planned pace and remembers what the broker acknowledged: a user
is owed commands only once one of their signups was acked, so a send that failed while the
broker was down is never blamed on the engine."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tests.faults.workload import PlannedEvent, event_bytes

MAX_ATTEMPTS = 8
MAX_IN_FLIGHT = 2000
SIGNUP_KINDS = frozenset({"signup", "redelivery", "second_signup"})


@dataclass
class PublishLog:
    acked_users: set[str] = field(default_factory=set)
    first_ack: dict[str, float] = field(default_factory=dict)  # user -> wall clock
    planned: int = 0
    acked: int = 0
    retries: int = 0
    unacked: list[str] = field(default_factory=list)  # event ids given up on
    by_kind: Counter[str] = field(default_factory=Counter)
    by_key_mode: Counter[str] = field(default_factory=Counter)
    started_at: float = 0.0
    finished_at: float = 0.0


class Publisher:
    """One idempotent-by-event-id producer (acks=all) pacing a plan in real time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.log = PublishLog()
        self._bytes: dict[str, bytes] = {}  # first wire form of events that will be re-sent
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def run(self, plan: Iterable[PlannedEvent], stop: asyncio.Event | None = None) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
        )
        await self._start(producer)
        self.log.started_at = time.time()
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        try:
            for event in plan:
                if stop is not None and stop.is_set():
                    break
                ahead = start + event.at - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(producer, event))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            self.log.finished_at = time.time()
            await producer.stop()

    async def _start(self, producer: AIOKafkaProducer) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                await producer.start()
                return
            except KafkaError:
                await asyncio.sleep(0.5 * (attempt + 1))
        await producer.start()  # the last attempt raises what the broker says

    def _wire(self, event: PlannedEvent) -> bytes:
        """A redelivery is the very same bytes as the first send (same occurred_at)."""
        cached = self._bytes.pop(event.event_id, None)
        if cached is not None:
            return cached
        value = event_bytes(event.body)
        if event.resent:
            self._bytes[event.event_id] = value
        return value

    async def _deliver(self, producer: AIOKafkaProducer, event: PlannedEvent) -> None:
        try:
            value = self._wire(event)
            self.log.planned += 1
            self.log.by_kind[event.kind] += 1
            self.log.by_key_mode[event.key_mode.value] += 1
            for attempt in range(MAX_ATTEMPTS):
                try:
                    await (await producer.send(self.topic, value, key=event.key))
                except KafkaError:
                    self.log.retries += 1
                    await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
                    continue
                self.log.acked += 1
                if event.kind in SIGNUP_KINDS:
                    self.log.acked_users.add(event.user)
                    self.log.first_ack.setdefault(event.user, time.time())
                return
            self.log.unacked.append(event.event_id)
        finally:
            self._slots.release()
