"""The topic layout both services agree on, and an idempotent start-up step that creates
what is missing (auto-creation would give the compacted config topic the wrong policy)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from sme.errors import BrokerUnavailableError
from sme.settings import Settings

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    parts = settings.topic_partitions
    return [
        TopicSpec(settings.topic_events, parts),
        *(TopicSpec(topic, parts) for topic in settings.command_topics.values()),
        TopicSpec(settings.topic_activities, parts),
        TopicSpec(settings.topic_configs, 1, {"cleanup.policy": "compact"}),
        TopicSpec(settings.topic_dlq, parts),
        TopicSpec(settings.topic_timers, parts, {"retention.ms": str(24 * 3600 * 1000)}),
        TopicSpec(settings.topic_stats, 1, {"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create the missing topics; return the names created. Waits for the broker up to
    `timeout_s`, then raises BrokerUnavailableError naming the bootstrap servers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                where = settings.kafka_bootstrap_servers
                raise BrokerUnavailableError(
                    f"Kafka at {where} did not answer in {timeout_s:.0f}s: {exc}"
                ) from exc
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, settings.topic_replication, topic_configs=s.configs)
                for s in missing
            ]
        )
        for name, code, *rest in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise BrokerUnavailableError(f"creating topic {name} failed: code {code} {rest}")
        log.info("created topics %s", [s.name for s in missing])
        return [s.name for s in missing]
    finally:
        await admin.close()
