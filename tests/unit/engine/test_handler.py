"""The engine's handler without a broker: the Engine built with Faust's in-memory store, its
batch handler (`decide_batch`, what the decide agent calls for each batch) driven with fake
input messages. A signup in gives the command and the activities out, then the user's state
and the partition's position stored, in that order; the same input again is skipped. A list
enrollment is decided the same way, and a re-sent one enrolls nobody twice.

Faust's `agent.test_context()` is not used: the agent waits for the config mirror, batches
with `take_events` and sends through `app.producer`, which the test context leaves pointed at
the broker. Here the producer and the changelog topics are fakes that acknowledge at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust.streams
import orjson
import pytest
from prometheus_client import CollectorRegistry

from sme.contracts.config_records import SequenceRecord, record_key
from sme.contracts.engine_inputs import ForwardedEvent, SourcePositionRef
from sme.contracts.enrollments import EnrollRequest
from sme.contracts.events import Event
from sme.contracts.sequences import SequenceConfig
from sme.core.user_state import UserState, state_key
from sme.engine.app import Engine
from sme.settings import Settings

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # a Friday afternoon: no quiet hours
PARTITION = 2
CONFIG = {
    "id": "welcome",
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "hello", "template": "hello", "channels": ["email"]},
        {"id": "nudge", "wait": "P1D", "template": "nudge", "channels": ["email"]},
    ],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


@dataclass(eq=False)  # weak-referenced as Faust's current event
class FakeEvent:
    message: Message


class Log:
    """Everything the handler hands to the broker, in order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Any, Any]] = []

    def acked(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: float | None) -> object:
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        return None


class FakeProducer:
    """Faust's producer and, under it, aiokafka's batch API (`_ensure_producer`)."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def send(self, topic: str, key: bytes | None, value: bytes, **_: Any) -> Any:
        self.log.entries.append(("send", topic, key, orjson.loads(value)))
        return self.log.acked()

    def _ensure_producer(self) -> FakeProducer:
        return self

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        for key, value in batch.records:
            self.log.entries.append(("send", topic, key, orjson.loads(value)))
        return self.log.acked()


class Sent(asyncio.Future[None]):
    """An acknowledged changelog write, carrying the partition as Faust's FutureMessage does."""

    def __init__(self, partition: int) -> None:
        super().__init__()
        self.message = SimpleNamespace(partition=partition)
        self.set_result(None)


def fake_changelog(log: Log, table: str) -> Any:
    def send_soon(*, key: Any, value: Any, partition: int | None, **_: Any) -> Any:
        if partition is None:  # Faust's partitioner: the current event's partition
            event = faust.streams.current_event()
            assert event is not None, "a table written outside its input's context"
            partition = event.message.partition
        log.entries.append(("changelog", table, key, (partition, value)))
        return Sent(partition)

    return send_soon


@pytest.fixture
async def engine(tmp_path: Path) -> tuple[Engine, Log]:
    settings = Settings(data_dir=tmp_path, engine_store="memory", topic_partitions=6)

    def fatal(reason: str) -> None:
        raise AssertionError(f"the engine would have stopped: {reason}")

    built = Engine(settings, clock=lambda: NOW, registry=CollectorRegistry(), on_fatal=fatal)
    log = Log()
    built.app.producer = FakeProducer(log)  # type: ignore[assignment]
    for table in (built.users, built.ledger, built.positions):
        table.changelog_topic.send_soon = fake_changelog(log, table.name)  # type: ignore[method-assign]
    record = SequenceRecord(config=SequenceConfig.model_validate(CONFIG))
    built.configs.apply(record_key(record), record.model_dump_json().encode())
    return built, log


def signup(offset: int) -> FakeEvent:
    event = Event(
        event_id="s-ada",
        workspace_id="acme",
        user_id="ada",
        type="signed_up",
        occurred_at=datetime(2026, 11, 27, 13, 59, tzinfo=UTC),
    )
    forwarded = ForwardedEvent(
        source=SourcePositionRef(topic="sme.events", partition=0, offset=41), event=event
    )
    return FakeEvent(
        Message(
            topic="sme.inputs",
            partition=PARTITION,
            offset=offset,
            key=state_key("acme", "ada").encode(),
            value=forwarded.model_dump_json().encode(),
        )
    )


