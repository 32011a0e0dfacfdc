"""Erasure bookkeeping in ClickHouse, without the erased users' ids: what an erasure batch must
recompute (looked up before the rows go), and each erasure's progress (`erasures` table: the
highest state of an erasure id wins)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from sme.storage.clickhouse import ClickHouseStore

ERASURE_COLUMNS = (
    "workspace_id",
    "erasure_id",
    "state",
    "requested_at",
    "completed_at",
    "rows_deleted",
)
PLAN = """
SELECT workspace_id, user_id, config_id, toDate(occurred_at) AS day, count()
FROM {db}.activities
WHERE workspace_id IN {ws:Array(String)}
  AND (workspace_id, user_id) IN {pairs:Array(Tuple(String, String))}
GROUP BY workspace_id, user_id, config_id, day
"""
STATUS = """
SELECT argMax(state, state), min(requested_at), argMax(completed_at, state),
       argMax(rows_deleted, state)
FROM {db}.erasures
WHERE workspace_id = {w:String} AND erasure_id = {e:String}
HAVING count() > 0
"""


class ErasureState(IntEnum):
    REQUESTED = 1
    COMPLETED = 2


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """What deleting a set of users touches: the rollup days (workspace, config, day) to
    recompute afterwards, and how many activity rows each user had."""

    days: frozenset[tuple[str, str, Any]] = frozenset()
    rows: dict[tuple[str, str], int] = field(default_factory=dict)


async def plan_erasure(store: ClickHouseStore, users: Sequence[tuple[str, str]]) -> ErasurePlan:
    pairs = sorted(set(users))
    if not pairs:
        return ErasurePlan()
    result = await store.query(PLAN, {"ws": sorted({w for w, _ in pairs}), "pairs": pairs})
    days: set[tuple[str, str, Any]] = set()
    rows: dict[tuple[str, str], int] = {}
    for workspace_id, user_id, config_id, day, count in result.result_rows:
        days.add((str(workspace_id), str(config_id), day))
        key = (str(workspace_id), str(user_id))
        rows[key] = rows.get(key, 0) + int(count)
    return ErasurePlan(frozenset(days), rows)


def erasure_row(
    workspace_id: str,
    erasure_id: str,
    state: ErasureState,
    requested_at: datetime,
    completed_at: datetime | None = None,
    rows_deleted: int = 0,
) -> list[Any]:
    return [workspace_id, erasure_id, int(state), requested_at, completed_at, rows_deleted]


async def record_erasures(store: ClickHouseStore, rows: Iterable[list[Any]]) -> None:
    batch = list(rows)
    if batch:
        await store.insert("erasures", batch, ERASURE_COLUMNS)


async def erasure_status(
    store: ClickHouseStore, workspace_id: str, erasure_id: str
) -> dict[str, Any] | None:
    """The erasure's progress, or None when this workspace has no such erasure (yet)."""
    result = await store.query(STATUS, {"w": workspace_id, "e": erasure_id})
    if not result.result_rows:
        return None
    state, requested_at, completed_at, rows_deleted = result.result_rows[0]
    done = ErasureState(int(state)) is ErasureState.COMPLETED
    return {
        "erasure_id": erasure_id,
        "workspace_id": workspace_id,
        "state": "completed" if done else "requested",
        "requested_at": requested_at.isoformat(),
        "completed_at": completed_at.isoformat() if done and completed_at else None,
        "seconds": round((completed_at - requested_at).total_seconds(), 3)
        if done and completed_at
        else None,
        "rows_deleted": int(rows_deleted) if done else None,
    }
