"""Timing on the real broker and ClickHouse engine: a `wait_until` step goes out when the user's
local clock next shows its time on an allowed weekday (the engine's clock moved there by the
test), and sequences past their `ends_at` or DRAINING refuse new entries, with their reason
codes in ClickHouse."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from sme.core.timeutil import next_wall_time
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.clock import ShiftableClock
from tests.support.events import event
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import running_engine, running_sink
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
ZONE = "Asia/Kolkata"
WEEKDAYS = frozenset(range(5))


def in_zone(message: tuple[bytes, bytes], zone: str) -> tuple[bytes, bytes]:
    """The event with the user's profile time zone."""
    key, value = message
    return key, orjson.dumps({**orjson.loads(value), "user": {"timezone": zone}})


def sequence(config_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": config_id,
        "workspace_id": "acme",
        "name": config_id,
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
        **changes,
    }


TIMED = sequence(
    "timed",
    steps=[
        {"id": "hello", "template": "hello", "channels": ["email"]},
        {
            "id": "morning",
            "template": "morning",
            "channels": ["email"],
            "wait": "PT1H",
            "wait_until": {"time": "10:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]},
        },
    ],
)


async def test_wait_until_sends_at_the_users_local_time_and_closed_sequences_refuse_entry(
    test_settings: Settings,
) -> None:
    s = test_settings
    ended = sequence("ended", ends_at=(datetime.now(UTC) - timedelta(days=1)).isoformat())
    await ensure_topics(s)
    for config in (TIMED, ended, sequence("draining", status="DRAINING")):
        await publish_config(s, config)  # read before the engine starts
    clock = ShiftableClock()
    async with (
        running_sink(s) as store,
        running_engine(s, clock=clock) as engine,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [in_zone(event("s-ada", "ada", "signed_up"), ZONE)],
        )
        (hello,) = await eventually(emails.poll, timeout=60, what="the hello email")  # only timed
        assert (hello["config_id"], hello["step_id"]) == ("timed", "hello")
        entered = datetime.fromisoformat(str(hello["decided_at"]))
        expected = next_wall_time(entered + timedelta(hours=1), ZONE, time(10), WEEKDAYS)
        local = expected.astimezone(ZoneInfo(ZONE))
        assert (local.time(), local.weekday() in WEEKDAYS) == (time(10), True)

        async def armed() -> bool:  # the hello's batch is stored and ada's timer set
            return len(engine.due) == 1

        await eventually(armed, timeout=30, what="ada's morning timer armed")
        clock.advance(expected - clock() - timedelta(seconds=2))  # the rest as time flows

        async def mornings() -> list[dict[str, Any]]:
            return [c for c in await emails.read_to_end() if c["step_id"] == "morning"]

        assert await mornings() == [], "not before its local time"
        morning = await eventually(mornings, timeout=30, what="the morning email")
        assert len(morning) == 1
        sent_at = datetime.fromisoformat(str(morning[0]["decided_at"]))
        assert expected <= sent_at < expected + timedelta(seconds=10)

        async def refusals() -> dict[str, str]:
            rows = (
                await store.query(
                    "SELECT config_id, reason_code FROM {db}.activities FINAL "
                    "WHERE user_id = 'ada' AND type = 'enrollment_skipped'"
                )
            ).result_rows
            found = {str(config): str(reason) for config, reason in rows}
            return found if len(found) >= 2 else {}

        assert await eventually(refusals, timeout=30, what="the refused entries") == {
            "ended": "sequence_ended",
            "draining": "sequence_draining",
        }
