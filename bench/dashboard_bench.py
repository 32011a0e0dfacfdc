"""Dashboard payload benchmark: p95 latency of every query the dashboard makes for one
sequence over 30 days, on a store holding N activity rows (default 10 million) for the
workspace, generated straight into ClickHouse (embedded chdb) by SQL.

Writes `dashboard.p95_ms` (and the row count) into bench/results/latest.json.
Run: `.venv/bin/python bench/dashboard_bench.py --rows 10000000`."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sme.storage.clickhouse import ClickHouseStore
from sme.storage.metrics import sequence_metrics
from sme.storage.queries import ActivityFilter, list_activities
from sme.storage.rollup import Rollup

RESULTS = Path(__file__).parent / "results" / "latest.json"
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
FROM numbers({rows:UInt64})
"""


async def run(rows: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await ClickHouseStore(f"chdb://{tmp}/store", "bench").open_async()
        end = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        writer = store._writer  # the generator writes straight to ClickHouse
        if writer is None:
            raise RuntimeError("store not open")
        await asyncio.get_running_loop().run_in_executor(
            store._write_thread,
            lambda: writer.command(
                GENERATE.replace("{db}", "bench"), parameters={"end": end, "rows": rows}
            ),
        )
        generate_s = time.perf_counter() - started
        started = time.perf_counter()
        days_rolled_up = await Rollup(store).refresh()  # what the gateway keeps warm
        rollup_s = time.perf_counter() - started
        start_day = (end - timedelta(days=30)).date()
        end_day = end.date() + timedelta(days=1)
        timings = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await sequence_metrics(store, "bench", "cfg-1", start_day, end_day, "day")
            await list_activities(store, ActivityFilter(config_id="cfg-1"), 50, None)
            timings.append((time.perf_counter() - t0) * 1000)
        await store.aclose()
    timings.sort()
    return {
        "rows": rows,
        "generate_s": round(generate_s, 1),
        "rollup_build_s": round(rollup_s, 1),
        "rollup_days": days_rolled_up,
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[max(0, int(0.95 * len(timings)) - 1)], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    figures = asyncio.run(run(args.rows, args.repeats))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["dashboard"] = figures
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
