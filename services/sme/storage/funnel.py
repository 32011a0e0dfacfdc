"""The per-step funnel of a sequence over a window: for each step of its configuration, what
happened to the enrollments at that step. Every figure counts the sequence's rows of an
enrollment (`measures.SEQUENCE_ROWS`) whose `step_id` is the step, from the window's days:

- `entered`: distinct users with a decision at the step: `enrolled` (at the first step), or
  `command_emitted`, `message_suppressed`, `step_skipped`, `step_deferred`, `step_branched`,
  `enrollment_exited` there. Advancing to a step writes no row, so a user still waiting for
  the step's delay counts once the step is due (its first decision).
- `sent`, `delivered`, `opened`, `clicked`: `measures.SENT` / `DELIVERED` / `OPENED` /
  `CLICKED` at the step (feedback carries the step of the message it answers).
- `suppressed` and `suppressed_by_reason`: `measures.SUPPRESSED` (a suppressed message or a
  skipped step) at the step, per reason code.
- `converted`: `measures.CONVERSIONS` credited to a message of the step (a conversion names
  the step of the message it is attributed to: the command it names, else the last touch in
  the attribution window; a conversion credited to no message has no step and is left out).
- `exited` and `exited_by_reason`: `enrollment_exited` rows at the step (the step the
  enrollment was at when it ended: completed, goal reached, exit rule, branched to exit, ...),
  per reason code.

The rollup has no step dimension, so this is one query over `activities` bounded by the
sorting key (this workspace and sequence, the window's days), grouped by step. Steps come in
the configuration's order; steps no longer in it follow, by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sme.storage.clickhouse import ClickHouseStore
from sme.storage.measures import (
    CLICKED,
    CONVERSIONS,
    DELIVERED,
    EXITED,
    OPENED,
    SENT,
    SEQUENCE_ROWS,
    STEP_DECISIONS,
    SUPPRESSED,
)

COUNTS = ("entered", "sent", "delivered", "opened", "clicked", "converted", "suppressed", "exited")
SQL = f"""
SELECT step_id,
    uniqExactIf(user_id, type IN {STEP_DECISIONS!r}) AS entered,
    {SENT.over_activities()} AS sent,
    {DELIVERED.over_activities()} AS delivered,
    {OPENED.over_activities()} AS opened,
    {CLICKED.over_activities()} AS clicked,
    {CONVERSIONS.over_activities()} AS converted,
    {SUPPRESSED.over_activities()} AS suppressed,
    {EXITED.over_activities()} AS exited,
    {SUPPRESSED.per("reason_code")} AS suppressed_by_reason,
    {EXITED.per("reason_code")} AS exited_by_reason
FROM {{db}}.activities FINAL
WHERE workspace_id = {{w:String}} AND config_id = {{c:String}}
  AND toDate(occurred_at) >= {{since:Date}} AND toDate(occurred_at) < {{until:Date}}
  AND step_id != '' AND ({SEQUENCE_ROWS})
GROUP BY step_id
"""  # noqa: S608 - composed of module constants


async def step_funnel(
    store: ClickHouseStore, params: dict[str, Any], step_order: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One entry per step with activity in the window (and per configured step, at zero):
    `{"step_id", "in_config", **COUNTS, "suppressed_by_reason", "exited_by_reason"}`;
    `params` as for the rollup query (`w`, `c`, `since`, `until`)."""
    result = await store.query(SQL, params)
    rows: dict[str, dict[str, Any]] = {}
    for step_id, *values in result.result_rows:
        counts = values[: len(COUNTS)]
        suppressed_by, exited_by = values[len(COUNTS) :]
        rows[step_id] = {
            **{key: int(v) for key, v in zip(COUNTS, counts, strict=True)},
            "suppressed_by_reason": _reasons(suppressed_by),
            "exited_by_reason": _reasons(exited_by),
        }
    known = list(dict.fromkeys(step_order))
    others = sorted(set(rows) - set(known))
    return [
        {"step_id": step_id, "in_config": step_id in known, **(rows.get(step_id) or _empty())}
        for step_id in [*known, *others]
    ]


def _reasons(counts: dict[str, Any]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for reason, count in counts.items():
        name = reason or "unspecified"
        merged[name] = merged.get(name, 0) + int(count)
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTS, 0), "suppressed_by_reason": {}, "exited_by_reason": {}}
