"""The ClickHouse store against the real engine (embedded chdb here, a server in Docker)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from sme.contracts.activities import Activity, ActivityType
from sme.errors import StoreInUseError
from sme.settings import Settings
from sme.storage.activities import ACTIVITY_COLUMNS, activity_row
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.migrations import load_migrations
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(test_settings: Settings) -> AsyncIterator[ClickHouseStore]:
    opened = await ClickHouseStore(
        test_settings.clickhouse_dsn.get_secret_value(), test_settings.clickhouse_database
    ).open_async()
    try:
        yield opened
    finally:
        await opened.aclose()


def _activity(n: int) -> Activity:
    return Activity(
        activity_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"a{n}")),
        type=ActivityType.EVENT_RECEIVED,
        workspace_id="w1",
        user_id=f"u{n}",
        occurred_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        event_id=f"e{n}",
        event_type="opened",
    )


async def test_migrations_apply_once_and_are_recorded(test_settings: Settings) -> None:
    dsn, db = test_settings.clickhouse_dsn.get_secret_value(), test_settings.clickhouse_database
    store = await ClickHouseStore(dsn, db).open_async()
    await store.aclose()
    store = await ClickHouseStore(dsn, db).open_async()  # second start applies nothing again
    try:
        rows = (
            await store.query(
                "SELECT version, count() FROM {db}.schema_migrations GROUP BY version"
            )
        ).result_rows
        assert sorted(rows) == [(m.version, 1) for m in load_migrations(db)]
        tables = (
            await store.query(
                "SELECT name FROM system.tables WHERE database = {d:String}", {"d": db}
            )
        ).result_rows
        assert ("activities",) in tables
    finally:
        await store.aclose()


async def test_an_activity_inserted_twice_is_counted_once(store: ClickHouseStore) -> None:
    rows = [activity_row(_activity(n)) for n in range(10)]
    await store.insert("activities", rows, ACTIVITY_COLUMNS)
    await store.insert("activities", rows[:4], ACTIVITY_COLUMNS)
    final = await store.query("SELECT count() FROM {db}.activities FINAL")
    distinct = await store.query("SELECT uniqExact(activity_id) FROM {db}.activities")
    assert final.result_rows == [(10,)]
    assert distinct.result_rows == [(10,)]


async def test_a_query_does_not_wait_behind_a_long_insert(store: ClickHouseStore) -> None:
    await store.query("SELECT 1")
    writer = store._writer
    assert writer is not None
    marker = f"long-insert-{uuid.uuid4().hex}"
    # At least 2 minutes by construction (one row per block, 1 ms of sleep per row), however
    # fast or loaded the machine: it cannot finish while the test looks at it (the 0.2 s
    # head start it used to get proved neither that it had started nor that it was still
    # running). It is cancelled once the query has answered.
    long_insert = asyncio.get_running_loop().run_in_executor(
        store._write_thread,
        lambda: writer.command(
            f"INSERT INTO {store.database}.activities (activity_id, user_id) "  # noqa: S608
            f"SELECT generateUUIDv4(), '{marker}' FROM numbers(120000) "
            "WHERE sleepEachRow(0.001) = 0",
            settings={"max_block_size": 1},
        ),
    )

    async def running() -> str | None:
        rows = (
            await asyncio.wait_for(
                store.query(
                    "SELECT query_id FROM system.processes "
                    "WHERE startsWith(query, 'INSERT') AND position(query, {m:String}) > 0",
                    {"m": marker},
                ),
                30,  # a read queued behind the insert would wait for minutes
            )
        ).result_rows
        return str(rows[0][0]) if rows else None

    async def cancel() -> None:
        await store.query(
            "KILL QUERY WHERE startsWith(query, 'INSERT') AND position(query, {m:String}) > 0 SYNC",
            {"m": marker},
        )

    try:
        insert_id = await eventually(running, timeout=60, what="the long insert running")
        result = await asyncio.wait_for(store.query("SELECT 42"), 30)
        assert result.result_rows == [(42,)]
        assert not long_insert.done(), "the query should have answered while the insert ran"
        assert await running() == insert_id, "the insert was still running"
    finally:
        await cancel()
        with contextlib.suppress(Exception):  # cancelled: "Query was cancelled"
            await long_insert


def test_a_second_process_opening_the_embedded_store_is_told_who_owns_it(tmp_path: Path) -> None:
    store_dir = tmp_path / "clickhouse"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from sme.storage.clickhouse import ClickHouseStore; "
            f"s = ClickHouseStore('chdb://{store_dir}', 'sme').open(); print('open', flush=True); "
            "sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreInUseError, match=f"in use by PID {holder.pid}"):
            ClickHouseStore(f"chdb://{store_dir}", "sme").open()
    finally:
        holder.communicate("\n", timeout=30)


async def test_the_spec_tables_are_views_with_the_spec_columns(store: ClickHouseStore) -> None:
    emitted = _activity(1).model_copy(
        update={"type": ActivityType.COMMAND_EMITTED, "config_id": "cfg", "cost": 0.25}
    )
    await store.insert("activities", [activity_row(emitted)], ACTIVITY_COLUMNS)
    expected = {
        "configs": [
            "id",
            "workspace_id",
            "campaign_id",
            "config",
            "status",
            "created_at",
            "updated_at",
            "version",
        ],
        "activities": [
            "id",
            "config_id",
            "workspace_id",
            "activity_type",
            "details",
            "created_at",
        ],
        "metrics": ["id", "config_id", "workspace_id", "date", "metrics", "created_at"],
    }
    for name, columns in expected.items():
        result = await store.query(
            "SELECT name FROM system.columns WHERE database = {d:String} "
            "AND table = {t:String} ORDER BY position",
            {"d": store.database, "t": f"035_sequential_messaging_engine_{name}"},
        )
        assert [row[0] for row in result.result_rows] == columns
    metrics = await store.query(
        "SELECT metrics FROM {db}.`035_sequential_messaging_engine_metrics` WHERE config_id = 'cfg'"
    )
    figures = orjson.loads(metrics.result_rows[0][0])
    assert (figures["sent"], figures["cost"]) == (1, 0.25)


async def test_the_daily_rollup_counts_each_activity_once_even_after_a_duplicated_insert(
    store: ClickHouseStore,
) -> None:
    from sme.contracts.commands import Arm
    from sme.storage.rollup import Rollup

    rollup = Rollup(store)
    sends = [
        activity_row(
            _activity(n).model_copy(
                update={
                    "type": ActivityType.COMMAND_EMITTED,
                    "config_id": "cfg",
                    "arm": Arm.ADAPTIVE,
                    "cost": 0.5,
                }
            )
        )
        for n in range(10)
    ]
    await store.insert("activities", sends, ACTIVITY_COLUMNS)
    assert await rollup.refresh() == -1, "an empty rollup is built in one pass"
    await store.insert("activities", sends[:6], ACTIVITY_COLUMNS)  # a redelivered batch
    await rollup.refresh()
    totals = await store.query(
        "SELECT sum(sent), sum(cost) FROM {db}.daily_rollup FINAL WHERE config_id = 'cfg'"
    )
    assert totals.result_rows == [(10, 5.0)]
    assert await rollup.refresh() == 0, "nothing new, nothing recomputed"


async def test_after_a_restart_the_rollup_continues_instead_of_rebuilding(
    store: ClickHouseStore,
) -> None:
    from datetime import timedelta

    from sme.contracts.commands import Arm
    from sme.storage.rollup import Rollup

    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    old = [
        [
            *activity_row(
                _activity(n).model_copy(
                    update={
                        "type": ActivityType.COMMAND_EMITTED,
                        "config_id": "cfg",
                        "arm": Arm.BASELINE,
                    }
                )
            ),
            an_hour_ago,
        ]
        for n in range(5)
    ]
    await store.insert("activities", old, [*ACTIVITY_COLUMNS, "inserted_at"])
    assert await Rollup(store).refresh() == -1
    assert await Rollup(store).refresh() == 0, "a new process resumes from the last refresh"


async def test_latest_decisions_page_through_duplicates_and_erasure_clears_the_log(
    store: ClickHouseStore,
) -> None:
    from datetime import timedelta

    from sme.contracts.commands import Arm
    from sme.storage.dashboard import recent_decisions
    from sme.storage.queries import ActivityFilter, list_activities

    now = datetime.now(UTC).replace(microsecond=0)
    sends = [
        activity_row(
            _activity(n).model_copy(
                update={
                    "type": ActivityType.COMMAND_EMITTED,
                    "config_id": "cfg",
                    "arm": Arm.ADAPTIVE,
                    "user_id": f"u{n % 3}",
                    "occurred_at": now - timedelta(minutes=n),
                }
            )
        )
        for n in range(30)
    ]
    for _ in range(3):  # every activity delivered three times
        await store.insert("activities", sends, ACTIVITY_COLUMNS)
    log = await store.query("SELECT count() FROM {db}.decision_log WHERE config_id = 'cfg'")
    assert log.result_rows == [(90,)], "the materialized view copies every insert"

    seen: list[str] = []
    cursor = None
    for table in ("activities", "decision_log"):
        seen, cursor, sizes = [], None, []
        while True:
            page, cursor = await list_activities(
                store,
                ActivityFilter("cfg", "w1"),
                7,
                cursor,
                table=table,  # type: ignore[arg-type]
            )
            sizes.append(len(page))
            seen += [item["activity_id"] for item in page]
            if cursor is None:
                break
        assert sizes == [7, 7, 7, 7, 2], table  # 30 distinct activities = 4 x 7 + 2
        assert len(seen) == len(set(seen)) == 30, table
    expected = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"a{n}")) for n in range(30)]
    assert seen == expected, "newest first"

    today = now.date()
    latest = await recent_decisions(
        store, "w1", "cfg", today - timedelta(days=30), today + timedelta(days=1), 25, now
    )
    assert [item["activity_id"] for item in latest] == expected[:25]

    await store.erase_users([("w1", "u0")])
    left = await recent_decisions(
        store, "w1", "cfg", today - timedelta(days=30), today + timedelta(days=1), 25, now
    )
    assert left and all(item["user_id"] != "u0" for item in left)
    erased = await store.query("SELECT count() FROM {db}.decision_log WHERE user_id = 'u0'")
    assert erased.result_rows == [(0,)]
