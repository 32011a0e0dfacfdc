"""Condition expressions through the real core (`on_event` / `on_timer`): entry, exits, step
conditions, branch rules, wait-for and goal each accept a `when`, and property predicates are
refused at write time where no event is at hand, with the field's path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sme.contracts.activities import ActivityType
from sme.contracts.reasons import Reason
from sme.contracts.sequences import SequenceConfig, Status
from tests.unit.builders import Driver, at, config, msg_step, of_type, with_status

A = ActivityType
BIG_CART = {"property": "cart.amount", "min": 50}


def _exit_reasons(d: Driver) -> list[str]:
    return [a.reason_code for a in of_type(d.activities, A.ENROLLMENT_EXITED)]


def _abandoned_cart() -> SequenceConfig:
    return config(
        entry={"event_types": ["cart_abandoned"], "when": BIG_CART},
        steps=[msg_step("s1", wait="PT1H"), msg_step("s2", wait="P1D")],
        exit={
            "rules": [
                {
                    "event_types": ["purchased", "support_ticket"],
                    "when": {
                        "any": [
                            {"property": "amount", "min": 1},
                            {"attribute": "plan", "equals": "staff"},
                        ]
                    },
                }
            ]
        },
    )


@pytest.mark.parametrize(
    ("properties", "enrolled"),
    [
        ({"cart": {"amount": 80}}, True),
        ({"cart": {"amount": 50}}, True),
        ({"cart": {"amount": 49.99}}, False),
        ({"cart": {"amount": "80"}}, False),  # a string is not a number
        ({"cart": [80]}, False),
        ({}, False),
    ],
)
def test_an_entry_when_filters_on_the_trigger_events_properties(
    properties: dict[str, Any], enrolled: bool
) -> None:
    d = Driver.of(_abandoned_cart())

    out = d.send("cart_abandoned", properties=properties)

    assert len(of_type(out, A.ENROLLED)) == int(enrolled)


def test_an_exit_rule_on_any_exits_only_when_one_member_holds() -> None:
    d = Driver.of(_abandoned_cart())
    d.send("cart_abandoned", properties={"cart": {"amount": 120}})

    d.send("purchased", at(minutes=10), properties={"amount": 0})  # neither member holds
    d.send("visited", at(minutes=20), properties={"amount": 99})  # not an exit type
    assert len(d.state.enrollments) == 1

    d.send("purchased", at(minutes=30), properties={"amount": 120})
    d.run_until(at(days=3))

    assert d.state.enrollments == ()
    assert _exit_reasons(d) == [Reason.EXIT_EVENT]
    assert d.commands == []


def test_an_exit_rule_may_test_the_profile_the_event_brings() -> None:
    d = Driver.of(_abandoned_cart())
    d.send("cart_abandoned", properties={"cart": {"amount": 120}})

    d.send("support_ticket", at(minutes=5), user={"attributes": {"plan": "staff"}})

    assert _exit_reasons(d) == [Reason.EXIT_EVENT]


def test_without_an_exit_the_sequence_runs_to_its_end() -> None:
    d = Driver.of(_abandoned_cart())
    d.send("cart_abandoned", properties={"cart": {"amount": 120}})

    d.run_until(at(days=3))

    assert [c.step_id for c in d.commands] == ["s1", "s2"]


def test_a_step_condition_when_reads_profile_attributes_kept_since_the_entry() -> None:
    cfg = config(
        steps=[
            msg_step("s1"),
            msg_step(
                "upsell",
                wait="P1D",
                condition={"when": {"not": {"attribute": "tier", "one_of": ["gold", "staff"]}}},
            ),
        ]
    )
    silver, gold = Driver.of(cfg, user_id="silver"), Driver.of(cfg, user_id="gold")

    silver.send("signed_up", user={"attributes": {"tier": "silver"}})
    gold.send("signed_up", user={"attributes": {"tier": "gold"}})
    for d in (silver, gold):
        d.run_until(at(days=2))

    assert [c.step_id for c in silver.commands] == ["s1", "upsell"]
    assert [c.step_id for c in gold.commands] == ["s1"]
    (skipped,) = of_type(gold.activities, A.STEP_SKIPPED)
    assert skipped.reason_code == Reason.CONDITION_FALSE
    assert gold.state.profile.attributes == {"tier": "gold"}  # kept: an expression asks for it


def test_a_branch_rule_when_chooses_the_path() -> None:
    cfg = config(
        steps=[
            {
                "id": "route",
                "kind": "branch",
                "branches": [
                    {
                        "when": {
                            "all": [
                                {"attribute": "country", "one_of": ["FR", "DE"]},
                                {"attribute": "signup_at", "after": "2024-01-01"},
                            ]
                        },
                        "goto": "eu",
                    }
                ],
            },
            msg_step("world"),
            msg_step("eu", channels=["push"]),
        ]
    )
    eu, world = Driver.of(cfg, user_id="eu"), Driver.of(cfg, user_id="world")

    eu.send("signed_up", user={"attributes": {"country": "FR", "signup_at": "2024-04-30"}})
    world.send("signed_up", user={"attributes": {"country": "FR", "signup_at": "2023-12-01"}})

    assert [c.step_id for c in eu.commands] == ["eu"]
    assert [c.step_id for c in world.commands] == ["world", "eu"]


def _awaiting_big_purchase() -> SequenceConfig:
    return config(
        steps=[
            msg_step("s1"),
            msg_step(
                "reminder",
                wait_for={
                    "event_type": "purchased",
                    "timeout": "PT2H",
                    "on_event": "thanks",
                    "when": {"property": "amount", "min": 50},
                },
            ),
            msg_step("thanks", channels=["push"]),
        ]
    )


def test_a_wait_for_when_ignores_events_on_which_it_does_not_hold() -> None:
    d = Driver.of(_awaiting_big_purchase())
    d.send("signed_up")

    small = d.send("purchased", at(minutes=10), properties={"amount": 5})
    big = d.send("purchased", at(minutes=20), properties={"amount": 75})

    assert small.commands == ()
    assert [c.step_id for c in big.commands] == ["thanks"]
    (branched,) = of_type(big, A.STEP_BRANCHED)
    assert branched.reason_code == Reason.AWAITED_EVENT


def test_a_matching_awaited_event_during_a_pause_jumps_on_resume() -> None:
    cfg = _awaiting_big_purchase()
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.PAUSED))
    d.send("purchased", at(minutes=10), properties={"amount": 5})
    d.send("purchased", at(minutes=20), properties={"amount": 75})
    d.set_config(with_status(d.configs[cfg.id], Status.ACTIVE))

    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1", "thanks"]


def test_a_non_matching_awaited_event_during_a_pause_does_not_count() -> None:
    cfg = _awaiting_big_purchase()
    d = Driver.of(cfg)
    d.send("signed_up")
    d.set_config(with_status(cfg, Status.PAUSED))
    d.send("purchased", at(minutes=10), properties={"amount": 5})
    d.set_config(with_status(d.configs[cfg.id], Status.ACTIVE))

    d.run_until(at(days=1))

    assert [c.step_id for c in d.commands] == ["s1", "reminder", "thanks"]


def test_a_goal_when_converts_only_on_events_where_it_holds() -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="P1D")],
        exit={
            "goal": {
                "event_type": "purchased",
                "value_property": "amount",
                "when": {"property": "currency", "equals": "EUR"},
            }
        },
    )
    d = Driver.of(cfg)
    d.send("signed_up")

    d.send("purchased", at(hours=1), properties={"amount": 10, "currency": "USD"})
    assert of_type(d.activities, A.CONVERSION) == []

    d.send("purchased", at(hours=2), properties={"amount": 30, "currency": "EUR"})
    (conversion,) = of_type(d.activities, A.CONVERSION)
    assert conversion.value == 30
    assert _exit_reasons(d) == [Reason.GOAL_REACHED]


# --- write time ----------------------------------------------------------------------------


def _locs(**overrides: Any) -> list[tuple[str | int, ...]]:
    with pytest.raises(ValidationError) as caught:
        config(**overrides)
    return [e["loc"] for e in caught.value.errors()]


def test_a_property_predicate_where_no_event_is_at_hand_is_refused_at_its_path() -> None:
    condition = {"when": {"all": [{"attribute": "a", "exists": True}, BIG_CART]}}
    assert _locs(steps=[msg_step("s1", condition=condition)]) == [
        ("steps", 0, "condition", "when", "all", 1, "property")
    ]
    rule = {"when": {"not": BIG_CART}, "goto": "next"}
    assert _locs(steps=[{"id": "b", "kind": "branch", "branches": [rule]}, msg_step("s")]) == [
        ("steps", 0, "branches", 0, "when", "not", "property")
    ]


def test_a_branch_rule_gives_exactly_one_of_event_type_attribute_or_when() -> None:
    when = {"attribute": "a", "exists": True}
    both = {"event_type": "clicked", "when": when, "goto": "next"}
    assert _locs(steps=[{"id": "b", "kind": "branch", "branches": [both]}, msg_step("s")]) == [
        ("steps", 0, "branches", 0, "when")
    ]


def test_an_invalid_expression_is_located_inside_its_field() -> None:
    entry = {"event_types": ["signed_up"], "when": {"any": [{"property": "amount", "min": "x"}]}}
    assert ("entry", "when", "any", "any", 0, "predicate", "min") in _locs(entry=entry)
    exit_ = {"rules": [{"event_types": ["x"], "when": {"attribute": "a"}}]}
    assert _locs(exit=exit_) == [("exit", "rules", 0, "when", "predicate", "equals")]
