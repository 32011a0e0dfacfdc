"""Partitioning is the engine's business: events from any producer — librdkafka's default
partitioner (confluent-kafka, kcat), no key, a key that is not the user, a partition chosen by
hand — meet the user's one state, so `reentry: never` holds and an erase request reaches it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from sme.core.user_state import state_key
from sme.settings import Settings
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
WELCOME: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"], "reentry": {"policy": "never"}},
    "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def _signup(event_id: str, user: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "workspace_id": "acme",
            "user_id": user,
            "type": "signed_up",
            "occurred_at": datetime.now().astimezone().isoformat(),
        }
    )


def _produce_with_librdkafka(
    settings: Settings, messages: list[tuple[bytes | None, bytes]]
) -> set[int]:
    """Produce with confluent-kafka's defaults (librdkafka's consistent_random partitioner);
    returns the partitions the messages landed on."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all"})
    landed: set[int] = set()

    def delivered(error: object, message: Any) -> None:
        assert error is None, error
        landed.add(message.partition())

    for key, value in messages:
        producer.produce(settings.topic_events, value=value, key=key, on_delivery=delivered)
    assert producer.flush(30) == 0, "librdkafka could not deliver every message"
    return landed


async def test_a_user_produced_to_every_partition_has_one_state_one_enrollment_and_is_erased(
    test_settings: Settings,
) -> None:
    s = test_settings.model_copy(update={"engine_store": "rocksdb"})  # one store per partition
    user = "ada"
    key = state_key("acme", user).encode()
    async with (
        running_gateway(s) as api,
        running_engine(s) as engine,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        assert (await api.post(API, json=WELCOME)).status_code == 201
        landed = await asyncio.to_thread(
            _produce_with_librdkafka,
            s,
            [
                (user.encode(), _signup("by-user-key", user)),
                (None, _signup("no-key", user)),
                (b"not-the-user", _signup("wrong-key", user)),
            ],
        )
        # ...and one more on every partition, as a producer with its own partitioner might.
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [(b"x", _signup(f"partition-{p}", user)) for p in range(s.topic_partitions)],
            partitions=list(range(s.topic_partitions)),
        )
        total = 3 + s.topic_partitions
        assert landed, "librdkafka delivered"

        async def all_seen() -> bool:
            stored = engine.users.get(key)
            return isinstance(stored, dict) and stored.get("n") == total

        await eventually(all_seen, timeout=60, what=f"all {total} events in the user's one state")
        # Outputs are acknowledged before the state that records them is stored: every
        # command of these events is on the topic now.
        hellos = [c for c in await _drain(emails) if c["user_id"] == user]
        assert len(hellos) == 1, f"reentry never: one enrollment, got {len(hellos)}"

        erased = await api.delete(f"/api/v1/workspaces/acme/users/{user}")
        assert erased.status_code == 202, erased.text

        async def gone() -> bool:
            return engine.users.get(key) is None

        await eventually(gone, timeout=30, what="the user's state erased")


async def _drain(reader: TopicReader) -> list[dict[str, object]]:
    """Everything on the topic up to its current end."""
    consumer = reader.consumer
    await eventually(lambda: _has_assignment(reader), timeout=30, what="reader assignment")
    partitions = consumer.assignment()
    ends = await consumer.end_offsets(list(partitions))

    async def caught_up() -> bool:
        await reader.poll()
        positions = {tp: await _position(reader, tp) for tp in ends}
        return all(positions[tp] >= end for tp, end in ends.items())

    await eventually(caught_up, timeout=30, what="the command topic read to its end")
    return reader.seen


async def _has_assignment(reader: TopicReader) -> bool:
    await reader.poll()
    return bool(reader.consumer.assignment())


async def _position(reader: TopicReader, tp: Any) -> int:
    return int(await reader.consumer.position(tp))
