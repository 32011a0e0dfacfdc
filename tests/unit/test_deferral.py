"""A deferral waits exactly until the earliest moment every rule of both levels allows, and each
level's `on_limit` decides for its own caps and budgets.

The property test checks `guardrails.evaluate` against a brute-force oracle of its own: every
rule is restated from the configuration (wall clocks, sends in a window, the day's quota) and
the oracle walks the minutes from `now`. Every input sits on a whole minute (sends, windows,
quiet hours, zone offsets, midnights), so every boundary does too, and the walk finds the
first allowed instant exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType as A
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.reasons import Reason
from sme.contracts.sequences import Guardrails, Status
from sme.core import guardrails
from sme.core.guardrails import Level
from sme.core.timeutil import from_ms, next_time_outside, to_ms
from sme.core.user_state import Touch
from tests.unit.builders import (
    T0,
    Driver,
    at,
    config,
    msg_step,
    of_type,
    with_status,
    workspace,
)

SMS, EMAIL = Channel.SMS, Channel.EMAIL


# --- the machine -------------------------------------------------------------------------------


def test_a_channel_cap_defers_to_the_moment_it_frees_up_not_to_the_next_utc_midnight() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        steps=[msg_step("s1", channels=["sms"])],
        guardrails={"frequency_caps": [{"max": 1, "per": "PT1H", "channel": "sms"}]},
    )
    d = Driver.of(cfg)
    d.send("signed_up")  # 10:00 UTC: sent
    out = d.send("signed_up", at(minutes=10))  # capped until 11:00

    (deferred,) = of_type(out, A.STEP_DEFERRED)
    assert deferred.reason_code == Reason.FREQUENCY_CAP
    assert d.due() == at(hours=1)
    d.run_until(at(days=1))
    assert [c.decided_at for c in d.commands] == [T0, at(hours=1)]


def test_a_cap_that_frees_up_inside_quiet_hours_defers_to_the_end_of_the_quiet_hours() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails={
            "frequency_caps": [{"max": 1, "per": "PT2H"}],
            "quiet_hours": {"start": "11:00", "end": "14:00"},
        },
    )
    d = Driver.of(cfg)
    d.send("signed_up")  # 10:00 UTC
    d.send("signed_up", at(minutes=30))  # the cap frees at 12:00, inside quiet hours

    assert d.due() == at(hours=4)  # 14:00, the earliest both allow
    assert [a.reason_code for a in of_type(d.activities, A.STEP_DEFERRED)] == [Reason.QUIET_HOURS]


def test_a_rolling_cap_frees_up_exactly_when_the_oldest_send_leaves_the_window() -> None:
    cap = Guardrails.model_validate({"frequency_caps": [{"max": 1, "per": "PT1H"}]})
    touch = Touch(to_ms(T0), "cfg-1", "s1", EMAIL, "x", Arm.ADAPTIVE, "default")
    verdict = guardrails.evaluate(
        [EMAIL], {}, [Level("c:cfg-1", cap, [touch])], at(minutes=5), "UTC", {}, 0, 1
    )

    assert verdict.defer_until == at(hours=1)


def test_the_workspaces_on_limit_decides_for_its_own_channel_cap() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        steps=[msg_step("s1", channels=["sms"])],
        guardrails={"on_limit": "defer"},
    )
    rules = workspace(frequency_caps=[{"max": 1, "per": "PT1H", "channel": "sms"}], on_limit="skip")
    d = Driver.of(cfg, workspace=rules)
    d.send("signed_up")
    out = d.send("signed_up", at(minutes=10))

    assert [a.reason_code for a in of_type(out, A.STEP_SKIPPED)] == [Reason.FREQUENCY_CAP]
    assert of_type(out, A.STEP_DEFERRED) == []


def test_the_workspaces_on_limit_decides_for_its_own_budget() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails={"on_limit": "skip"},
    )
    d = Driver.of(cfg, workspace=workspace(daily_send_budget={"email": 1}, on_limit="defer"))
    d.send("signed_up")
    out = d.send("signed_up", at(minutes=10))

    assert of_type(out, A.STEP_SKIPPED) == []
    assert [a.reason_code for a in of_type(out, A.STEP_DEFERRED)] == [Reason.CHANNEL_BUDGET]
    assert d.due() == datetime(2024, 5, 2, tzinfo=UTC)


def test_the_sequences_on_limit_still_skips_at_its_own_cap_when_the_workspace_defers() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails={"frequency_caps": [{"max": 1, "per": "PT1H"}], "on_limit": "skip"},
    )
    d = Driver.of(cfg, workspace=workspace(on_limit="defer"))
    d.send("signed_up")
    out = d.send("signed_up", at(minutes=10))

    assert [a.reason_code for a in of_type(out, A.STEP_SKIPPED)] == [Reason.FREQUENCY_CAP]


def test_a_skip_level_cap_that_is_free_by_the_end_of_quiet_hours_does_not_skip() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails={"frequency_caps": [{"max": 1, "per": "PT1H"}], "on_limit": "skip"},
    )
    d = Driver.of(cfg, workspace=workspace(quiet_hours={"start": "10:30", "end": "13:00"}))
    d.send("signed_up")  # 10:00, sent
    out = d.send("signed_up", at(minutes=40))  # quiet until 13:00; the cap frees at 11:00

    assert of_type(out, A.STEP_SKIPPED) == []
    assert d.due() == at(hours=3)


# --- the property ------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
DAYS = [  # around DST changes of the zones above, and a plain day
    datetime(2024, 3, 9, tzinfo=UTC),
    datetime(2024, 3, 30, tzinfo=UTC),
    datetime(2024, 4, 6, tzinfo=UTC),
    datetime(2024, 10, 5, tzinfo=UTC),
    datetime(2024, 5, 1, tzinfo=UTC),
]
CHANNELS = [EMAIL, SMS]
HORIZON = 9 * 24 * 60  # minutes the oracle walks when nothing is found


def clock(minutes: int) -> str:
    return time(minutes // 60, minutes % 60).isoformat(timespec="minutes")


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    g: dict[str, Any] = {"on_limit": "defer"}
    g["frequency_caps"] = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "max": st.integers(1, 3),
                    "channel": st.none() | st.sampled_from(CHANNELS),
                    "window": st.sampled_from(["PT30M", "PT1H", "PT6H", "P1D", "day"]),
                }
            ),
            max_size=3,
        ).map(
            lambda caps: [
                {
                    "max": c["max"],
                    "channel": c["channel"],
                    **({"calendar_day": True} if c["window"] == "day" else {"per": c["window"]}),
                }
                for c in caps
            ]
        )
    )
    if draw(st.booleans()):
        start = draw(st.integers(0, 47)) * 30
        end = draw(st.integers(0, 47).map(lambda h: h * 30).filter(lambda m: m != start))
        g["quiet_hours"] = {"start": clock(start), "end": clock(end)}
    g["min_gap"] = draw(st.none() | st.sampled_from(["PT30M", "PT2H", "PT12H"]))
    g["daily_send_budget"] = draw(
        st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 7), max_size=2)
    )
    g["daily_cost_budget"] = draw(st.none() | st.sampled_from([0.0, 1.0, 2.5, 6.0]))
    g["cost_per_message"] = draw(
        st.dictionaries(st.sampled_from(CHANNELS), st.sampled_from([0.0, 0.25, 1.0]), max_size=2)
    )
    return g


@dataclass(frozen=True)
class Case:
    levels: list[Level]
    now: datetime
    tz: str
    ledger: dict[str, float]
    partition: int
    partitions: int
    candidates: list[Channel]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    now = draw(st.sampled_from(DAYS)) + timedelta(minutes=draw(st.integers(0, 2 * 24 * 60)))
    sends = draw(
        st.lists(
            st.tuples(st.integers(0, 3 * 24 * 60), st.sampled_from(CHANNELS), st.booleans()),
            max_size=6,
        )
    )
    touches = sorted(
        (
            Touch(
                to_ms(now - timedelta(minutes=ago)),
                "c" if own else "other",
                "s",
                ch,
                "x",
                Arm.ADAPTIVE,
                "a",
            )
            for ago, ch, own in sends
        ),
        key=lambda t: t.at_ms,
    )
    own_rules = Guardrails.model_validate(draw(rules()))
    ws_rules = Guardrails.model_validate(draw(rules()))
    levels = [
        Level("c:c", own_rules, [t for t in touches if t.config_id == "c"]),
        Level("w:w", ws_rules, touches),
    ]
    partitions = draw(st.integers(1, 6))
    day = now.date().isoformat()
    ledger: dict[str, float] = {}
    for scope in ("c:c", "w:w"):
        for item in [*(ch.value for ch in CHANNELS), "cost"]:
            spent = draw(st.integers(0, 3))
            if spent:
                ledger[f"{scope}|{day}|{item}"] = spent * (0.25 if item == "cost" else 1.0)
    return Case(
        levels,
        now,
        draw(st.sampled_from(ZONES)),
        ledger,
        draw(st.integers(0, partitions - 1)),
        partitions,
        draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2, unique=True)),
    )


def oracle_quota(budget: float, integral: bool, partition: int, partitions: int, day: Any) -> float:
    """The documented split: an even share, the integral remainder to the `budget % partitions`
    partitions counted on from the day's number (so it rotates a partition a day)."""
    if not integral:
        return budget / partitions
    whole = int(budget)
    lucky = {(day.toordinal() + k) % partitions for k in range(whole % partitions)}
    return whole // partitions + (1 if partition in lucky else 0)


