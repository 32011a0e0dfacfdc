"""Configuration validation: strict (unknown fields rejected), bounded (durations, caps, step
counts), well-formed (forward-only jumps, unique step ids, complete message steps), and every
error located at the field to fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from sme.contracts.config_records import SequenceRecord
from sme.contracts.sequences import (
    MAX_CAP,
    MAX_STEPS,
    FrequencyCap,
    Guardrails,
    SequenceConfig,
    Status,
    WorkspaceSettings,
)


def message(step_id: str, **overrides: Any) -> dict[str, Any]:
    return {"id": step_id, "template": "tpl", "channels": ["email"], **overrides}


def branch(step_id: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"id": step_id, "kind": "branch", "branches": list(rules)}


def data(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "cfg-1",
        "workspace_id": "ws",
        "name": "Onboarding",
        "entry": {"event_types": ["signed_up"]},
        "steps": [message("s1")],
    }
    out.update(overrides)
    return out


def errors(**overrides: Any) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        SequenceConfig.model_validate(data(**overrides))
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def locs(**overrides: Any) -> list[tuple[str | int, ...]]:
    return [loc for loc, _ in errors(**overrides)]


# --- valid configurations ----------------------------------------------------------------------


def test_a_minimal_configuration_is_valid_with_safe_defaults() -> None:
    cfg = SequenceConfig.model_validate(data())

    assert cfg.status is Status.ACTIVE
    assert cfg.entry.reentry.policy == "never"
    assert cfg.steps[0].variants == ["default"]
    assert cfg.steps[0].wait == timedelta(0)
    assert cfg.guardrails == Guardrails()
    assert cfg.experiment.holdout_pct + cfg.experiment.baseline_pct <= 100


def test_a_full_configuration_round_trips_through_json() -> None:
    cfg = SequenceConfig.model_validate(
        data(
            steps=[
                message("welcome", channels=["email", "push"], variants=["a", "b"]),
                message(
                    "nudge",
                    wait="P1D",
                    condition={"none_of_events": ["clicked"]},
                    wait_for={"event_type": "opened", "timeout": "PT6H", "on_event": "done"},
                ),
                branch(
                    "route",
                    {"event_type": "clicked", "goto": "done"},
                    {
                        "attribute": {"key": "plan", "one_of": ["pro", "team"]},
                        "goto": "exit",
                    },
                ),
                message("done", wait="P3D", wait_from="entry", channels=["sms"]),
            ],
            exit={"event_types": ["churned"], "goal": {"event_type": "purchased"}},
            guardrails={
                "frequency_caps": [{"max": 2, "per": "P1D"}, {"max": 1, "calendar_day": True}],
                "quiet_hours": {"start": "22:00", "end": "08:00"},
                "min_gap": "PT4H",
                "daily_send_budget": {"sms": 1000},
                "daily_cost_budget": 50.0,
                "cost_per_message": {"sms": 0.05},
                "max_messages_per_enrollment": 3,
                "allowed_channels": ["email", "sms", "push"],
            },
            experiment={"holdout_pct": 10, "baseline_pct": 90},
        )
    )

    assert SequenceConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert SequenceRecord.model_validate({"config": cfg.model_dump(mode="json")}).config == cfg


def test_a_configuration_is_immutable() -> None:
    cfg = SequenceConfig.model_validate(data())

    with pytest.raises(ValidationError):
        cfg.name = "changed"  # type: ignore[misc]


# --- strictness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"colour": "red"}, ("colour",)),
        ({"steps": [message("s1", colour="red")]}, ("steps", 0, "colour")),
        ({"guardrails": {"quiet": True}}, ("guardrails", "quiet")),
        ({"entry": {"event_types": ["a"], "filter": []}}, ("entry", "filter")),
        ({"adaptive": {"epsilon": 0.1}}, ("adaptive", "epsilon")),
    ],
)
def test_unknown_fields_are_rejected_where_they_appear(
    overrides: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    assert errors(**overrides) == [(loc, "Extra inputs are not permitted")]


def test_unknown_workspace_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        WorkspaceSettings.model_validate({"workspace_id": "ws", "guardrails": {"cap": 1}})

    assert [e["loc"] for e in caught.value.errors()] == [("guardrails", "cap")]


def test_an_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        WorkspaceSettings.model_validate({"workspace_id": "ws", "default_timezone": "Mars/Base"})

    assert [e["loc"] for e in caught.value.errors()] == [("default_timezone",)]


# --- the step graph ----------------------------------------------------------------------------


def test_a_branch_may_jump_forward_to_a_later_step_next_or_exit() -> None:
    cfg = SequenceConfig.model_validate(
        data(
            steps=[
                branch(
                    "b",
                    {"event_type": "clicked", "goto": "s3"},
                    {"event_type": "opened", "goto": "next"},
                    {"event_type": "bounced", "goto": "exit"},
                ),
                message("s2"),
                message("s3"),
            ]
        )
    )

    assert [r.goto for r in cfg.steps[0].branches] == ["s3", "next", "exit"]


def test_a_branch_may_not_jump_back_and_the_error_names_the_goto() -> None:
    steps = [message("s1"), branch("b", {"event_type": "clicked", "goto": "s1"})]

    assert errors(steps=steps) == [
        (("steps", 1, "branches", 0, "goto"), "goto 's1' must jump forward")
    ]


def test_a_branch_may_not_jump_to_itself() -> None:
    steps = [branch("b", {"event_type": "clicked", "goto": "b"}), message("s2")]

    assert locs(steps=steps) == [("steps", 0, "branches", 0, "goto")]


def test_a_goto_must_name_a_step() -> None:
    steps = [branch("b", {"event_type": "clicked", "goto": "nowhere"}), message("s2")]

    assert errors(steps=steps) == [
        (("steps", 0, "branches", 0, "goto"), "goto 'nowhere' names no step")
    ]


def test_an_awaited_event_may_not_jump_back() -> None:
    wait_for = {"event_type": "opened", "timeout": "PT1H", "on_event": "s1"}
    steps = [message("s1"), message("s2", wait_for=wait_for)]

    assert locs(steps=steps) == [("steps", 1, "wait_for", "on_event")]


def test_every_bad_jump_is_reported_at_once() -> None:
    steps = [
        message("s1"),
        branch("b", {"event_type": "x", "goto": "s1"}, {"event_type": "y", "goto": "zz"}),
    ]

    assert locs(steps=steps) == [
        ("steps", 1, "branches", 0, "goto"),
        ("steps", 1, "branches", 1, "goto"),
    ]


def test_step_ids_must_be_unique_and_the_error_names_the_repeat() -> None:
    steps = [message("s1"), message("s2"), message("s1")]

    assert errors(steps=steps) == [(("steps", 2, "id"), "step ids must be unique")]


def test_the_number_of_steps_is_bounded() -> None:
    SequenceConfig.model_validate(data(steps=[message(f"s{i}") for i in range(MAX_STEPS)]))

    assert locs(steps=[message(f"s{i}") for i in range(MAX_STEPS + 1)]) == [("steps",)]
    assert locs(steps=[]) == [("steps",)]


def test_a_step_id_is_a_plain_token() -> None:
    assert locs(steps=[message("step one")]) == [("steps", 0, "id")]


# --- step shape --------------------------------------------------------------------------------


def test_a_message_step_needs_a_template() -> None:
    step = {"id": "s1", "channels": ["email"]}

    assert errors(steps=[step]) == [(("steps", 0, "template"), "a message step needs a template")]


def test_a_message_step_needs_a_channel() -> None:
    assert locs(steps=[{"id": "s1", "template": "t"}]) == [("steps", 0, "channels")]
    assert locs(steps=[message("s1", channels=[])]) == [("steps", 0, "channels")]


def test_a_message_step_missing_both_reports_both() -> None:
    assert locs(steps=[{"id": "s1"}]) == [("steps", 0, "template"), ("steps", 0, "channels")]


def test_a_message_steps_channels_must_not_repeat() -> None:
    assert locs(steps=[message("s1", channels=["sms", "sms"])]) == [("steps", 0, "channels")]


def test_an_unknown_channel_is_rejected() -> None:
    assert locs(steps=[message("s1", channels=["fax"])]) == [("steps", 0, "channels", 0)]


def test_only_branch_steps_have_branches_and_branch_steps_need_them() -> None:
    rule = {"event_type": "clicked", "goto": "exit"}

    assert locs(steps=[message("s1", branches=[rule])]) == [("steps", 0, "branches")]
    assert locs(steps=[branch("b")]) == [("steps", 0, "branches")]


def test_a_branch_rule_tests_exactly_one_thing() -> None:
    both = {"event_type": "x", "attribute": {"key": "a", "equals": 1}, "goto": "exit"}
    neither = {"goto": "exit"}

    assert locs(steps=[branch("b", both)]) == [("steps", 0, "branches", 0, "attribute")]
    assert locs(steps=[branch("b", neither)]) == [("steps", 0, "branches", 0, "event_type")]


def test_an_attribute_filter_has_exactly_one_test_and_a_sane_range() -> None:
    def entry(flt: dict[str, Any]) -> dict[str, Any]:
        return {"event_types": ["signed_up"], "filters": [flt]}

    assert locs(entry=entry({"key": "a"})) == [("entry", "filters", 0, "equals")]
    assert locs(entry=entry({"key": "a", "equals": 1, "min": 0})) == [
        ("entry", "filters", 0, "min")
    ]
    assert locs(entry=entry({"key": "a", "min": 5, "max": 1})) == [("entry", "filters", 0, "max")]
    SequenceConfig.model_validate(data(entry=entry({"key": "a", "max": 1})))


def test_an_entry_needs_a_trigger_event_type() -> None:
    assert locs(entry={"event_types": []}) == [("entry", "event_types")]
    assert locs(entry={"event_types": ["Signed Up"]}) == [("entry", "event_types", 0)]


# --- bounded durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"steps": [message("s1", wait="P366D")]}, ("steps", 0, "wait")),
        ({"steps": [message("s1", wait="-PT1S")]}, ("steps", 0, "wait")),
        (
            {"steps": [message("s1", wait_for={"event_type": "o", "timeout": "PT0S"})]},
            ("steps", 0, "wait_for", "timeout"),
        ),
        (
            {"steps": [message("s1", wait_for={"event_type": "o", "timeout": "P400D"})]},
            ("steps", 0, "wait_for", "timeout"),
        ),
        (
            {"entry": {"event_types": ["a"], "reentry": {"policy": "cooldown", "cooldown": "P2Y"}}},
            ("entry", "reentry", "cooldown"),
        ),
        (
            {"exit": {"goal": {"event_type": "p", "attribution_window": "PT0S"}}},
            ("exit", "goal", "attribution_window"),
        ),
        ({"guardrails": {"min_gap": "PT0S"}}, ("guardrails", "min_gap")),
        ({"guardrails": {"min_gap": "P366D"}}, ("guardrails", "min_gap")),
        (
            {"guardrails": {"frequency_caps": [{"max": 1, "per": "PT0S"}]}},
            ("guardrails", "frequency_caps", 0, "per"),
        ),
        (
            {"guardrails": {"frequency_caps": [{"max": 1, "per": "P366D"}]}},
            ("guardrails", "frequency_caps", 0, "per"),
        ),
    ],
)
def test_durations_are_bounded(overrides: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    assert locs(**overrides) == [loc]


def test_the_longest_allowed_duration_is_a_year() -> None:
    cfg = SequenceConfig.model_validate(data(steps=[message("s1", wait="P365D")]))

    assert cfg.steps[0].wait == timedelta(days=365)


def test_a_duration_error_says_what_is_allowed() -> None:
    ((_, msg),) = errors(steps=[message("s1", wait="-PT1S")])

    assert "at least 0 and at most 365 days" in msg


# --- guardrails --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, MAX_CAP + 1])
def test_a_cap_maximum_is_between_one_and_the_send_log_size(bad: int) -> None:
    caps = [{"max": bad, "per": "P1D"}]

    assert locs(guardrails={"frequency_caps": caps}) == [("guardrails", "frequency_caps", 0, "max")]


def test_the_largest_cap_fits_the_send_log() -> None:
    assert FrequencyCap(max=MAX_CAP, per=timedelta(days=1)).max == MAX_CAP


def test_a_cap_has_exactly_one_window() -> None:
    both = [{"max": 1, "per": "P1D", "calendar_day": True}]
    neither = [{"max": 1}]

    assert locs(guardrails={"frequency_caps": both}) == [("guardrails", "frequency_caps", 0, "per")]
    assert locs(guardrails={"frequency_caps": neither}) == [
        ("guardrails", "frequency_caps", 0, "per")
    ]


def test_there_are_at_most_ten_caps() -> None:
    caps = [{"max": 1, "per": "P1D"}] * 11

    assert locs(guardrails={"frequency_caps": caps}) == [("guardrails", "frequency_caps")]


def test_quiet_hours_must_not_be_empty() -> None:
    quiet = {"start": "22:00", "end": "22:00"}

    assert errors(guardrails={"quiet_hours": quiet}) == [
        (("guardrails", "quiet_hours", "end"), "start and end must differ")
    ]


def test_quiet_hours_may_wrap_past_midnight() -> None:
    cfg = SequenceConfig.model_validate(
        data(guardrails={"quiet_hours": {"start": "22:00", "end": "08:00"}})
    )

    assert cfg.guardrails.quiet_hours is not None


@pytest.mark.parametrize(
    ("rules", "loc"),
    [
        ({"daily_send_budget": {"sms": -1}}, ("guardrails", "daily_send_budget", "sms")),
        ({"daily_send_budget": {"fax": 1}}, ("guardrails", "daily_send_budget", "fax", "[key]")),
        ({"daily_cost_budget": -0.01}, ("guardrails", "daily_cost_budget")),
        ({"cost_per_message": {"sms": -1}}, ("guardrails", "cost_per_message", "sms")),
        ({"max_messages_per_enrollment": 0}, ("guardrails", "max_messages_per_enrollment")),
        ({"allowed_channels": ["fax"]}, ("guardrails", "allowed_channels", 0)),
        ({"on_limit": "drop"}, ("guardrails", "on_limit")),
    ],
)
def test_guardrail_values_are_checked_field_by_field(
    rules: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    assert locs(guardrails=rules) == [loc]


def test_workspace_guardrails_are_validated_like_a_sequences() -> None:
    with pytest.raises(ValidationError) as caught:
        WorkspaceSettings.model_validate(
            {
                "workspace_id": "ws",
                "guardrails": {"quiet_hours": {"start": "01:00", "end": "01:00"}},
            }
        )

    assert [e["loc"] for e in caught.value.errors()] == [("guardrails", "quiet_hours", "end")]


# --- experiment and adaptivity -----------------------------------------------------------------


def test_holdout_and_baseline_may_fill_but_not_exceed_the_population() -> None:
    SequenceConfig.model_validate(data(experiment={"holdout_pct": 40, "baseline_pct": 60}))

    assert errors(experiment={"holdout_pct": 40.5, "baseline_pct": 60}) == [
        (("experiment", "baseline_pct"), "holdout_pct + baseline_pct must not exceed 100")
    ]


@pytest.mark.parametrize(
    ("experiment", "loc"),
    [
        ({"holdout_pct": -1}, ("experiment", "holdout_pct")),
        ({"baseline_pct": 101}, ("experiment", "baseline_pct")),
    ],
)
def test_percentages_are_percentages(experiment: dict[str, Any], loc: tuple[str, ...]) -> None:
    assert locs(experiment=experiment) == [loc]


@pytest.mark.parametrize(
    ("adaptive", "loc"),
    [
        ({"min_exploration": 0.51}, ("adaptive", "min_exploration")),
        ({"prior_alpha": 0}, ("adaptive", "prior_alpha")),
        ({"user_affinity_weight": 1.5}, ("adaptive", "user_affinity_weight")),
        ({"context_attributes": ["a", "b", "c", "d"]}, ("adaptive", "context_attributes")),
        ({"send_time": {"min_observations": 0}}, ("adaptive", "send_time", "min_observations")),
        ({"channel_policy": "greedy"}, ("adaptive", "channel_policy")),
    ],
)
def test_adaptive_settings_are_bounded(adaptive: dict[str, Any], loc: tuple[str, ...]) -> None:
    assert locs(adaptive=adaptive) == [loc]


# --- every error is located at a field ---------------------------------------------------------


INVALID = [
    {"colour": "red"},
    {"steps": [message("s1"), branch("b", {"event_type": "x", "goto": "s1"})]},
    {"steps": [message("s1"), message("s1")]},
    {"steps": [{"id": "s1"}]},
    {"steps": [branch("b", {"goto": "exit"})]},
    {"experiment": {"holdout_pct": 90, "baseline_pct": 20}},
    {"guardrails": {"frequency_caps": [{"max": 1}]}},
    {"guardrails": {"quiet_hours": {"start": "22:00", "end": "22:00"}}},
    {"entry": {"event_types": ["a"], "filters": [{"key": "a", "min": 2, "max": 1}]}},
]


@pytest.mark.parametrize("overrides", INVALID)
def test_every_error_is_located_at_a_field_not_at_a_whole_model(
    overrides: dict[str, Any],
) -> None:
    model_paths = {(), ("experiment",), ("guardrails",), ("steps", 0), ("steps", 1)}
    for loc in locs(**overrides):
        assert loc not in model_paths
        assert isinstance(loc[-1], str)  # ends at a field name
