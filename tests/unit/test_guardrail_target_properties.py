"""Category caps, per-channel quiet hours and transactional steps hold over whole runs.

Hypothesis draws sequences whose steps have random categories (some transactional), random
caps with and without a category or a channel, quiet hours with per-channel and per-category
overrides (some opting out) at both levels, a user in a zone that may change its clock, and a
stream of sign-ups over eight days across the spring DST changes. One user's state is driven
through the core like the engine does (timers at the state's due time). Each property is then
checked from the configuration, restated here (not from the core's state).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.reasons import Reason
from sme.contracts.sequences import FrequencyCap, Guardrails, SequenceConfig, Step
from sme.core.timeutil import in_window, local_date, to_ms, zone
from tests.unit.builders import Driver, config, workspace

START = datetime(2024, 3, 28, 9, 0, tzinfo=UTC)  # Paris moves on 31 March, Lord Howe on 7 April
DAYS = 8
CATEGORIES = ["marketing", "promo", "news"]
CHANNELS = [Channel.EMAIL, Channel.SMS, Channel.IN_APP]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]
TIMING_REASONS = {
    Reason.QUIET_HOURS,
    Reason.MIN_GAP,
    Reason.FREQUENCY_CAP,
    Reason.SEND_TIME_OPTIMISED,
}
pytestmark = pytest.mark.timeout(600)
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def clock(half_hours: int) -> str:
    return time(half_hours // 2, 30 * (half_hours % 2)).isoformat(timespec="minutes")


@st.composite
def windows(draw: st.DrawFn) -> dict[str, str]:
    start = draw(st.integers(0, 47))
    length = draw(st.integers(1, 30))
    return {"start": clock(start), "end": clock((start + length) % 48)}


@st.composite
def caps(draw: st.DrawFn) -> dict[str, Any]:
    cap: dict[str, Any] = {
        "max": draw(st.integers(1, 3)),
        "channel": draw(st.none() | st.sampled_from(CHANNELS)),
        "category": draw(st.none() | st.sampled_from(CATEGORIES)),
    }
    if draw(st.booleans()):
        cap["calendar_day"] = True
    else:
        cap["per"] = draw(st.sampled_from(["PT1H", "PT6H", "P1D", "P3D"]))
    return cap


@st.composite
def guardrails(draw: st.DrawFn) -> dict[str, Any]:
    targets = st.tuples(
        st.none() | st.sampled_from(CHANNELS), st.none() | st.sampled_from(CATEGORIES)
    )
    chosen = draw(st.lists(targets.filter(lambda t: t != (None, None)), unique=True, max_size=4))
    return {
        "on_limit": draw(st.sampled_from(["defer", "skip"])),
        "frequency_caps": draw(st.lists(caps(), max_size=3)),
        "quiet_hours": draw(st.none() | windows()),
        "quiet_hours_overrides": [
            {"channel": ch, "category": cat, "quiet_hours": draw(st.none() | windows())}
            for ch, cat in chosen
        ],
        "min_gap": draw(st.none() | st.sampled_from(["PT30M", "PT2H"])),
    }


@st.composite
def sequences(draw: st.DrawFn, index: int) -> SequenceConfig:
    steps = [
        {
            "id": f"s{i}",
            "template": f"t{i}",
            "channels": draw(st.permutations(CHANNELS))[: draw(st.integers(1, 3))],
            "wait": draw(st.sampled_from(["PT0S", "PT20M", "PT3H"])),
            "category": draw(st.sampled_from(CATEGORIES)),
            "transactional": draw(st.integers(0, 3)) == 0,
        }
        for i in range(draw(st.integers(1, 4)))
    ]
    return config(
        id=f"c{index}",
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        steps=steps,
        guardrails=draw(guardrails()),
        adaptive={"send_time": {"enabled": draw(st.booleans()), "min_observations": 1}},
    )


@dataclass(frozen=True)
class World:
    configs: list[SequenceConfig]
    workspace_rules: dict[str, Any]
    tz: str
    minutes: list[int]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    return World(
        [draw(sequences(i)) for i in range(draw(st.integers(1, 2)))],
        draw(st.just({}) | guardrails()),
        draw(st.sampled_from(ZONES)),
        sorted(draw(st.lists(st.integers(0, DAYS * 24 * 60), min_size=5, max_size=30))),
    )


@dataclass(frozen=True)
class Run:
    world: World
    levels: list[tuple[str, Guardrails]]  # (config id or "*" for the workspace, rules)
    activities: list[Activity]

    def step(self, activity: Activity) -> Step:
        cfg = next(c for c in self.world.configs if c.id == activity.config_id)
        return next(s for s in cfg.steps if s.id == activity.step_id)

    def sends(self) -> list[Activity]:
        return [a for a in self.activities if a.type is ActivityType.COMMAND_EMITTED]


def run(world: World) -> Run:
    ws = workspace(**world.workspace_rules)
    d = Driver.of(*world.configs, workspace=ws)
    for minute in world.minutes:
        now = START + timedelta(minutes=minute)
        d.run_until(now - timedelta(milliseconds=1), max_ticks=5000)
        d.send("signed_up", now, user={"timezone": world.tz})
    d.run_until(START + timedelta(days=DAYS + 9), max_ticks=5000)
    levels = [("*", ws.guardrails)] + [(c.id, c.guardrails) for c in world.configs]
    return Run(world, levels, d.activities)


def expected_quiet(rules: Guardrails, channel: Channel, category: str) -> dict[str, Any] | None:
    """The quiet hours a level sets, restated: channel and category, channel, category, level."""
    by_target = {(o.channel, o.category): o for o in rules.quiet_hours_overrides}
    for target in ((channel, category), (channel, None), (None, category)):
        if target in by_target:
            quiet = by_target[target].quiet_hours
            return None if quiet is None else {"start": quiet.start, "end": quiet.end}
    q = rules.quiet_hours
    return None if q is None else {"start": q.start, "end": q.end}


def cap_violations(r: Run) -> list[str]:
    found: list[str] = []
    for scope, rules in r.levels:
        for cap in rules.frequency_caps:
            times = sorted(
                to_ms(a.occurred_at) for a in r.sends() if counted(cap, scope, a, r.step(a))
            )
            found += window_violations(cap, times, r.world.tz, scope)
    return found


def counted(cap: FrequencyCap, scope: str, send: Activity, step: Step) -> bool:
    return (
        scope in ("*", send.config_id)
        and not step.transactional
        and (cap.channel is None or send.channel == cap.channel)
        and (cap.category is None or step.category == cap.category)
    )


def window_violations(cap: FrequencyCap, times: list[int], tz: str, scope: str) -> list[str]:
    if cap.per is not None:
        per_ms = cap.per // timedelta(milliseconds=1)
        return [
            f"{scope} {cap}: {cap.max + 1} sends within {last - first} ms"
            for first, last in zip(times, times[cap.max :], strict=False)
            if last - first < per_ms
        ]
    days = Counter(local_date(datetime.fromtimestamp(t / 1000, UTC), tz) for t in times)
    return [f"{scope} {cap}: {n} sends on {day}" for day, n in days.items() if n > cap.max]


# --- the properties ---------------------------------------------------------------------------


@SETTINGS
@given(worlds())
def test_a_category_cap_is_never_exceeded_for_that_categorys_sends(world: World) -> None:
    r = run(world)

    assert cap_violations(r) == []


@SETTINGS
@given(worlds())
def test_a_non_transactional_send_never_lands_in_its_channels_quiet_hours(world: World) -> None:
    r = run(world)

    found = []
    for send in r.sends():
        step = r.step(send)
        if step.transactional:
            continue
        assert send.channel is not None
        local = send.occurred_at.astimezone(zone(world.tz)).time()
        for scope, rules in r.levels:
            if scope not in ("*", send.config_id):
                continue
            quiet = expected_quiet(rules, send.channel, step.category)
            if quiet is not None and in_window(local, quiet["start"], quiet["end"]):
                found.append(f"{step.id} on {send.channel} at {local} in {scope} {quiet}")
    assert found == []


@SETTINGS
@given(worlds())
def test_a_transactional_send_ignores_quiet_hours_caps_and_gaps(world: World) -> None:
    r = run(world)

    held = [
        f"{a.step_id} {a.type} {a.reason_code}"
        for a in r.activities
        if a.type in (ActivityType.STEP_DEFERRED, ActivityType.STEP_SKIPPED)
        and a.reason_code in TIMING_REASONS
        and r.step(a).transactional
    ]
    assert held == []
    for send in r.sends():
        assert send.details["transactional"] is r.step(send).transactional
        assert send.details["category"] == r.step(send).category


def test_the_checks_notice_a_cap_broken_by_category() -> None:
    cap = FrequencyCap.model_validate({"max": 1, "per": "P1D", "category": "promo"})
    times = [to_ms(START), to_ms(START + timedelta(hours=1))]

    assert window_violations(cap, times, "UTC", "*") != []
    assert window_violations(cap, times[:1], "UTC", "*") == []
