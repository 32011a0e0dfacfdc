"""A ClickHouse outage on the real broker and the embedded store, made with the storage
adapter's fault seam: while the store refuses writes the sink backs off without committing,
the engine keeps deciding, and once the store is back every activity on the topic is stored
exactly once and the dead-letter topic holds each bad record once, however many retries."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.errors import StorageUnavailableError
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.sink import ActivitySink
from sme.settings import Settings
from sme.storage.activities import ACTIVITY_COLUMNS, activity_row
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.events import event
from tests.support.kafka_io import TopicReader, publish, publish_config, unbundled
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

WELCOME: dict[str, object] = {
    "id": "welcome",
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "welcome", "template": "welcome", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}
UNREADABLE_ACTIVITIES = [(b"u-x1", b'{"type": "nope"}'), (b"u-x2", b"not json at all")]
INVALID_EVENTS = [(b"u-y1", b'{"event_id": "broken"'), (b"u-y2", b'{"event_id": 7}')]


@pytest.fixture
async def store(test_settings: Settings) -> AsyncIterator[ClickHouseStore]:
    await ensure_topics(test_settings)
    await publish_config(test_settings, WELCOME)
    opened = await ClickHouseStore(
        test_settings.clickhouse_dsn.get_secret_value(), test_settings.clickhouse_database
    ).open_async()
    yield opened
    await opened.aclose()


@contextlib.asynccontextmanager
async def running_sink(settings: Settings, store: ClickHouseStore) -> AsyncIterator[ActivitySink]:
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


class ActivityTopic:
    """Everything on the activities topic, raw: the ids of the readable activities, where the
    first readable one of each partition is, and the topic's end offsets."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_activities
        self.consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.ids: set[str] = set()
        self.first_readable: dict[int, int] = {}  # partition -> offset

    async def __aenter__(self) -> ActivityTopic:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> set[str]:
        for records in (await self.consumer.getmany(timeout_ms=200)).values():
            for record in records:
                with contextlib.suppress(orjson.JSONDecodeError):
                    for value in unbundled(orjson.loads(record.value or b"")):
                        if isinstance(value, dict) and isinstance(value.get("activity_id"), str):
                            self.ids.add(value["activity_id"])
                            self.first_readable.setdefault(record.partition, record.offset)
        return self.ids

    async def end_offsets(self, partitions: int) -> dict[TopicPartition, int]:
        tps = [TopicPartition(self.topic, p) for p in range(partitions)]
        return dict(await self.consumer.end_offsets(tps))

    async def read_to_end(self, partitions: int) -> None:
        async def caught_up() -> bool:
            await self.poll()
            ends = await self.end_offsets(partitions)
            if set(ends) - self.consumer.assignment():
                return False
            return all([await self.consumer.position(tp) >= end for tp, end in ends.items()])

        await eventually(caught_up, timeout=30, what="the activities topic read to its end")


async def _committed(sink: ActivitySink, settings: Settings) -> dict[TopicPartition, int]:
    tps = [TopicPartition(settings.topic_activities, p) for p in range(settings.topic_partitions)]
    return {tp: await sink.consumer.committed(tp) or 0 for tp in tps}


async def _stored(store: ClickHouseStore) -> tuple[int, int, set[str]]:
    """(rows FINAL, distinct ids, the ids) of the activities table."""
    rows = (
        await store.query("SELECT toString(activity_id) FROM {db}.activities FINAL")
    ).result_rows
    distinct = (await store.query("SELECT uniqExact(activity_id) FROM {db}.activities")).result_rows
    return len(rows), int(distinct[0][0]), {str(r[0]) for r in rows}


async def test_the_embedded_store_refuses_writes_while_the_seam_is_on(
    store: ClickHouseStore,
) -> None:
    row = activity_row(
        Activity(
            activity_id=str(uuid.uuid4()),
            type=ActivityType.EVENT_RECEIVED,
            workspace_id="acme",
            user_id="u-1",
            occurred_at=datetime.now(UTC),
        )
    )
    store.write_faults.fail("connection reset by peer")
    with pytest.raises(StorageUnavailableError, match="connection reset by peer"):
        await store.insert("activities", [row], ACTIVITY_COLUMNS)
    assert (await _stored(store))[0] == 0  # reads still answer; the write never happened
    store.write_faults.heal()
    await store.insert("activities", [row], ACTIVITY_COLUMNS)
    assert (await _stored(store))[0] == 1


