"""`sme simulate`: run the real core against a synthetic population and report the lift.

Wiring into the `sme` command: `add_parser(subparsers)` adds the subcommand, `run(args)`
executes it and returns the exit code."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sme.simulator.oracle import OBJECTIVES
from sme.simulator.report import format_text
from sme.simulator.run import simulate
from sme.simulator.world import Scenario, load_scenario, load_scenario_file, scenario_names

DESCRIPTION = (
    "Run the real decision core on a virtual clock against a synthetic population with hidden "
    "per-user channel propensities, active hours and fatigue; print per-arm results and the "
    "relative lift of the adaptive arm vs baseline and vs holdout with 95% CIs. "
    "See docs/SIMULATOR.md."
)


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--days", type=float, default=14.0, help="virtual days (default 14)")
    parser.add_argument("--users", type=int, default=20_000, help="users (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    world = parser.add_mutually_exclusive_group()
    world.add_argument(
        "--scenario",
        default=None,
        metavar="NAME",
        help=f"shipped scenario: {', '.join(scenario_names())} (default: default)",
    )
    world.add_argument(
        "--scenario-file", type=Path, default=None, metavar="PATH", help="scenario JSON file"
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="also run the oracle (true rates) on the adaptive arm's users: its lift and "
        "lift_share_of_oracle (about doubles the run time)",
    )
    parser.add_argument(
        "--context-oracle",
        action="store_true",
        help="also run an oracle that knows only the true mean rates of the context groups "
        "the policy sees (not each user's): the learnable ceiling, lift_share_of_context_oracle",
    )
    parser.add_argument(
        "--oracle-objective",
        choices=OBJECTIVES,
        default=None,
        help="what the oracle maximises (default: the sequence's adaptive.objective, else "
        "conversions)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the `simulate` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "simulate", help="simulate adaptive vs baseline vs holdout", description=DESCRIPTION
    )
    return configure(parser)


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario_file is not None:
        return load_scenario_file(args.scenario_file)
    return load_scenario(args.scenario or "default")


def run(args: argparse.Namespace) -> int:
    """Execute `sme simulate` for parsed arguments; returns the process exit code."""
    try:
        scenario = _scenario(args)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"sme simulate: invalid scenario: {exc}", file=sys.stderr)
        return 2
    if args.users < 1 or not 0 < args.days <= 365:
        print("sme simulate: --users must be >= 1 and --days in (0, 365]", file=sys.stderr)
        return 2
    started, cpu_started = time.perf_counter(), time.process_time()
    result = simulate(
        scenario,
        days=args.days,
        users=args.users,
        seed=args.seed,
        oracle=args.oracle or args.oracle_objective is not None,
        oracle_objective=args.oracle_objective,
        context_oracle=args.context_oracle,
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_text(summary))
        print(f"elapsed {elapsed:.1f} s wall, {cpu:.1f} s CPU ({result.core_calls} core decisions)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure(argparse.ArgumentParser(prog="sme simulate", description=DESCRIPTION))
    return run(parser.parse_args(argv))
