"""Performance metrics of one sequence from the daily rollup of `activities`: per arm, per
channel and per day (or week), the counts and rates the dashboard and reports show,
suppressions by reason, the workspace's event error rate, the lift from the same function the
simulator uses, incremental conversions, revenue and ROI over the holdout, and each arm's net
value at the sequence's economics. Each activity id counts once (the rollup reads FINAL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Literal

from sme.core.lift import Lift, lift_report, wilson_interval
from sme.core.roi import ArmTotals, Economics, incremental_report, net_value
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.funnel import step_funnel
from sme.storage.measures import (
    BY_REASON,
    ERROR_RATE,
    EVENT_MEASURES,
    EVENTS,
    RATES,
    SEQUENCE_MEASURES,
    ratio,
    rollup_list,
)
from sme.storage.variants import variant_metrics

COUNTS = tuple(m.name for m in SEQUENCE_MEASURES)
MONEY = frozenset(m.name for m in SEQUENCE_MEASURES if m.money)
NO_CHANNEL = "none"  # enrollments, conversions without a credited message, ...
# One pass over the rollup: per (period, arm) for the trend, per (period, channel) for the
# channel trend, per (arm, channel) for the channel mix. grouping() flags which set a row is
# of (a bit is 1 where the column is aggregated away).
SQL = f"""
SELECT {{bucket}} AS period, arm, channel, grouping(period, arm, channel) AS grouping_set,
    {rollup_list(SEQUENCE_MEASURES)},
    sumMap({BY_REASON})
FROM {{{{db}}}}.daily_rollup FINAL
WHERE workspace_id = {{{{w:String}}}} AND config_id = {{{{c:String}}}}
  AND day >= {{{{since:Date}}}} AND day < {{{{until:Date}}}}
GROUP BY GROUPING SETS ((period, arm), (period, channel), (arm, channel))
ORDER BY grouping_set, period, arm, channel
"""  # noqa: S608 - composed of module constants
BY_PERIOD_ARM, BY_PERIOD_CHANNEL, BY_ARM_CHANNEL = 1, 2, 4
EVENTS_SQL = f"""
SELECT {{bucket}} AS period, {rollup_list(EVENT_MEASURES)}
FROM {{{{db}}}}.daily_events FINAL
WHERE workspace_id = {{{{w:String}}}} AND day >= {{{{since:Date}}}} AND day < {{{{until:Date}}}}
GROUP BY period ORDER BY period
"""  # noqa: S608 - composed of module constants
EVENT_COUNTS = tuple(m.name for m in EVENT_MEASURES)
BUCKETS = {"day": "day", "week": "toMonday(day)"}


async def sequence_metrics(
    store: ClickHouseStore,
    workspace_id: str,
    config_id: str,
    start: date,
    end: date,
    granularity: Literal["day", "week"],
    economics: Economics,
    step_order: Sequence[str] = (),
) -> dict[str, Any]:
    """`start` inclusive, `end` exclusive, UTC dates; read from the daily rollup (refresh
    it first for up-to-the-second figures). `economics` prices each arm's net value.
    `steps` is the per-step funnel (`storage.funnel`, read from `activities`), in
    `step_order` (the configuration's step ids), steps no longer configured last."""
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
        arm: {
            **totals,
            **_rates(totals),
            "conversion_rate_ci95": _rate_interval(totals),
            **net_value(totals, economics),
        }
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
        "variants": await variant_metrics(store, params),
        "steps": await step_funnel(store, params, step_order),
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
    totals = dict.fromkeys(EVENT_COUNTS, 0)
    for period, *values in result.result_rows:
        row = {key: int(value) for key, value in zip(EVENT_COUNTS, values, strict=True)}
        for key, value in row.items():
            totals[key] += value
        series.append({"period": period.isoformat(), **row, "error_rate": _error_rate(row)})
    return {"scope": "workspace", **totals, "error_rate": _error_rate(totals), "series": series}


def _error_rate(row: dict[str, int]) -> float | None:
    """`measures.ERROR_RATE`: dead-lettered over every event (`EVENTS` = the three counts)."""
    numerator, denominator = ERROR_RATE
    counts = {**row, EVENTS.name: sum(row[key] for key in EVENT_COUNTS)}
    return ratio(counts[numerator], counts[denominator])


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
    return {name: ratio(row[num], row[den]) for name, (num, den) in RATES.items()}


def default_window(today: date) -> tuple[date, date]:
    return today - timedelta(days=30), today + timedelta(days=1)


REPORT_SQL = f"""
SELECT day, arm, channel,
    {rollup_list(SEQUENCE_MEASURES, named=True)}
FROM {{db}}.daily_rollup FINAL
WHERE workspace_id = {{w:String}} AND config_id = {{c:String}}
  AND day >= {{since:Date}} AND day < {{until:Date}}
GROUP BY day, arm, channel ORDER BY day, arm, channel
"""  # noqa: S608 - composed of module constants
"""Daily rows per arm and channel, from the rollup like every other figure (refresh first)."""
FORMATS = {
    "csv": ("CSVWithNames", "text/csv"),
    "parquet": ("Parquet", "application/vnd.apache.parquet"),
}


def report_params(workspace_id: str, config_id: str, start: date, end: date) -> dict[str, Any]:
    return {"w": workspace_id, "c": config_id, "since": start, "until": end}


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
