"""The soak: one engine and the gateway under a steady workload for a long while (30 minutes
by default), with a line every 30 s: engine RSS (VmRSS), lag (the engine's gauge and the
group's committed offsets), timer lateness (the engine's histogram over the interval, and the
lateness seen on the commands themselves). It ends with the same verdict as every scenario.

What it is for: growth that no short run shows (memory, lag, timers drifting late)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.faults import prom
from tests.faults.broker import SuiteBroker
from tests.faults.observer import Observer
from tests.faults.report import ScenarioResult
from tests.faults.runner import Context, Plan, run
from tests.faults.workload import STEPS


@dataclass
class _Window:
    """Where the previous line left off."""

    deliveries: int = 0
    lateness: prom.Histogram | None = None
    spawns: int = 0


def observed_lateness(observer: Observer, start: int) -> list[float]:
    """Seconds each step beyond the first was decided after its wait had elapsed, for the
    commands first read since index `start`."""
    waits = {step: (wait, STEPS[i - 1][0]) for i, (step, wait, _) in enumerate(STEPS) if i}
    late: list[float] = []
    for delivery in observer.deliveries[start:]:
        if delivery.step_id not in waits:
            continue
        if observer.first_by_step.get((delivery.user_id, delivery.step_id)) is not delivery:
            continue  # a duplicate: the first one was measured
        wait, previous = waits[delivery.step_id]
        before = observer.first_by_step.get((delivery.user_id, previous))
        if before is not None:
            gap = (delivery.decided_at - before.decided_at).total_seconds()
            late.append(gap - wait)
    return late


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def _cell(value: float | int | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


async def _line(ctx: Context, window: _Window) -> dict[str, Any]:
    engine = ctx.deployment.engine("a")
    text = await prom.scrape(ctx.deployment.metrics_url("a"))
    hist = prom.histogram(text)
    restarted = engine.spawns != window.spawns
    interval = hist.minus(None if restarted else window.lateness) if hist else None
    late = observed_lateness(ctx.observer, window.deliveries)
    window.deliveries, window.lateness, window.spawns = (
        len(ctx.observer.deliveries),
        hist,
        engine.spawns,
    )
    gateway = ctx.deployment.gateway
    return {
        "elapsed_s": round(time.time() - ctx.started, 1),
        "engine_rss_mib": _mib(engine.rss_kib()),
        "gateway_rss_mib": _mib(gateway.rss_kib() if gateway else None),
        "lag_metric": prom.gauge_sum(text),
        "uncommitted": ctx.probe.latest_lag(),  # end offsets minus the group's commits
        "lateness_metric_p50_s": interval.quantile(0.5) if interval else None,
        "lateness_metric_p99_s": interval.quantile(0.99) if interval else None,
        "lateness_seen_p50_s": statistics.median(late) if late else None,
        "lateness_seen_p99_s": _quantile(late, 0.99),
        "commands": len(ctx.observer.deliveries),
        "users_published": len(ctx.publisher.log.acked_users),
        "engine_alive": engine.alive,
    }


def format_line(line: dict[str, Any]) -> str:
    return (
        f"  t={line['elapsed_s']:>7.0f}s  engine RSS {_cell(line['engine_rss_mib'], ' MiB', 1)}"
        f"  gateway RSS {_cell(line['gateway_rss_mib'], ' MiB', 1)}"
        f"  lag {_cell(line['lag_metric'], '', 0)}"
        f" (uncommitted {_cell(line['uncommitted'], '', 0)})"
        f"  lateness p50/p99 {_cell(line['lateness_metric_p50_s'], 's')}"
        f"/{_cell(line['lateness_metric_p99_s'], 's')}"
        f" (seen {_cell(line['lateness_seen_p50_s'], 's')}"
        f"/{_cell(line['lateness_seen_p99_s'], 's')})"
        f"  commands {line['commands']}  users {line['users_published']}"
        + ("" if line["engine_alive"] else "  ENGINE DOWN")
    )


def _reporter(every_s: float, say: Callable[[str], None]) -> Callable[[Context], Any]:
    async def report(ctx: Context) -> None:
        window = _Window()
        series: list[dict[str, Any]] = []
        ctx.finishers.append(lambda result: result.series.extend(series))
        next_at = time.monotonic() + every_s
        while not ctx.publishing_done:
            await asyncio.sleep(max(0.0, min(1.0, next_at - time.monotonic())))
            if time.monotonic() >= next_at:
                series.append(await _line(ctx, window))
                say(format_line(series[-1]))
                next_at += every_s
        series.append(await _line(ctx, window))
        say(format_line(series[-1]))

    return report


async def soak(
    broker: SuiteBroker,
    home: Path,
    minutes: float,
    rate: float,
    every_s: float = 30.0,
    say: Callable[[str], None] = print,
) -> ScenarioResult:
    users = max(1, int(minutes * 60 * rate))
    plan = Plan("soak", users, rate, seed=30)
    say(f"soak: {users} users at {rate:g}/s for {minutes:g} min, a line every {every_s:g}s")
    return await run(broker, home, plan, _reporter(every_s, say))
