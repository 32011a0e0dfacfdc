"""Personalised content on the real broker and ClickHouse engine: a command read from its
channel topic carries the template for its channel and variant and exactly the allow-listed
profile attributes and trigger-event properties (also on a later step); ClickHouse records the
resolved template and none of the values."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from sme.contracts.commands import Command
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import engine_and_sink
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
CART: dict[str, Any] = {
    "id": "cart-content",
    "workspace_id": "acme",
    "name": "Abandoned cart, personalised",
    "entry": {"event_types": ["cart_abandoned"]},
    "data": {"attributes": ["first_name", "locale"], "event_properties": ["cart_value", "items"]},
    "steps": [
        {
            "id": "reminder",
            "template": "cart-reminder",
            "channels": ["email"],
            "variants": ["short", "long"],
            "content": {"email": {"variants": {"short": "cart-email-short"}}},
        },
        {
            "id": "sms",
            "wait": "PT1S",
            "channels": ["sms"],
            "content": {"sms": {"template": "cart-sms"}},
            "data": {"attributes": ["first_name"], "event_properties": ["cart_value"]},
        },
    ],
    "adaptive": {"variant_policy": "fixed"},
    "experiment": {"holdout_pct": 0, "baseline_pct": 0},
}
PROFILE = {
    "timezone": "Europe/Paris",
    "attributes": {"first_name": "Ada", "locale": "fr-FR", "email_address": "ada@example.com"},
}
CART_PROPS = {"cart_value": 84.5, "items": [{"sku": "A1", "qty": 2}], "card_last4": "4242"}


def _with_profile(message: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """The event with Ada's profile (the helper's own `user` parameter is the user id)."""
    key, body = message
    return key, orjson.dumps({**orjson.loads(body), "user": PROFILE})


async def test_commands_carry_the_resolved_template_and_only_the_allow_listed_data(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    await publish_config(s, CART)
    async with (
        engine_and_sink(s) as store,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["sms"]) as smses,
    ):
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [_with_profile(event("ca-ada", "ada", "cart_abandoned", properties=CART_PROPS))],
        )

        async def both() -> list[dict[str, Any]]:
            seen = [*await emails.poll(), *await smses.poll()]
            return seen if len(seen) >= 2 else []

        raw = await eventually(both, timeout=60, what="the email and the sms")
        email, sms = (Command.model_validate(c) for c in raw)
        assert (email.template, email.variant, email.timezone) == (
            "cart-email-short",
            "short",
            "Europe/Paris",
        )
        assert email.data.attributes == {"first_name": "Ada", "locale": "fr-FR"}
        assert email.data.event == {"cart_value": 84.5, "items": [{"sku": "A1", "qty": 2}]}
        assert (sms.template, sms.data.attributes, sms.data.event) == (
            "cart-sms",
            {"first_name": "Ada"},
            {"cart_value": 84.5},
        )
        for command in raw:
            assert "ada@example.com" not in str(command) and "4242" not in str(command)

        async def emitted() -> list[tuple[Any, ...]]:
            rows = (
                await store.query(
                    "SELECT step_id, details FROM {db}.activities FINAL "
                    "WHERE config_id = 'cart-content' AND type = 'command_emitted' "
                    "ORDER BY occurred_at"
                )
            ).result_rows
            return list(rows) if len(rows) >= 2 else []

        rows = await eventually(emitted, timeout=30, what="the sends in ClickHouse")
        assert [row[0] for row in rows] == ["reminder", "sms"]
        assert "cart-email-short" in str(rows[0][1]) and "cart-sms" in str(rows[1][1])
        assert not any(value in str(rows) for value in ("Ada", "fr-FR", "84.5", "A1"))


async def test_content_naming_a_channel_or_variant_the_step_lacks_gets_422_at_the_field(
    test_settings: Settings,
) -> None:
    bad = copy.deepcopy(CART)
    del bad["id"]  # the server assigns it
    bad["steps"][0]["content"] = {"sms": {"template": "t"}, "email": {"variants": {"zz": "t"}}}
    bad["data"]["attributes"] = ["first_name", "first_name"]
    async with running_gateway(test_settings) as http:
        response = await http.post(API, json=bad)

        assert response.status_code == 422
        assert {tuple(e["loc"]) for e in response.json()["detail"]} == {
            ("body", "data", "attributes"),
            ("body", "steps", 0, "content", "sms"),
            ("body", "steps", 0, "content", "email", "variants", "zz"),
        }
        listed = (await http.get(API, params={"workspace_id": "acme"})).json()
        assert listed["items"] == [], "nothing is stored on error"
