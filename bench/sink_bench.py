"""Sink benchmark: activity rows stored per second through the gateway's sink.

Publishes `--records` activity records to a fresh activities topic (6 partitions) first, then
starts the gateway's `ActivitySink` (services/sme/gateway/sink.py) on an embedded chdb store
opened through `ClickHouseStore` in a temp dir, and times it draining them: `rows_per_s` from the
first rows stored to the moment `count()` of the activities table reaches the number published
(`rows_per_s_incl_start` also counts the sink's start and consumer-group join; `rows_per_cpu_s`
divides by the process's CPU time instead, all threads, which a busy shared machine disturbs
less). Batch size
and flush interval are the service defaults (`SME_SINK_BATCH_SIZE`, `SME_SINK_FLUSH_SECONDS`).
Writes `sink.*` into bench/results/latest.json.

The publisher sends one `Activity` per record by default (`encode_records`); `--per-record N`
bundles a user's consecutive activities (4 per user here) into `ActivityBatch` records of up
to N, as the engine now sends them. Rows, not records, are what is timed.

`--no-broker` runs the same sink loop on an in-memory consumer holding the encoded records
(no broker, no fetch or commit round trips): the sink's own cost, parse + insert, when the
broker is down or too busy to measure against; `rows_per_s` is then from start to the last
commit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from engines import run_env, settings_of
from prometheus_client import CollectorRegistry
from recording import record

from sme.contracts.activities import Activity, ActivityType, bundle_values
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.sink import ActivitySink
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics

TYPES = (
    ActivityType.EVENT_RECEIVED,
    ActivityType.COMMAND_EMITTED,
    ActivityType.FEEDBACK,
    ActivityType.ENROLLED,
)


def activities(n: int) -> Iterator[Activity]:
    """`n` activities of a realistic spread of types and users (deterministic ids)."""
    at = datetime.now(UTC)
    for i in range(n):
        yield Activity(
            activity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sink-bench-{i}")),
            type=TYPES[i % len(TYPES)],
            workspace_id="acme",
            user_id=f"u{i // 4}",
            occurred_at=at,
            config_id="bench",
            config_version=1,
            step_id="first",
            event_id=f"e{i}",
            event_type="signed_up",
        )


def encode_records(n: int, per_record: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records for `n` activities: one `Activity` per record (`per_record` 1), or
    a user's consecutive activities bundled up to `per_record` per `ActivityBatch` record."""
    chunk: list[bytes] = []
    key = b""
    for activity in activities(n):
        value = activity.model_dump_json().encode()
        if per_record <= 1:
            yield activity.user_id.encode(), value
            continue
        if chunk and (activity.user_id.encode() != key or len(chunk) >= per_record):
            yield from ((key, v) for v in bundle_values(chunk))
            chunk = []
        key = activity.user_id.encode()
        chunk.append(value)
    if chunk:
        yield from ((key, v) for v in bundle_values(chunk))


async def publish(settings: Settings, n: int, per_record: int = 1) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    await producer.start()
    try:
        for key, value in encode_records(n, per_record):
            await producer.send(settings.topic_activities, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


class MemoryConsumer:
    """The part of AIOKafkaConsumer the sink uses, over records held in memory (one
    partition); it remembers the committed offsets."""

    def __init__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records = records
        self.position = 0
        self.committed: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return set()

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        chunk = self.records[self.position : self.position + (max_records or 500)]
        self.position += len(chunk)
        if not chunk:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        await asyncio.sleep(0)
        return {TopicPartition("activities", 0): chunk}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)


class _SinkOn(ActivitySink):
    """The gateway's sink on a consumer of our choosing."""

    def __init__(self, consumer: MemoryConsumer, *args: Any) -> None:
        self._memory = consumer
        super().__init__(*args)

    def _new_consumer(self) -> Any:
        return self._memory


