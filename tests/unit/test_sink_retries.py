"""The sink's retries and erasures, broker-free: a batch is stored step by step (rows, erasures,
rows after the erasures, dead letters) and a retry resumes where the failed attempt stopped, so
a dead letter is sent once per bad record however often ClickHouse or the broker fails, and the
backoff shows in a gauge. A batch's erasures are one delete, and delete only what preceded
them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from sme.contracts.activities import Activity, ActivityType
from sme.gateway.metrics import GatewayMetrics
from sme.gateway.sink import ActivitySink, Batch
from sme.settings import Settings
from sme.storage.clickhouse import WriteFaults


class FakeStore:
    """Records writes; fails them through the same seam as the real store."""

    def __init__(self) -> None:
        self.write_faults = WriteFaults()
        self.inserted: list[list[Any]] = []
        self.erasure_rows: list[list[Any]] = []
        self.erased: list[tuple[str, str]] = []
        self.erase_calls = 0
        self.log: list[str] = []

    async def insert(self, table: str, rows: Sequence[Any], columns: Sequence[str]) -> None:
        self.write_faults.check(f"insert into {table}")
        target = self.inserted if table == "activities" else self.erasure_rows
        target.extend(list(r) for r in rows)
        self.log.append(f"insert {table} {len(rows)}")

    async def erase_users(self, users: Sequence[tuple[str, str]]) -> None:
        self.write_faults.check("erasure")
        self.erase_calls += 1
        self.erased.extend(users)
        gone = set(users)
        self.inserted = [r for r in self.inserted if (r[2], r[3]) not in gone]
        self.log.append(f"erase {len(gone)}")

    async def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        """The erasure plan: (workspace, user, config, day, rows) of the named users."""
        wanted = set(parameters["pairs"])
        rows = [(r[2], r[3], r[5], r[4].date(), 1) for r in self.inserted if (r[2], r[3]) in wanted]
        return type("Result", (), {"result_rows": rows})()


class FakeRollup:
    """Answers a user's days only while their rows exist, like the real rollup does."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.recomputed: list[tuple[str, str, Any]] = []
        self.fail_next = 0

    async def recompute_days(self, days: Any) -> None:
        for workspace_id, config_id, day in sorted(days):
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("ClickHouse went away")
            self.recomputed.append((workspace_id, config_id, day))


class FakeProducer:
    def __init__(self, fail_on_send: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.attempts = 0
        self.fail_on_send = fail_on_send

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.attempts += 1
        if self.attempts == self.fail_on_send:
            raise ConnectionError("broker unavailable")
        self.sent.append(value)


def _record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t.activities",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"u1",
        value=value,
        checksum=None,
        serialized_key_size=2,
        serialized_value_size=len(value),
        headers=(),
    )


def _activity(n: int, kind: ActivityType = ActivityType.EVENT_RECEIVED, user: str = "u1") -> bytes:
    return (
        Activity(
            activity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"unit-sink{n}")),
            type=kind,
            workspace_id="w1",
            user_id=user,
            occurred_at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
            config_id="welcome",
            details={"erasure_id": f"e{n}"} if kind is ActivityType.USER_ERASED else {},
        )
        .model_dump_json()
        .encode()
    )


def _sink(
    store: FakeStore, producer: FakeProducer, rollup: FakeRollup | None = None
) -> ActivitySink:
    settings = Settings(sink_retry_max_seconds=0.05, topic_dlq="t.dlq")
    return ActivitySink(
        settings,
        store,  # type: ignore[arg-type]
        producer,
        GatewayMetrics(CollectorRegistry()),
        rollup,  # type: ignore[arg-type]
    )


def _batch(*values: bytes) -> Batch:
    batch = Batch()
    for offset, value in enumerate(values):
        batch.add(_record(offset, value))
    return batch


async def test_a_broker_failure_between_dead_letters_does_not_resend_the_first() -> None:
    store, producer = FakeStore(), FakeProducer(fail_on_send=2)
    batch = _batch(_activity(1), b'{"type": "nope"}', b"not json")

    await _sink(store, producer)._store(batch)

    assert len(producer.sent) == 2  # one per bad record, after three attempts
    assert producer.attempts == 3
    assert len(set(producer.sent)) == 2


