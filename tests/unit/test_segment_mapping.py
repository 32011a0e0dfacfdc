"""Segment tracking calls onto the event contract: names snake-cased within bounds, userId
required, messageId the event id (or a stable hash), timestamps, traits and time zone, and
errors located in the Segment payload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sme.contracts.events import Event
from sme.core.segment import IDENTIFY_TYPE, from_segment, snake_case

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def mapped(call: dict[str, Any], kind: str | None = None) -> Event:
    result = from_segment(call, kind, "acme", NOW)
    assert isinstance(result, Event), result
    return result


def refused(call: object, kind: str | None = None) -> list[tuple[tuple[str | int, ...], str]]:
    result = from_segment(call, kind, "acme", NOW)
    assert not isinstance(result, Event), result
    return [(loc, msg) for loc, msg, _ in result]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Order Completed", "order_completed"),
        ("orderCompleted", "order_completed"),
        ("order-completed", "order_completed"),
        ("  Signed   Up!  ", "signed_up"),
        ("HTTPRequestSent", "http_request_sent"),
        ("v2.Checkout Started", "v2_checkout_started"),
        ("Café Visited", "cafe_visited"),
        ("注册 Done", "注册_done"),
    ],
)
def test_event_names_are_snake_cased(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_a_track_call_becomes_an_event_of_the_write_keys_workspace() -> None:
    event = mapped(
        {
            "type": "track",
            "userId": "ada",
            "event": "Order Completed",
            "messageId": "m-1",
            "timestamp": "2026-11-28T09:15:00Z",
            "properties": {"revenue": 12.5, "items": [{"sku": "a"}]},
            "context": {"timezone": "Europe/Paris", "ip": "203.0.113.9"},
            "integrations": {"All": True},
            "workspace_id": "someone-else",
        }
    )
    assert (event.workspace_id, event.user_id, event.type) == ("acme", "ada", "order_completed")
    assert event.event_id == "m-1"
    assert event.occurred_at == datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    assert event.properties == {"revenue": 12.5, "items": [{"sku": "a"}]}
    assert event.user is not None and event.user.timezone == "Europe/Paris"


def test_identify_sets_scalar_traits_as_attributes_and_keeps_nested_ones() -> None:
    event = mapped(
        {"userId": 42, "traits": {"plan": "pro", "age": 31, "vip": True, "address": {"c": "FR"}}},
        "identify",
    )
    assert (event.type, event.user_id) == (IDENTIFY_TYPE, "42")
    assert event.user is not None
    assert event.user.attributes == {"plan": "pro", "age": 31, "vip": True}
    assert event.properties == {"traits": {"address": {"c": "FR"}}}
    assert event.occurred_at == NOW  # no timestamp: receipt time


def test_original_timestamp_is_used_without_timestamp() -> None:
    event = mapped(
        {"userId": "ada", "event": "x", "originalTimestamp": "2026-11-27T10:00:00+01:00"}, "track"
    )
    assert event.occurred_at == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def test_without_message_id_the_same_call_gets_the_same_event_id() -> None:
    call = {
        "type": "track",
        "userId": "ada",
        "event": "Opened",
        "timestamp": "2026-11-28T09:00:00Z",
    }
    first, again = mapped(call), mapped(dict(reversed(call.items())))
    other = mapped({**call, "event": "Clicked"})
    assert first.event_id == again.event_id != other.event_id


def test_anonymous_only_events_are_refused_on_user_id() -> None:
    assert refused({"type": "track", "anonymousId": "a-1", "event": "Viewed"}) == [
        (("userId",), "userId is required: anonymous events are not used")
    ]


@pytest.mark.parametrize("name", ["2fa enabled", "!!!", "a" * 65, "注册 Done", "Ωmega"])
def test_names_that_do_not_map_to_an_event_type_are_refused_on_event(name: str) -> None:
    [(loc, message)] = refused({"type": "track", "userId": "ada", "event": name})
    assert loc == ("event",) and "snake-cases to" in message


def test_errors_name_the_segment_field() -> None:
    problems = refused(
        {
            "type": "track",
            "userId": "ada",
            "event": "Opened",
            "timestamp": "yesterday",
            "context": {"timezone": "Mars/Olympus"},
        }
    )
    assert {loc for loc, _ in problems} == {("timestamp",), ("context", "timezone")}
    assert refused(
        {
            "type": "track",
            "userId": "ada",
            "event": "x",
            "originalTimestamp": "1999-01-01T00:00:00Z",
        }
    )[0][0] == ("originalTimestamp",)
    assert refused({"userId": "ada", "traits": {f"t{i}": i for i in range(65)}}, "identify")[0][
        0
    ] == ("traits",)
    assert refused({"type": "track", "userId": "", "event": "x"})[0][0] == ("userId",)
    assert refused({"type": "track", "userId": "ada", "event": "x", "messageId": "m" * 129})[0][
        0
    ] == ("messageId",)


def test_calls_other_than_track_and_identify_are_refused() -> None:
    assert refused({"type": "page", "userId": "ada"})[0][0] == ("type",)
    assert refused(["not", "an", "object"])[0][0] == ()
    assert refused({"type": "track", "userId": "ada"})[0][0] == ("event",)  # name missing
    assert refused({"type": "track", "userId": "ada", "event": "x", "properties": []})[0][0] == (
        "properties",
    )


def nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_events_nest_no_deeper_than_the_engine_accepts() -> None:
    # event (1) > properties (2) > 62 arrays: 64 levels, as deep as the engine takes.
    assert mapped({"userId": "ada", "event": "x", "properties": {"a": nested(62)}}, "track")
    assert refused({"userId": "ada", "event": "x", "properties": {"a": nested(63)}}, "track") == [
        (("properties",), "objects and arrays nest deeper than 64 levels in the event")
    ]
    # nested traits land one level deeper, in properties.traits
    assert refused({"userId": "ada", "traits": {"a": nested(62)}}, "identify")[0][0] == ("traits",)
