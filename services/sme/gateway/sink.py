"""The ClickHouse sink of `sme.activities`: a plain aiokafka consumer with manual commits.

A record holds one Activity or an ActivityBatch (several of one user, in order); either way
each activity becomes one row, in record order.

Batches by size and time, inserts, then commits exactly the offsets it stored. While ClickHouse
is down it retries with capped backoff and does not poll, so nothing is dropped and offsets
never pass what is stored; a retry resumes the batch where it failed, so no dead letter is sent
twice by it. Rows are idempotent by activity id, so re-delivery after a crash or a rebalance is
harmless (a dead letter re-sent then carries the same source position).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import ValidationError

from sme.contracts.activities import Activity, ActivityType, read_activities
from sme.contracts.dead_letters import FieldError, RejectReason, SourcePosition
from sme.core.intake import Rejection, dead_letter
from sme.gateway.metrics import GatewayMetrics
from sme.settings import Settings
from sme.storage.activities import ACTIVITY_COLUMNS, activity_row
from sme.storage.activity_wire import wire_rows
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.erasures import (
    ErasurePlan,
    ErasureState,
    erasure_row,
    plan_erasure,
    record_erasures,
)
from sme.storage.rollup import Rollup

log = logging.getLogger(__name__)


Row = Sequence[Any]
_WS, _USER = ACTIVITY_COLUMNS.index("workspace_id"), ACTIVITY_COLUMNS.index("user_id")


@dataclass(frozen=True, slots=True)
class Erasure:
    workspace_id: str
    user_id: str
    erasure_id: str
    requested_at: datetime


@dataclass
class Batch:
    """One poll's records, split so that an erasure deletes exactly what preceded it: `rows`
    are inserted first, then the batch's erasures run (one delete for all), then `later_rows`
    (rows of a user that arrived after their erasure, e.g. they signed up again) are kept."""

    rows: list[Row] = field(default_factory=list)
    later_rows: list[Row] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)
    erased_users: set[tuple[str, str]] = field(default_factory=set)
    rejects: list[tuple[ConsumerRecord[bytes, bytes], Rejection]] = field(default_factory=list)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # Progress of storing it, so a retry resumes where the failed attempt stopped.
    rows_stored: bool = False
    erasure_plan: ErasurePlan | None = None  # looked up once, before the rows go
    erased: bool = False
    later_rows_stored: bool = False
    dead_lettered: int = 0

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record: an Activity, or an ActivityBatch whose activities are taken in their
        order, each exactly as if it had been a record of its own. A record that is neither
        (or a bundle with one invalid activity) is dead-lettered whole: nothing of it is
        stored."""
        tp = TopicPartition(record.topic, record.partition)
        self.next_offsets[tp] = record.offset + 1
        rows = wire_rows(record.value or b"")
        if rows is not None:  # the engine's own canonical bytes: no model needed
            for row in rows:
                self._add_row(row)
            return
        try:
            activities = read_activities(record.value or b"")
        except ValidationError as exc:
            errors = tuple(
                FieldError(loc=".".join(map(str, e["loc"])), message=e["msg"], type=e["type"])
                for e in exc.errors(include_url=False, include_input=False)[:20]
            )
            self.rejects.append((record, Rejection(RejectReason.VALIDATION_FAILED, errors)))
            return
        for activity in activities:
            self._add(activity)

    def _add(self, activity: Activity) -> None:
        who = (activity.workspace_id, activity.user_id)
        if activity.type is ActivityType.USER_ERASED:
            if who in self.erased_users:
                # Erased again: what arrived since the first erasure goes too.
                self.later_rows = [r for r in self.later_rows if (r[_WS], r[_USER]) != who]
            self.erasures.append(_erasure(activity))
            self.erased_users.add(who)
            self.rows.append(activity_row(activity.model_copy(update={"user_id": ""})))
        else:
            self._add_row(activity_row(activity))

    def _add_row(self, row: Row) -> None:
        """A row of any activity but an erasure: kept apart if its user was erased earlier."""
        if row[_USER] and (row[_WS], row[_USER]) in self.erased_users:
            self.later_rows.append(row)
        else:
            self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows) + len(self.later_rows) + len(self.rejects)


def _erasure(activity: Activity) -> Erasure:
    details = activity.details
    requested = details.get("requested_at")
    try:
        requested_at = datetime.fromisoformat(requested) if isinstance(requested, str) else None
    except ValueError:
        requested_at = None
    return Erasure(
        activity.workspace_id,
        activity.user_id,
        str(details.get("erasure_id") or activity.activity_id),
        (requested_at or activity.occurred_at).astimezone(UTC),
    )


