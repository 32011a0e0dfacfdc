"""Transactional steps and per-channel quiet hours on the real broker and ClickHouse engine:
inside the quiet hours a transactional receipt and an in-app message (opted out) go out at
once, while a marketing SMS waits, and the activities in ClickHouse say which was which."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.events import event
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import engine_and_sink
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def quiet_now() -> dict[str, str]:
    """Quiet hours (UTC, the workspace's default zone) from an hour ago to three hours on."""
    now = datetime.now(UTC)
    return {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
    }


def orders() -> dict[str, Any]:
    return {
        "id": "orders",
        "workspace_id": "acme",
        "name": "Orders",
        "entry": {"event_types": ["ordered"]},
        "steps": [
            {"id": "receipt", "template": "receipt", "channels": ["email"],
             "transactional": True, "category": "receipts"},
            {"id": "banner", "template": "banner", "channels": ["in_app"]},
            {"id": "promo", "template": "promo", "channels": ["sms"], "category": "promo"},
        ],
        "guardrails": {
            "quiet_hours": quiet_now(),
            "quiet_hours_overrides": [{"channel": "in_app", "quiet_hours": None}],
        },
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
    }  # fmt: skip


async def test_in_quiet_hours_the_receipt_and_the_in_app_message_go_out_the_sms_waits(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    await publish_config(s, orders())
    topics = s.command_topics
    async with (
        engine_and_sink(s) as store,
        TopicReader(s.kafka_bootstrap_servers, topics["email"]) as emails,
        TopicReader(s.kafka_bootstrap_servers, topics["in_app"]) as in_app,
    ):
        await publish(s.kafka_bootstrap_servers, s.topic_events, [event("o-1", "eve", "ordered")])
        receipts = await eventually(emails.poll, timeout=60, what="the receipt email")
        banners = await eventually(in_app.poll, timeout=60, what="the in-app banner")
        assert [c["step_id"] for c in receipts + banners] == ["receipt", "banner"]

        async def activities() -> list[tuple[Any, ...]]:
            rows = (
                await store.query(
                    "SELECT step_id, type, reason_code, details FROM {db}.activities FINAL "
                    "WHERE config_id = 'orders' AND type IN ('command_emitted', 'step_deferred') "
                    "ORDER BY occurred_at, step_id"
                )
            ).result_rows
            return list(rows) if len(rows) >= 3 else []

        rows = await eventually(activities, timeout=30, what="the activities in ClickHouse")
        by_step = {(r[0], r[1]): (r[2], orjson.loads(r[3])) for r in rows}
        reason, details = by_step[("receipt", "command_emitted")]
        assert (details["transactional"], details["category"]) == (True, "receipts")
        reason, details = by_step[("banner", "command_emitted")]
        assert (details["transactional"], details["category"]) == (False, "marketing")
        reason, _ = by_step[("promo", "step_deferred")]
        assert reason == "quiet_hours"
