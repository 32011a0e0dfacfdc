"""The program's figures against the workspace's global control group, for the overview:
per group (control: enrolled in the `global_control` arm; treated: every other enrolled
user), the users who enrolled in any sequence in the window, how many of them converted in
the window, and the sum and sum of squares of their revenue per user.

Reads `activities` (the rollup counts per sequence and arm, not distinct users across
sequences), bounded by its sorting key: the workspace's `enrolled` and `conversion` rows of
the window's days. A user is in the control if any enrollment of theirs in the window is. A
goal event that converts several sequences counts once (its largest value), so revenue is
not counted twice; duplicate rows collapse in the grouping."""

from __future__ import annotations

from datetime import date

from sme.contracts.sequences import WorkspaceSettings
from sme.core.program_lift import GroupTotals, program_lift
from sme.storage.clickhouse import ClickHouseStore

SQL = """
WITH enrolled AS (
    SELECT workspace_id, user_id, max(arm = 'global_control') AS control
    FROM {db}.activities
    WHERE workspace_id IN {ws:Array(String)} AND type = 'enrolled'
      AND toDate(occurred_at) >= {since:Date} AND toDate(occurred_at) < {until:Date}
    GROUP BY workspace_id, user_id
), per_event AS (
    SELECT workspace_id, user_id, event_id, max(value) AS value
    FROM {db}.activities
    WHERE workspace_id IN {ws:Array(String)} AND type = 'conversion'
      AND toDate(occurred_at) >= {since:Date} AND toDate(occurred_at) < {until:Date}
    GROUP BY workspace_id, user_id, event_id
), converted AS (
    SELECT workspace_id, user_id, 1 AS converted, sum(value) AS revenue
    FROM per_event
    GROUP BY workspace_id, user_id
)
SELECT e.workspace_id, e.control, count() AS users, sum(c.converted) AS converted,
       sum(c.revenue) AS revenue, sum(c.revenue * c.revenue) AS revenue_sq
FROM enrolled AS e
LEFT JOIN converted AS c ON e.workspace_id = c.workspace_id AND e.user_id = c.user_id
GROUP BY e.workspace_id, e.control
SETTINGS join_use_nulls = 0
"""

EMPTY = GroupTotals(0, 0, 0.0, 0.0)


async def program_overview(
    store: ClickHouseStore, workspaces: list[WorkspaceSettings], start: date, end: date
) -> list[dict[str, object]]:
    """One entry per workspace (in the given order): its global control share and the
    program's comparison against it (`core.program_lift`)."""
    if not workspaces:
        return []
    result = await store.query(
        SQL,
        {"ws": [w.workspace_id for w in workspaces], "since": start, "until": end},
    )
    groups: dict[tuple[str, bool], GroupTotals] = {}
    for workspace_id, control, users, converted, revenue, revenue_sq in result.result_rows:
        groups[(workspace_id, bool(control))] = GroupTotals(
            int(users), int(converted), float(revenue), float(revenue_sq)
        )
    return [
        {
            "workspace_id": w.workspace_id,
            **program_lift(
                groups.get((w.workspace_id, False), EMPTY),
                groups.get((w.workspace_id, True), EMPTY),
                w.global_control.pct,
            ),
        }
        for w in workspaces
    ]
