"""The three shipped campaigns (`deploy/examples/`: welcome series, abandoned cart, win-back)
are accepted by the configuration API and run through `POST …/preview`; each expected trace
is written out by hand from the configuration (times worked out in the user's zone, DST
included), not recorded from a run.

The previews force the baseline arm, whose channel is the first one the guardrails allow now
and whose variant is the first (or, with fixed_weights, the user's hashed one): every choice is
then known in advance. The draft preview route gives a draft the id `preview`, which the win-back
users' split paths and variants hash on; their ids were picked for the path each test walks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sme.core.splits import fixed_variant, split_path
from sme.settings import Settings
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    document.pop("id")  # server-set: the draft route names it `preview`
    return document


@pytest.fixture
async def api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(test_settings) as http:
        yield http


async def preview(api: httpx.AsyncClient, name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(f"{API}/preview", json={**body, "config": example(name)})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def brief(trace: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(e["type"], e["at"], e["step_id"], e["reason_code"]) for e in trace]


def sends(trace: list[dict[str, Any]]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(step, channel, template, variant, data) of every command in the trace."""
    out = []
    for entry in trace:
        command = entry.get("command")
        if command is not None:
            out.append(
                (
                    command["step_id"],
                    command["channel"],
                    command["template"],
                    command["variant"],
                    command["data"],
                )
            )
    return out


@pytest.mark.parametrize("name", ["welcome_series.json", "abandoned_cart.json", "win_back.json"])
async def test_each_example_is_accepted_by_the_configuration_api(
    api: httpx.AsyncClient, name: str
) -> None:
    response = await api.post(API, json=example(name))
    assert response.status_code == 201, response.text
    stored = response.json()
    assert [s["id"] for s in stored["steps"]] == [s["id"] for s in example(name)["steps"]]


async def test_welcome_series_confirms_at_once_defers_the_welcome_past_quiet_hours_and_holds_the_tips_for_a_weekday_morning(  # noqa: E501
    api: httpx.AsyncClient,
) -> None:
    # Signed up Thursday 2026-03-05 at 22:30 in Berlin (21:30 UTC, CET = UTC+1).
    result = await preview(
        api,
        "welcome_series.json",
        {
            "user_id": "ana",
            "arm": "baseline",
            "profile": {
                "timezone": "Europe/Berlin",
                "attributes": {
                    "first_name": "Ana",
                    "locale": "de-DE",
                    "favorite_category": "shoes",
                    "orders": 0,
                    "phone_hash": "not-on-any-allow-list",
                },
            },
            "timeline": [
                {
                    "type": "signed_up",
                    "occurred_at": "2026-03-05T21:30:00Z",
                    "properties": {"plan": "pro", "signup_source": "ads", "referrer": "partner-7"},
                },
                # Monday 2026-03-09 at 13:00 Berlin, after the tips: the goal.
                {
                    "type": "purchased",
                    "occurred_at": "2026-03-09T12:00:00Z",
                    "properties": {"amount": 42.5},
                },
            ],
        },
    )
    assert brief(result["trace"]) == [
        ("event_received", "2026-03-05T21:30:00Z", "", ""),
        ("enrolled", "2026-03-05T21:30:00Z", "confirm", ""),
        ("exposure", "2026-03-05T21:30:00Z", "confirm", ""),
        # transactional: inside the 21:00-08:00 quiet hours, sent at once
        ("command_emitted", "2026-03-05T21:30:00Z", "confirm", ""),
        # due an hour later (23:30 local): deferred to 08:00 local
        ("step_deferred", "2026-03-05T22:30:00Z", "welcome", "quiet_hours"),
        ("command_emitted", "2026-03-06T07:00:00Z", "welcome", ""),
        # two days after the welcome is Sunday 08:00 local: held to Monday 10:00 local
        ("command_emitted", "2026-03-09T09:00:00Z", "tips", ""),
        ("event_received", "2026-03-09T12:00:00Z", "", ""),
        ("conversion", "2026-03-09T12:00:00Z", "tips", ""),
        ("enrollment_exited", "2026-03-09T12:00:00Z", "first-order", "goal_reached"),
    ]
    trigger = {"plan": "pro", "signup_source": "ads"}  # `referrer` is on no allow-list
    profile = {"first_name": "Ana", "locale": "de-DE"}
    assert sends(result["trace"]) == [
        ("confirm", "email", "account-confirm", "default",
         {"attributes": profile, "event": trigger, "omitted": []}),
        ("welcome", "email", "welcome-email", "short",
         {"attributes": profile, "event": trigger, "omitted": []}),
        # the step's own allow-list replaces the sequence's: no event properties
        ("tips", "email", "tips-email", "default",
         {"attributes": {**profile, "favorite_category": "shoes"}, "event": {}, "omitted": []}),
    ]  # fmt: skip
    confirm = result["trace"][3]
    assert (confirm["details"]["category"], confirm["details"]["transactional"]) == (
        "account",
        True,
    )
    assert result["trace"][8]["value"] == 42.5
    assert result["outcome"]["messages"] == 3
    assert result["outcome"]["converted"] is True


