"""Lift benchmark: what the adaptive policy earns over the static baseline in the simulator,
over many seeds, against the oracle's ceiling. Writes the `lift` section of
bench/results/latest.json (`lift.default`, `lift.null`, `lift.costly_channel`, `lift.drift`)
and regenerates the figure blocks of docs/SIMULATOR.md and BENCHMARKS.md from it.

One seed is one draw: a single run's lift says little (issue 13: +6% to +23% over seeds of the
same world). So every figure here is over seeds 1..N, with each seed's 95% CI, and the oracle
(the simulator's policy on the world's true rates, `sme simulate --oracle`) runs on the same
users to say how much lift the world allows at all.

Run: `python bench/lift_bench.py` (the issue's size: 14 days, 20,000 users, seeds 1-10; about
25 s of CPU per simulated run, two worker processes), or smaller with `--users/--seeds`.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from recording import RESULTS, record
from render_lift_docs import render_all

from sme.core.lift import relative_lift
from sme.simulator.run import objective_of, simulate
from sme.simulator.world import load_scenario

WORLDS = ("default", "null", "costly_channel", "drift")
DRIFT_DAYS = 21  # the drift world changes on day 10 and needs days after it to follow


@dataclass(frozen=True, slots=True)
class Job:
    world: str
    seed: int
    days: float
    users: int
    oracle: bool
    oracle_objective: str | None = None
    context_oracle: bool = False


def _run(job: Job) -> tuple[Job, dict[str, Any], float]:
    started = time.process_time()
    result = simulate(
        load_scenario(job.world),  # as shipped: each carries the campaign's own settings
        days=job.days,
        users=job.users,
        seed=job.seed,
        oracle=job.oracle,
        oracle_objective=job.oracle_objective,  # type: ignore[arg-type]
        context_oracle=job.context_oracle,
    )
    return job, result.summary(), time.process_time() - started


def _jobs(args: argparse.Namespace) -> list[Job]:
    seeds = range(1, args.seeds + 1)
    extra = range(1, args.extra_seeds + 1)
    jobs: list[Job] = []
    for world in args.worlds:
        if world == "default":
            jobs += [
                Job(world, s, args.days, args.users, oracle=True, context_oracle=True)
                for s in seeds
            ]
        elif world == "null":
            jobs += [Job(world, s, args.days, args.users, oracle=False) for s in seeds]
        elif world == "costly_channel":
            jobs += [Job(world, s, args.days, args.users, True, "net_value") for s in extra]
        elif world == "drift":
            jobs += [
                Job(world, s, args.drift_days, args.users, oracle=True, context_oracle=True)
                for s in extra
            ]
    # Longest first, so two workers finish together.
    return sorted(jobs, key=lambda j: -(j.days * j.users * (1 + j.oracle + j.context_oracle)))


# --- aggregation ----------------------------------------------------------------------------


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def _per_seed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in runs:
        lift = s["lift"]["vs_baseline"]
        row: dict[str, Any] = {
            "seed": s["seed"],
            "lift": _r(lift["estimate"]),
            "ci95_low": _r(lift["ci95_low"]),
            "ci95_high": _r(lift["ci95_high"]),
        }
        oracle = s["lift"].get("oracle_vs_baseline")
        if "oracle_vs_baseline" in s["lift"]:
            row["oracle_lift"] = _r(oracle["estimate"]) if oracle else None
            row["lift_share_of_oracle"] = _r(s.get("lift_share_of_oracle"))
        if "context_oracle_vs_baseline" in s["lift"]:
            context = s["lift"]["context_oracle_vs_baseline"]
            row["context_oracle_lift"] = _r(context["estimate"]) if context else None
        rows.append(row)
    return rows


_POOLED = ("users", "conversions", "messages_total", "unsubscribes", "spend", "net_value")


def _pooled_arms(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm, summed over seeds: rates from the sums (each seed weighs by its users)."""
    names = [
        a
        for a in ("adaptive", "baseline", "holdout", "oracle", "context_oracle")
        if a in runs[0]["arms"]
    ]
    out: dict[str, dict[str, Any]] = {}
    for arm in names:
        sums = {k: sum(r["arms"][arm][k] for r in runs) for k in _POOLED}
        messages: dict[str, int] = {}
        for r in runs:
            for ch, n in r["arms"][arm]["messages"].items():
                messages[ch] = messages.get(ch, 0) + n
        users, conv = sums["users"], sums["conversions"]
        out[arm] = {
            "users": users,
            "conversions": conv,
            "conversion_rate": _r(conv / users if users else 0.0, 5),
            "messages": messages,
            "messages_total": sums["messages_total"],
            "spend": _r(sums["spend"], 3),
            "cost_per_conversion": _r(sums["spend"] / conv if conv else None),
            "unsubscribes": sums["unsubscribes"],
            "unsubscribe_rate": _r(sums["unsubscribes"] / users if users else 0.0, 5),
            "net_value": _r(sums["net_value"], 2),
        }
    return out