async def test_during_an_outage_decisions_flow_and_afterwards_every_activity_is_stored_once(
    test_settings: Settings, store: ClickHouseStore
) -> None:
    settings = test_settings.model_copy(update={"sink_retry_max_seconds": 1.0})
    bootstrap = settings.kafka_bootstrap_servers
    store.write_faults.fail("connection refused")  # down before the first activity exists
    async with (
        running_sink(settings, store) as sink,
        running_engine(settings),
        TopicReader(bootstrap, settings.command_topics[Channel.EMAIL]) as emails,
        TopicReader(bootstrap, settings.topic_dlq) as dlq,
        ActivityTopic(settings) as activities,
    ):
        await publish(
            bootstrap,
            settings.topic_events,
            [event(f"s-{n}", f"u-{n}", "signed_up") for n in range(10)] + INVALID_EVENTS,
        )

        # The store is down: the engine still decides every signup ...
        sent = await eventually(
            lambda: _at_least(emails, 10), timeout=90, what="ten welcome emails during the outage"
        )
        assert {c["user_id"] for c in sent} == {f"u-{n}" for n in range(10)}
        await publish(bootstrap, settings.topic_activities, UNREADABLE_ACTIVITIES)
        # ... while the sink backs off (0.2, 0.4, 0.8, then capped at 1 s), storing and
        # committing nothing.
        await eventually(
            lambda: _true(store.write_faults.refused >= 5), timeout=60, what="five refused inserts"
        )
        assert store.write_faults.active
        gauge = sink.metrics.registry.get_sample_value
        assert gauge("sme_sink_backoff_seconds") == 1.0
        assert (gauge("sme_sink_errors_total") or 0) >= 5
        assert (await _stored(store))[0] == 0
        await activities.read_to_end(settings.topic_partitions)
        for tp, offset in (await _committed(sink, settings)).items():  # never past a lost row
            assert offset <= activities.first_readable.get(tp.partition, offset)

        store.write_faults.heal()
        await publish(
            bootstrap,
            settings.topic_events,
            [event(f"s-{n}", f"u-{n}", "signed_up") for n in range(10, 15)],
        )
        await eventually(lambda: _at_least(emails, 15), timeout=60, what="five more emails")

        async def everything_stored() -> tuple[int, int, set[str]] | None:
            on_topic = set(await activities.poll())
            stored = await _stored(store)
            return stored if on_topic and stored[2] == on_topic else None

        rows, distinct, ids = await eventually(
            everything_stored, timeout=60, what="every activity on the topic stored"
        )
        assert rows == distinct == len(ids)

        async def all_committed() -> bool:
            ends = await activities.end_offsets(settings.topic_partitions)
            return await _committed(sink, settings) == ends

        await eventually(all_committed, timeout=60, what="offsets committed up to the end")
        assert gauge("sme_sink_backoff_seconds") == 0

        # Every bad record is on the DLQ exactly once: the engine's two invalid events, and
        # the sink's two unreadable activities (sent after the batch was stored, once).
        letters = await eventually(lambda: _at_least(dlq, 4), timeout=30, what="four letters")
        await dlq.poll()  # whatever a duplicate would have added by now (all is committed)
        positions = [
            (str(x["service"]), str(s["topic"]), int(s["partition"]), int(s["offset"]))
            for x in letters
            for s in [x["source"]]
            if isinstance(s, dict)
        ]
        assert len(positions) == len(set(positions)) == 4
        assert sorted(p[0] for p in positions) == ["engine", "engine", "gateway", "gateway"]
        assert gauge("sme_sink_dead_letters_total") == 2


async def _at_least(reader: TopicReader, n: int) -> list[dict[str, object]]:
    seen = await reader.poll()
    return seen if len(seen) >= n else []


async def _true(value: bool) -> bool:
    return value
