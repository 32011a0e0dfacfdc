"""A split and a fixed_weights A/B test on the real broker and ClickHouse engine: each user's
commands follow their sticky path and variant, and ClickHouse records the path taken."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sme.core.splits import fixed_variant, split_path
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.events import event
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import engine_and_sink
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
USERS = [f"split-{i}" for i in range(12)]
SPLIT: dict[str, Any] = {
    "id": "split-test",
    "workspace_id": "acme",
    "name": "Split",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {
            "id": "fork",
            "kind": "split",
            "paths": [{"weight": 1, "goto": "offer"}, {"weight": 1, "goto": "reminder"}],
        },
        {
            "id": "offer",
            "template": "offer",
            "channels": ["email"],
            "variants": ["x", "y"],
            "variant_weights": [1, 3],
        },
        {"id": "reminder", "template": "reminder", "channels": ["sms"]},
    ],
    "adaptive": {"variant_policy": "fixed_weights"},
    "experiment": {"holdout_pct": 0, "baseline_pct": 50},
}


async def test_users_follow_their_split_path_and_variant_end_to_end(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    await publish_config(s, SPLIT)
    offer_users = {u for u in USERS if split_path([1, 1], "split-test", "fork", u) == 0}
    async with (
        engine_and_sink(s) as store,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["sms"]) as smses,
    ):
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"s-{u}", u, "signed_up") for u in USERS],
        )

        async def reminders() -> list[dict[str, Any]]:
            seen = [c for c in await smses.poll() if c["user_id"] in USERS]
            return seen if len(seen) >= len(USERS) else []

        await eventually(reminders, timeout=60, what="every user's reminder")
        offers = [c for c in await emails.read_to_end() if c["user_id"] in USERS]
        assert {c["user_id"] for c in offers} == offer_users
        for command in offers:
            drawn = fixed_variant([1, 3], "split-test", "offer", command["user_id"])
            assert command["variant"] == ["x", "y"][drawn]

        async def branched() -> list[tuple[Any, ...]]:
            rows = (
                await store.query(
                    "SELECT user_id, reason_code, details FROM {db}.activities FINAL "
                    "WHERE config_id = 'split-test' AND type = 'step_branched'"
                )
            ).result_rows
            return list(rows) if len(rows) >= len(USERS) else []

        rows = await eventually(branched, timeout=30, what="the split activities in ClickHouse")
        for user, reason, details in rows:
            path = json.loads(details)["path"]
            assert (reason, path) == ("split", 0 if user in offer_users else 1)