def wall_inside(moment: datetime, tz: str, start: time, end: time) -> bool:
    clock_ = moment.astimezone(ZoneInfo(tz)).time()
    return start <= clock_ < end if start < end else clock_ >= start or clock_ < end


def price(levels: Sequence[Level], channel: Channel) -> float:
    own, ws = levels[0].rules.cost_per_message, levels[1].rules.cost_per_message
    return own.get(channel, ws.get(channel, 0.0))


def allows(case: Case, channel: Channel, moment: datetime) -> bool:
    """Does every rule of both levels allow a message on `channel` at `moment`?"""
    zone_ = ZoneInfo(case.tz)
    for level in case.levels:
        rules_ = level.rules
        quiet = rules_.quiet_hours
        if quiet is not None and wall_inside(moment, case.tz, quiet.start, quiet.end):
            return False
        times = [from_ms(t.at_ms) for t in level.touches]
        if rules_.min_gap is not None and times and moment - max(times) < rules_.min_gap:
            return False
        for cap in rules_.frequency_caps:
            if cap.channel not in (None, channel):
                continue  # a channel's cap leaves the other channels alone
            counted = [
                from_ms(t.at_ms)
                for t in level.touches
                if cap.channel is None or t.channel == cap.channel
            ]
            if cap.per is not None:
                n = sum(1 for t in counted if moment - t < cap.per)
            else:
                today = moment.astimezone(zone_).date()
                n = sum(1 for t in counted if t.astimezone(zone_).date() == today)
            if n >= cap.max:
                return False
        day = moment.astimezone(UTC).date()
        limit = rules_.daily_send_budget.get(channel)
        if limit is not None:
            spent = case.ledger.get(f"{level.scope}|{day.isoformat()}|{channel.value}", 0.0)
            if spent + 1 > oracle_quota(limit, True, case.partition, case.partitions, day):
                return False
        if rules_.daily_cost_budget is not None:
            spent = case.ledger.get(f"{level.scope}|{day.isoformat()}|cost", 0.0)
            share = oracle_quota(
                rules_.daily_cost_budget, False, case.partition, case.partitions, day
            )
            if spent + price(case.levels, channel) > share + 1e-9:
                return False
    return True


