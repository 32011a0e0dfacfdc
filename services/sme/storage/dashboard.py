"""What the dashboard pages read: one sequence's metrics plus its latest decisions, and an
overview of many sequences' headline figures in one rollup query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sme.contracts.activities import ActivityType
from sme.core.roi import Economics
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.measures import (
    CONVERSIONS,
    COST,
    ENROLLED,
    RATES,
    REVENUE,
    SENT,
    UNSUBSCRIBED,
    ratio,
    rollup_list,
)
from sme.storage.metrics import sequence_metrics, window_lift
from sme.storage.queries import ActivityFilter, list_activities

UTC = ZoneInfo("UTC")
DECISIONS = tuple(
    t.value
    for t in (
        ActivityType.ENROLLED,
        ActivityType.COMMAND_EMITTED,
        ActivityType.MESSAGE_SUPPRESSED,
        ActivityType.STEP_DEFERRED,
        ActivityType.STEP_SKIPPED,
        ActivityType.STEP_BRANCHED,
        ActivityType.ENROLLMENT_EXITED,
        ActivityType.CONVERSION,
    )
)
DECISION_LOG_SPAN = timedelta(days=7)  # the log keeps 8; a day's margin for its TTL merges
OVERVIEW_MEASURES = (ENROLLED, SENT, CONVERSIONS, REVENUE, COST, UNSUBSCRIBED)
OVERVIEW_COUNTS = tuple(m.name for m in OVERVIEW_MEASURES)
OVERVIEW_SQL = f"""
SELECT config_id, arm, {rollup_list(OVERVIEW_MEASURES)}
FROM {{db}}.daily_rollup FINAL
WHERE workspace_id IN {{ws:Array(String)}} AND config_id IN {{ids:Array(String)}}
  AND day >= {{since:Date}} AND day < {{until:Date}}
GROUP BY config_id, arm
"""  # noqa: S608 - composed of module constants


async def recent_decisions(
    store: ClickHouseStore,
    workspace_id: str,
    config_id: str,
    start: date,
    end: date,
    limit: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The newest decisions in the window: from `decision_log` (time-ordered, the last
    `DECISION_LOG_SPAN`), then from `activities` for any older part of the window."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end, time.min, tzinfo=UTC)
    log_start = now - DECISION_LOG_SPAN
    items: list[dict[str, Any]] = []
    if until > log_start:
        flt = ActivityFilter(
            config_id, workspace_id, DECISIONS, since=max(since, log_start), until=until
        )
        items, _ = await list_activities(store, flt, limit, None, table="decision_log")
    if len(items) < limit and since < log_start:
        flt = ActivityFilter(
            config_id, workspace_id, DECISIONS, since=since, until=min(until, log_start)
        )
        older, _ = await list_activities(store, flt, limit - len(items), None)
        items += older
    return items


async def sequence_dashboard(
    store: ClickHouseStore,
    workspace_id: str,
    config_id: str,
    start: date,
    end: date,
    now: datetime,
    economics: Economics,
    granularity: Literal["day", "week"] = "day",
    recent: int = 25,
    step_order: Sequence[str] = (),
) -> dict[str, Any]:
    """Every figure one sequence's page shows (`now` anchors the recent-decisions look;
    `step_order` orders the per-step funnel)."""
    metrics = await sequence_metrics(
        store, workspace_id, config_id, start, end, granularity, economics, step_order
    )
    decisions = await recent_decisions(store, workspace_id, config_id, start, end, recent, now)
    return {"metrics": metrics, "recent_decisions": decisions}


async def overview(
    store: ClickHouseStore, configs: Iterable[tuple[str, str]], start: date, end: date
) -> dict[str, dict[str, Any]]:
    """Headline figures per sequence; `configs` holds (workspace, config id) pairs."""
    pairs = list(configs)
    if not pairs:
        return {}
    result = await store.query(
        OVERVIEW_SQL,
        {
            "ws": sorted({w for w, _ in pairs}),
            "ids": [c for _, c in pairs],
            "since": start,
            "until": end,
        },
    )
    per_arm: dict[str, dict[str, dict[str, Any]]] = {}
    for config_id, arm, *values in result.result_rows:
        per_arm.setdefault(config_id, {})[arm] = dict(zip(OVERVIEW_COUNTS, values, strict=True))
    figures: dict[str, dict[str, Any]] = {}
    for config_id, arms in per_arm.items():
        total = {key: sum(row[key] for row in arms.values()) for key in OVERVIEW_COUNTS}
        total["conversion_rate"] = ratio(*(total[k] for k in RATES["conversion_rate"]))
        lift = window_lift(arms)["vs_baseline"]
        total["lift_vs_baseline"] = lift.to_dict() if lift else None
        figures[config_id] = total
    return figures