async def test_rows_are_not_inserted_again_when_a_later_step_fails() -> None:
    store, producer = FakeStore(), FakeProducer(fail_on_send=1)
    batch = _batch(_activity(1), _activity(2), b"{}")

    await _sink(store, producer)._store(batch)

    assert len(store.inserted) == 2
    assert len(producer.sent) == 1


async def test_while_writes_fail_nothing_is_dead_lettered_and_the_backoff_is_exported() -> None:
    store, producer = FakeStore(), FakeProducer()
    store.write_faults.fail(times=3)
    sink = _sink(store, producer)
    batch = _batch(_activity(1), b"[]")
    observed: list[float] = []

    gauge_set = sink.metrics.sink_backoff_seconds.set

    def record(value: float) -> None:
        observed.append(value)
        gauge_set(value)

    sink.metrics.sink_backoff_seconds.set = record  # type: ignore[method-assign]
    await sink._store(batch)

    assert store.write_faults.refused == 3
    assert observed == [0.2, 0.05, 0.05, 0]  # capped by sink_retry_max_seconds, 0 once stored
    assert sink.metrics.sink_errors._value.get() == 3
    assert len(store.inserted) == 1 and len(producer.sent) == 1


async def test_an_erasure_retried_after_a_failure_still_recomputes_the_users_rollup_days() -> None:
    store, producer = FakeStore(), FakeProducer()
    rollup = FakeRollup(store)
    rollup.fail_next = 1  # the rows are already deleted when the recompute fails
    batch = _batch(_activity(1), _activity(2, ActivityType.USER_ERASED))

    await _sink(store, producer, rollup)._store(batch)

    assert store.erased == [("w1", "u1"), ("w1", "u1")]
    assert rollup.recomputed == [("w1", "welcome", date(2026, 11, 2))]
    assert [r[1] for r in store.inserted] == ["user_erased"]
    assert [r[1:4] for r in store.erasure_rows] == [
        ["e2", 2, datetime(2026, 11, 2, 9, 30, tzinfo=UTC)]
    ]
    assert store.erasure_rows[0][5] == 1, "rows deleted, as planned before the delete"


async def test_a_batch_of_erasures_is_one_delete_and_rows_after_an_erasure_are_kept() -> None:
    store, producer = FakeStore(), FakeProducer()
    batch = _batch(
        _activity(1, user="ada"),
        _activity(2, user="bob"),
        _activity(3, ActivityType.USER_ERASED, user="ada"),
        _activity(4, ActivityType.USER_ERASED, user="bob"),
        _activity(5, user="ada"),  # ada signs up again right after her erasure
        _activity(6, user="cyd"),
    )

    await _sink(store, producer, FakeRollup(store))._store(batch)

    assert store.erase_calls == 1
    assert sorted(store.erased) == [("w1", "ada"), ("w1", "bob")]
    kept = sorted((r[3], r[0]) for r in store.inserted if r[3])
    assert [user for user, _ in kept] == ["ada", "cyd"]
    assert store.log == [
        "insert activities 5",
        "erase 2",
        "insert erasures 2",
        "insert activities 1",
    ]


async def test_rows_between_two_erasures_of_one_user_in_a_batch_go_too() -> None:
    store, producer = FakeStore(), FakeProducer()
    batch = _batch(
        _activity(1, user="ada"),
        _activity(2, ActivityType.USER_ERASED, user="ada"),
        _activity(3, user="ada"),
        _activity(4, ActivityType.USER_ERASED, user="ada"),
        _activity(5, user="ada"),
    )

    await _sink(store, producer, FakeRollup(store))._store(batch)

    ada = [r for r in store.inserted if r[3] == "ada"]
    assert len(ada) == 1 and ada[0][0] == str(uuid.uuid5(uuid.NAMESPACE_URL, "unit-sink5"))