def _mean(xs: Iterable[float]) -> float:
    values = list(xs)
    return sum(values) / len(values)


def _lift_figures(runs: list[dict[str, Any]], days: float, users: int) -> dict[str, Any]:
    rows = _per_seed(runs)
    out: dict[str, Any] = {
        "days": days,
        "users": users,
        "seeds": [r["seed"] for r in rows],
        "per_seed": rows,
        "mean_lift": _r(_mean(r["lift"] for r in rows)),
        "seeds_ci_low_above_0": sum(1 for r in rows if r["ci95_low"] > 0),
        "seeds_at_or_above_20pct": sum(1 for r in rows if r["lift"] >= 0.2),
        "seeds_ci_contains_0": sum(1 for r in rows if r["ci95_low"] <= 0 <= r["ci95_high"]),
        "arms": _pooled_arms(runs),
    }
    arms = out["arms"]
    pooled = relative_lift(
        arms["adaptive"]["conversions"],
        arms["adaptive"]["users"],
        arms["baseline"]["conversions"],
        arms["baseline"]["users"],
    )
    out["pooled_lift"] = {
        "estimate": _r(pooled.estimate),
        "ci95_low": _r(pooled.ci95_low),
        "ci95_high": _r(pooled.ci95_high),
    }
    if "oracle_lift" in rows[0]:
        oracle = [r["oracle_lift"] for r in rows if r["oracle_lift"] is not None]
        mean_oracle = _mean(oracle) if oracle else None
        out["mean_oracle_lift"] = _r(mean_oracle)
        # Share of the means, not the mean of per-seed shares: a seed whose oracle lift is
        # near 0 would make its share explode.
        out["lift_share_of_oracle"] = (
            _r(out["mean_lift"] / mean_oracle) if mean_oracle and mean_oracle > 0 else None
        )
    if "context_oracle_lift" in rows[0]:
        context = [r["context_oracle_lift"] for r in rows if r["context_oracle_lift"] is not None]
        mean_context = _mean(context) if context else None
        out["mean_context_oracle_lift"] = _r(mean_context)
        out["lift_share_of_context_oracle"] = (
            _r(out["mean_lift"] / mean_context) if mean_context and mean_context > 0 else None
        )
    return out


def _costly(runs: list[dict[str, Any]], days: float, users: int) -> dict[str, Any]:
    out = _lift_figures(runs, days, users)
    out["policy_objective"] = runs[0]["objective"]
    out["oracle_objective"] = runs[0]["oracle_objective"]
    out["economics"] = runs[0]["economics"]
    a = [r["arms"]["adaptive"] for r in runs]
    b = [r["arms"]["baseline"] for r in runs]
    out["seeds_net_value_above_baseline"] = sum(
        1 for x, y in zip(a, b, strict=True) if x["net_value"] > y["net_value"]
    )
    out["seeds_cost_per_conversion_not_worse"] = sum(
        1
        for x, y in zip(a, b, strict=True)
        if x["cost_per_conversion"] is not None
        and y["cost_per_conversion"] is not None
        and x["cost_per_conversion"] <= y["cost_per_conversion"]
    )
    out["seeds_unsubscribe_rate_not_worse"] = sum(
        1 for x, y in zip(a, b, strict=True) if x["unsubscribe_rate"] <= y["unsubscribe_rate"]
    )
    return out


