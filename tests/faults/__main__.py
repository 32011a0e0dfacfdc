"""`python -m tests.faults run|soak`: the fault suite of issue 9 from the command line.

    python -m tests.faults run                      # every scenario, full size (make faults)
    python -m tests.faults run --only engine-kill --users 1000
    python -m tests.faults run --ci                 # the sizes tests/e2e/test_faults.py uses
    python -m tests.faults soak --minutes 5         # make soak (30 minutes by default)

Exits 1 when a must-be-0 column (lost, distinct-key duplicates, users over cap, store vs topic)
is not 0 or a scenario could not be measured, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from pathlib import Path

from tests.faults.report import ScenarioResult, details, table, write_json
from tests.faults.scenarios import CI, FULL, SCENARIOS, Sizes
from tests.faults.soak import soak
from tests.faults.suite import run_dir, run_scenarios, suite_broker
from tests.support.infra import ROOT

OUT = ROOT / ".data" / "faults"


def _say(line: str) -> None:
    print(line, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    suite = sub.add_parser("run", help="the fault scenarios (make faults)")
    suite.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), help="run only these (repeatable)"
    )
    suite.add_argument("--ci", action="store_true", help="the reduced sizes CI runs")
    suite.add_argument("--users", type=int, help="users of the kill scenario")
    suite.add_argument("--rate", type=float, help="signups per second")
    suite.add_argument("--kills", type=int, help="engine kills in the kill scenario (>= 1)")
    suite.add_argument("--first-starts", type=int, help="repetitions of the first start")
    suite.add_argument("--seed", type=int, help="seed of every random choice")
    suite.add_argument("--out", type=Path, default=OUT / "latest.json")
    long = sub.add_parser("soak", help="the long run (make soak)")
    long.add_argument("--minutes", type=float, default=30.0)
    long.add_argument("--rate", type=float, default=50.0, help="signups per second")
    long.add_argument("--every", type=float, default=30.0, help="seconds between report lines")
    long.add_argument("--out", type=Path, default=OUT / "soak.json")
    return parser


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = CI if args.ci else FULL
    changes = {
        name: value
        for name, value in (
            ("users", args.users),
            ("rate", args.rate),
            ("kills", args.kills),
            ("first_starts", args.first_starts),
            ("seed", args.seed),
        )
        if value is not None
    }
    return dataclasses.replace(sizes, **changes)


def _finish(results: list[ScenarioResult], out: Path, meta: dict[str, object]) -> int:
    write_json(out, results, meta)
    _say("\n" + table(results))
    _say(f"\nresults: {out}")
    failed = [r for r in results if r.failures]
    for result in failed:
        _say(f"FAIL {result.name}: {'; '.join(result.failures)}")
    return 1 if failed else 0


async def _run(args: argparse.Namespace) -> int:
    sizes = _sizes(args)
    names = args.only or list(SCENARIOS)
    started = time.monotonic()
    results = await run_scenarios(run_dir(OUT, "run"), names, sizes, _say)
    meta = {
        "kind": "faults",
        "sizes": dataclasses.asdict(sizes),
        "seconds": round(time.monotonic() - started, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return _finish(results, args.out, meta)


async def _soak(args: argparse.Namespace) -> int:
    home = run_dir(OUT, "soak")
    started = time.monotonic()
    async with suite_broker(home / "broker") as broker:
        result = await soak(broker, home / "run", args.minutes, args.rate, args.every, _say)
    if result.failures or result.notes:
        _say(details(result))
    meta = {
        "kind": "soak",
        "minutes": args.minutes,
        "rate": args.rate,
        "seconds": round(time.monotonic() - started, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return _finish([result], args.out, meta)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The suite's own clients see the broker go away on purpose; their retries are no news.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.command == "run" and args.kills is not None and args.kills < 1:
        _say("--kills must be at least 1")
        return 2
    if args.command == "soak" and args.minutes <= 0:
        _say("--minutes must be positive")
        return 2
    return asyncio.run(_run(args) if args.command == "run" else _soak(args))


if __name__ == "__main__":
    sys.exit(main())
