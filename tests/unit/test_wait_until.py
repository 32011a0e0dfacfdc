"""`wait_until`: a step waits for a local wall-clock time, optionally on given weekdays, in the
user's zone, across DST changes. The pure function against an oracle of its own (the zone's
folds and a minute walk through a gap), then the step through the real core entry points."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sme.contracts.activities import ActivityType as A
from sme.contracts.reasons import Reason
from sme.contracts.sequences import WEEKDAYS, Step, WaitUntil
from sme.core.timeutil import in_window, next_wall_time
from tests.unit.builders import Driver, config, msg_step, of_type, workspace

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]
NY, LONDON, LORD_HOWE = (ZoneInfo(z) for z in ZONES[:3])
MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- the pure function, by example -------------------------------------------------------------


def test_a_time_still_ahead_today_is_today_and_one_already_past_is_tomorrow() -> None:
    morning = utc(2024, 5, 1, 8, 0)  # 04:00 in New York
    assert next_wall_time(morning, "America/New_York", time(10)) == utc(2024, 5, 1, 14, 0)
    evening = utc(2024, 5, 1, 20, 0)  # 16:00 in New York
    assert next_wall_time(evening, "America/New_York", time(10)) == utc(2024, 5, 2, 14, 0)


def test_the_exact_time_itself_is_due_at_once() -> None:
    ten = utc(2024, 5, 1, 10, 0)
    assert next_wall_time(ten, "UTC", time(10)) == ten


def test_weekdays_skip_to_the_next_allowed_local_day() -> None:
    friday_noon = utc(2024, 5, 3, 12, 0)  # Friday 08:00 in New York
    weekdays = frozenset({0})  # Mondays only
    assert next_wall_time(friday_noon, "America/New_York", time(10), weekdays) == utc(
        2024, 5, 6, 14, 0
    )


def test_the_local_weekday_counts_not_the_utc_one() -> None:
    # Monday 02:00 UTC is still Sunday 22:00 in New York: Sunday's 23:00 is the next.
    monday_utc = utc(2024, 5, 6, 2, 0)
    sundays = frozenset({6})
    assert next_wall_time(monday_utc, "America/New_York", time(23), sundays) == utc(
        2024, 5, 6, 3, 0
    )


def test_a_time_the_spring_gap_skips_resolves_to_the_end_of_the_gap() -> None:
    # New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never shows.
    before = utc(2024, 3, 10, 5, 0)
    assert next_wall_time(before, "America/New_York", time(2, 30)) == utc(2024, 3, 10, 7, 0)
    assert next_wall_time(before, "America/New_York", time(2, 30, 17)) == utc(2024, 3, 10, 7, 0)
    # Lord Howe, 2024-10-06: 02:00 (+10:30) jumps to 02:30 (+11): 02:15 resolves to 15:30 UTC.
    lh = next_wall_time(utc(2024, 10, 5, 12, 0), "Australia/Lord_Howe", time(2, 15))
    assert lh == utc(2024, 10, 5, 15, 30)
    assert lh.astimezone(LORD_HOWE).time() == time(2, 30)


def test_a_time_the_autumn_fall_back_repeats_resolves_to_its_first_occurrence() -> None:
    # London, 2024-10-27: 01:00-02:00 BST (00:00-01:00 UTC), then again as GMT (01:00-02:00 UTC).
    start = utc(2024, 10, 26, 12, 0)
    assert next_wall_time(start, "Europe/London", time(1, 30)) == utc(2024, 10, 27, 0, 30)
    # Between the two occurrences: the repeat is not a second chance; the next day's is next.
    between = utc(2024, 10, 27, 0, 45)
    assert next_wall_time(between, "Europe/London", time(1, 30)) == utc(2024, 10, 28, 1, 30)


def test_a_half_hour_zone_without_dst_keeps_its_offset() -> None:
    assert next_wall_time(utc(2024, 1, 1), "Asia/Kolkata", time(10)) == utc(2024, 1, 1, 4, 30)


# --- the pure function, as properties across DST ------------------------------------------------


@cache
def transitions(tz: str) -> tuple[datetime, ...]:
    """The zone's UTC-offset changes in 2024-2025 (an hourly walk, refined to the minute)."""
    local_zone = ZoneInfo(tz)
    found: list[datetime] = []
    at, end = utc(2024, 1, 1), utc(2026, 1, 1)
    offset = at.astimezone(local_zone).utcoffset()
    while at < end:
        step = at + timedelta(hours=1)
        if step.astimezone(local_zone).utcoffset() != offset:
            minute = at
            while minute.astimezone(local_zone).utcoffset() == offset:
                minute += MINUTE
            found.append(minute)
            offset = step.astimezone(local_zone).utcoffset()
        at = step
    return tuple(found) or (utc(2024, 6, 1),)  # a zone without DST: any instant


