"""Performance metrics of one sequence from the daily rollup of `activities`: per arm and per
day (or week), the counts and rates the dashboard and reports show, and the lift from the
same function the simulator uses. Each activity id counts once (the rollup reads FINAL)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sme.core.lift import lift_report
from sme.storage.clickhouse import ClickHouseStore

UTC = ZoneInfo("UTC")
COUNTS = (
    "enrolled",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "conversions",
    "revenue",
    "unsubscribed",
    "bounced",
    "suppressed",
    "cost",
)
SQL = """
SELECT {bucket} AS period, arm,
    sum(enrolled), sum(sent), sum(delivered), sum(opened), sum(clicked), sum(conversions),
    sum(revenue), sum(unsubscribed), sum(bounced), sum(suppressed), sum(cost)
FROM {{db}}.daily_rollup FINAL
WHERE workspace_id = {{w:String}} AND config_id = {{c:String}}
  AND day >= {{since:Date}} AND day < {{until:Date}}
GROUP BY period, arm ORDER BY period, arm
"""
BUCKETS = {"day": "day", "week": "toMonday(day)"}


async def sequence_metrics(
    store: ClickHouseStore,
    workspace_id: str,
    config_id: str,
    start: date,
    end: date,
    granularity: Literal["day", "week"],
) -> dict[str, Any]:
    """`start` inclusive, `end` exclusive, UTC dates; read from the daily rollup (refresh
    it first for up-to-the-second figures)."""
    result = await store.query(
        SQL.format(bucket=BUCKETS[granularity]),
        {"w": workspace_id, "c": config_id, "since": start, "until": end},
    )
    series: list[dict[str, Any]] = []
    arms: dict[str, dict[str, float]] = {}
    for period, arm, *values in result.result_rows:
        row = dict(
            zip(
                COUNTS,
                (
                    float(v) if k in ("revenue", "cost") else int(v)
                    for k, v in zip(COUNTS, values, strict=True)
                ),
                strict=True,
            )
        )
        series.append({"period": period.isoformat(), "arm": arm, **row, **_rates(row)})
        total = arms.setdefault(arm, dict.fromkeys(COUNTS, 0))
        for key in COUNTS:
            total[key] += row[key]
    summary = {arm: {**totals, **_rates(totals)} for arm, totals in arms.items()}
    # A window can hold conversions of users enrolled before it; the lift compares rates, so
    # conversions are capped at the users enrolled in the window (a known approximation).
    lift = lift_report(
        {
            arm: (min(int(t["conversions"]), int(t["enrolled"])), int(t["enrolled"]))
            for arm, t in arms.items()
        }
    )
    return {
        "config_id": config_id,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": granularity,
        "arms": summary,
        "series": series,
        "lift": {name: (value.to_dict() if value else None) for name, value in lift.items()},
    }


def _rates(row: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "conversion_rate": ratio(row["conversions"], row["enrolled"]),
        "click_rate": ratio(row["clicked"], row["sent"]),
        "unsubscribe_rate": ratio(row["unsubscribed"], row["sent"]),
        "cost_per_conversion": ratio(row["cost"], row["conversions"]),
    }


def default_window(today: date) -> tuple[date, date]:
    return today - timedelta(days=30), today + timedelta(days=1)


REPORT_SQL = """
SELECT toDate(occurred_at) AS day, arm, channel,
    uniqExactIf(user_id, type = 'enrolled') AS enrolled,
    countIf(type = 'command_emitted') AS sent,
    countIf(type = 'feedback' AND event_type = 'delivered') AS delivered,
    countIf(type = 'feedback' AND event_type = 'opened') AS opened,
    countIf(type = 'feedback' AND event_type = 'clicked') AS clicked,
    countIf(type = 'conversion') AS conversions,
    sumIf(value, type = 'conversion') AS revenue,
    countIf(type = 'feedback' AND event_type = 'unsubscribed') AS unsubscribed,
    countIf(type = 'feedback' AND event_type = 'bounced') AS bounced,
    countIf(type IN ('message_suppressed', 'step_skipped')) AS suppressed,
    sumIf(cost, type = 'command_emitted') AS cost
FROM {db}.activities FINAL
WHERE workspace_id = {w:String} AND config_id = {c:String} AND arm != ''
  AND occurred_at >= {since:DateTime64(3, 'UTC')} AND occurred_at < {until:DateTime64(3, 'UTC')}
GROUP BY day, arm, channel ORDER BY day, arm, channel
"""
FORMATS = {
    "csv": ("CSVWithNames", "text/csv"),
    "parquet": ("Parquet", "application/vnd.apache.parquet"),
}


def report_params(workspace_id: str, config_id: str, start: date, end: date) -> dict[str, Any]:
    return {
        "w": workspace_id,
        "c": config_id,
        "since": datetime.combine(start, time.min, tzinfo=UTC),
        "until": datetime.combine(end, time.min, tzinfo=UTC),
    }


async def report_json(store: ClickHouseStore, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = await store.query(REPORT_SQL, params)
    rows = []
    for values in result.result_rows:
        row = dict(zip(result.column_names, values, strict=True))
        row["day"] = row["day"].isoformat()
        rows.append(row)
    return rows


async def report_file(store: ClickHouseStore, params: dict[str, Any], fmt: str) -> bytes:
    return await store.raw(REPORT_SQL, params, FORMATS[fmt][0])
