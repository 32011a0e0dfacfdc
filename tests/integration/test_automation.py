"""Automation on the real broker and ClickHouse engine: a sequence whose unsubscribe rate
crosses its rule's threshold is paused by the gateway, the pause is visible in GET with the
rule and figures, and it is logged as an activity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"


@pytest.mark.parametrize("status", ["ACTIVE", "DRAINING"])  # a draining one still sends
async def test_a_sequence_past_its_unsubscribe_threshold_is_paused_and_says_why(
    test_settings: Settings, status: str
) -> None:
    s = test_settings.model_copy(update={"automation_interval_seconds": 0.5})
    await ensure_topics(s)
    sequence = {
        "workspace_id": "acme",
        "name": "Noisy",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
        "automation_rules": [
            {
                "id": "unsub-guard",
                "metric": "unsubscribe_rate",
                "threshold": 0.45,  # the third unsubscribe of six crosses it, not the second
                "min_volume": 4,
                "window": "PT1H",
            }
        ],
    }
    async with (
        running_gateway(s) as api,
        running_engine(s),
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        created = (await api.post(API, json=sequence)).json()
        users = [f"u{i}" for i in range(6)]
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"s-{u}", u, "signed_up") for u in users],
        )
        commands = await eventually(lambda: _at_least(emails, 6), timeout=60, what="six sends")
        assert (await api.get(f"{API}/{created['id']}")).json()["status"] == "ACTIVE"
        if status != "ACTIVE":
            changed = await api.patch(f"{API}/{created['id']}", json={"status": status})
            assert changed.json()["status"] == status
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [
                event(
                    f"u-{c['user_id']}",
                    str(c["user_id"]),
                    "unsubscribed",
                    channel="email",
                    command_id=c["command_id"],
                )
                for c in commands[:3]
            ],
        )

        async def paused() -> dict[str, Any] | None:
            body = (await api.get(f"{API}/{created['id']}")).json()
            return body if body["status"] == "PAUSED" else None

        body = await eventually(paused, timeout=60, what="the automatic pause")
        reason = body["status_reason"]
        assert (reason["rule"], reason["metric"], reason["volume"]) == (
            "unsub-guard",
            "unsubscribe_rate",
            6,
        )
        assert reason["value"] == pytest.approx(0.5)

        async def logged() -> list[dict[str, Any]]:
            items = (
                await api.get(
                    f"{API}/{created['id']}/activities", params={"type": "automation_paused"}
                )
            ).json()["items"]
            return list(items)

        [activity] = await eventually(logged, timeout=30, what="the automation_paused activity")
        assert activity["details"]["rule"] == "unsub-guard"
        resumed = await api.patch(f"{API}/{created['id']}", json={"status": "ACTIVE"})
        assert resumed.json()["status_reason"] is None, "a manual resume clears the reason"
        refused = await api.patch(f"{API}/{created['id']}", json={"status_reason": {"rule": "x"}})
        assert refused.status_code == 422


async def _at_least(reader: TopicReader, n: int) -> list[dict[str, Any]]:
    seen = await reader.poll()
    return seen if len(seen) >= n else []


async def test_each_rule_is_judged_over_its_own_window_not_the_longest_rules(
    test_settings: Settings,
) -> None:
    """An hourly error-rate rule pauses on the last hour's rejections, although the day that a
    second, daily rule looks at holds enough older events to dilute them below the threshold."""
    s = test_settings.model_copy(update={"automation_interval_seconds": 0.5})
    await ensure_topics(s)
    sequence = {
        "workspace_id": "acme",
        "name": "Windows",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        "automation_rules": [
            {
                "id": "errors-hourly",
                "metric": "error_rate",
                "threshold": 0.4,
                # Judged only once all ten of the hour's events are stored: a partial hour
                # (e.g. five valid and none rejected yet) must not race the assertion below.
                "min_volume": 10,
                "window": "PT1H",
            },
            {
                "id": "unsub-daily",
                "metric": "unsubscribe_rate",
                "threshold": 0.9,
                "min_volume": 1000,
                "window": "P1D",
            },
        ],
    }
    three_hours_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    async with running_gateway(s) as api, running_engine(s):
        created = (await api.post(API, json=sequence)).json()
        # 40 valid events three hours ago: inside the day, outside the hour.
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"old-{i}", f"o{i}", "visited", occurred_at=three_hours_ago) for i in range(40)],
        )
        # Now: 5 valid events and 5 rejected (no user id). The error rate (rejected over every
        # event that arrived, as the dashboard counts it) is 5/10 over the hour, 5/50 over the
        # day (under the threshold).
        invalid = [
            (b"x", orjson.dumps({"event_id": f"bad-{i}", "workspace_id": "acme", "type": "x"}))
            for i in range(5)
        ]
        valid = [event(f"new-{i}", f"n{i}", "visited") for i in range(5)]
        await publish(s.kafka_bootstrap_servers, s.topic_events, [*valid, *invalid])

        async def paused() -> dict[str, Any] | None:
            body = (await api.get(f"{API}/{created['id']}")).json()
            return body if body["status"] == "PAUSED" else None

        body = await eventually(paused, timeout=60, what="the pause by the hourly rule")
        reason = body["status_reason"]
        assert (reason["rule"], reason["metric"], reason["volume"]) == (
            "errors-hourly",
            "error_rate",
            10,
        )
        assert reason["value"] == pytest.approx(0.5)
