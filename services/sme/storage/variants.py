"""Per-variant results of a sequence over a window, per step: messages sent, converted
messages (a sent message credited by at least one `conversion`), the conversion rate per
message with its 95% Wilson interval, and the probability each variant is best
(`core.variants`), overall and per arm.

The daily rollup has no variant dimension, so this reads `activities` directly, bounded by the
sorting key: the sequence's `command_emitted` rows of the window's days (the variant is in
their `details`) and its `conversion` rows of the same days that name a command. Its cost is
one pass over the window's sends and conversions of this one sequence (about what the rollup
recompute reads for them), not over the workspace or other sequences. A conversion counts for
a message sent in the window, up to the window's end."""

from __future__ import annotations

from typing import Any

from sme.core.variants import variant_results
from sme.storage.clickhouse import ClickHouseStore

SQL = """
WITH sends AS (
    SELECT step_id, arm, command_id, JSONExtractString(details, 'variant') AS variant
    FROM {db}.activities
    WHERE workspace_id = {w:String} AND config_id = {c:String} AND type = 'command_emitted'
      AND toDate(occurred_at) >= {since:Date} AND toDate(occurred_at) < {until:Date}
    LIMIT 1 BY activity_id
), converted AS (
    SELECT DISTINCT command_id
    FROM {db}.activities
    WHERE workspace_id = {w:String} AND config_id = {c:String} AND type = 'conversion'
      AND toDate(occurred_at) >= {since:Date} AND toDate(occurred_at) < {until:Date}
      AND command_id != ''
)
SELECT s.step_id, s.variant, s.arm, count() AS sent,
       countIf(s.command_id IN (SELECT command_id FROM converted)) AS conversions
FROM sends AS s
GROUP BY s.step_id, s.variant, s.arm
ORDER BY s.step_id, s.variant, s.arm
"""


async def variant_metrics(store: ClickHouseStore, params: dict[str, Any]) -> dict[str, Any]:
    """`{step_id: {"variants": {variant: figures}, "arms": {arm: {variant: figures}}}}`;
    `params` as for the rollup query (`w`, `c`, `since`, `until`)."""
    result = await store.query(SQL, params)
    counts: dict[str, dict[str, dict[str, tuple[int, int]]]] = {}
    for step_id, variant, arm, sent, conversions in result.result_rows:
        counts.setdefault(step_id, {}).setdefault(arm, {})[variant] = (int(sent), int(conversions))
    steps: dict[str, Any] = {}
    for step_id, by_arm in counts.items():
        totals: dict[str, tuple[int, int]] = {}
        for per_variant in by_arm.values():
            for variant, (sent, conv) in per_variant.items():
                old = totals.get(variant, (0, 0))
                totals[variant] = (old[0] + sent, old[1] + conv)
        steps[step_id] = {
            "variants": _figures(totals),
            "arms": {arm: _figures(per_variant) for arm, per_variant in sorted(by_arm.items())},
        }
    return steps


def _figures(counts: dict[str, tuple[int, int]]) -> dict[str, Any]:
    names = sorted(counts)
    results = variant_results([counts[name] for name in names])
    return {
        name: {
            "sent": r.sent,
            "conversions": r.conversions,
            "conversion_rate": r.conversion_rate,
            "conversion_rate_ci95": list(r.conversion_rate_ci95)
            if r.conversion_rate_ci95
            else None,
            "prob_best": r.prob_best,
        }
        for name, r in zip(names, results, strict=True)
    }
