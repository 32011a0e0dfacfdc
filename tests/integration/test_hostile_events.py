"""Hostile input on the real broker: hypothesis-generated payloads (malformed JSON, wrong types,
missing fields, oversize, odd unicode, far timestamps, duplicate keys, empty and null values)
interleaved with valid signups. Every payload the contract rejects lands on the DLQ once, with
its reason, position and original bytes, and is counted (the engine's dead-letter counter and
the stored error rate); everything the contract accepts is processed, and every valid signup
between them gets its welcome email.

Which payload is valid is decided by the oracle in tests/support/hostile.py (the published
JSON Schema over I-JSON, the size and nesting limits), never by the engine's parser. The test
treats the engine as a black box: topics in and out, its metrics, and what the sink stored."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from sme.contracts.channels import Channel
from sme.contracts.dead_letters import MAX_ORIGINAL_BYTES
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.hostile import Hostile, base_event, draw_corpus, dumps, expected_rejection
from tests.support.kafka_io import TopicReader, publish_config
from tests.support.runtime import running_engine, running_sink
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MAX_BYTES = 4096  # small, so oversize payloads stay cheap; one fixed payload passes 64 KiB
GENERATED = 150
VALID_EVERY = 3  # a valid signup after every third hostile payload
WELCOME: dict[str, object] = {
    "id": "welcome",
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "welcome", "template": "welcome", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def _nested(base: dict[str, Any], depth: int, leaf: bytes = b"1") -> bytes:
    """`base` with its properties nested `depth` more objects deep."""
    nested = b'{"n":' * depth + leaf + b"}" * depth
    return dumps({**base, "properties": "@"}).replace(b'"@"', nested)


# One of each kind the issue names, whatever hypothesis draws.
FIXED = [
    Hostile("empty", lambda b: b""),
    Hostile("null", lambda b: None),
    Hostile("non_object:array", lambda b: dumps([b])),
    Hostile("non_object:null", lambda b: b"null"),
    Hostile("non_object:string", lambda b: b'"signed_up"'),
    Hostile("malformed", lambda b: dumps(b)[:-1]),
    Hostile("oversize:64KiB+", lambda b: dumps({**b, "properties": {"pad": "x" * 70_000}})),
    Hostile("oversize:limit+1", lambda b: (raw := dumps(b)) + b" " * (MAX_BYTES + 1 - len(raw))),
    Hostile("at_limit", lambda b: (raw := dumps(b)) + b" " * (MAX_BYTES - len(raw))),
    Hostile("missing:user_id", lambda b: dumps({k: v for k, v in b.items() if k != "user_id"})),
    Hostile("wrong_type:event_id", lambda b: dumps({**b, "event_id": 7})),
    Hostile("timestamp:epoch", lambda b: dumps({**b, "occurred_at": 1764321300})),
    Hostile("timestamp:1999", lambda b: dumps({**b, "occurred_at": "1999-12-31T23:59:59Z"})),
    Hostile("timestamp:2201", lambda b: dumps({**b, "occurred_at": "2201-01-01T00:00:00Z"})),
    Hostile("timestamp:2000", lambda b: dumps({**b, "occurred_at": "2000-01-01T00:00:00+01:00"})),
    Hostile("duplicate_key", lambda b: dumps(b)[:-1] + b',"user_id":"mallory"}'),
    Hostile("blank:user_id", lambda b: dumps({**b, "user_id": " "})),
    Hostile(
        "unicode:lone_surrogate_bytes",
        lambda b: dumps(b).replace(b'"signed_up"', b'"\xed\xa0\x80"'),
    ),
    Hostile(
        "unicode:escaped_surrogate",
        lambda b: dumps({**b, "properties": "@"}).replace(b'"@"', b'"\\udc00"'),
    ),
    Hostile("unicode:nul_in_user", lambda b: dumps({**b, "user_id": b["user_id"] + "\u0000x"})),
    Hostile("unicode:rtl_in_user", lambda b: dumps({**b, "user_id": "\u202e" + b["user_id"]})),
    Hostile("unicode:long_user", lambda b: dumps({**b, "user_id": b["user_id"] + "é" * 300})),
    Hostile("unicode:long_property", lambda b: dumps({**b, "properties": {"t": "\u200f" * 1000}})),
    Hostile("deep:60", lambda b: _nested(b, 60)),  # deep, within the contract's 64 levels
    Hostile("deep:300", lambda b: _nested(b, 300)),  # deeper than the engine could write back
    Hostile(
        "deep:1500",  # past orjson's 1024 levels (and Python's recursion limit), under 4 KiB
        lambda b: dumps({**b, "properties": "@"}).replace(b'"@"', b"[" * 1500 + b"]" * 1500),
    ),
]


@dataclass(frozen=True)
class Sent:
    kind: str
    user: str  # the user of the base event: the message key, nobody else's
    value: bytes | None
    expected: str | None  # the dead-letter reason the contract calls for, None if valid
    document: dict[str, Any] | None  # the event, when valid
    partition: int = -1
    offset: int = -1


def corpus(now: str) -> list[Sent]:
    """Hostile payloads (each from a base event of its own) with a valid signup after every
    third, and one more valid signup at the very end."""
    out: list[Sent] = []
    for n, hostile in enumerate(FIXED + draw_corpus(GENERATED, MAX_BYTES)):
        base = base_event(n, now)
        raw = hostile.render(base)
        reason = expected_rejection(raw, MAX_BYTES)
        document = orjson.loads(raw) if raw is not None and reason is None else None
        out.append(Sent(hostile.kind, base["user_id"], raw, reason, document))
        if n % VALID_EVERY == VALID_EVERY - 1:
            out.append(_valid(10_000 + n, now))
    out.append(_valid(99_999, now))
    return out


def _valid(n: int, now: str) -> Sent:
    document = base_event(n, now)
    raw = dumps(document)
    assert expected_rejection(raw, MAX_BYTES) is None
    return Sent("valid", document["user_id"], raw, None, document)


async def send_all(settings: Settings, messages: list[Sent]) -> list[Sent]:
    """Send in order (one producer, acks=all); return each message with its position."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", max_request_size=2**20
    )
    await producer.start()
    try:
        futures = []
        for message in messages:
            key = message.user.encode()
            futures.append(await producer.send(settings.topic_events, message.value, key=key))
        positions = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [
        Sent(m.kind, m.user, m.value, m.expected, m.document, p.partition, p.offset)
        for m, p in zip(messages, positions, strict=True)
    ]


