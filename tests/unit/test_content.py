"""Content and personalisation: a command's template is the step's content for the chosen
channel and variant (the plain `template` still works alone), and its data is exactly the
allow-listed profile attributes and trigger-event properties, bounded in size; old
configurations and old stored states stay valid."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sme.contracts.activities import ActivityType
from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.content import (
    MAX_DATA_BYTES,
    MAX_DATA_VALUE_BYTES,
    MAX_TRIGGER_BYTES,
    DataAllowList,
)
from sme.contracts.events import UserProfile
from sme.contracts.preview import PreviewEvent
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings
from sme.core.content import command_data, remember_trigger
from sme.core.preview import command_for_test_send, run_preview
from sme.core.user_state import Enrollment, UserState
from tests.unit.builders import ALL_BASELINE, T0, WS, Driver, at, config, msg_step, of_type

CART = {"cart_value": 84.5, "cart_items": [{"sku": "A1", "qty": 2}], "coupon": "X", "ip": "1.2.3.4"}


def first_command(cfg: SequenceConfig, **event: Any) -> Command:
    d = Driver.of(cfg)
    d.send("signed_up", **event)
    assert len(d.commands) == 1
    return d.commands[0]


def fixed(**extra: Any) -> dict[str, Any]:
    """Deterministic choices: the first eligible channel and the first variant."""
    return {"channel_policy": "fixed", "variant_policy": "fixed", **extra}


def config_errors(**overrides: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as exc:
        config(**overrides)
    return [(e["loc"], e["msg"].removeprefix("Value error, ")) for e in exc.value.errors()]


# --- templates ----------------------------------------------------------------------------


def test_a_step_with_only_a_template_sends_it_with_empty_data_as_before() -> None:
    command = first_command(config())

    assert command.template == "tpl-s1"
    assert command.data.model_dump() == {"attributes": {}, "event": {}, "omitted": []}
    assert command.timezone == "UTC"


def test_per_channel_content_overrides_the_step_template_on_that_channel_only() -> None:
    content = {"sms": {"template": "welcome-sms"}}
    email_first = config(steps=[msg_step("s1", channels=["email", "sms"], content=content)],
                         adaptive=fixed())  # fmt: skip
    sms_first = config(steps=[msg_step("s1", channels=["sms", "email"], content=content)],
                       adaptive=fixed())  # fmt: skip

    assert first_command(email_first).template == "tpl-s1"
    assert (first_command(sms_first).channel, first_command(sms_first).template) == (
        Channel.SMS,
        "welcome-sms",
    )


@pytest.mark.parametrize(
    ("variants", "expected"), [(["b", "a"], "welcome-email-b"), (["a", "b"], "welcome-email")]
)
def test_a_variant_with_its_own_template_sends_it_and_the_others_the_channel_template(
    variants: list[str], expected: str
) -> None:
    content = {"email": {"template": "welcome-email", "variants": {"b": "welcome-email-b"}}}
    step = msg_step("s1", variants=variants, content=content)

    command = first_command(config(steps=[step], adaptive=fixed()))

    assert (command.variant, command.template) == (variants[0], expected)
    emitted = of_type(Driver.of(config(steps=[step], adaptive=fixed())).send("signed_up"),
                      ActivityType.COMMAND_EMITTED)  # fmt: skip
    assert emitted[0].details["template"] == expected


def test_content_for_every_channel_and_variant_needs_no_step_template() -> None:
    step = {
        "id": "s1",
        "channels": ["email"],
        "variants": ["a", "b"],
        "content": {"email": {"variants": {"a": "mail-a", "b": "mail-b"}}},
    }

    assert first_command(config(steps=[step], experiment=ALL_BASELINE)).template == "mail-a"


def test_content_that_names_an_unknown_channel_or_variant_is_refused_at_its_field() -> None:
    step = msg_step(
        "s1",
        variants=["a", "b"],
        content={"sms": {"template": "t"}, "email": {"variants": {"a": "t", "zz": "t"}}},
    )

    assert [loc for loc, _ in config_errors(steps=[step])] == [
        ("steps", 0, "content", "sms"),
        ("steps", 0, "content", "email", "variants", "zz"),
    ]


def test_a_variant_without_any_template_is_refused_at_the_channel_template() -> None:
    step = {"id": "s1", "channels": ["email"], "variants": ["a", "b"],
            "content": {"email": {"variants": {"a": "mail-a"}}}}  # fmt: skip

    assert config_errors(steps=[step]) == [
        (("steps", 0, "content", "email", "template"),
         "variants ['b'] have no template: give one here or on the step"),
    ]  # fmt: skip


def test_a_channel_without_content_or_a_step_template_is_refused_at_the_template() -> None:
    step = {"id": "s1", "channels": ["email", "sms"], "content": {"email": {"template": "t"}}}

    assert [loc for loc, _ in config_errors(steps=[step])] == [("steps", 0, "template")]


def test_empty_channel_content_is_refused() -> None:
    step = msg_step("s1", content={"email": {}})

    assert [loc for loc, _ in config_errors(steps=[step])] == [("steps", 0, "content", "email")]


def test_branch_and_split_steps_take_no_content_and_no_data() -> None:
    steps = [
        {"id": "b", "kind": "branch", "branches": [{"event_type": "x", "goto": "next"}],
         "content": {"email": {"template": "t"}}},
        {"id": "f", "kind": "split", "data": {"attributes": ["a"]},
         "paths": [{"weight": 1, "goto": "next"}, {"weight": 1, "goto": "m"}]},
        msg_step("m"),
    ]  # fmt: skip

    assert [loc for loc, _ in config_errors(steps=steps)] == [
        ("steps", 0, "content"),
        ("steps", 1, "data"),
    ]


def test_an_allow_list_naming_a_value_twice_is_refused() -> None:
    errors = config_errors(data={"attributes": ["first_name", "first_name"]})

    assert [loc for loc, _ in errors] == [("data", "attributes")]
    assert "listed twice" in errors[0][1]


def test_a_configuration_from_before_content_validates_and_dumps_unchanged() -> None:
    old = {
        "id": "cfg-old",
        "workspace_id": "ws",
        "name": "n",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "s1", "template": "t", "channels": ["email", "sms"], "variants": ["a"]}],
    }
    cfg = SequenceConfig.model_validate(old)

    assert cfg.data is None and cfg.steps[0].content == {} and cfg.steps[0].data is None
    assert SequenceConfig.model_validate(cfg.model_dump(mode="json")) == cfg


# --- data ---------------------------------------------------------------------------------


def personalised(**overrides: Any) -> SequenceConfig:
    return config(
        data={"attributes": ["first_name", "locale"], "event_properties": ["cart_value",
              "cart_items"]},
        **overrides,
    )  # fmt: skip


def test_a_command_carries_exactly_the_allow_listed_attributes_and_trigger_properties() -> None:
    attributes = {f"attr_{i}": f"secret-{i}" for i in range(60)}
    attributes |= {"first_name": "Ada", "locale": "fr-FR"}
    user = {"attributes": attributes, "timezone": "Europe/Paris"}

    command = first_command(personalised(), user=user, properties={**CART, "extra": "no"})

    assert command.data.attributes == {"first_name": "Ada", "locale": "fr-FR"}
    assert command.data.event == {"cart_value": 84.5, "cart_items": [{"sku": "A1", "qty": 2}]}
    assert command.data.omitted == []
    assert command.timezone == "Europe/Paris"
    assert "secret" not in command.model_dump_json() and "1.2.3.4" not in command.model_dump_json()


def test_no_allow_listed_value_goes_into_an_activity() -> None:
    d = Driver.of(personalised())
    d.send("signed_up", user={"attributes": {"first_name": "Ada"}}, properties=CART)

    assert d.commands[0].data.attributes == {"first_name": "Ada"}
    for activity in d.activities:
        assert "Ada" not in activity.model_dump_json()
        assert "84.5" not in activity.model_dump_json()


def test_the_profile_keeps_an_attribute_only_a_data_allow_list_names() -> None:
    d = Driver.of(personalised(steps=[msg_step("s1"), msg_step("s2", wait="P1D")]))
    d.send("signed_up", user={"attributes": {"first_name": "Ada", "other": 1}})
    d.run_until(at(days=2))

    assert d.state.profile.attributes == {"first_name": "Ada"}
    assert [c.data.attributes for c in d.commands] == [{"first_name": "Ada"}] * 2


def test_later_steps_carry_the_enrolling_event_properties_and_the_latest_attributes() -> None:
    d = Driver.of(personalised(steps=[msg_step("s1"), msg_step("s2", wait="P1D")]))
    d.send("signed_up", user={"attributes": {"first_name": "Ada"}}, properties=CART)
    d.send("viewed", at(hours=1), user={"attributes": {"first_name": "Ada L."}},
           properties={"cart_value": 1.0})  # fmt: skip
    d.run_until(at(days=2))

    second = d.commands[1]
    assert second.data.attributes["first_name"] == "Ada L."
    assert second.data.event["cart_value"] == 84.5


def test_a_step_allow_list_replaces_the_sequence_one() -> None:
    step = msg_step("s1", data={"attributes": ["locale"]})
    command = first_command(
        personalised(steps=[step]),
        user={"attributes": {"first_name": "Ada", "locale": "fr"}},
        properties=CART,
    )

    assert command.data.model_dump() == {"attributes": {"locale": "fr"}, "event": {},
                                         "omitted": []}  # fmt: skip


def test_an_event_property_is_named_by_a_dotted_path() -> None:
    cfg = config(data={"event_properties": ["cart.total", "cart.missing"]})

    command = first_command(cfg, properties={"cart": {"total": 50, "owner": "x"}})

    assert command.data.event == {"cart.total": 50}


def test_a_value_over_the_value_bound_is_left_out_and_named_never_truncated() -> None:
    long_name = "A" * MAX_DATA_VALUE_BYTES  # with its quotes, over the bound
    cfg = config(data={"attributes": ["bio", "first_name"], "event_properties": ["items"]})

    command = first_command(
        cfg,
        user={"attributes": {"bio": long_name, "first_name": "Ada"}},
        properties={"items": ["x" * 100] * 6},
    )

    assert command.data.attributes == {"first_name": "Ada"}
    assert command.data.omitted == ["event.items", "attributes.bio"]
    emitted = of_type(Driver.of(cfg).send("signed_up", properties={"items": ["x" * 600]}),
                      ActivityType.COMMAND_EMITTED)  # fmt: skip
    assert emitted[0].details["data_omitted"] == ["event.items"]


def test_the_trigger_properties_an_enrollment_keeps_are_bounded_in_allow_list_order() -> None:
    paths = [f"p{i}" for i in range(6)]
    cfg = config(data={"event_properties": paths}, steps=[msg_step("s1", wait="P1D")])
    d = Driver.of(cfg)

    d.send("signed_up", properties={p: "v" * 400 for p in paths})

    enrollment = d.state.enrollments[0]
    assert [p for p, _ in enrollment.trigger] == ["p0", "p1"]
    assert enrollment.trigger_omitted == ("p2", "p3", "p4", "p5")
    assert len(orjson.dumps(dict(enrollment.trigger))) <= MAX_TRIGGER_BYTES
    d.run_until(at(days=2))
    assert d.commands[0].data.omitted == ["event.p2", "event.p3", "event.p4", "event.p5"]


def test_a_command_data_never_exceeds_its_bound() -> None:
    names = [f"a{i}" for i in range(20)]
    command = first_command(
        config(data={"attributes": names}), user={"attributes": {n: "v" * 300 for n in names}}
    )

    assert 0 < len(command.data.attributes) < 20
    assert len(command.data.attributes) + len(command.data.omitted) == 20
    assert len(orjson.dumps(command.data.model_dump(exclude={"omitted"}))) <= MAX_DATA_BYTES


scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=300)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
names = st.lists(st.sampled_from([f"k{i}" for i in range(12)]), unique=True, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(st.sampled_from([f"k{i}" for i in range(24)]), scalars),
    allowed=names,
    allowed_properties=names,
    trigger=st.dictionaries(st.sampled_from([f"k{i}" for i in range(24)]), json_values),
)
def test_data_holds_only_allow_listed_names_within_the_bounds(
    attributes: dict[str, Any],
    allowed: list[str],
    allowed_properties: list[str],
    trigger: dict[str, Any],
) -> None:
    allow = DataAllowList(attributes=allowed, event_properties=allowed_properties)

    data = command_data(allow, attributes, tuple(trigger.items()), ())

    assert set(data.attributes) <= set(allowed) and set(data.event) <= set(allowed_properties)
    assert len(orjson.dumps(data.model_dump(exclude={"omitted"}))) <= MAX_DATA_BYTES
    for value in [*data.attributes.values(), *data.event.values()]:
        assert len(orjson.dumps(value)) <= MAX_DATA_VALUE_BYTES
    for name in allowed:
        kept = name in data.attributes or f"attributes.{name}" in data.omitted
        assert kept == (name in attributes)


# --- stored state -------------------------------------------------------------------------


def test_an_enrollment_keeps_its_trigger_data_through_storage_and_json() -> None:
    d = Driver.of(personalised(steps=[msg_step("s1", wait="P1D")]))
    d.send("signed_up", properties=CART)
    stored = orjson.loads(orjson.dumps(d.state.to_dict()))

    restored = UserState.from_dict(stored)

    assert restored == d.state
    assert dict(restored.enrollments[0].trigger) == {
        "cart_value": 84.5,
        "cart_items": [{"sku": "A1", "qty": 2}],
    }


def test_a_state_stored_before_trigger_data_loads_and_sends_without_it() -> None:
    cfg = personalised(steps=[msg_step("s1", wait="P1D")])
    old_row = ["cfg-1", 1, 0, 1, 0, 0, "s1", 0, 0, 0, [], 0, 0]  # 13 fields, as before
    state = UserState.from_dict({"w": "ws-acme", "u": "user-1", "n": 1, "en": [old_row]})
    d = Driver.of(cfg)
    d.state = state

    d.tick(T0)

    assert state.enrollments[0] == Enrollment("cfg-1", 1, Arm.ADAPTIVE, 1, 0, 0, "s1", 0, 0)
    assert d.commands[0].data.event == {}


def test_a_sequence_without_an_allow_list_stores_no_more_than_before() -> None:
    d = Driver.of(config(steps=[msg_step("s1", wait="P1D")]))
    d.send("signed_up", properties=CART)

    assert len(d.state.to_dict()["en"][0]) == 13


def test_the_workspace_default_time_zone_reaches_the_command() -> None:
    settings_ = WorkspaceSettings(workspace_id=WS, default_timezone="Asia/Tokyo")
    d = Driver.of(config(), workspace=settings_)
    d.send("signed_up")

    assert d.commands[0].timezone == "Asia/Tokyo"


@pytest.mark.parametrize("name", ["__proto__", "cart.constructor", "prototype"])
def test_a_data_name_a_sender_object_model_treats_specially_is_refused(name: str) -> None:
    errors = config_errors(data={"event_properties": [name]})

    assert [loc for loc, _ in errors] == [("data", "event_properties")]


@settings(max_examples=200, deadline=None)
@given(
    properties=st.dictionaries(st.sampled_from([f"k{i}" for i in range(24)]), json_values),
    paths=names,
)
def test_an_enrollment_remembers_only_allow_listed_properties_within_its_bound(
    properties: dict[str, Any], paths: list[str]
) -> None:
    cfg = config(data={"event_properties": paths})

    kept, omitted = remember_trigger(cfg, properties)

    assert [p for p, _ in kept] == [p for p in paths if p in properties and p not in omitted]
    assert set(omitted) <= set(paths) & set(properties)
    assert len(orjson.dumps(dict(kept))) <= MAX_TRIGGER_BYTES


def test_a_test_send_carries_the_allow_listed_attributes_of_the_given_profile() -> None:
    cfg = personalised(steps=[msg_step("s1", content={"email": {"template": "mail"}})])
    profile = UserProfile(attributes={"first_name": "Tess", "phone": "+33 6"}, timezone="UTC")

    command = command_for_test_send(
        cfg, None, "tester", profile, cfg.steps[0], Channel.EMAIL, "default", T0, "send-1"
    )

    assert (command.test, command.template) == (True, "mail")
    assert command.data.model_dump() == {"attributes": {"first_name": "Tess"}, "event": {},
                                         "omitted": []}  # fmt: skip


def test_a_preview_shows_each_command_with_the_data_a_sender_would_receive() -> None:
    cfg = personalised(steps=[msg_step("s1"), msg_step("s2", wait="P1D")])
    entry = PreviewEvent(type="signed_up", occurred_at=T0, properties=CART)
    profile = UserProfile(attributes={"first_name": "Ada", "ssn": "x"}, timezone="Europe/Paris")

    trace = run_preview(cfg, None, "ada", profile, [entry], T0, at(days=3), seed=1).trace

    commands = [e.command for e in trace if e.command is not None]
    assert [(c.step_id, c.data.attributes, c.data.event) for c in commands] == [
        (step, {"first_name": "Ada"}, {"cart_value": 84.5, "cart_items": [{"sku": "A1", "qty": 2}]})
        for step in ("s1", "s2")
    ]
    assert all(c.timezone == "Europe/Paris" for c in commands)