def first_allowed(case: Case) -> datetime | None:
    for minute in range(HORIZON):
        moment = case.now + timedelta(minutes=minute)
        if any(allows(case, ch, moment) for ch in case.candidates):
            return moment
    return None


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_a_deferral_is_to_the_earliest_moment_every_rule_of_both_levels_allows(case: Case) -> None:
    verdict = guardrails.evaluate(
        case.candidates,
        {},
        case.levels,
        case.now,
        case.tz,
        case.ledger,
        case.partition,
        case.partitions,
    )
    expected = first_allowed(case)
    if verdict.allowed:
        assert expected == case.now
        assert set(verdict.channels) == {ch for ch in case.candidates if allows(case, ch, case.now)}
    elif verdict.skip:
        assert expected is None, f"skipped, yet {expected} is allowed"
    else:
        assert verdict.defer_until == expected


def test_quiet_hours_end_when_a_spring_forward_jumps_the_clock_past_their_end() -> None:
    # Paris 31 March 2024: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never shows.
    moment = datetime(2024, 3, 31, 0, 30, tzinfo=UTC)

    assert next_time_outside(moment, "Europe/Paris", time(22), time(2, 30)) == datetime(
        2024, 3, 31, 1, 0, tzinfo=UTC
    )


# --- no enrollment is deferred forever ---------------------------------------------------------


