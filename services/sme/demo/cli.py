"""`sme demo`: its arguments and its entry (`make demo` runs it). Wiring into the `sme`
command: `add_parser(subparsers)` adds the subcommand, `run(settings, args)` runs it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sme.demo.run import DemoOptions, run_demo
from sme.gateway_client import gateway_url
from sme.settings import Settings

DESCRIPTION = (
    "Show the engine working: create a sample sequence through the HTTP API (reused by the "
    "next run), publish signups of a simulated population (the simulator's `demo` world) to "
    "the events topic in real time, and answer the engine's commands like that world's users "
    "would (delivered, opened, clicked, converted, with the command id) from a demo sender in "
    "its own consumer group. Prints live counters; stops after --seconds or on Ctrl-C and "
    "says what it left behind and how to remove it. Needs `make run` going."
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run a live demo against a running engine and gateway", description=DESCRIPTION
    )
    parser.add_argument(
        "--seconds", type=float, default=120.0, help="how long to run (default 120)"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="signups per second (default 5)")
    parser.add_argument(
        "--scale",
        type=float,
        default=3600.0,
        help="virtual seconds of the world per real second: the world's delays (open, "
        "click, conversion) are divided by it (default 3600, a virtual hour per second)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--gateway", help="gateway URL (default: from SME_HTTP_HOST/PORT)")
    parser.add_argument("--key", help="API key (default: SME_ADMIN_API_KEY; none with auth off)")
    return parser


def run(settings: Settings, args: argparse.Namespace) -> int:
    key = args.key or (
        settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    )
    options = DemoOptions(
        seconds=args.seconds,
        rate=args.rate,
        scale=args.scale,
        gateway=gateway_url(settings, args.gateway),
        key=key or None,
        seed=args.seed,
    )
    return asyncio.run(run_demo(settings, options, sys.stdout))