def resolved(day: date, clock: time, local_zone: ZoneInfo) -> datetime:
    """The oracle's instant for one local day: the first instant whose wall clock reads `clock`
    that day (either fold), else, in a gap, the first whole minute whose reading is later."""
    wall = datetime.combine(day, clock)
    readings = [wall.replace(tzinfo=local_zone, fold=f).astimezone(UTC) for f in (0, 1)]
    real = [u for u in readings if u.astimezone(local_zone).replace(tzinfo=None) == wall]
    if real:
        return min(real)
    moment = min(readings).replace(second=0, microsecond=0)  # the zones jump on whole minutes
    while moment.astimezone(local_zone).replace(tzinfo=None) < wall:
        moment += MINUTE
    return moment


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    tz = draw(st.sampled_from(ZONES))
    near = draw(st.sampled_from(transitions(tz)))
    seconds = draw(st.integers(-4 * 86_400, 4 * 86_400))
    return tz, near + timedelta(seconds=seconds)


GAP_AND_REPEAT_CLOCKS = [time(0, 30), time(1, 0), time(1, 30), time(2, 0), time(2, 15)]
clocks = st.sampled_from(GAP_AND_REPEAT_CLOCKS) | st.builds(
    time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]), st.integers(0, 59)
)
weekday_sets = st.none() | st.frozensets(st.integers(0, 6), min_size=1)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=starts(), clock=clocks, weekdays=weekday_sets)
def test_the_result_is_the_earliest_allowed_local_reading_at_or_after_the_start(
    start: tuple[str, datetime], clock: time, weekdays: frozenset[int] | None
) -> None:
    tz, moment = start
    local_zone = ZoneInfo(tz)

    result = next_wall_time(moment, tz, clock, weekdays)

    assert moment <= result < moment + timedelta(days=8)
    first_day = moment.astimezone(local_zone).date()
    candidates = [
        (resolved(day, clock, local_zone), day)
        for day in (first_day + timedelta(days=k) for k in range(-1, 9))
        if weekdays is None or day.weekday() in weekdays
    ]
    expected, day = min(c for c in candidates if c[0] >= moment)
    assert result == expected
    local = result.astimezone(local_zone)
    if local.time() != clock:  # only in a gap: the first instant after it, on the same day
        assert local.replace(tzinfo=None) > datetime.combine(day, clock)
        assert (result - MINUTE).astimezone(local_zone).utcoffset() != local.utcoffset()
    assert weekdays is None or day.weekday() in weekdays


# --- the contract ------------------------------------------------------------------------------


def test_wait_until_is_validated_with_field_paths() -> None:
    for bad, loc in [
        ({"time": "10:00+02:00"}, ("wait_until", "time")),
        ({"time": "10:00:00.5"}, ("wait_until", "time")),
        ({"time": "24:00"}, ("wait_until", "time")),
        ({"time": "10:00", "weekdays": []}, ("wait_until", "weekdays")),
        ({"time": "10:00", "weekdays": ["mon", "mon"]}, ("wait_until", "weekdays")),
        ({"time": "10:00", "weekdays": ["monday"]}, ("wait_until", "weekdays", 0)),
        ({"time": "10:00", "at": "x"}, ("wait_until", "at")),
    ]:
        with pytest.raises(ValidationError) as caught:
            Step.model_validate({**msg_step("s1"), "wait_until": bad})
        assert [e["loc"] for e in caught.value.errors()] == [loc], bad


def test_weekdays_map_to_python_weekday_numbers() -> None:
    until = WaitUntil.model_validate({"time": "10:00", "weekdays": ["mon", "sun"]})
    assert until.weekday_numbers() == frozenset({0, 6})
    assert WaitUntil.model_validate({"time": "10:00"}).weekday_numbers() is None
    assert WEEKDAYS[date(2024, 5, 6).weekday()] == "mon"


def test_a_step_without_wait_until_is_as_before() -> None:
    assert Step.model_validate(msg_step("s1")).wait_until is None


# --- through the core --------------------------------------------------------------------------

WEEKDAY_MORNINGS = {"time": "10:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]}


def test_a_wait_until_step_is_due_at_the_next_local_time_after_its_wait() -> None:
    cfg = config(steps=[msg_step("s1"), msg_step("s2", wait="PT1H", wait_until=WEEKDAY_MORNINGS)])
    d = Driver.of(cfg)
    friday = utc(2024, 5, 3, 16, 0)  # Friday 18:00 in Paris

    d.send("signed_up", friday, user={"timezone": "Europe/Paris"})

    monday_ten_paris = utc(2024, 5, 6, 8, 0)
    assert d.due() == monday_ten_paris
    d.run_until(monday_ten_paris + timedelta(days=1))
    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("s1", friday),
        ("s2", monday_ten_paris),
    ]


def test_the_first_step_waits_for_its_time_from_the_entry() -> None:
    cfg = config(steps=[msg_step("s1", wait_until={"time": "09:30"})])
    d = Driver.of(
        cfg, workspace=workspace().model_copy(update={"default_timezone": "Asia/Kolkata"})
    )

    d.send("signed_up", utc(2024, 5, 1, 10, 0))  # 15:30 in Kolkata: tomorrow's 09:30

    assert d.commands == []
    assert d.due() == utc(2024, 5, 2, 4, 0)


