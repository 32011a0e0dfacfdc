"""The engine's intake: `sme.events` (any key, any partitioner, any partition count) in,
validated events routed to the partition of `sme.inputs` that owns the user out.

A plain consumer group with manual commits rather than a Faust agent: it holds no state, and a
commit here must mean "forwarded and acknowledged", which Faust does not promise around a
rebalance (it acknowledges messages it skips while it recovers, and may commit past them).
A batch is routed, sent, acknowledged by the broker, and only then committed; a crash re-sends
it, and the decide agent drops the repeats by event id."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from sme.settings import Settings

log = logging.getLogger(__name__)
Route = Callable[[Any], Sequence[Any]]
Deliver = Callable[[Sequence[Any]], Awaitable[None]]


class Intake:
    def __init__(self, settings: Settings, route: Route, deliver: Deliver) -> None:
        self.settings = settings
        self.route = route
        self.deliver = deliver
        self.consumer: AIOKafkaConsumer | None = None
        self.processed: dict[int, int] = {}  # partition -> last offset forwarded and committed

    async def run(self) -> None:
        """Consume until cancelled; raises on a failure (the engine restarts it)."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.topic_events,
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=f"{s.engine_app_id}-intake",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.engine_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(s.engine_session_timeout_seconds * 1000 / 5),
            max_poll_records=s.engine_batch_size,
        )
        await consumer.start()
        self.consumer = consumer
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=int(s.engine_batch_seconds * 1000) or 1,
                    max_records=s.engine_batch_size,
                )
                if not batches:
                    continue
                outgoing = [
                    out for records in batches.values() for r in records for out in self.route(r)
                ]
                await self.deliver(outgoing)
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await consumer.commit(offsets)
                for tp, next_offset in offsets.items():
                    self.processed[tp.partition] = next_offset - 1
        finally:
            self.consumer = None
            await consumer.stop()

    async def lag(self) -> dict[int, int]:
        """Per assigned events partition: end offset minus the next offset to forward."""
        consumer = self.consumer
        if consumer is None:
            return {}
        assigned = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if not assigned:
            return {}
        ends = await consumer.end_offsets(assigned)
        out: dict[int, int] = {}
        for tp in assigned:
            done = self.processed.get(tp.partition)
            start = done + 1 if done is not None else await _committed_or_start(consumer, tp)
            out[tp.partition] = max(ends[tp] - start, 0)
        return out


async def _committed_or_start(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    committed = await consumer.committed(tp)
    if committed is not None:
        return int(committed)
    starts = await consumer.beginning_offsets([tp])
    return int(starts[tp])