def test_an_enrollment_whose_step_cannot_go_out_within_its_max_deferral_exits() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails={"frequency_caps": [{"max": 1, "per": "P30D"}]},
    )
    d = Driver.of(cfg)
    d.send("signed_up")  # sent
    out = d.send("signed_up", at(hours=1))  # the cap frees in 30 days, the default allows 7

    exits = of_type(out, A.ENROLLMENT_EXITED)
    assert [a.reason_code for a in exits] == [Reason.DEFERRAL_EXPIRED]
    assert d.state.enrollments == ()


def test_the_shorter_max_deferral_of_the_two_levels_applies() -> None:
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        guardrails={"frequency_caps": [{"max": 1, "per": "PT6H"}]},
    )
    d = Driver.of(cfg, workspace=workspace(max_deferral="PT2H"))
    d.send("signed_up")
    out = d.send("signed_up", at(hours=1))  # free at 16:00, 6 h after it came due

    assert [a.reason_code for a in of_type(out, A.ENROLLMENT_EXITED)] == [Reason.DEFERRAL_EXPIRED]


def test_a_resume_restarts_the_deferral_clock_of_an_overdue_step() -> None:
    cfg = config(
        steps=[msg_step("s1", wait="PT1H")],
        guardrails={"quiet_hours": {"start": "22:00", "end": "08:00"}},
    )
    d = Driver.of(cfg)
    d.send("signed_up")  # s1 due at 11:00
    d.set_config(with_status(cfg, Status.PAUSED))
    d.tick(at(hours=1))  # parked
    resumed_at = datetime(2024, 5, 11, 23, tzinfo=UTC)  # ten days later, in quiet hours
    resumed = with_status(d.configs["cfg-1"], Status.ACTIVE)
    d.set_config(resumed.model_copy(update={"updated_at": resumed_at}))

    out = d.tick(resumed_at)

    assert of_type(out, A.ENROLLMENT_EXITED) == []
    assert d.due() == datetime(2024, 5, 12, 8, tzinfo=UTC)
    d.run_until(datetime(2024, 5, 13, tzinfo=UTC))
    assert [c.decided_at for c in d.commands] == [datetime(2024, 5, 12, 8, tzinfo=UTC)]


@st.composite
def expiry_worlds(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], list[int]]:
    own = draw(rules())
    own["on_limit"] = draw(st.sampled_from(["defer", "skip"]))
    own["max_deferral"] = draw(st.sampled_from(["PT3H", "P1D", "P3D"]))
    ws = draw(rules())
    ws["max_deferral"] = draw(st.sampled_from(["PT6H", "P2D", "P7D"]))
    signups = sorted(draw(st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=12)))
    return own, ws, signups


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expiry_worlds(), st.sampled_from(ZONES))
def test_no_enrollment_stays_deferred_beyond_its_max_deferral(
    world: tuple[dict[str, Any], dict[str, Any], list[int]], tz: str
) -> None:
    own, ws, signups = world
    cfg = config(
        entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}},
        steps=[msg_step("s1", channels=["email", "sms"])],
        guardrails=own,
    )
    rules_ = workspace(**ws)
    d = Driver.of(cfg, workspace=rules_)
    allowed = min(cfg.guardrails.max_deferral, rules_.guardrails.max_deferral)
    start = datetime(2024, 3, 28, 9, tzinfo=UTC)

    def check() -> None:
        for e in d.state.enrollments:  # one-step, no wait: it came due when enrolled
            assert e.due_ms <= e.enrolled_ms + allowed // timedelta(milliseconds=1)

    for minute in signups:
        now = start + timedelta(minutes=minute)
        for _ in d.run_until(now):
            check()
        d.send("signed_up", now, user={"timezone": tz})
        check()
    d.run_until(start + timedelta(days=20))

    assert d.state.enrollments == ()
    enrolled_at = None
    for activity in d.activities:
        if activity.type is A.ENROLLED:
            enrolled_at = activity.occurred_at
        elif activity.type is A.STEP_DEFERRED:
            assert enrolled_at is not None
            until = datetime.fromisoformat(activity.details["until"])
            assert until <= enrolled_at + allowed
        elif activity.type in (A.COMMAND_EMITTED, A.STEP_SKIPPED):
            assert enrolled_at is not None
            assert activity.occurred_at <= enrolled_at + allowed