def test_wait_until_comes_after_the_wait_for_timeout() -> None:
    step = msg_step(
        "s2",
        wait_for={"event_type": "purchased", "timeout": "P1D"},
        wait_until={"time": "08:00"},
    )
    d = Driver.of(config(steps=[msg_step("s1"), step]))

    d.send("signed_up", utc(2024, 5, 1, 10, 0))  # UTC user: timeout at 10:00 next day

    assert d.due() == utc(2024, 5, 3, 8, 0)


def test_a_wait_until_step_is_not_moved_by_send_time_optimisation() -> None:
    cfg = config(
        steps=[msg_step("s1", wait_until={"time": "10:00"})],
        adaptive={"send_time": {"enabled": True, "min_observations": 1}},
    )
    d = Driver.of(cfg)
    for day in (20, 21, 22):  # the user engages at 19:00, so the optimiser would pick 19:00
        d.send("opened", utc(2024, 4, day, 19, 0), channel="email")

    d.send("signed_up", utc(2024, 5, 1, 7, 0))
    d.run_until(utc(2024, 5, 3))

    assert [c.decided_at for c in d.commands] == [utc(2024, 5, 1, 10, 0)]
    assert [a.reason_code for a in of_type(d.activities, A.STEP_DEFERRED)] == []


def test_a_wait_until_time_inside_quiet_hours_is_deferred_to_their_end() -> None:
    cfg = config(
        steps=[msg_step("s1", wait_until={"time": "07:00"})],
        guardrails={"quiet_hours": {"start": "22:00", "end": "08:00"}},
    )
    d = Driver.of(cfg)

    d.send("signed_up", utc(2024, 5, 1, 12, 0))
    d.run_until(utc(2024, 5, 3))

    assert [c.decided_at for c in d.commands] == [utc(2024, 5, 2, 8, 0)]
    assert [a.reason_code for a in of_type(d.activities, A.STEP_DEFERRED)] == [Reason.QUIET_HOURS]


def clock_text(minutes: int) -> str:
    return time(minutes // 60, minutes % 60).isoformat(timespec="minutes")


@st.composite
def quiet_runs(draw: st.DrawFn) -> dict[str, Any]:
    tz = draw(st.sampled_from(ZONES))
    quiet_start = draw(st.integers(0, 95)) * 15
    quiet_end = draw(st.integers(0, 95).filter(lambda m: m * 15 != quiet_start)) * 15
    return {
        "tz": tz,
        "quiet": (quiet_start, quiet_end),
        "until": draw(
            st.sampled_from([60, 90, 120, 135]) | st.integers(0, 95).map(lambda m: m * 15)
        ),
        "weekdays": draw(st.none() | st.lists(st.sampled_from(WEEKDAYS), min_size=1, unique=True)),
        "wait": draw(st.integers(0, 48 * 60)),
        "signup": draw(st.sampled_from(transitions(tz)))
        + timedelta(minutes=draw(st.integers(-3 * 1440, 2 * 1440))),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=quiet_runs())
def test_a_wait_until_send_never_lands_inside_quiet_hours_across_dst(run: dict[str, Any]) -> None:
    quiet_start, quiet_end = run["quiet"]
    until = {"time": clock_text(run["until"])}
    if run["weekdays"] is not None:
        until["weekdays"] = run["weekdays"]
    quiet = {"start": clock_text(quiet_start), "end": clock_text(quiet_end)}
    cfg = config(
        steps=[msg_step("s1", wait=f"PT{run['wait']}M", wait_until=until)],
        guardrails={"quiet_hours": quiet},
    )
    d = Driver.of(cfg)
    local_zone = ZoneInfo(run["tz"])
    signup: datetime = run["signup"]

    d.send("signed_up", signup, user={"timezone": run["tz"]})
    d.run_until(signup + timedelta(days=12))

    start, end = time(quiet_start // 60, quiet_start % 60), time(quiet_end // 60, quiet_end % 60)
    (sent,) = d.commands
    assert not in_window(sent.decided_at.astimezone(local_zone).time(), start, end)
    wait_until = WaitUntil.model_validate(until)
    target = next_wall_time(
        signup + timedelta(minutes=run["wait"]),
        run["tz"],
        wait_until.time,
        wait_until.weekday_numbers(),
    )
    assert sent.decided_at >= target
    if not in_window(target.astimezone(local_zone).time(), start, end):
        assert sent.decided_at == target  # nothing else holds it: exactly on time


def test_a_branch_step_with_wait_until_decides_at_that_local_time() -> None:
    fork = {
        "id": "fork",
        "kind": "branch",
        "wait_until": {"time": "18:00"},
        "branches": [{"event_type": "purchased", "goto": "thanks"}],
    }
    cfg = config(steps=[fork, msg_step("nudge"), msg_step("thanks")])
    d = Driver.of(cfg)
    d.send("signed_up", utc(2024, 5, 1, 10, 0))
    d.send("purchased", utc(2024, 5, 1, 17, 0))  # before the branch decides: it counts

    d.run_until(utc(2024, 5, 2))

    (branched,) = of_type(d.activities, A.STEP_BRANCHED)
    assert branched.occurred_at == utc(2024, 5, 1, 18, 0)
    assert [c.step_id for c in d.commands] == ["thanks"]