def _drift(
    runs: list[dict[str, Any]], days: float, users: int, change_day: float
) -> dict[str, Any]:
    out = _lift_figures(runs, days, users)
    arms = [a for a in ("adaptive", "baseline", "oracle", "context_oracle") if a in runs[0]["arms"]]
    n_days = len(runs[0]["arms"]["adaptive"]["daily_conversions"])
    daily: dict[str, list[float]] = {}
    for arm in arms:
        users_sum = sum(r["arms"][arm]["users"] for r in runs)
        daily[arm] = [
            round(sum(r["arms"][arm]["daily_conversions"][d] for r in runs) / users_sum, 6)
            for d in range(n_days)
        ]
    out["change_day"] = change_day
    out["daily_conversion_rate"] = daily
    first = math.ceil(change_day)
    ratio = [
        _r(daily["adaptive"][d] / daily["oracle"][d]) if daily["oracle"][d] else None
        for d in range(n_days)
    ]
    out["adaptive_over_oracle_by_day"] = ratio
    # The check: from 3 days after the change on, the adaptive arm's daily
    # conversion rate is within 10% of the oracle's (pooled over seeds and those days).
    window = range(first + 3, n_days)
    a = sum(daily["adaptive"][d] for d in window)
    o = sum(daily["oracle"][d] for d in window)
    out["adaptive_over_oracle_from_day_change_plus_3"] = _r(a / o) if o else None
    before = range(max(0, first - 3), first)
    a0 = sum(daily["adaptive"][d] for d in before)
    o0 = sum(daily["oracle"][d] for d in before)
    out["adaptive_over_oracle_3_days_before_change"] = _r(a0 / o0) if o0 else None
    if "context_oracle" in daily:  # the same check against the ceiling the policy can learn
        c = sum(daily["context_oracle"][d] for d in window)
        c0 = sum(daily["context_oracle"][d] for d in before)
        out["adaptive_over_context_oracle_from_day_change_plus_3"] = _r(a / c) if c else None
        out["adaptive_over_context_oracle_3_days_before_change"] = _r(a0 / c0) if c0 else None
    return out


# --- output ---------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _table(lift: dict[str, Any]) -> str:
    lines = [f"{'world':<16}{'seeds':>6}{'mean lift':>11}{'CI>0':>6}{'oracle':>9}{'share':>8}"]
    for world in WORLDS:
        f = lift.get(world)
        if not f:
            continue
        share = f.get("lift_share_of_oracle")
        lines.append(
            f"{world:<16}{len(f['seeds']):>6}{_pct(f['mean_lift']):>11}"
            f"{f['seeds_ci_low_above_0']:>6}{_pct(f.get('mean_oracle_lift')):>9}"
            f"{'n/a' if share is None else f'{share * 100:.0f}%':>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 1..N (default, null)")
    parser.add_argument(
        "--extra-seeds", type=int, default=5, help="seeds 1..N (costly_channel, drift)"
    )
    parser.add_argument("--drift-days", type=float, default=DRIFT_DAYS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worlds", nargs="+", choices=WORLDS, default=list(WORLDS))
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures; leave latest.json alone"
    )
    args = parser.parse_args()
    command = (
        f"python bench/lift_bench.py --days {args.days:g} --users {args.users} "
        f"--seeds {args.seeds} --extra-seeds {args.extra_seeds}"
    )
    lift: dict[str, Any] = {}
    with multiprocessing.Pool(args.workers) as pool:
        # One world at a time, each recorded when done: an interrupted run keeps what it has.
        for world in [w for w in WORLDS if w in args.worlds]:
            figures = _measure(pool, world, args)
            figures["command"] = command
            lift[world] = figures
            if not args.no_record:
                previous = json.loads(RESULTS.read_text()).get("lift", {})
                record("lift", {**previous, world: figures})
                render_all()
    print(_table(lift))


def _measure(pool: Any, world: str, args: argparse.Namespace) -> dict[str, Any]:
    jobs = _jobs(argparse.Namespace(**{**vars(args), "worlds": [world]}))
    started, cpu = time.perf_counter(), 0.0
    runs: list[dict[str, Any]] = []
    for job, summary, seconds in pool.imap_unordered(_run, jobs):
        cpu += seconds
        runs.append(summary)
        lift = summary["lift"]["vs_baseline"]["estimate"]
        print(f"{world} seed {job.seed}: lift {_pct(lift)} ({seconds:.0f} s CPU)", flush=True)
    runs.sort(key=lambda s: s["seed"])
    days, users = runs[0]["days"], runs[0]["users"]
    if world == "costly_channel":
        figures = _costly(runs, days, users)
    elif world == "drift":
        figures = _drift(runs, days, users, load_scenario("drift").changes[0].day)
    else:
        figures = _lift_figures(runs, days, users)
        figures["policy_objective"] = objective_of(load_scenario(world))
    figures["run"] = {
        "machine": f"{platform.machine()} CPython {platform.python_version()}",
        "cpu_s": round(cpu),
        "wall_s": round(time.perf_counter() - started),
        "workers": args.workers,
    }
    return figures


if __name__ == "__main__":
    main()
