"""The published JSON Schemas in `schemas/` are exactly what the pydantic models render, and
they agree with the Event model on real example events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from sme.contracts.events import Event
from sme.contracts.schemas import CONTRACTS, render_schemas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

EXAMPLE_EVENTS: list[dict[str, Any]] = [
    {
        "event_id": "evt-1",
        "workspace_id": "ws-acme",
        "user_id": "user-1",
        "type": "signed_up",
        "occurred_at": "2024-05-01T12:00:00Z",
    },
    {
        "event_id": "evt-2",
        "workspace_id": "ws-acme",
        "user_id": "user-1",
        "type": "clicked",
        "occurred_at": "2024-05-01T14:00:00.123456+02:00",
        "channel": "email",
        "command_id": "0d4b6a4e-1f1e-5d2c-9a1b-3c4d5e6f7a8b",
        "properties": {"url": "https://example.com", "nested": {"depth": [1, 2, 3]}},
    },
    {
        "event_id": "evt-3",
        "workspace_id": "ws-acme",
        "user_id": "user-2",
        "type": "signed_up",
        "occurred_at": "2024-05-01T12:00:00-05:00",
        "channel": None,
        "command_id": None,
        "user": {
            "timezone": "America/New_York",
            "attributes": {"plan": "pro", "seats": 3, "ratio": 0.5, "vip": True, "ref": None},
            "consent": {"email": False, "sms": True, "push": True, "in_app": False},
        },
    },
    {
        "event_id": "e" * 128,
        "workspace_id": "w",
        "user_id": "üser-ñ-" + "x" * 240,
        "type": "checkout.completed-v2",
        "occurred_at": "2199-12-31T23:59:59+00:00",
        "channel": "in_app",
        "user": {"timezone": None, "attributes": {}, "consent": {}},
    },
    {
        "event_id": "evt-5",
        "workspace_id": "ws-acme",
        "user_id": "user-3",
        "type": "opened",
        "occurred_at": "2024-05-01T12:00:00Z",
        "channel": "push",
        "user": {"attributes": {f"a{i}": i for i in range(64)}},
    },
]


def event_validator() -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "event.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# --- drift ----------------------------------------------------------------------------------


def test_every_contract_has_a_schema_file_and_no_file_is_stale() -> None:
    expected = {f"{name}.schema.json" for name in CONTRACTS}

    assert set(render_schemas()) == expected
    assert {p.name for p in SCHEMA_DIR.glob("*.schema.json")} == expected, (
        "schemas/ does not match the contracts; run `sme schemas` to regenerate"
    )


@pytest.mark.parametrize("file_name", sorted(render_schemas()))
def test_the_published_schema_matches_the_model_exactly(file_name: str) -> None:
    path = SCHEMA_DIR / file_name
    assert path.exists(), f"{path} is missing; run `sme schemas` to regenerate"

    assert path.read_text(encoding="utf-8") == render_schemas()[file_name], (
        f"{path} drifted from the pydantic model; run `sme schemas` to regenerate"
    )


@pytest.mark.parametrize("file_name", sorted(render_schemas()))
def test_every_published_schema_is_a_valid_draft_2020_12_schema(file_name: str) -> None:
    schema = json.loads((SCHEMA_DIR / file_name).read_text(encoding="utf-8"))

    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"sme/{file_name.removesuffix('.schema.json')}"


# --- model and schema agree -----------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLE_EVENTS, ids=lambda e: e["event_id"][:8])
def test_an_example_event_accepted_by_the_model_is_accepted_by_the_schema(
    example: dict[str, Any],
) -> None:
    Event.model_validate(example)

    errors = [e.message for e in event_validator().iter_errors(example)]

    assert errors == []


def test_a_model_round_tripped_example_is_still_accepted_by_the_schema() -> None:
    validator = event_validator()
    for example in EXAMPLE_EVENTS:
        dumped = Event.model_validate(example).model_dump(mode="json")

        assert list(validator.iter_errors(dumped)) == []


@pytest.mark.parametrize("missing", ["event_id", "workspace_id", "user_id", "type", "occurred_at"])
def test_an_event_missing_a_required_field_is_rejected_by_both_model_and_schema(
    missing: str,
) -> None:
    broken = copy.deepcopy(EXAMPLE_EVENTS[2])
    del broken[missing]

    with pytest.raises(ValidationError):
        Event.model_validate(broken)
    errors = list(event_validator().iter_errors(broken))

    assert [e.validator for e in errors] == ["required"]
    assert missing in errors[0].message


@pytest.mark.parametrize(
    "change",
    [
        {"surprise": 1},
        {"channel": "fax"},
        {"type": "Signed Up"},
        {"user": {"consent": {"fax": True}}},
        {"user": {"attributes": {f"a{i}": i for i in range(65)}}},
    ],
    ids=["unknown-field", "unknown-channel", "bad-type", "unknown-consent-channel", "65-attrs"],
)
def test_a_structurally_invalid_event_is_rejected_by_both_model_and_schema(
    change: dict[str, Any],
) -> None:
    broken = {**EXAMPLE_EVENTS[0], **change}

    with pytest.raises(ValidationError):
        Event.model_validate(broken)
    assert list(event_validator().iter_errors(broken)) != []


def test_the_exported_openapi_document_matches_the_gateway() -> None:
    from sme.contracts.schemas import render_openapi

    exported = (SCHEMA_DIR / "openapi.json").read_text(encoding="utf-8")
    assert exported == render_openapi(), "schemas/openapi.json drifted: run `sme schemas`"
