"""Dashboard payload benchmark: p95 latency of everything the dashboard's data route does for
one sequence over 30 days (the rollup freshness check, the metrics, the recent decisions), and
of the overview route, on a store holding N activity rows (default 10 million) for the
workspace, generated straight into ClickHouse (embedded chdb) by SQL in chunks.

Writes `dashboard.p95_ms` (and the row count) into bench/results/latest.json.
Run: `.venv/bin/python bench/dashboard_bench.py --rows 10000000`."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from recording import record

from sme.core.roi import Economics
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.dashboard import overview, sequence_dashboard
from sme.storage.rollup import Rollup

GENERATE = """
INSERT INTO {db}.activities
    (activity_id, type, workspace_id, user_id, occurred_at, config_id, config_version, step_id,
     channel, arm, command_id, event_id, event_type, reason_code, value, cost, details)
SELECT
    generateUUIDv4(number),
    ['command_emitted', 'feedback', 'feedback', 'feedback', 'enrolled', 'conversion',
     'step_deferred', 'event_received'][1 + number % 8],
    'bench',
    concat('u', toString(intHash32(number) % 2000000)),
    toDateTime64({end:DateTime64(3, 'UTC')}, 3, 'UTC') - toIntervalSecond(number % (30 * 86400)),
    concat('cfg-', toString(number % 5)),
    1,
    ['welcome', 'nudge', 'offer'][1 + intHash32(number) % 3],
    ['email', 'push', 'sms', 'in_app'][1 + intHash32(number + 1) % 4],
    ['adaptive', 'adaptive', 'baseline', 'baseline', 'holdout'][1 + intHash32(number + 2) % 5],
    '', '',
    ['delivered', 'opened', 'clicked', 'unsubscribed'][1 + intHash32(number + 3) % 4],
    '',
    if(number % 8 = 5, 25.0, 0.0),
    if(number % 8 = 0, 0.001, 0.0),
    '{}'
FROM numbers({first:UInt64}, {rows:UInt64})
"""


CHUNK = 10_000_000
PRICES = Economics(valued=True, conversion_value=1.0, unsubscribe_cost=0.0)
"""Net value from recorded revenue, as a sequence whose goal carries a value."""


def _p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return round(ordered[max(0, int(0.95 * len(ordered) + 0.5) - 1)], 1)


async def run(rows: int, repeats: int, store_dir: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=store_dir) as tmp:
        store = await ClickHouseStore(f"chdb://{tmp}/store", "bench").open_async()
        end = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        for first in range(0, rows, CHUNK):  # the generator writes straight to ClickHouse
            await store.execute(
                GENERATE, {"end": end, "first": first, "rows": min(CHUNK, rows - first)}
            )
        generate_s = time.perf_counter() - started
        rollup = Rollup(store)
        started = time.perf_counter()
        await rollup.refresh()  # an empty rollup is built in one pass; the gateway keeps it warm
        rollup_s = time.perf_counter() - started
        start_day = (end - timedelta(days=30)).date()
        end_day = end.date() + timedelta(days=1)
        configs = [("bench", f"cfg-{n}") for n in range(5)]
        page, summary = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await rollup.refresh()  # what the route does first: a metadata check when idle
            await sequence_dashboard(store, "bench", "cfg-1", start_day, end_day, end, PRICES)
            page.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await rollup.refresh()
            await overview(store, configs, start_day, end_day)
            summary.append((time.perf_counter() - t0) * 1000)
        await store.aclose()
    return {
        "rows": rows,
        "generate_s": round(generate_s, 1),
        "rollup_build_s": round(rollup_s, 1),
        "p50_ms": round(statistics.median(page), 1),
        "p95_ms": _p95(page),
        "overview_p95_ms": _p95(summary),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--store-dir", help="where the temporary store goes (default: /tmp)")
    parser.add_argument(
        "--record-as",
        default="dashboard",
        help="key in latest.json (`dashboard` is the target figure; e.g. dashboard_100m)",
    )
    args = parser.parse_args()
    figures = asyncio.run(run(args.rows, args.repeats, args.store_dir))
    record(args.record_as, figures)


if __name__ == "__main__":
    main()
