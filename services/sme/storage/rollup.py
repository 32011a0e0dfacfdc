"""Daily rollups that count each activity id once: every (workspace, config, day) that
received activity rows since the last refresh is recomputed from `activities FINAL` and
replaces its rollup rows. Reads refresh first (cheap when nothing is new), and a background
task keeps it warm, so reports are exact and fast."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sme.storage.clickhouse import ClickHouseStore

TOUCHED = """
SELECT DISTINCT workspace_id, config_id, toDate(occurred_at)
FROM {db}.activities
WHERE inserted_at > {after:DateTime64(3, 'UTC')} AND inserted_at <= {upto:DateTime64(3, 'UTC')}
  AND config_id != '' AND arm != ''
"""
DELETE = """
DELETE FROM {db}.daily_rollup
WHERE workspace_id = {w:String} AND config_id = {c:String} AND day = {d:Date}
"""
RECOMPUTE = """
INSERT INTO {db}.daily_rollup
SELECT workspace_id, config_id, toDate(occurred_at) AS day, arm, channel, step_id,
    uniqExactIf(user_id, type = 'enrolled'),
    countIf(type = 'command_emitted'),
    countIf(type = 'feedback' AND event_type = 'delivered'),
    countIf(type = 'feedback' AND event_type = 'opened'),
    countIf(type = 'feedback' AND event_type = 'clicked'),
    countIf(type = 'conversion'),
    sumIf(value, type = 'conversion'),
    countIf(type = 'feedback' AND event_type = 'unsubscribed'),
    countIf(type = 'feedback' AND event_type = 'bounced'),
    countIf(type IN ('message_suppressed', 'step_skipped')),
    sumIf(cost, type = 'command_emitted'),
    now64(3)
FROM {db}.activities FINAL
WHERE workspace_id = {w:String} AND config_id = {c:String}
  AND toDate(occurred_at) = {d:Date} AND arm != ''
GROUP BY workspace_id, config_id, day, arm, channel, step_id
"""


RESUME_MARGIN = timedelta(minutes=1)


class Rollup:
    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self._watermark: datetime | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> int:
        """Recompute every day that received rows since the last refresh; returns how many."""
        async with self._lock:
            upto_rows = (
                await self.store.query("SELECT max(inserted_at) FROM {db}.activities")
            ).result_rows
            upto = upto_rows[0][0]
            if upto is None or (self._watermark is not None and upto <= self._watermark):
                return 0
            if self._watermark is None:
                self._watermark = await self._resume_point()
            after = self._watermark or datetime(1970, 1, 1, tzinfo=UTC)
            touched = (await self.store.query(TOUCHED, {"after": after, "upto": upto})).result_rows
            for workspace_id, config_id, day in touched:
                await self.recompute(workspace_id, config_id, day)
            self._watermark = upto
            return len(touched)

    async def _resume_point(self) -> datetime | None:
        """After a restart, continue from the last refresh (less a margin for rows that were
        being inserted while it ran) instead of rebuilding every day."""
        rows = (
            await self.store.query("SELECT max(computed_at), count() FROM {db}.daily_rollup")
        ).result_rows
        last, count = rows[0]
        if not count:
            return None
        resumed: datetime = last - RESUME_MARGIN
        return resumed

    async def recompute(self, workspace_id: str, config_id: str, day: Any) -> None:
        params = {"w": workspace_id, "c": config_id, "d": day}
        await self.store.execute(DELETE, params)
        await self.store.execute(RECOMPUTE, params)

    async def days_of_user(self, workspace_id: str, user_id: str) -> list[tuple[str, Any]]:
        """(config, day) pairs a user's rows fall on: what an erasure must recompute."""
        rows = await self.store.query(
            "SELECT DISTINCT config_id, toDate(occurred_at) FROM {db}.activities "
            "WHERE workspace_id = {w:String} AND user_id = {u:String} AND config_id != ''",
            {"w": workspace_id, "u": user_id},
        )
        return [(str(c), d) for c, d in rows.result_rows]

    async def run(self, interval: float) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(interval)
