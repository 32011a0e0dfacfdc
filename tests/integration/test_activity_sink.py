"""The activity sink on the real broker and ClickHouse engine: batches land, offsets follow
what is stored, duplicates count once, and ClickHouse outages lose nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from sme.contracts.activities import Activity, ActivityType
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.sink import ActivitySink
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.kafka_io import TopicReader, publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def _activity_bytes(n: int) -> bytes:
    return (
        Activity(
            activity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sink{n}")),
            type=ActivityType.EVENT_RECEIVED,
            workspace_id="w1",
            user_id=f"u{n}",
            occurred_at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
            event_id=f"e{n}",
            event_type="clicked",
        )
        .model_dump_json()
        .encode()
    )


class FlakyStore:
    """Wraps the real store; fails inserts while `down` is set, like a ClickHouse outage."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.down = True
        self.failed_attempts = 0

    async def insert(self, table: str, rows: Any, columns: Any) -> None:
        if self.down:
            self.failed_attempts += 1
            raise ConnectionError("ClickHouse is down")
        await self.store.insert(table, rows, columns)


@contextlib.asynccontextmanager
async def running_sink(settings: Settings, store: Any) -> AsyncIterator[ActivitySink]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    sink = ActivitySink(settings, store, producer, GatewayMetrics(CollectorRegistry()))
    task = asyncio.create_task(sink.run())
    try:
        await asyncio.wait_for(sink.started.wait(), 30)
        yield sink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


@pytest.fixture
async def store(test_settings: Settings) -> AsyncIterator[ClickHouseStore]:
    await ensure_topics(test_settings)
    opened = await ClickHouseStore(
        test_settings.clickhouse_dsn.get_secret_value(), test_settings.clickhouse_database
    ).open_async()
    yield opened
    await opened.aclose()


async def _stored(store: ClickHouseStore) -> int:
    return int((await store.query("SELECT count() FROM {db}.activities FINAL")).result_rows[0][0])


async def _committed(sink: ActivitySink, settings: Settings) -> int:
    total = 0
    for partition in range(settings.topic_partitions):
        offset = await sink.consumer.committed(TopicPartition(settings.topic_activities, partition))
        total += offset or 0
    return total


async def test_published_activities_land_in_clickhouse_and_offsets_are_committed(
    test_settings: Settings, store: ClickHouseStore
) -> None:
    await publish(
        test_settings.kafka_bootstrap_servers,
        test_settings.topic_activities,
        [(f"u{n}".encode(), _activity_bytes(n)) for n in range(50)],
    )
    async with running_sink(test_settings, store) as sink:
        await eventually(lambda: _eq(_stored(store), 50), what="50 rows in ClickHouse")
        await eventually(lambda: _eq(_committed(sink, test_settings), 50), what="offsets committed")
        lag = sink.metrics.registry.get_sample_value
        reported = [lag("sme_sink_consumer_lag", {"partition": str(p)}) for p in range(6)]
        assert [v for v in reported if v is not None] and all(v in (None, 0) for v in reported)


async def test_redelivered_activities_are_counted_once(
    test_settings: Settings, store: ClickHouseStore
) -> None:
    messages = [(f"u{n}".encode(), _activity_bytes(n)) for n in range(20)]
    await publish(
        test_settings.kafka_bootstrap_servers,
        test_settings.topic_activities,
        messages + messages[:7],
    )
    async with running_sink(test_settings, store) as sink:
        await eventually(
            lambda: _eq(_committed(sink, test_settings), 27), what="27 offsets committed"
        )
    assert await _stored(store) == 20


async def test_while_clickhouse_is_down_nothing_is_committed_and_nothing_is_lost(
    test_settings: Settings, store: ClickHouseStore
) -> None:
    flaky = FlakyStore(store)
    await publish(
        test_settings.kafka_bootstrap_servers,
        test_settings.topic_activities,
        [(f"u{n}".encode(), _activity_bytes(n)) for n in range(30)],
    )
    async with running_sink(test_settings, flaky) as sink:
        await eventually(lambda: _truthy(flaky.failed_attempts >= 3), what="three failed inserts")
        assert await _committed(sink, test_settings) == 0
        assert await _stored(store) == 0
        flaky.down = False
        await eventually(lambda: _eq(_stored(store), 30), what="rows stored after recovery")
        await eventually(
            lambda: _eq(_committed(sink, test_settings), 30), what="offsets after recovery"
        )
        assert sink.metrics.sink_errors._value.get() >= 3


async def test_an_unreadable_activity_goes_to_the_dead_letter_topic(
    test_settings: Settings, store: ClickHouseStore
) -> None:
    await publish(
        test_settings.kafka_bootstrap_servers,
        test_settings.topic_activities,
        [(b"u1", b'{"type": "nope"}'), (b"u2", _activity_bytes(2))],
    )
    async with (
        running_sink(test_settings, store),
        TopicReader(test_settings.kafka_bootstrap_servers, test_settings.topic_dlq) as dlq,
    ):
        letters = await eventually(dlq.poll, what="a dead letter")
        assert letters[0]["reason_code"] == "validation_failed"
        assert letters[0]["service"] == "gateway"
        assert {"activity_id", "workspace_id"} <= {e["loc"] for e in letters[0]["errors"]}  # type: ignore[union-attr]
        await eventually(lambda: _eq(_stored(store), 1), what="the valid row stored")


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _truthy(value: bool) -> bool:
    return value
