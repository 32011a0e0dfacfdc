"""Caps per message category, per-channel (and per-category) quiet hours, and transactional
steps that stand outside caps, quiet hours and the minimum gap."""

from __future__ import annotations

import json
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sme.contracts.activities import ActivityType as A
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.reasons import Reason
from sme.contracts.sequences import Guardrails, QuietHours
from sme.core.targeting import SendKind, quiet_hours_for
from sme.core.user_state import Touch, UserState
from tests.unit.builders import T0, Driver, at, config, msg_step, of_type, workspace

ALWAYS = {"event_types": ["signed_up"], "reentry": {"policy": "always"}}
QUIET_AT_T0 = {"start": "09:00", "end": "12:00"}  # T0 is 10:00 UTC (users without a zone: UTC)


def locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


def sent_steps(d: Driver) -> list[str]:
    return [c.step_id for c in d.commands]


# --- configuration ----------------------------------------------------------------------------


def test_a_configuration_without_categories_keeps_its_meaning() -> None:
    cfg = config(guardrails={"frequency_caps": [{"max": 1, "per": "P1D"}]})

    assert cfg.steps[0].category == "marketing"
    assert cfg.steps[0].transactional is False
    assert cfg.guardrails.frequency_caps[0].category is None
    assert cfg.guardrails.quiet_hours_overrides == []


def test_an_override_must_target_a_channel_or_a_category() -> None:
    with pytest.raises(ValidationError) as exc:
        config(guardrails={"quiet_hours_overrides": [{"quiet_hours": None}]})

    assert locs(exc) == [("guardrails", "quiet_hours_overrides", 0, "channel")]


def test_two_overrides_may_not_target_the_same_sends() -> None:
    overrides = [
        {"channel": "sms", "quiet_hours": None},
        {"channel": "email", "quiet_hours": None},
        {"channel": "sms", "quiet_hours": QUIET_AT_T0},
    ]
    with pytest.raises(ValidationError) as exc:
        config(guardrails={"quiet_hours_overrides": overrides})

    assert locs(exc) == [("guardrails", "quiet_hours_overrides", 2)]


def test_an_override_must_say_what_the_quiet_hours_are_or_null() -> None:
    with pytest.raises(ValidationError) as exc:
        config(guardrails={"quiet_hours_overrides": [{"channel": "in_app"}]})

    assert locs(exc) == [("guardrails", "quiet_hours_overrides", 0, "quiet_hours")]


@pytest.mark.parametrize("category", ["", "Promo", "two words", "x" * 33, "-lead"])
def test_a_category_is_a_short_lowercase_identifier(category: str) -> None:
    with pytest.raises(ValidationError) as exc:
        config(steps=[msg_step("s1", category=category)])

    assert locs(exc) == [("steps", 0, "category")]


def test_only_message_steps_are_transactional() -> None:
    steps = [
        {"id": "b", "kind": "branch", "branches": [{"event_type": "x", "goto": "s1"}]},
        msg_step("s1"),
    ]
    steps[0]["transactional"] = True
    with pytest.raises(ValidationError) as exc:
        config(steps=steps)

    assert locs(exc) == [("steps", 0, "transactional")]


# --- category caps ----------------------------------------------------------------------------