async def test_abandoned_cart_sends_the_reminder_on_the_channel_out_of_quiet_hours_and_routes_gold_to_the_vip_offer(  # noqa: E501
    api: httpx.AsyncClient,
) -> None:
    # Cart left Tuesday 2026-03-03 at 20:30 in London (GMT = UTC).
    cart = {"id": "c-981", "total": 120.5, "currency": "GBP", "top_item": "Trail shoes",
            "items": 3, "coupon": "SECRET-10"}  # fmt: skip
    result = await preview(
        api,
        "abandoned_cart.json",
        {
            "user_id": "cleo",
            "arm": "baseline",
            "profile": {
                "timezone": "Europe/London",
                "attributes": {"first_name": "Cleo", "locale": "en-GB", "loyalty_tier": "gold"},
            },
            "timeline": [
                {
                    "type": "cart_abandoned",
                    "occurred_at": "2026-03-03T20:30:00Z",
                    "properties": {"cart": cart},
                }
            ],
        },
    )
    assert brief(result["trace"]) == [
        ("event_received", "2026-03-03T20:30:00Z", "", ""),
        ("enrolled", "2026-03-03T20:30:00Z", "reminder", ""),
        ("exposure", "2026-03-03T20:30:00Z", "reminder", ""),
        # due at 21:30: e-mail is in the 21:00-08:00 quiet hours, push (22:00-07:00) is not
        ("command_emitted", "2026-03-03T21:30:00Z", "reminder", ""),
        # a day later the gold tier branches to the VIP offer, due at once but at 21:30:
        # e-mail only, so it waits for 08:00
        ("step_branched", "2026-03-04T21:30:00Z", "route", "branched"),
        ("step_deferred", "2026-03-04T21:30:00Z", "vip-offer", "quiet_hours"),
        ("command_emitted", "2026-03-05T08:00:00Z", "vip-offer", ""),
        ("enrollment_exited", "2026-03-05T08:00:00Z", "vip-offer", "completed"),
    ]
    everything = {"cart.id": "c-981", "cart.total": 120.5, "cart.currency": "GBP"}
    assert sends(result["trace"]) == [
        ("reminder", "push", "cart-reminder-push", "default",
         {"attributes": {"first_name": "Cleo", "locale": "en-GB"},
          "event": {**everything, "cart.top_item": "Trail shoes"}, "omitted": []}),
        ("vip-offer", "email", "cart-vip", "default",
         {"attributes": {"first_name": "Cleo", "locale": "en-GB", "loyalty_tier": "gold"},
          "event": everything, "omitted": []}),
    ]  # fmt: skip
    assert result["trace"][4]["details"]["goto"] == "vip-offer"
    assert result["outcome"]["messages"] == 2


async def test_abandoned_cart_refuses_a_small_cart(api: httpx.AsyncClient) -> None:
    result = await preview(
        api,
        "abandoned_cart.json",
        {
            "user_id": "cleo",
            "timeline": [
                {
                    "type": "cart_abandoned",
                    "occurred_at": "2026-03-03T20:30:00Z",
                    "properties": {"cart": {"id": "c-1", "total": 49.99}},
                }
            ],
        },
    )
    assert brief(result["trace"]) == [("event_received", "2026-03-03T20:30:00Z", "", "")]
    assert result["outcome"]["enrolled"] is False