class ActivitySink:
    def __init__(
        self,
        settings: Settings,
        store: ClickHouseStore,
        producer: AIOKafkaProducer,
        metrics: GatewayMetrics,
        rollup: Rollup | None = None,
    ) -> None:
        self.rollup = rollup
        self.settings = settings
        self.store = store
        self.producer = producer
        self.metrics = metrics
        self.consumer = self._new_consumer()
        self._used = False  # `consumer` was started: it cannot start again
        self.started = asyncio.Event()
        self.retrying = False  # a batch is waiting for ClickHouse to take it

    def _new_consumer(self) -> AIOKafkaConsumer:
        settings = self.settings
        return AIOKafkaConsumer(
            settings.topic_activities,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.gateway_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.sink_batch_size,
            # Retries while ClickHouse is down hold the poll loop; don't get evicted for it.
            max_poll_interval_ms=30 * 60 * 1000,
        )

    async def run(self) -> None:
        """Consume until cancelled; raises on a failure (the gateway's supervisor runs it
        again, on a fresh consumer, from the committed offsets)."""
        if self._used:
            self.consumer = self._new_consumer()  # a stopped consumer cannot start again
        self._used = True
        try:
            await self.consumer.start()
            self.started.set()
            while True:
                batch = await self._collect()
                if len(batch):
                    await self._store(batch)
                    await self._commit(batch)
        finally:
            self.started.clear()
            self.retrying = False
            await self.consumer.stop()

    async def _collect(self) -> Batch:
        batch = Batch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.sink_flush_seconds
        while len(batch) < self.settings.sink_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            polled = await self.consumer.getmany(
                timeout_ms=int(remaining * 1000),
                max_records=self.settings.sink_batch_size - len(batch),
            )
            for records in polled.values():
                for record in records:
                    batch.add(record)
        await self._report_lag()
        return batch

    async def _report_lag(self) -> None:
        """Lag per assigned partition: the broker's high-water mark minus our position."""
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                position = await self.consumer.position(tp)
                self.metrics.sink_lag.labels(str(tp.partition)).set(max(highwater - position, 0))

    async def _store(self, batch: Batch) -> None:
        """Store the batch, retrying with capped backoff (and not polling) until it is."""
        delay = 0.2
        failures = 0
        while True:
            try:
                await self._store_steps(batch)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.retrying = True
                self.metrics.sink_errors.inc()
                self.metrics.sink_backoff_seconds.set(delay)
                log.warning(
                    "sink could not store a batch of %d rows (%s); retrying in %.1fs",
                    len(batch),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.sink_retry_max_seconds)
        if failures:
            log.info("sink stored a batch of %d records after %d failures", len(batch), failures)
        self.retrying = False
        self.metrics.sink_backoff_seconds.set(0)
        self.metrics.sink_rows.inc(len(batch.rows) + len(batch.later_rows))
        self.metrics.sink_batches.inc()

    async def _store_steps(self, batch: Batch) -> None:
        """Rows, then the batch's erasures, then rows that came after an erasure, then dead
        letters. Each step is done once per batch however many attempts it takes: an attempt
        resumes after the last step that succeeded, so a dead letter is never re-sent, nor an
        erased user's rows re-inserted, by a retry."""
        if batch.rows and not batch.rows_stored:
            started = time.perf_counter()
            await self.store.insert("activities", batch.rows, ACTIVITY_COLUMNS)
            self.metrics.sink_insert_seconds.observe(time.perf_counter() - started)
        batch.rows_stored = True
        if batch.erasures and not batch.erased:
            await self._erase(batch)
            batch.erased = True
        if batch.later_rows and not batch.later_rows_stored:
            await self.store.insert("activities", batch.later_rows, ACTIVITY_COLUMNS)
        batch.later_rows_stored = True
        while batch.dead_lettered < len(batch.rejects):
            await self._dead_letter(*batch.rejects[batch.dead_lettered])
            batch.dead_lettered += 1

    async def _erase(self, batch: Batch) -> None:
        """Delete every erased user's rows at once (one delete per table for the batch), then
        recompute the rollup days they were counted in and record each erasure as completed.
        The days are looked up once, before the rows go, so a retry still recomputes them."""
        users = [(e.workspace_id, e.user_id) for e in batch.erasures]
        if batch.erasure_plan is None:
            batch.erasure_plan = await plan_erasure(self.store, users)
        plan = batch.erasure_plan
        await self.store.erase_users(users)
        if self.rollup is not None:
            await self.rollup.recompute_days(plan.days)
        completed_at = datetime.now(UTC)
        await record_erasures(
            self.store,
            (
                erasure_row(
                    e.workspace_id,
                    e.erasure_id,
                    ErasureState.COMPLETED,
                    e.requested_at,
                    completed_at,
                    plan.rows.get((e.workspace_id, e.user_id), 0),
                )
                for e in batch.erasures
            ),
        )
        self.metrics.erasures_completed.inc(len(batch.erasures))
        for erasure in batch.erasures:
            self.metrics.erasure_seconds.observe(
                max(0.0, (completed_at - erasure.requested_at).total_seconds())
            )

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], rejection: Rejection
    ) -> None:
        source = SourcePosition(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode(errors="replace")[:256] if record.key else None,
        )
        letter = dead_letter(rejection, record.value, source, datetime.now(UTC), service="gateway")
        await self.producer.send_and_wait(
            self.settings.topic_dlq, letter.model_dump_json().encode(), key=record.key
        )
        self.metrics.sink_dead_letters.inc()

    async def _commit(self, batch: Batch) -> None:
        try:
            await self.consumer.commit(dict(batch.next_offsets))
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions; the rows are stored and re-delivery is idempotent.
            log.warning("sink commit skipped after rebalance: %s", exc)
