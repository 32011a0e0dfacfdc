"""The walking skeleton's pipe on the real broker and ClickHouse engine: an event becomes a
command on its channel topic and an activity row in ClickHouse; invalid events go to the DLQ
with their reason, and the engine keeps going."""

from __future__ import annotations

import orjson
import pytest

from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import engine_and_sink
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


WELCOME = {
    "id": "welcome",
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "welcome", "template": "welcome", "channels": ["email", "push", "sms"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


@pytest.fixture(autouse=True)
async def welcome_sequence(test_settings: Settings) -> None:
    """A one-step welcome sequence (baseline arm only: first eligible channel)."""
    await ensure_topics(test_settings)
    await publish_config(test_settings, WELCOME)


def signup(event_id: str, user_id: str, consent: dict[str, bool] | None = None) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "workspace_id": "acme",
            "user_id": user_id,
            "type": "signed_up",
            "occurred_at": "2026-11-28T09:15:00+01:00",
            "properties": {"plan": "pro"},
            "user": {"timezone": "Europe/Paris", "consent": consent or {}},
        }
    )


async def test_one_valid_and_one_invalid_event(test_settings: Settings) -> None:
    bootstrap = test_settings.kafka_bootstrap_servers
    async with (
        engine_and_sink(test_settings) as store,
        TopicReader(bootstrap, test_settings.command_topics["sms"]) as sms_commands,
        TopicReader(bootstrap, test_settings.topic_dlq) as dlq,
    ):
        await publish(
            bootstrap,
            test_settings.topic_events,
            [
                (b"u-1", signup("evt-1", "u-1", consent={"email": False, "push": False})),
                (b"u-2", b'{"event_id": "evt-2", "workspace_id": "acme"'),
            ],
        )

        commands = await eventually(
            sms_commands.poll, timeout=60, what="a command on the sms topic"
        )
        assert len(commands) == 1
        command = commands[0]
        assert (command["user_id"], command["channel"], command["step_id"]) == (
            "u-1",
            "sms",
            "welcome",
        )

        async def activity_rows() -> list[tuple[object, ...]]:
            result = await store.query(
                "SELECT type, user_id, command_id, reason_code "
                "FROM {db}.activities FINAL ORDER BY type"
            )
            return list(result.result_rows) if len(result.result_rows) >= 6 else []

        rows = await eventually(activity_rows, timeout=30, what="activities in ClickHouse")
        types = [r[0] for r in rows]
        assert types == [
            "command_emitted",
            "enrolled",
            "enrollment_exited",
            "event_received",
            "event_rejected",
            "exposure",
        ]
        assert rows[0][2] == command["command_id"]
        assert rows[4][3] == "invalid_json"

        letters = await eventually(dlq.poll, timeout=30, what="the invalid event on the DLQ")
        assert letters[0]["reason_code"] == "invalid_json"
        assert letters[0]["source"]["topic"] == test_settings.topic_events  # type: ignore[index]
        assert letters[0]["source"]["key"] == "u-2"  # type: ignore[index]


async def test_the_engine_keeps_going_after_bad_input_and_drops_producer_retries(
    test_settings: Settings,
) -> None:
    bootstrap = test_settings.kafka_bootstrap_servers
    async with (
        engine_and_sink(test_settings) as store,
        TopicReader(bootstrap, test_settings.command_topics["email"]) as emails,
        TopicReader(bootstrap, test_settings.topic_dlq) as dlq,
    ):
        too_large = b'{"pad": "' + b"x" * test_settings.max_event_bytes + b'"}'
        await publish(
            bootstrap,
            test_settings.topic_events,
            [
                (b"u-3", too_large),
                (
                    b"u-3",
                    orjson.dumps(
                        {
                            "event_id": "evt-4",
                            "workspace_id": "acme",
                            "user_id": "u-3",
                            "type": "signed_up",
                            "occurred_at": "2026-11-28T09:15:00",
                        }
                    ),
                ),
                (b"u-3", signup("evt-5", "u-3")),
                (b"u-3", signup("evt-5", "u-3")),  # a producer retry: same event id
            ],
        )
        letters = await eventually(lambda: _at_least(dlq, 2), timeout=60, what="two dead letters")
        assert sorted(str(letter["reason_code"]) for letter in letters) == [
            "too_large",
            "validation_failed",
        ]
        failed = next(letter for letter in letters if letter["reason_code"] == "validation_failed")
        assert [e["loc"] for e in failed["errors"]] == ["occurred_at"]  # type: ignore[union-attr]

        commands = await eventually(emails.poll, timeout=30, what="the welcome email")

        async def duplicate_logged() -> bool:
            result = await store.query(
                "SELECT count() FROM {db}.activities FINAL "
                "WHERE type = 'event_duplicate' AND event_id = 'evt-5'"
            )
            return bool(result.result_rows[0][0] == 1)

        await eventually(duplicate_logged, timeout=30, what="the duplicate recorded")
        assert len(await emails.poll()) == len(commands) == 1


async def _at_least(reader: TopicReader, n: int) -> list[dict[str, object]]:
    seen = await reader.poll()
    return seen if len(seen) >= n else []
