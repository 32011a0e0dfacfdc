"""Daily rollups that count each activity id once.

`daily_rollup` holds per (workspace, config, day, arm, channel, step) counts and
`daily_events` per (workspace, day) event intake (received, duplicates, dead-lettered). Every
day that received activity rows since the last refresh is recomputed from `activities FINAL`
and replaces its rollup rows; an empty rollup is built in one pass. Reads refresh first
(cheap when nothing is new), and the gateway's supervised `rollup` worker keeps it warm, so
reports are exact and fast. Every column is a measure of `storage.measures`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sme.storage.clickhouse import ClickHouseStore
from sme.storage.measures import (
    BY_REASON,
    EVENT_MEASURES,
    EVENT_ROWS,
    SEQUENCE_MEASURES,
    SEQUENCE_ROWS,
    SUPPRESSED,
    select_list,
)

SEQUENCE_COLUMNS = f"""
    {select_list(SEQUENCE_MEASURES)},
    {SUPPRESSED.per("reason_code")},
    now64(3)"""
SEQUENCE_INSERT = f"""
INSERT INTO {{db}}.daily_rollup
    (workspace_id, config_id, day, arm, channel, step_id,
     {", ".join(m.name for m in SEQUENCE_MEASURES)}, {BY_REASON}, computed_at)"""
EVENTS_INSERT = f"""
INSERT INTO {{db}}.daily_events
    (workspace_id, day, {", ".join(m.name for m in EVENT_MEASURES)}, computed_at)"""
EVENTS_COLUMNS = f"""
    {select_list(EVENT_MEASURES)}, now64(3)"""

TOUCHED = f"""
SELECT DISTINCT workspace_id, config_id, toDate(occurred_at)
FROM {{db}}.activities
WHERE inserted_at > {{after:DateTime64(3, 'UTC')}} AND inserted_at <= {{upto:DateTime64(3, 'UTC')}}
  AND ((config_id != '' AND {SEQUENCE_ROWS}) OR ({EVENT_ROWS}))
"""  # noqa: S608 - composed of module constants
DELETE_SEQUENCE_DAY = """
DELETE FROM {db}.daily_rollup
WHERE workspace_id = {w:String} AND config_id = {c:String} AND day = {d:Date}
"""
RECOMPUTE_SEQUENCE_DAY = f"""{SEQUENCE_INSERT}
SELECT workspace_id, config_id, toDate(occurred_at) AS day, arm, channel, step_id,
{SEQUENCE_COLUMNS}
FROM {{db}}.activities FINAL
WHERE workspace_id = {{w:String}} AND config_id = {{c:String}}
  AND toDate(occurred_at) = {{d:Date}} AND {SEQUENCE_ROWS}
GROUP BY workspace_id, config_id, day, arm, channel, step_id
"""  # noqa: S608 - composed of module constants
DELETE_EVENTS_DAY = """
DELETE FROM {db}.daily_events WHERE workspace_id = {w:String} AND day = {d:Date}
"""
RECOMPUTE_EVENTS_DAY = f"""{EVENTS_INSERT}
SELECT workspace_id, toDate(occurred_at) AS day, {EVENTS_COLUMNS}
FROM {{db}}.activities FINAL
WHERE workspace_id = {{w:String}} AND {EVENT_ROWS} AND toDate(occurred_at) = {{d:Date}}
GROUP BY workspace_id, day
"""  # noqa: S608 - composed of module constants
BUILD_SEQUENCES = f"""{SEQUENCE_INSERT}
SELECT workspace_id, config_id, toDate(occurred_at) AS day, arm, channel, step_id,
{SEQUENCE_COLUMNS}
FROM {{db}}.activities FINAL
WHERE config_id != '' AND {SEQUENCE_ROWS} AND inserted_at <= {{upto:DateTime64(3, 'UTC')}}
GROUP BY workspace_id, config_id, day, arm, channel, step_id
"""  # noqa: S608 - composed of module constants
BUILD_EVENTS = f"""{EVENTS_INSERT}
SELECT workspace_id, toDate(occurred_at) AS day, {EVENTS_COLUMNS}
FROM {{db}}.activities FINAL
WHERE {EVENT_ROWS} AND inserted_at <= {{upto:DateTime64(3, 'UTC')}}
GROUP BY workspace_id, day
"""  # noqa: S608 - composed of module constants

REFRESH_SECONDS = 5.0
"""How often the gateway's supervised `rollup` worker refreshes (reads refresh too)."""
RESUME_MARGIN = timedelta(minutes=1)
# Every insert adds a part and rows, so this metadata-only signature changes with every insert
# (merges change it too, which costs one needless but cheap refresh).
SIGNATURE = """
SELECT sum(rows), count(), max(modification_time) FROM system.parts
WHERE database = {database:String} AND table = 'activities' AND active
"""