def test_a_category_cap_holds_back_only_its_own_category() -> None:
    cfg = config(
        entry=ALWAYS,
        steps=[
            msg_step("promo1", category="promo"),
            msg_step("news", category="news"),
            msg_step("promo2", category="promo"),
        ],
        guardrails={
            "on_limit": "skip",
            "frequency_caps": [{"max": 1, "per": "P1D", "category": "promo"}],
        },
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert sent_steps(d) == ["promo1", "news"]
    (skipped,) = of_type(d.activities, A.STEP_SKIPPED)
    assert (skipped.step_id, skipped.reason_code) == ("promo2", Reason.FREQUENCY_CAP)


def test_a_category_cap_does_not_count_other_categories() -> None:
    cfg = config(
        entry=ALWAYS,
        steps=[msg_step("news1", category="news"), msg_step("promo", category="promo")],
        guardrails={"frequency_caps": [{"max": 1, "per": "P1D", "category": "promo"}]},
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert sent_steps(d) == ["news1", "promo"]


def test_a_cap_without_category_counts_every_category_as_before() -> None:
    cfg = config(
        entry=ALWAYS,
        steps=[msg_step("news", category="news"), msg_step("promo", category="promo")],
        guardrails={"on_limit": "skip", "frequency_caps": [{"max": 1, "per": "P1D"}]},
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert sent_steps(d) == ["news"]


def test_a_workspace_category_cap_counts_that_category_across_sequences() -> None:
    promo = {"entry": ALWAYS, "steps": [msg_step("p", category="promo")]}
    first = config(id="cfg-a", **promo)
    second = config(id="cfg-b", **promo)
    ws = workspace(frequency_caps=[{"max": 1, "per": "PT6H", "category": "promo"}])
    d = Driver.of(first, second, workspace=ws)

    out = d.send("signed_up")

    assert len(out.commands) == 1
    (deferred,) = of_type(out, A.STEP_DEFERRED)
    assert deferred.reason_code == Reason.FREQUENCY_CAP
    assert d.due() == at(hours=6)


# --- transactional steps ----------------------------------------------------------------------


def test_a_transactional_step_ignores_caps_quiet_hours_and_the_minimum_gap() -> None:
    rules = {
        "frequency_caps": [{"max": 1, "per": "P1D"}, {"max": 1, "per": "P1D", "category": "x"}],
        "quiet_hours": QUIET_AT_T0,
        "min_gap": "PT6H",
    }
    cfg = config(
        entry=ALWAYS,
        steps=[
            msg_step("r1", transactional=True, category="x"),
            msg_step("r2", transactional=True),
        ],
        guardrails=rules,
    )
    d = Driver.of(cfg, workspace=workspace(**rules))

    d.send("signed_up")
    d.send("signed_up", at(minutes=5))

    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("r1", T0),
        ("r2", T0),
        ("r1", at(minutes=5)),
        ("r2", at(minutes=5)),
    ]
    emitted = of_type(d.activities, A.COMMAND_EMITTED)
    assert {(a.details["transactional"], a.details["category"]) for a in emitted} == {
        (True, "x"),
        (True, "marketing"),
    }


def test_transactional_sends_count_toward_no_cap_and_no_gap() -> None:
    cfg = config(
        entry=ALWAYS,
        steps=[msg_step("receipt", transactional=True), msg_step("upsell")],
        guardrails={"frequency_caps": [{"max": 1, "per": "P1D"}], "min_gap": "PT6H"},
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert sent_steps(d) == ["receipt", "upsell"]
    upsell = of_type(d.activities, A.COMMAND_EMITTED)[1]
    assert upsell.details["transactional"] is False


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({"daily_send_budget": {"email": 0}}, Reason.CHANNEL_BUDGET),
        ({"allowed_channels": ["sms"]}, Reason.NO_ELIGIBLE_CHANNEL),  # email not allowed
    ],
)
def test_a_transactional_step_still_meets_budgets_and_allowed_channels(
    rules: dict[str, Any], reason: Reason
) -> None:
    cfg = config(steps=[msg_step("r", transactional=True)], guardrails=rules)
    d = Driver.of(cfg)

    d.send("signed_up")

    assert d.commands == []
    (skipped,) = of_type(d.activities, A.STEP_SKIPPED)
    assert skipped.reason_code == reason
    assert skipped.details["transactional"] is True


def test_a_transactional_step_still_respects_consent() -> None:
    cfg = config(steps=[msg_step("r", transactional=True)])
    d = Driver.of(cfg)

    d.send("signed_up", user={"consent": {"email": False}})

    assert d.commands == []
    assert of_type(d.activities, A.STEP_SKIPPED)[0].reason_code == Reason.NO_CONSENT


def test_the_holdout_gets_no_transactional_message_and_its_suppression_says_so() -> None:
    cfg = config(
        steps=[msg_step("r", transactional=True)],
        experiment={"holdout_pct": 100, "baseline_pct": 0},
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert d.commands == []
    (suppressed,) = of_type(d.activities, A.MESSAGE_SUPPRESSED)
    assert suppressed.details == {"channel": "email", "transactional": True}


# --- quiet hours per channel and category ------------------------------------------------------


def test_a_channel_opted_out_of_quiet_hours_takes_the_send_during_them() -> None:
    cfg = config(
        steps=[msg_step("s1", channels=["email", "in_app"])],
        guardrails={
            "quiet_hours": QUIET_AT_T0,
            "quiet_hours_overrides": [{"channel": "in_app", "quiet_hours": None}],
        },
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert [(c.channel, c.decided_at) for c in d.commands] == [(Channel.IN_APP, T0)]
    emitted = of_type(d.activities, A.COMMAND_EMITTED)[0]
    assert emitted.details["dropped"] == {"email": "quiet_hours"}


def test_a_channel_with_its_own_quiet_hours_waits_for_their_end() -> None:
    cfg = config(
        steps=[msg_step("s1", channels=["sms"])],
        guardrails={
            "quiet_hours_overrides": [
                {"channel": "sms", "quiet_hours": {"start": "08:00", "end": "11:30"}}
            ]
        },
    )
    d = Driver.of(cfg)

    out = d.send("signed_up")

    assert of_type(out, A.STEP_DEFERRED)[0].reason_code == Reason.QUIET_HOURS
    assert d.due() == at(hours=1, minutes=30)
    d.run_until(at(days=1))
    assert [c.decided_at for c in d.commands] == [at(hours=1, minutes=30)]


def test_an_opt_out_at_one_level_leaves_the_other_levels_quiet_hours() -> None:
    cfg = config(
        steps=[msg_step("s1", channels=["in_app"])],
        guardrails={"quiet_hours": QUIET_AT_T0},
    )
    ws = workspace(quiet_hours_overrides=[{"channel": "in_app", "quiet_hours": None}])
    d = Driver.of(cfg, workspace=ws)

    d.send("signed_up")

    assert d.commands == []
    assert d.due() == at(hours=2)


def test_a_category_override_applies_only_to_its_category() -> None:
    cfg = config(
        entry=ALWAYS,
        steps=[msg_step("promo", category="promo"), msg_step("alert", category="alerts")],
        guardrails={"quiet_hours_overrides": [{"category": "promo", "quiet_hours": QUIET_AT_T0}]},
    )
    d = Driver.of(cfg)

    d.send("signed_up")

    assert d.commands == []  # promo waits for 12:00; the alert comes after it
    d.run_until(at(days=1))
    assert [(c.step_id, c.decided_at) for c in d.commands] == [
        ("promo", at(hours=2)),
        ("alert", at(hours=2)),
    ]


def test_the_most_specific_override_wins() -> None:
    early = {"start": "01:00", "end": "02:00"}
    late = {"start": "03:00", "end": "04:00"}
    both = {"start": "05:00", "end": "06:00"}
    rules = Guardrails.model_validate(
        {
            "quiet_hours": {"start": "22:00", "end": "08:00"},
            "quiet_hours_overrides": [
                {"category": "promo", "quiet_hours": early},
                {"channel": "sms", "quiet_hours": late},
                {"channel": "sms", "category": "promo", "quiet_hours": both},
                {"channel": "in_app", "quiet_hours": None},
            ],
        }
    )
    promo, news = SendKind("promo"), SendKind("news")

    def window(channel: Channel, kind: SendKind) -> tuple[time, time] | None:
        quiet = quiet_hours_for(rules, channel, kind)
        return None if quiet is None else (quiet.start, quiet.end)

    assert window(Channel.SMS, promo) == (time(5), time(6))  # channel and category
    assert window(Channel.SMS, news) == (time(3), time(4))  # channel
    assert window(Channel.IN_APP, promo) is None  # channel (opted out) before category
    assert window(Channel.EMAIL, promo) == (time(1), time(2))  # category
    assert window(Channel.EMAIL, news) == (time(22), time(8))  # the level's own
    assert quiet_hours_for(rules, Channel.EMAIL, SendKind(transactional=True)) is None
    assert isinstance(rules.quiet_hours, QuietHours)


# --- the send log -----------------------------------------------------------------------------


def test_the_send_log_keeps_category_and_transactional_and_reads_old_rows() -> None:
    plain = Touch(1, "c", "s", Channel.SMS, "abc", Arm.ADAPTIVE, "v")
    promo = Touch(2, "c", "s", Channel.SMS, "abd", Arm.ADAPTIVE, "v", category="promo")
    receipt = Touch(3, "c", "s", None, "", Arm.HOLDOUT, "v", category="r", transactional=True)
    state = UserState.new("w", "u")
    state = UserState(state.workspace_id, state.user_id, touches=(plain, promo, receipt))

    stored = state.to_dict()

    assert [len(row) for row in stored["to"]] == [9, 10, 11]  # defaults cost nothing
    assert UserState.from_dict(stored).touches == (plain, promo, receipt)
    old_row = [5, "c", "s", 0, "abc", 0, "v", "*", 0]
    (old,) = UserState.from_dict({"w": "w", "u": "u", "to": [old_row]}).touches
    assert (old.category, old.transactional) == ("marketing", False)


def test_the_readme_example_of_categories_is_a_valid_configuration() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("Message categories and transactional steps") :]
    example = json.loads(section.split("```json", 1)[1].split("```", 1)[0])

    cfg = config(**example)

    assert [s.transactional for s in cfg.steps] == [True, False]
    assert len(cfg.guardrails.quiet_hours_overrides) == 2
