"""The workspace's global control group: a sticky share of users (by hash, independent of
every per-sequence draw) that is enrolled and measured but never messaged by any sequence,
whose conversions are attributed in their own arm; and the program's comparison against it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sme.contracts.activities import ActivityType
from sme.contracts.commands import Arm
from sme.contracts.reasons import Reason
from sme.contracts.sequences import GlobalControl, WorkspaceSettings
from sme.core.arms import assign_arm
from sme.core.global_control import in_global_control
from sme.core.lift import Z95, lift_report, wilson_interval
from sme.core.program_lift import GroupTotals, program_lift
from sme.core.roi import ArmTotals, incremental_report
from tests.unit.builders import (
    WS,
    Driver,
    at,
    config,
    msg_step,
    of_type,
)

A = ActivityType
USERS = 100_000


def settings_with(pct: float, salt: str = "") -> WorkspaceSettings:
    return WorkspaceSettings.model_validate(
        {"workspace_id": WS, "global_control": {"pct": pct, "salt": salt}}
    )


def control_user(control: GlobalControl, inside: bool = True) -> str:
    """The first user id that is (or is not) in the control."""
    return next(f"u{n}" for n in range(10_000) if in_global_control(control, WS, f"u{n}") is inside)


def _members(pct: float, salt: str = "") -> set[str]:
    control = GlobalControl(pct=pct, salt=salt)
    return {f"u{n}" for n in range(USERS) if in_global_control(control, WS, f"u{n}")}


# --- settings ---------------------------------------------------------------------------------
def test_old_workspace_settings_stay_valid_with_the_control_off() -> None:
    settings_ = WorkspaceSettings.model_validate({"workspace_id": WS})
    assert settings_.global_control == GlobalControl(pct=0.0, salt="")
    assert not in_global_control(settings_.global_control, WS, "anyone")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"pct": 51}, ("global_control", "pct")),
        ({"pct": -1}, ("global_control", "pct")),
        ({"pct": 5, "share": 5}, ("global_control", "share")),
        ({"salt": "x" * 65}, ("global_control", "salt")),
    ],
)
def test_invalid_control_settings_are_refused_with_their_field_path(
    body: dict[str, Any], loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkspaceSettings.model_validate({"workspace_id": WS, "global_control": body})
    assert [e["loc"] for e in caught.value.errors()] == [loc]


# --- membership -------------------------------------------------------------------------------
@pytest.mark.parametrize("pct", [1.0, 5.0, 20.0, 50.0])
def test_the_share_is_within_half_a_percent_of_pct_over_100k_users(pct: float) -> None:
    assert abs(len(_members(pct)) / USERS - pct / 100) < 0.005


def test_membership_is_sticky_and_raising_the_share_only_adds_users() -> None:
    five, ten = _members(5.0), _members(10.0)
    assert _members(5.0) == five
    assert five < ten


def test_a_new_salt_draws_a_new_group() -> None:
    a, b = _members(10.0), _members(10.0, salt="2027")
    assert len(a & b) / len(a) == pytest.approx(0.10, abs=0.02)  # independent draws


def test_membership_is_independent_of_the_sequences_arms() -> None:
    """Control users split into holdout / baseline / adaptive like everyone: no per-sequence
    arm is over- or under-represented in the control."""
    cfg = config(experiment={"holdout_pct": 20, "baseline_pct": 30})
    members = _members(10.0)
    arms = [assign_arm(cfg.id, user, cfg.experiment) for user in members]
    for arm, share in ((Arm.HOLDOUT, 0.2), (Arm.BASELINE, 0.3), (Arm.ADAPTIVE, 0.5)):
        assert arms.count(arm) / len(arms) == pytest.approx(share, abs=0.02)


# --- through the real core --------------------------------------------------------------------
def two_sequences() -> list[Any]:
    goal = {"goal": {"event_type": "purchased", "value_property": "amount"}}
    return [
        config(steps=[msg_step("s1"), msg_step("s2", wait="PT1H")], exit=goal),
        config(
            id="cfg-2",
            entry={"event_types": ["viewed"]},
            steps=[msg_step("t1", channels=["push", "email"])],
            experiment={"holdout_pct": 0, "baseline_pct": 100},
            exit=goal,
        ),
    ]


def test_a_control_user_is_enrolled_but_every_message_is_suppressed() -> None:
    ws = settings_with(10.0)
    driver = Driver.of(*two_sequences(), workspace=ws, user_id=control_user(ws.global_control))
    driver.send("signed_up")
    driver.send("viewed", at(minutes=1))
    driver.run_until(at(days=1))
    assert driver.commands == []
    enrolled = of_type(driver.activities, A.ENROLLED)
    assert {(a.config_id, a.arm) for a in enrolled} == {
        ("cfg-1", Arm.GLOBAL_CONTROL),
        ("cfg-2", Arm.GLOBAL_CONTROL),
    }
    suppressed = of_type(driver.activities, A.MESSAGE_SUPPRESSED)
    assert [(a.step_id, a.reason_code) for a in suppressed] == [
        ("s1", Reason.GLOBAL_CONTROL),
        ("t1", Reason.GLOBAL_CONTROL),
        ("s2", Reason.GLOBAL_CONTROL),
    ]
    assert all(a.arm is Arm.GLOBAL_CONTROL for a in suppressed)


def test_a_control_user_still_converts_and_is_attributed_in_the_control_arm() -> None:
    ws = settings_with(10.0)
    driver = Driver.of(*two_sequences(), workspace=ws, user_id=control_user(ws.global_control))
    driver.send("signed_up")
    driver.send("purchased", at(minutes=5), properties={"amount": 40.0})
    (conversion,) = of_type(driver.activities, A.CONVERSION)
    assert (conversion.config_id, conversion.arm, conversion.value) == (
        "cfg-1",
        Arm.GLOBAL_CONTROL,
        40.0,
    )
    exited = of_type(driver.activities, A.ENROLLMENT_EXITED)
    assert [a.reason_code for a in exited] == [Reason.GOAL_REACHED]


def test_a_conversion_after_the_enrollment_ended_stays_in_the_control_arm() -> None:
    ws = settings_with(10.0)
    user = control_user(ws.global_control)
    driver = Driver.of(two_sequences()[0], workspace=ws, user_id=user)
    driver.send("signed_up")
    driver.run_until(at(days=1))
    assert [a.reason_code for a in of_type(driver.activities, A.ENROLLMENT_EXITED)] == [
        Reason.COMPLETED
    ]
    driver.send("purchased", at(days=2), properties={"amount": 15.0})
    (conversion,) = of_type(driver.activities, A.CONVERSION)
    assert (conversion.arm, conversion.value, conversion.step_id) == (
        Arm.GLOBAL_CONTROL,
        15.0,
        "s2",  # the last suppressed step, as a holdout's conversion names it
    )
    assert driver.commands == []


def test_a_user_outside_the_control_is_messaged_as_before() -> None:
    ws = settings_with(10.0)
    user = control_user(ws.global_control, inside=False)
    with_control = Driver.of(*two_sequences(), workspace=ws, user_id=user)
    without = Driver.of(*two_sequences(), workspace=settings_with(0.0), user_id=user)
    for driver in (with_control, without):
        driver.send("signed_up")
        driver.send("viewed", at(minutes=1))
        driver.run_until(at(days=1))
    assert with_control.commands == without.commands
    assert len(with_control.commands) == 3


def test_a_user_released_from_the_control_reenters_in_the_sequences_split() -> None:
    cfg = config(entry={"event_types": ["signed_up"], "reentry": {"policy": "always"}})
    ws = settings_with(50.0)
    user = control_user(ws.global_control)
    driver = Driver.of(cfg, workspace=ws, user_id=user)
    driver.send("signed_up")
    driver.run_until(at(hours=1))
    driver.workspace = settings_with(0.0)
    driver.send("signed_up", at(hours=2))
    arms = [a.arm for a in of_type(driver.activities, A.ENROLLED)]
    assert arms == [Arm.GLOBAL_CONTROL, Arm.ADAPTIVE]
    assert len(driver.commands) == 1


def test_the_per_sequence_lift_and_incremental_ignore_the_control_arm() -> None:
    counts = {"adaptive": (30, 100), "holdout": (10, 100)}
    with_control = {**counts, "global_control": (0, 1000)}
    assert lift_report(with_control) == lift_report(counts)
    totals = {name: ArmTotals(n, x, 0.0, 0.0) for name, (x, n) in with_control.items()}
    plain = {k: v for k, v in totals.items() if k != "global_control"}
    assert incremental_report(totals) == incremental_report(plain)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["signed_up", "viewed", "purchased", "opened", "clicked"]),
        st.integers(min_value=0, max_value=3 * 24 * 60),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=EVENTS, n=st.integers(min_value=0, max_value=50_000), pct=st.floats(1, 50))
def test_a_control_user_never_gets_a_command_from_any_sequence(
    events: list[tuple[str, int]], n: int, pct: float
) -> None:
    ws = settings_with(pct)
    user = f"p{n}"
    driver = Driver.of(*two_sequences(), workspace=ws, user_id=user)
    for kind, minute in sorted(events, key=lambda e: e[1]):
        driver.run_until(at(minutes=minute))
        driver.send(kind, at(minutes=minute), properties={"amount": 5.0})
    driver.run_until(at(days=5))
    inside = in_global_control(ws.global_control, WS, user)
    if inside:
        assert driver.commands == []
    assert all((a.arm is Arm.GLOBAL_CONTROL) == inside for a in driver.activities if a.arm)


# --- the program's comparison -----------------------------------------------------------------
def test_the_program_comparison_is_off_without_a_control() -> None:
    result = program_lift(GroupTotals(500, 50, 100.0, 400.0), GroupTotals(0, 0, 0.0, 0.0), 0.0)
    assert result["status"] == "off"
    assert result["incremental_conversions"] is None and result["incremental_revenue"] is None


def test_a_small_control_gives_no_numbers() -> None:
    result = program_lift(GroupTotals(500, 50, 100.0, 400.0), GroupTotals(29, 1, 2.0, 4.0), 5.0)
    assert result["status"] == "too_small"
    assert result["incremental_conversions"] is None
    assert result["control"]["users"] == 29


def test_incremental_conversions_and_revenue_with_their_intervals() -> None:
    treated = GroupTotals(users=1000, converted=120, revenue=2400.0, revenue_sq=120 * 20.0**2)
    control = GroupTotals(users=200, converted=12, revenue=240.0, revenue_sq=12 * 20.0**2)
    result = program_lift(treated, control, 10.0)
    assert result["status"] == "ok"
    conv = result["incremental_conversions"]
    assert conv["estimate"] == pytest.approx((0.12 - 0.06) * 1000)
    # Newcombe's hybrid score interval, from each rate's Wilson interval
    lt, ht = wilson_interval(120, 1000) or (0, 0)
    lc, hc = wilson_interval(12, 200) or (0, 0)
    low = 0.06 - math.sqrt((0.12 - lt) ** 2 + (hc - 0.06) ** 2)
    high = 0.06 + math.sqrt((ht - 0.12) ** 2 + (0.06 - lc) ** 2)
    assert (conv["ci95_low"], conv["ci95_high"]) == pytest.approx((low * 1000, high * 1000))
    assert conv["ci95_low"] < conv["estimate"] < conv["ci95_high"]
    rev = result["incremental_revenue"]
    assert rev["estimate"] == pytest.approx((2.4 - 1.2) * 1000)
    var_t = (120 * 400.0 - 1000 * 2.4**2) / 999
    var_c = (12 * 400.0 - 200 * 1.2**2) / 199
    half = Z95 * math.sqrt(var_t / 1000 + var_c / 200) * 1000
    assert (rev["ci95_low"], rev["ci95_high"]) == pytest.approx(
        (rev["estimate"] - half, rev["estimate"] + half)
    )
    assert result["treated"]["conversion_rate"] == pytest.approx(0.12)
    assert result["control"]["revenue_per_user"] == pytest.approx(1.2)


@settings(max_examples=300, deadline=None)
@given(
    n_t=st.integers(30, 10_000),
    n_c=st.integers(30, 10_000),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
)
def test_the_conversion_interval_always_holds_its_estimate(
    n_t: int, n_c: int, x: float, y: float
) -> None:
    treated = GroupTotals(n_t, round(x * n_t), 0.0, 0.0)
    control = GroupTotals(n_c, round(y * n_c), 0.0, 0.0)
    conv = program_lift(treated, control, 5.0)["incremental_conversions"]
    assert conv["ci95_low"] - 1e-9 <= conv["estimate"] <= conv["ci95_high"] + 1e-9
    assert -n_t - 1e-9 <= conv["ci95_low"] and conv["ci95_high"] <= n_t + 1e-9