async def test_a_signup_in_gives_a_command_and_activities_out_then_stores_the_state(
    engine: tuple[Engine, Log],
) -> None:
    app, log = engine

    await app.decide_batch([signup(offset=0)])

    sends = [(topic, value) for kind, topic, _, value in log.entries if kind == "send"]
    commands = [v for t, v in sends if t == "sme.commands.email"]
    assert [(c["user_id"], c["config_id"], c["step_id"]) for c in commands] == [
        ("ada", "welcome", "hello")
    ]
    records = [v for t, v in sends if t == "sme.activities"]
    assert len(records) == 1, "the signup's activities travel together, in one record"
    activities = [a["type"] for a in records[0]["activities"]]
    assert {"event_received", "enrolled", "command_emitted"} <= set(activities)
    assert {t for t, _ in sends} == {"sme.commands.email", "sme.activities"}

    key = state_key("acme", "ada").encode()
    stored = app.users[key]
    state = UserState.from_dict(stored)
    assert stored["p"] == PARTITION
    assert [(e.config_id, e.due_ms) for e in state.enrollments] == [
        ("welcome", int(NOW.timestamp() * 1000) + 86_400_000)  # the nudge, a day later
    ]
    assert app.positions[str(PARTITION).encode()] == 1  # the next input to decide

    kinds = [kind for kind, *_ in log.entries]
    first_changelog = kinds.index("changelog")
    assert "send" not in kinds[first_changelog:], "outputs are acknowledged before any state"
    changelogs = {(t, k) for kind, t, k, _ in log.entries if kind == "changelog"}
    assert ("users", key) in changelogs
    assert ("positions", str(PARTITION).encode()) in changelogs
    assert all(v[0] == PARTITION for kind, _, _, v in log.entries if kind == "changelog")
    assert len(app.due) == 1, "the nudge's timer is armed"


async def test_an_input_below_the_stored_position_is_skipped(engine: tuple[Engine, Log]) -> None:
    app, log = engine
    await app.decide_batch([signup(offset=0)])
    first = len(log.entries)

    await app.decide_batch([signup(offset=0)])  # redelivered after its state was stored

    again = log.entries[first:]
    assert [e for e in again if e[0] == "send"] == [], "its outputs are on their topics already"
    assert [e for e in again if e[1] == "users"] == [], "and its state is stored"
    assert app.positions[str(PARTITION).encode()] == 1
    assert app.metrics.registry.get_sample_value("sme_inputs_replayed_total") == 1


def listed(offset: int, batch_id: str = "b-1") -> FakeEvent:
    request = EnrollRequest(
        workspace_id="acme",
        config_id="welcome",
        batch_id=batch_id,
        user_id="ada",
        attributes={"plan": "pro"},
        requested_at=NOW,
    )
    return FakeEvent(
        Message(
            topic="sme.inputs",
            partition=PARTITION,
            offset=offset,
            key=state_key("acme", "ada").encode(),
            value=request.model_dump_json().encode(),
        )
    )


async def test_a_list_enrollment_in_gives_the_first_command_and_a_resent_one_nothing_more(
    engine: tuple[Engine, Log],
) -> None:
    app, log = engine

    await app.decide_batch([listed(offset=0), listed(offset=1)])  # the gateway sent it twice

    sends = [(topic, value) for kind, topic, _, value in log.entries if kind == "send"]
    commands = [v for t, v in sends if t == "sme.commands.email"]
    assert [(c["user_id"], c["step_id"]) for c in commands] == [("ada", "hello")]
    (record,) = [v for t, v in sends if t == "sme.activities"]
    kinds = [a["type"] for a in record["activities"]]
    assert kinds[:2] == ["enrolled", "exposure"]
    assert kinds[-1] == "event_duplicate"
    state = UserState.from_dict(app.users[state_key("acme", "ada").encode()])
    assert state.profile.attributes == {}, "no sequence asks about `plan`: not kept"
    assert [e.config_id for e in state.enrollments] == ["welcome"]
    assert app.positions[str(PARTITION).encode()] == 2
