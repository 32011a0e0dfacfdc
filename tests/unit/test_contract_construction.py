"""What the core emits is built with every field of its contract model, defaults applied
(`core.records.build`, without re-validating values the core computed), so a field added to a
contract reaches the commands and activities the core emits; an unknown or missing field is
still refused."""

from __future__ import annotations

from typing import Any

import pytest

from sme.contracts.activities import Activity
from sme.contracts.commands import Command
from sme.core import decision
from sme.core.records import build
from tests.unit.builders import Driver, config


class _ActivityWithNewField(Activity):
    origin: str = "core"


class _CommandWithNewField(Command):
    priority: int = 3


def test_a_field_added_to_a_contract_reaches_what_the_core_emits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decision, "Activity", _ActivityWithNewField)
    monkeypatch.setattr(decision, "Command", _CommandWithNewField)
    d = Driver.of(config())

    d.send("signed_up")

    assert d.commands and d.activities
    for command in d.commands:
        assert command.model_dump()["priority"] == 3
    for activity in d.activities:
        assert activity.model_dump()["origin"] == "core"


def test_every_emitted_record_is_a_valid_contract_model_that_round_trips() -> None:
    d = Driver.of(config())
    d.send("signed_up")
    d.send("clicked", channel="email", command_id=d.commands[0].command_id)

    records: list[Any] = [*d.commands, *d.activities]
    for record in records:
        dumped = record.model_dump(mode="json")
        assert type(record).model_validate(dumped) == record
        assert set(dumped) == set(type(record).model_fields)


def test_a_record_with_an_unknown_or_a_missing_field_is_refused() -> None:
    d = Driver.of(config())
    d.send("signed_up")
    values = d.activities[-1].model_dump()

    with pytest.raises(TypeError, match="unknown"):
        build(Activity, {**values, "typo": 1})
    del values["activity_id"]
    with pytest.raises(TypeError, match="missing"):
        build(Activity, values)


def test_an_omitted_field_with_a_factory_gets_a_fresh_default() -> None:
    d = Driver.of(config())
    d.send("signed_up")
    values = d.activities[-1].model_dump()
    del values["details"]

    one, two = build(Activity, values), build(Activity, values)

    assert one.details == {} and one.details is not two.details
