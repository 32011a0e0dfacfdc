"""Core benchmark: decisions per second of the pure core on one core, and the serialized
state size per enrolled user. Writes `core.decisions_per_s` and `core.state_bytes_per_user`
into bench/results/latest.json (one object that other benchmarks extend).

A decision is one call of the core that fires a due step for a user: a trigger event that
enrolls and sends step 1, or a timer that sends a later step through guardrails and the
Thompson policy. Run: `make bench` (or `python bench/core_bench.py --users 20000`)."""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import orjson
from recording import record

from sme.contracts.events import Event
from sme.contracts.sequences import SequenceConfig
from sme.core.sequence import Context, on_event, on_timer
from sme.core.timeutil import from_ms
from sme.core.user_state import UserState
from sme.gc_tuning import tune_gc

CONFIG = SequenceConfig.model_validate(
    {
        "id": "bench",
        "workspace_id": "acme",
        "name": "Bench",
        "entry": {"event_types": ["signed_up"]},
        "steps": [
            {
                "id": "s1",
                "template": "welcome",
                "variants": ["a", "b"],
                "channels": ["email", "push", "sms"],
            },
            {
                "id": "s2",
                "wait": "PT6H",
                "template": "nudge",
                "channels": ["email", "push"],
                "condition": {"none_of_events": ["clicked"]},
            },
            {
                "id": "s3",
                "wait": "P1D",
                "template": "offer",
                "variants": ["x", "y", "z"],
                "channels": ["email", "push", "sms"],
            },
        ],
        "exit": {"goal": {"event_type": "purchased"}},
        "adaptive": {"context_attributes": ["tier"]},
        "guardrails": {
            "frequency_caps": [{"max": 3, "per": "P1D"}],
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "daily_cost_budget": 1e9,
            "cost_per_message": {"sms": 0.04},
        },
        "experiment": {"holdout_pct": 10, "baseline_pct": 45},
    }
)


def run(users: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    ctx = Context(configs={CONFIG.id: CONFIG}, stats={}, ledger={})
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    events = [
        Event(
            event_id=f"e{i}",
            workspace_id="acme",
            user_id=f"user-{i}",
            type="signed_up",
            occurred_at=start,
            user={
                "timezone": "Europe/Paris",
                "attributes": {"tier": i % 3},
                "consent": {"sms": i % 4 != 0},
            },
        )
        for i in range(users)
    ]
    states: list[UserState] = []
    decisions = 0
    tune_gc()  # as `sme engine` runs the core
    t0 = time.perf_counter()
    for event in events:
        out = on_event(UserState.new("acme", event.user_id), event, start, rng, ctx)
        states.append(out.state)
        decisions += 1
    for _ in range(2):  # the two later steps, each at its due time
        next_states = []
        for state in states:
            due = state.next_due_ms()
            if due is None:
                next_states.append(state)
                continue
            out = on_timer(state, from_ms(due) + timedelta(milliseconds=1), rng, ctx)
            next_states.append(out.state)
            decisions += 1
        states = next_states
    elapsed = time.perf_counter() - t0
    enrolled_sizes = [len(orjson.dumps(s.to_dict())) for s in states]
    return {
        "decisions_per_s": decisions / elapsed,
        "decisions": decisions,
        "seconds": elapsed,
        "state_bytes_per_user": statistics.mean(enrolled_sizes),
        "state_bytes_p99": sorted(enrolled_sizes)[int(0.99 * (len(enrolled_sizes) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-record", action="store_true", help="print the figures; leave latest.json alone"
    )
    args = parser.parse_args()
    figures = run(args.users, args.seed)
    if args.no_record:
        print(f"core.decisions_per_s {figures['decisions_per_s']:.0f}")
        return
    record(
        "core",
        {
            "decisions_per_s": round(figures["decisions_per_s"]),
            "state_bytes_per_user": round(figures["state_bytes_per_user"]),
            "state_bytes_p99": figures["state_bytes_p99"],
            "users": args.users,
            "decisions": figures["decisions"],
            "machine": f"{platform.machine()} CPython {platform.python_version()}",
        },
    )


if __name__ == "__main__":
    main()
