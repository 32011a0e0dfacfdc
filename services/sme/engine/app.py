"""The engine adapter: deserialise, call the pure core, persist, emit. Nothing else.

Outputs are sent before the state is written, so a crash in between replays the event and
re-sends the same deterministic ids (deduped downstream) rather than losing a command.
No exception escapes the agent: a dead agent silently stalls its partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from sme.contracts.dead_letters import FieldError, RejectReason, SourcePosition
from sme.core.intake import Rejection, dead_letter, parse_event, rejected_activity
from sme.core.user_state import UserState, state_key
from sme.core.welcome_rule import decide
from sme.engine.metrics import EngineMetrics
from sme.settings import Settings

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _dump(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=False).encode()


class Engine:
    """Builds the Faust app (topics, the users table, the events agent) around the core."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = utc_now,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = EngineMetrics(registry or CollectorRegistry())
        settings.engine_table_dir.mkdir(parents=True, exist_ok=True)
        brokers = [
            f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")
        ]
        self.app = faust.App(
            settings.engine_app_id,
            broker=brokers,
            store="memory://" if settings.engine_store == "memory" else "rocksdb://",
            datadir=str(settings.engine_table_dir),
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication,
            web_host=settings.engine_web_host,
            web_port=settings.engine_web_port,
            web_enabled=True,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            broker_commit_interval=1.0,
        )
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.events_topic = self.app.topic(settings.topic_events, **raw)
        self.command_topics = {
            channel: self.app.topic(name, **raw)
            for channel, name in settings.command_topics.items()
        }
        self.activities_topic = self.app.topic(settings.topic_activities, **raw)
        self.dlq_topic = self.app.topic(settings.topic_dlq, **raw)
        self.users = self.app.Table(
            "users",
            partitions=settings.topic_partitions,
            key_type=bytes,  # raw keys; values use the JSON codec
            help="Per-user state (workspace, user) -> UserState.to_dict().",
        )
        self.app.agent(self.events_topic, name="sme.engine.events")(self._consume)
        setup_prometheus_sensors(self.app, registry=self.metrics.registry, name_prefix="sme_faust")

    async def _consume(self, stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            await self.handle(event.message)
            yield None

    async def handle(self, message: Any) -> None:
        """Process one consumed message; never raises."""
        started = time.perf_counter()
        raw: bytes | None = message.value
        try:
            parsed = parse_event(raw, self.settings.max_event_bytes)
            if isinstance(parsed, Rejection):
                await self._reject(parsed, message)
                return
            key = state_key(parsed.workspace_id, parsed.user_id).encode()
            stored = self.users.get(key)
            state = (
                UserState.from_dict(stored)
                if stored
                else UserState.new(parsed.workspace_id, parsed.user_id)
            )
            decision = decide(state, parsed, self.clock())
            user_key = parsed.user_id.encode()
            for command in decision.commands:
                await self.command_topics[command.channel].send(key=user_key, value=_dump(command))
                self.metrics.commands_out.labels(command.channel.value).inc()
            for activity in decision.activities:
                await self.activities_topic.send(key=user_key, value=_dump(activity))
                self.metrics.activities_out.labels(activity.type.value).inc()
            self.users[key] = decision.state.to_dict()
            self.metrics.events_in.labels(self.metrics.event_type_label(parsed.type)).inc()
        except Exception as exc:
            log.exception(
                "processing %s[%s]@%s failed", message.topic, message.partition, message.offset
            )
            error = FieldError(loc="", message=str(exc)[:1000], type=type(exc).__name__)
            await self._reject(Rejection(RejectReason.PROCESSING_ERROR, (error,)), message)
        finally:
            self.metrics.decision_seconds.observe(time.perf_counter() - started)

    async def _reject(self, rejection: Rejection, message: Any) -> None:
        source = SourcePosition(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key.decode(errors="replace")[:256] if message.key else None,
        )
        now = self.clock()
        letter = dead_letter(rejection, message.value, source, now, service="engine")
        try:
            await self.dlq_topic.send(key=message.key, value=_dump(letter))
            activity = rejected_activity(rejection, source, now)
            await self.activities_topic.send(key=message.key, value=_dump(activity))
        except Exception:
            log.exception(
                "could not dead-letter %s[%s]@%s", source.topic, source.partition, source.offset
            )
        self.metrics.dead_letters.labels(rejection.reason.value).inc()