class Rollup:
    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self._watermark: datetime | None = None
        self._signature: tuple[Any, ...] | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> int:
        """Recompute every day that received rows since the last refresh; returns how many
        (workspace, config, day) groups were recomputed (-1 for a full build)."""
        async with self._lock:
            signature = tuple(
                (await self.store.query(SIGNATURE, {"database": self.store.database})).result_rows[
                    0
                ]
            )
            if signature == self._signature:
                return 0  # nothing inserted or merged since the last refresh
            upto_rows = (
                await self.store.query("SELECT max(inserted_at) FROM {db}.activities")
            ).result_rows
            upto = upto_rows[0][0]
            if upto is None or (self._watermark is not None and upto <= self._watermark):
                self._signature = signature
                return 0
            if self._watermark is None:
                self._watermark = await self._resume_point()
                if self._watermark is None:
                    await self._build(upto)
                    self._watermark, self._signature = upto, signature
                    return -1
            touched = (
                await self.store.query(TOUCHED, {"after": self._watermark, "upto": upto})
            ).result_rows
            for workspace_id, config_id, day in touched:
                await self.recompute(workspace_id, config_id, day)
            self._watermark, self._signature = upto, signature
            return len(touched)

    async def _build(self, upto: datetime) -> None:
        """An empty rollup (first start, or after a migration emptied it) is built in one
        pass over `activities` rather than one query per day. Anything inserted meanwhile is
        after `upto` and is picked up by the next refresh."""
        await self.store.execute("TRUNCATE TABLE {db}.daily_rollup", {})
        await self.store.execute("TRUNCATE TABLE {db}.daily_events", {})
        await self.store.execute(BUILD_SEQUENCES, {"upto": upto})
        await self.store.execute(BUILD_EVENTS, {"upto": upto})

    async def _resume_point(self) -> datetime | None:
        """After a restart, continue from the last refresh (less a margin for rows that were
        being inserted while it ran) instead of rebuilding every day."""
        rows = (
            await self.store.query(
                "SELECT greatest((SELECT max(computed_at) FROM {db}.daily_rollup),"
                " (SELECT max(computed_at) FROM {db}.daily_events)),"
                " (SELECT count() FROM {db}.daily_rollup) + (SELECT count() FROM {db}.daily_events)"
            )
        ).result_rows
        last, count = rows[0]
        if not count:
            return None
        resumed: datetime = last - RESUME_MARGIN
        return resumed

    async def recompute(self, workspace_id: str, config_id: str, day: Any) -> None:
        """Replace one day's rows: a sequence's, or (config '') the workspace's intake."""
        if config_id:
            params = {"w": workspace_id, "c": config_id, "d": day}
            await self.store.execute(DELETE_SEQUENCE_DAY, params)
            await self.store.execute(RECOMPUTE_SEQUENCE_DAY, params)
        else:
            params = {"w": workspace_id, "d": day}
            await self.store.execute(DELETE_EVENTS_DAY, params)
            await self.store.execute(RECOMPUTE_EVENTS_DAY, params)

    async def recompute_days(self, days: Iterable[tuple[str, str, Any]]) -> None:
        """Recompute these (workspace, config, day) groups now (after an erasure), never
        interleaved with a refresh recomputing the same day."""
        async with self._lock:
            for workspace_id, config_id, day in sorted(days):
                await self.recompute(workspace_id, config_id, day)
