"""Golden outputs of the pure core: a few thousand varied decisions (the core benchmark's
sequence plus guardrail-heavy scenarios: caps, quiet hours, gaps, budgets, holdouts, goals,
feedback, conditions, waits, branches, workspace guardrails) rendered byte for byte (`repr` of
every outcome: commands, activities, stat and ledger deltas, the new state).

An optimisation of the core must leave this dump unchanged. Run it once at the commit before
the change (`--write /tmp/golden.json`), then after (`--check /tmp/golden.json`). It is a
bench/ script, not a unit test: the figures depend on the exact rng stream of the policy,
which another change may legitimately alter."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.unit.builders

from core_bench import CONFIG
from tests.unit.builders import WS, config, msg_step, workspace

from sme.contracts.events import Event
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings
from sme.core.sequence import Context, Outcome, on_event, on_timer
from sme.core.timeutil import from_ms
from sme.core.user_state import UserState


def render(outcome: Outcome) -> str:
    return repr(outcome)


def bench_scenario(users: int, seed: int) -> list[str]:
    """The benchmark's own loop (entries, then the two timed steps)."""
    out: list[str] = []
    rng = random.Random(seed)
    ctx = Context(configs={CONFIG.id: CONFIG}, stats={}, ledger={})
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    states = []
    for i in range(users):
        event = Event(
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
        o = on_event(UserState.new("acme", event.user_id), event, start, rng, ctx)
        out.append(render(o))
        states.append(o.state)
    for _ in range(2):
        nxt = []
        for state in states:
            due = state.next_due_ms()
            if due is None:
                nxt.append(state)
                continue
            o = on_timer(state, from_ms(due) + timedelta(milliseconds=1), rng, ctx)
            out.append(render(o))
            nxt.append(o.state)
        states = nxt
    return out


def _configs() -> list[SequenceConfig]:
    return [
        config(
            id="caps",
            steps=[
                msg_step("a", channels=["email", "sms", "push"], variants=["v1", "v2"]),
                msg_step("b", wait="PT2H", channels=["email", "push"]),
                msg_step("c", wait="PT30M", channels=["sms", "email"]),
                msg_step(
                    "d", wait="PT1H", channels=["push"], condition={"none_of_events": ["clicked"]}
                ),
            ],
            exit={
                "event_types": ["churned"],
                "goal": {"event_type": "purchased", "value_property": "amount"},
            },
            adaptive={
                "context_attributes": ["tier"],
                "send_time": {"enabled": True, "min_observations": 2},
            },
            guardrails={
                "frequency_caps": [
                    {"max": 2, "per": "PT6H"},
                    {"max": 1, "calendar_day": True, "channel": "sms"},
                ],
                "quiet_hours": {"start": "21:00", "end": "08:00"},
                "min_gap": "PT20M",
                "daily_send_budget": {"sms": 3, "push": 50},
                "daily_cost_budget": 0.2,
                "cost_per_message": {"sms": 0.07, "email": 0.001},
            },
            experiment={"holdout_pct": 20, "baseline_pct": 30},
            entry={
                "event_types": ["signed_up"],
                "reentry": {"policy": "cooldown", "cooldown": "P1D"},
            },
        ),
        config(
            id="skip",
            steps=[
                msg_step(
                    "w1",
                    channels=["email", "in_app"],
                    wait_for={"event_type": "opened", "timeout": "PT3H", "on_event": "w3"},
                ),
                msg_step("w2", channels=["push", "email"], wait="PT1H"),
                {
                    "id": "br",
                    "kind": "branch",
                    "branches": [
                        {"event_type": "clicked", "goto": "w4"},
                        {"attribute": {"key": "tier", "min": 1}, "goto": "exit"},
                    ],
                },
                msg_step(
                    "w3",
                    channels=["email"],
                    variants=["x", "y", "z"],
                    wait="PT4H",
                    condition={"attributes": [{"key": "tier", "one_of": [0, 2]}]},
                ),
                msg_step("w4", channels=["sms", "push"], wait="P1D", wait_from="entry"),
            ],
            exit={"goal": {"event_type": "converted", "attribution_window": "P2D"}},
            guardrails={
                "frequency_caps": [
                    {"max": 3, "per": "P1D"},
                    {"max": 1, "per": "PT8H", "channel": "push"},
                ],
                "on_limit": "skip",
                "daily_send_budget": {"email": 4},
                "max_messages_per_enrollment": 3,
                "allowed_channels": ["email", "push", "sms"],
                "max_deferral": "PT12H",
            },
            experiment={"holdout_pct": 10, "baseline_pct": 40},
            entry={"event_types": ["signed_up", "visited"], "reentry": {"policy": "always"}},
        ),
    ]


def _workspace() -> WorkspaceSettings:
    return workspace(
        frequency_caps=[{"max": 4, "per": "P1D"}, {"max": 2, "calendar_day": True}],
        quiet_hours={"start": "23:00", "end": "06:30"},
        daily_cost_budget=2.0,
        cost_per_message={"sms": 0.05, "push": 0.002},
        daily_send_budget={"sms": 6},
        min_gap="PT10M",
    )


EVENT_TYPES = ["signed_up", "visited", "opened", "clicked", "converted", "purchased",
               "delivered", "unsubscribed", "bounced", "churned"]  # fmt: skip
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", None, "Australia/Sydney"]


def varied_scenario(users: int, seed: int) -> list[str]:
    """Users of several zones driven by random events and their timers across days,
    including a DST change, with statistics and ledgers fed back."""
    out: list[str] = []
    configs = {c.id: c for c in _configs()}
    pick = random.Random(seed)
    for u in range(users):
        ws = _workspace() if u % 3 else None
        parts = 1 + u % 3
        rng = random.Random(seed * 1000 + u)
        stats: dict[str, tuple[float, float]] = {}
        ledger: dict[str, float] = {}
        ctx = Context(configs, ws, stats, ledger, partition=u % parts, partitions=parts)
        user_id = f"u{u}"
        state = UserState.new(WS, user_id, epoch=f"ep{u % 2}" if u % 5 == 0 else "")
        now = datetime(2024, 10, 25, 6, 0, tzinfo=UTC) + timedelta(minutes=pick.randrange(0, 1440))
        tz = ZONES[u % len(ZONES)]
        commands: list[str] = []
        for _ in range(pick.randrange(6, 18)):
            now += timedelta(minutes=pick.choice([1, 7, 30, 90, 240, 600]))
            due = state.next_due_ms()
            if due is not None and from_ms(due) <= now:
                when = max(from_ms(due), now - timedelta(minutes=1))
                o = on_timer(state, when, rng, ctx)
            else:
                kind = (
                    "signed_up"
                    if not state.enrollments and pick.random() < 0.6
                    else pick.choice(EVENT_TYPES)
                )
                fields: dict[str, Any] = {}
                if pick.random() < 0.7:
                    user: dict[str, Any] = {"attributes": {"tier": pick.randrange(3)}}
                    if tz is not None:
                        user["timezone"] = tz
                    if pick.random() < 0.5:
                        user["consent"] = {"sms": pick.random() < 0.7, "push": pick.random() < 0.9}
                    fields["user"] = user
                if kind in (
                    "opened",
                    "clicked",
                    "converted",
                    "delivered",
                    "unsubscribed",
                    "bounced",
                ):
                    r = pick.random()
                    if commands and r < 0.5:
                        fields["command_id"] = pick.choice(commands)
                    elif r < 0.6:
                        fields["command_id"] = "00000000-0000-8000-8000-000000000000"
                    elif r < 0.9:
                        fields["channel"] = pick.choice(["email", "sms", "push"])
                if kind == "purchased":
                    fields["properties"] = {"amount": pick.choice([10, 2.5, "x", True])}
                ev = Event.model_validate(
                    {"event_id": f"e{u}-{pick.randrange(10**6)}", "workspace_id": WS,
                     "user_id": user_id, "type": kind, "occurred_at": now, **fields}
                )  # fmt: skip
                o = on_event(state, ev, now, rng, ctx)
                if pick.random() < 0.05:  # a redelivery
                    out.append(render(on_event(o.state, ev, now, rng, ctx)))
            out.append(render(o))
            state = o.state
            commands.extend(c.command_id for c in o.commands)
            for d in o.stat_deltas:
                t, s = stats.get(d.key, (0.0, 0.0))
                stats[d.key] = (t + d.trials, s + d.successes)
            for key, amount in o.ledger_deltas:
                ledger[key] = ledger.get(key, 0.0) + amount
        out.append(repr(UserState.from_dict(state.to_dict())))
    return out


def dump() -> dict[str, list[str]]:
    return {"bench": bench_scenario(1500, 3), "varied": varied_scenario(600, 11)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--check", type=Path)
    args = parser.parse_args()
    data = dump()
    digest = hashlib.sha256(json.dumps(data).encode()).hexdigest()
    print({k: len(v) for k, v in data.items()}, digest)
    if args.write:
        args.write.write_text(json.dumps(data, indent=0))
    if args.check:
        golden = json.loads(args.check.read_text())
        for name, rows in golden.items():
            mine = data[name]
            for i, (a, b) in enumerate(zip(rows, mine, strict=False)):
                if a != b:
                    print(f"DIFF {name}[{i}]\n golden: {a[:3000]}\n now:    {b[:3000]}")
                    sys.exit(1)
            if len(rows) != len(mine):
                print(f"DIFF {name}: {len(rows)} rows then, {len(mine)} now")
                sys.exit(1)
        print("identical")


if __name__ == "__main__":
    main()
