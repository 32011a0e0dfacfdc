"""The sink's rows in the real engine: the same records, stored once through the mapping the
sink used before its fast path (pydantic model, then a row with a `uuid.UUID` id) and once
through today's `Batch` (orjson fast path, the model for the rest), leave identical table
contents in `activities` and `decision_log`, for every activity type, single and bundled."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from sme.contracts.activities import Activity, ActivityType, bundle_values, read_activities
from sme.gateway.sink import Batch
from sme.storage.activities import ACTIVITY_COLUMNS
from sme.storage.clickhouse import ClickHouseStore
from tests.unit.test_activity_wire import AT, every_kind_of_activity

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(clickhouse: str) -> AsyncIterator[ClickHouseStore]:
    """A fresh database of the suite's engine; no broker needed."""
    opened = await ClickHouseStore(clickhouse, f"rows_{uuid.uuid4().hex[:12]}").open_async()
    try:
        yield opened
    finally:
        await opened.aclose()


def former_row(activity: Activity) -> list[Any]:
    """The row as the sink built it before the fast path (kept here as the reference)."""
    return [
        uuid.UUID(activity.activity_id),
        activity.type.value,
        activity.workspace_id,
        activity.user_id,
        activity.occurred_at.astimezone(UTC),
        activity.config_id,
        activity.config_version,
        activity.step_id,
        activity.channel.value if activity.channel else "",
        activity.arm.value if activity.arm else "",
        activity.command_id,
        activity.event_id,
        activity.event_type,
        str(activity.reason_code),
        activity.value,
        activity.cost,
        orjson.dumps(activity.details).decode(),
    ]


def values() -> list[bytes]:
    """Every kind of activity but erasures (which delete), single and bundled, plus records
    the fast path leaves to the model (an offset the model normalises, a spaced bundle)."""
    # Recent, so decision_log (8-day TTL) keeps its copies; whole days keep the microseconds.
    shift = timedelta(days=(datetime.now(UTC) - AT).days)
    activities = [
        a.model_copy(update={"occurred_at": a.occurred_at + shift})
        for a in every_kind_of_activity()
        if a.type is not ActivityType.USER_ERASED
    ]
    encoded = [a.model_dump_json().encode() for a in activities]
    odd = orjson.loads(encoded[0])
    odd["occurred_at"] = "2026-11-02T09:30:00.5+01:00"
    odd["activity_id"] = str(uuid.uuid4())
    spaced = orjson.loads(encoded[1])
    spaced["activity_id"] = str(uuid.uuid4()).upper()
    return [
        *encoded[:20],
        *bundle_values(encoded[20:]),
        orjson.dumps(odd),
        b'{ "activities" : [' + orjson.dumps(spaced) + b"]}",
    ]


async def contents(store: ClickHouseStore, table: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(ACTIVITY_COLUMNS)
    result = await store.query(
        f"SELECT {columns} FROM {{db}}.{table} ORDER BY activity_id"  # noqa: S608 - fixed names
    )
    return [tuple(r) for r in result.result_rows]


async def test_the_same_records_leave_the_same_rows_as_the_former_mapping(
    store: ClickHouseStore,
) -> None:
    records = values()
    former = [former_row(a) for value in records for a in read_activities(value)]
    await store.insert("activities", former, ACTIVITY_COLUMNS)
    expected = {t: await contents(store, t) for t in ("activities", "decision_log")}
    assert len(expected["activities"]) == len(former)
    assert expected["decision_log"]  # the view copied the decision rows

    for table in ("activities", "decision_log"):
        await store.execute(f"TRUNCATE TABLE {{db}}.{table}", {})
    batch = Batch()
    for offset, value in enumerate(records):
        batch.add(ConsumerRecord("t", 0, offset, 0, 0, b"k", value, None, 1, len(value), ()))
    assert not batch.rejects and not batch.later_rows
    await store.insert("activities", batch.rows, ACTIVITY_COLUMNS)

    for table in ("activities", "decision_log"):
        assert await contents(store, table) == expected[table]