async def test_hostile_events_are_dead_lettered_with_a_reason_and_valid_ones_between_are_processed(
    test_settings: Settings,
) -> None:
    settings = test_settings.model_copy(update={"max_event_bytes": MAX_BYTES})
    await ensure_topics(settings)
    await publish_config(settings, WELCOME)
    messages = corpus(datetime.now(UTC).isoformat())
    invalid_kinds = Counter(m.kind.split(":")[0] for m in messages if m.expected)
    assert {"empty", "null", "non_object", "oversize", "timestamp", "duplicate_key"} <= set(
        invalid_kinds
    ), invalid_kinds
    bootstrap = settings.kafka_bootstrap_servers

    async with (
        running_sink(settings) as store,
        running_engine(settings) as engine,
        TopicReader(bootstrap, settings.topic_dlq) as dlq,
        TopicReader(bootstrap, settings.command_topics[Channel.EMAIL]) as emails,
        TopicReader(bootstrap, settings.topic_activities) as activities,
    ):
        sent = await send_all(settings, messages)
        rejected = {(m.partition, m.offset): m for m in sent if m.expected}
        accepted = [m for m in sent if m.document is not None]
        assert len(rejected) > 100 and len(accepted) > 50

        # Everything the contract accepts is processed: received, and a signup to the welcome
        # sequence's workspace gets its email, whatever its user id is made of. (Identifiers
        # may be trimmed on the way in; the schema leaves that open, so compare trimmed.)
        events = [m.document for m in accepted if m.document is not None]
        want_received = {str(e["event_id"]).strip() for e in events}
        want_emails = {
            str(e["user_id"])
            for e in events
            if (e["workspace_id"], e["type"]) == ("acme", "signed_up")
        }
        received: set[str] = set()
        emailed: set[str] = set()

        async def processed() -> bool:
            for activity in await activities.poll():
                if activity.get("type") == "event_received":
                    received.add(str(activity.get("event_id")).strip())
            emailed.update(str(c["user_id"]) for c in await emails.poll())
            return want_received <= received and want_emails <= emailed

        await _explained(
            processed,
            lambda: (
                f"not received: {sorted(want_received - received)[:10]}, "
                f"not emailed: {sorted(want_emails - emailed)[:10]}"
            ),
        )

        # Every rejected payload is dead-lettered exactly once (nothing valid is), for the
        # contract's reason, with its position, field errors and original bytes ...
        def letters() -> list[dict[str, Any]]:
            return [x for x in dlq.seen if _source(x)[0] == settings.topic_events]

        async def all_dead_lettered() -> bool:
            await dlq.poll()
            return {_source(x)[1:] for x in letters()} >= set(rejected)

        await _explained(
            all_dead_lettered,
            lambda: (
                "never dead-lettered: "
                + repr(
                    [
                        (m.kind, (m.value or b"")[:80])
                        for position, m in rejected.items()
                        if position not in {_source(x)[1:] for x in letters()}
                    ][:10]
                )
            ),
        )
        await dlq.poll()  # anything repeated or extra has had the whole run to show up
        positions = [_source(x)[1:] for x in letters()]
        assert sorted(positions) == sorted(rejected), "extra or repeated dead letters"
        wrong = []
        for letter in letters():
            message = rejected[_source(letter)[1:]]
            original = message.value or b""
            if (
                letter["reason_code"] != message.expected
                or not letter["errors"]
                or letter["original_size"] != len(original)
                or base64.b64decode(letter["original_base64"]) != original[:MAX_ORIGINAL_BYTES]
                or letter["original_truncated"] != (len(original) > MAX_ORIGINAL_BYTES)
            ):
                wrong.append(
                    (message.kind, message.expected, letter["reason_code"], original[:120])
                )
        assert wrong == []

        # ... and counted by reason.
        expected_counts = Counter(str(m.expected) for m in rejected.values())
        sample = engine.metrics.registry.get_sample_value
        counts = {
            reason: sample("sme_dead_letters_total", {"reason": reason}) or 0.0
            for reason in ("too_large", "invalid_json", "validation_failed", "processing_error")
        }
        assert counts == {**dict.fromkeys(counts, 0.0), **expected_counts}

        nobody = {m.user for m in rejected.values()}  # their users sent nothing valid
        assert not nobody & emailed

        # The error rate counts them too: one stored `event_rejected` row each, and every
        # activity the engine wrote about them was readable by the sink.
        async def rejected_rows() -> int:
            result = await store.query(
                "SELECT uniqExact(activity_id) FROM {db}.activities WHERE type = 'event_rejected'"
            )
            return int(result.result_rows[0][0])

        await eventually(
            lambda: _equals(rejected_rows(), len(rejected)),
            timeout=60,
            what=f"{len(rejected)} event_rejected rows in ClickHouse",
        )
        assert [x for x in dlq.seen if x["service"] != "engine"] == []


async def _explained(probe: Callable[[], Awaitable[bool]], explain: Callable[[], str]) -> None:
    """Wait for `probe`; on timeout, fail with what is still missing."""
    try:
        await eventually(probe, timeout=120, what="the corpus processed")
    except AssertionError:
        pytest.fail(explain())


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def _source(letter: dict[str, Any]) -> tuple[str, int, int]:
    source = letter["source"]
    return str(source["topic"]), int(source["partition"]), int(source["offset"])
