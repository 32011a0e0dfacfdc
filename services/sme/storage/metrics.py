"""Performance metrics of one sequence from the daily rollup of `activities`: per arm, per
channel and per day (or week), the counts and rates the dashboard and reports show,
suppressions by reason, the workspace's event error rate, the lift from the same function the
simulator uses, and incremental conversions, revenue and ROI over the holdout. Each activity
id counts once (the rollup reads FINAL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sme.core.lift import Lift, lift_report, wilson_interval
from sme.core.roi import ArmTotals, incremental_report
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
MONEY = frozenset({"revenue", "cost"})
NO_CHANNEL = "none"  # enrollments, conversions without a credited message, ...
# One pass over the rollup: per (period, arm) for the trend, per (period, channel) for the
# channel trend, per (arm, channel) for the channel mix. grouping() flags which set a row is
# of (a bit is 1 where the column is aggregated away).
SQL = """
SELECT {bucket} AS period, arm, channel, grouping(period, arm, channel) AS grouping_set,
    sum(enrolled), sum(sent), sum(delivered), sum(opened), sum(clicked), sum(conversions),
    sum(revenue), sum(unsubscribed), sum(bounced), sum(suppressed), sum(cost),
    sumMap(suppressed_by_reason)
FROM {{db}}.daily_rollup FINAL
WHERE workspace_id = {{w:String}} AND config_id = {{c:String}}
  AND day >= {{since:Date}} AND day < {{until:Date}}
GROUP BY GROUPING SETS ((period, arm), (period, channel), (arm, channel))
ORDER BY grouping_set, period, arm, channel
"""
BY_PERIOD_ARM, BY_PERIOD_CHANNEL, BY_ARM_CHANNEL = 1, 2, 4
EVENTS_SQL = """
SELECT {bucket} AS period, sum(received), sum(duplicates), sum(rejected)
FROM {{db}}.daily_events FINAL
WHERE workspace_id = {{w:String}} AND day >= {{since:Date}} AND day < {{until:Date}}
GROUP BY period ORDER BY period
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
    params = {"w": workspace_id, "c": config_id, "since": start, "until": end}
    result = await store.query(SQL.format(bucket=BUCKETS[granularity]), params)
    series: list[dict[str, Any]] = []
    channel_series: list[dict[str, Any]] = []
    arms: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for period, arm, channel, grouping_set, *values in result.result_rows:
        row = _counts(values[: len(COUNTS)])
        if grouping_set == BY_PERIOD_ARM:
            series.append({"period": period.isoformat(), "arm": arm, **row, **_rates(row)})
        elif grouping_set == BY_PERIOD_CHANNEL:
            name = channel or NO_CHANNEL
            channel_series.append({"period": period.isoformat(), "channel": name, **row})
        elif grouping_set == BY_ARM_CHANNEL:
            name = channel or NO_CHANNEL
            _add(arms.setdefault(arm, dict.fromkeys(COUNTS, 0)), row)
            entry = channels.setdefault(name, {**dict.fromkeys(COUNTS, 0), "arms": {}})
            _add(entry, row)
            entry["arms"][arm] = {**row, **_rates(row)}
            by_reason = reasons.setdefault(arm, {})
            for reason, count in values[len(COUNTS)].items():
                by_reason[reason or "unspecified"] = by_reason.get(reason, 0) + int(count)
    for entry in channels.values():
        entry.update(_rates(entry))
    summary = {
        arm: {**totals, **_rates(totals), "conversion_rate_ci95": _rate_interval(totals)}
        for arm, totals in arms.items()
    }
    lift = window_lift(arms)
    increments = incremental_report(
        {
            arm: ArmTotals(
                int(t["enrolled"]), int(t["conversions"]), float(t["revenue"]), float(t["cost"])
            )
            for arm, t in arms.items()
        }
    )
    return {
        "config_id": config_id,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "granularity": granularity,
        "arms": summary,
        "channels": channels,
        "suppressed_by_reason": {
            arm: dict(sorted(counts.items(), key=lambda kv: -kv[1]))
            for arm, counts in sorted(reasons.items())
        },
        "series": series,
        "channel_series": channel_series,
        "lift": {name: (value.to_dict() if value else None) for name, value in lift.items()},
        "incremental": {
            name: (value.to_dict() if value else None) for name, value in increments.items()
        },
        "reliability": await _reliability(store, params, granularity),
    }


def window_lift(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, Lift | None]:
    """The lift of per-arm totals over a window. A window can hold conversions of users
    enrolled before it; the lift compares rates, so conversions are capped at the users
    enrolled in the window (a known approximation)."""
    return lift_report(
        {
            arm: (min(int(t["conversions"]), int(t["enrolled"])), int(t["enrolled"]))
            for arm, t in arms.items()
        }
    )


async def _reliability(
    store: ClickHouseStore, params: dict[str, Any], granularity: str
) -> dict[str, Any]:
    """The workspace's event intake: a dead-lettered event could not be read, so it belongs
    to no sequence; its error rate is SC-002's."""
    result = await store.query(EVENTS_SQL.format(bucket=BUCKETS[granularity]), params)
    series = []
    totals = {"received": 0, "duplicates": 0, "rejected": 0}
    for period, received, duplicates, rejected in result.result_rows:
        row = {"received": int(received), "duplicates": int(duplicates), "rejected": int(rejected)}
        for key, value in row.items():
            totals[key] += value
        series.append({"period": period.isoformat(), **row, "error_rate": _error_rate(row)})
    return {"scope": "workspace", **totals, "error_rate": _error_rate(totals), "series": series}


def _error_rate(row: dict[str, int]) -> float | None:
    total = row["received"] + row["duplicates"] + row["rejected"]
    return row["rejected"] / total if total else None


def _rate_interval(totals: dict[str, Any]) -> list[float] | None:
    """The arm's conversion rate with a 95% Wilson interval (capped like the lift)."""
    enrolled = int(totals["enrolled"])
    interval = wilson_interval(min(int(totals["conversions"]), enrolled), enrolled)
    return list(interval) if interval else None


def _counts(values: Sequence[Any]) -> dict[str, Any]:
    return {
        key: float(value) if key in MONEY else int(value)
        for key, value in zip(COUNTS, values, strict=True)
    }


def _add(total: dict[str, Any], row: dict[str, Any]) -> None:
    for key in COUNTS:
        total[key] += row[key]


def _rates(row: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "conversion_rate": ratio(row["conversions"], row["enrolled"]),
        "delivery_rate": ratio(row["delivered"], row["sent"]),
        "open_rate": ratio(row["opened"], row["sent"]),
        "click_rate": ratio(row["clicked"], row["sent"]),
        "unsubscribe_rate": ratio(row["unsubscribed"], row["sent"]),
        "bounce_rate": ratio(row["bounced"], row["sent"]),
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