async def run_without_broker(n: int, per_record: int = 1) -> dict[str, float]:
    records = [
        ConsumerRecord("activities", 0, i, 0, 0, key, value, None, len(key), len(value), ())
        for i, (key, value) in enumerate(encode_records(n, per_record))
    ]
    consumer = MemoryConsumer(records)
    done = {TopicPartition("activities", 0): len(records)}
    with tempfile.TemporaryDirectory() as tmp:
        env = run_env("sink", Path(tmp))
        env["SME_CLICKHOUSE_DSN"] = f"chdb:///{tmp}/clickhouse"
        env["SME_CLICKHOUSE_DATABASE"] = f"bench_{uuid.uuid4().hex[:8]}"
        settings = settings_of(env)
        store = await ClickHouseStore(
            settings.clickhouse_dsn.get_secret_value(), settings.clickhouse_database
        ).open_async()
        sink = _SinkOn(consumer, settings, store, None, GatewayMetrics(CollectorRegistry()))
        started, cpu_started = time.monotonic(), time.process_time()
        task = asyncio.create_task(sink.run())
        try:
            while consumer.committed != done and time.monotonic() < started + 1800:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - started
            cpu_s = time.process_time() - cpu_started
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            stored = await _stored(store)
            await store.aclose()
    return {
        "activities": n,
        "per_record": per_record,
        "rows": stored,
        "broker": False,
        "drain_s": round(elapsed, 2),
        "batch_size": settings.sink_batch_size,
        "rows_per_s": round(stored / elapsed, 1),
        "cpu_s": round(cpu_s, 2),
        "rows_per_cpu_s": round(stored / cpu_s, 1) if cpu_s else 0.0,
    }


async def _stored(store: ClickHouseStore) -> int:
    result = await store.query("SELECT count() FROM {db}.activities")
    return int(result.result_rows[0][0])


async def run(n: int, per_record: int = 1) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = run_env("sink", Path(tmp))
        env["SME_CLICKHOUSE_DSN"] = f"chdb:///{tmp}/clickhouse"
        env["SME_CLICKHOUSE_DATABASE"] = f"bench_{uuid.uuid4().hex[:8]}"
        settings = settings_of(env)
        await ensure_topics(settings)
        t0 = time.monotonic()
        await publish(settings, n, per_record)
        publish_s = time.monotonic() - t0
        store = await ClickHouseStore(
            settings.clickhouse_dsn.get_secret_value(), settings.clickhouse_database
        ).open_async()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        sink = ActivitySink(settings, store, producer, GatewayMetrics(CollectorRegistry()))
        started = time.monotonic()
        cpu_started = time.process_time()  # every thread's, chdb's included
        task = asyncio.create_task(sink.run())
        try:
            deadline = started + 1800
            stored = 0
            first_seen, first_rows = 0.0, 0
            while stored < n and time.monotonic() < deadline:
                if task.done():
                    task.result()
                await asyncio.sleep(0.1)
                stored = await _stored(store)
                if stored and not first_seen:
                    first_seen, first_rows = time.monotonic(), stored
            elapsed = time.monotonic() - started
            cpu_s = time.process_time() - cpu_started
            flowing = time.monotonic() - first_seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await producer.stop()
            await store.aclose()
    return {
        "activities": n,
        "per_record": per_record,
        "rows": stored,
        "publish_s": round(publish_s, 2),
        "drain_s": round(elapsed, 2),
        "batch_size": settings.sink_batch_size,
        # From the first rows stored to the last: the sink's group join is left out.
        # (A run so small that the first look saw every row falls back to the whole drain.)
        "rows_per_s": round((stored - first_rows) / flowing, 1)
        if stored > first_rows and flowing
        else round(stored / elapsed, 1),
        "rows_per_s_incl_start": round(stored / elapsed, 1),
        # CPU of this process over the drain: steadier than wall time on a shared machine.
        "cpu_s": round(cpu_s, 2),
        "rows_per_cpu_s": round(stored / cpu_s, 1) if cpu_s else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument(
        "--per-record", type=int, default=1, help="activities per record (>1: ActivityBatch)"
    )
    parser.add_argument("--smoke", action="store_true", help="10,000 records")
    parser.add_argument(
        "--no-broker", action="store_true", help="in-memory consumer: the sink's own cost"
    )
    args = parser.parse_args()
    n = 10_000 if args.smoke else args.records
    if args.no_broker:
        record("sink_no_broker", asyncio.run(run_without_broker(n, args.per_record)))
    else:
        record("sink", asyncio.run(run(n, args.per_record)))


if __name__ == "__main__":
    main()