WIN_BACK_ENTRY = {
    "type": "lapsed",
    # Friday 2026-03-06 at 10:00 in New York (EST = UTC-5); DST starts Sunday 2026-03-08.
    "occurred_at": "2026-03-06T15:00:00Z",
    "properties": {"days_since_purchase": 75},
}
NEW_YORK = {"timezone": "America/New_York", "attributes": {"first_name": "B"}}


async def test_win_back_offer_first_path_sends_the_offer_on_tuesday_morning_after_dst_and_skips_the_last_chance_after_a_click(  # noqa: E501
    api: httpx.AsyncClient,
) -> None:
    assert split_path([50, 50], "preview", "fork", "bruno") == 0  # offer first
    assert fixed_variant([1, 1], "preview", "offer", "bruno") == 0  # 15pct
    result = await preview(
        api,
        "win_back.json",
        {
            "user_id": "bruno",
            "arm": "baseline",
            "profile": NEW_YORK,
            "timeline": [
                WIN_BACK_ENTRY,
                {"type": "clicked", "occurred_at": "2026-03-11T16:00:00Z", "channel": "email"},
            ],
        },
    )
    assert brief(result["trace"]) == [
        ("event_received", "2026-03-06T15:00:00Z", "", ""),
        ("enrolled", "2026-03-06T15:00:00Z", "fork", ""),
        ("exposure", "2026-03-06T15:00:00Z", "fork", ""),
        ("step_branched", "2026-03-06T15:00:00Z", "fork", "split"),
        # two days on is Sunday; the next Tuesday 10:00 is EDT (UTC-4): 14:00 UTC
        ("command_emitted", "2026-03-10T14:00:00Z", "offer", ""),
        ("event_received", "2026-03-11T16:00:00Z", "", ""),
        ("feedback", "2026-03-11T16:00:00Z", "offer", ""),
        # five days after the offer; a click since: not sent
        ("step_skipped", "2026-03-15T14:00:00Z", "last-chance", "condition_false"),
        ("enrollment_exited", "2026-03-15T14:00:00Z", "last-chance", "completed"),
    ]
    assert result["trace"][3]["details"] == {"goto": "offer", "path": 0, "weight": 0.5}
    assert sends(result["trace"]) == [
        ("offer", "email", "come-back-email", "15pct",
         {"attributes": {"first_name": "B"}, "event": {}, "omitted": []}),
    ]  # fmt: skip


async def test_win_back_story_first_path_sends_the_story_then_the_offer_and_the_last_chance(
    api: httpx.AsyncClient,
) -> None:
    assert split_path([50, 50], "preview", "fork", "bo") == 1  # story first
    assert fixed_variant([1, 1], "preview", "offer", "bo") == 1  # free-shipping
    result = await preview(
        api,
        "win_back.json",
        {"user_id": "bo", "arm": "baseline", "profile": NEW_YORK, "timeline": [WIN_BACK_ENTRY]},
    )
    assert brief(result["trace"]) == [
        ("event_received", "2026-03-06T15:00:00Z", "", ""),
        ("enrolled", "2026-03-06T15:00:00Z", "fork", ""),
        ("exposure", "2026-03-06T15:00:00Z", "fork", ""),
        ("step_branched", "2026-03-06T15:00:00Z", "fork", "split"),
        # the next Tuesday 10:00 local, after the DST change: 14:00 UTC
        ("command_emitted", "2026-03-10T14:00:00Z", "story", ""),
        # two days on is Thursday 10:00 local exactly: due then
        ("command_emitted", "2026-03-12T14:00:00Z", "offer", ""),
        ("command_emitted", "2026-03-17T14:00:00Z", "last-chance", ""),
        ("enrollment_exited", "2026-03-17T14:00:00Z", "last-chance", "completed"),
    ]
    assert [s[:4] for s in sends(result["trace"])] == [
        ("story", "email", "whats-new-email", "default"),
        ("offer", "email", "come-back-shipping-email", "free-shipping"),
        ("last-chance", "email", "offer-ends-email", "default"),
    ]
