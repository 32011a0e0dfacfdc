"""The topic layout both services agree on, and an idempotent start-up step that creates
what is missing (auto-creation would give the compacted config topic the wrong policy)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from sme.errors import BrokerUnavailableError, TopicLayoutError
from sme.settings import Settings

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


ENGINE_TABLES = ("users", "ledger", "positions")
"""The engine's Faust tables; each has a compacted changelog co-partitioned with the inputs."""


DAY_MS = str(24 * 3600 * 1000)
ERASABLE_CHANGELOG = {
    "cleanup.policy": "compact",
    # An erased user's old state values are compacted away within a day (the segment is
    # rolled and cleaned even when little of the log is dirty), and the tombstone, whose key
    # names the user, is dropped a day after that.
    "max.compaction.lag.ms": DAY_MS,
    "delete.retention.ms": DAY_MS,
}


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.engine_app_id}-{table}-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    parts = settings.topic_partitions
    return [
        TopicSpec(settings.topic_events, parts),
        TopicSpec(settings.topic_inputs, parts, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        *(
            TopicSpec(changelog_topic(settings, table), parts, ERASABLE_CHANGELOG)
            for table in ENGINE_TABLES
        ),
        *(TopicSpec(topic, parts) for topic in settings.command_topics.values()),
        TopicSpec(settings.topic_activities, parts),
        TopicSpec(settings.topic_configs, 1, {"cleanup.policy": "compact"}),
        TopicSpec(settings.topic_dlq, parts),
        TopicSpec(settings.topic_stats, 1, {"cleanup.policy": "compact"}),
    ]


def copartitioned(settings: Settings) -> set[str]:
    """Topics whose partition count must equal `topic_partitions`: the engine's inputs and
    its table changelogs (partition p of each belongs to the same users). The public events
    topic may have any count: the engine's intake routes every event to its user's partition."""
    return {settings.topic_inputs, *(changelog_topic(settings, t) for t in ENGINE_TABLES)}


async def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create the missing topics, check the co-partitioned ones and wait until the cluster's
    metadata shows every partition; return the names created. Waits for the broker up to
    `timeout_s`, then raises BrokerUnavailableError naming the bootstrap servers. A
    co-partitioned topic with the wrong partition count raises TopicLayoutError: starting
    on it would put a user's state on another partition than their inputs."""
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
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        s.name, s.partitions, settings.topic_replication, topic_configs=s.configs
                    )
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise BrokerUnavailableError(
                        f"creating topic {name} failed: code {code} {rest}"
                    )
            log.info("created topics %s", [s.name for s in missing])
        await _await_partitions(admin, specs, copartitioned(settings), deadline)
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _await_partitions(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], strict: set[str], deadline: float
) -> None:
    """Until the metadata lists every partition of every topic (a just-created topic can
    briefly show none, which made a first start lose its table writes), and check the
    co-partitioned ones have exactly the expected count."""
    loop = asyncio.get_running_loop()
    while True:
        described = {d["topic"]: d for d in await admin.describe_topics([s.name for s in specs])}
        waiting = []
        for spec in specs:
            found = described.get(spec.name)
            count = len(found["partitions"]) if found and not found.get("error_code") else 0
            if spec.name in strict and count and count != spec.partitions:
                raise TopicLayoutError(
                    f"topic {spec.name} has {count} partitions, the engine needs "
                    f"{spec.partitions} (SME_TOPIC_PARTITIONS): it must match the inputs topic "
                    "and the table changelogs; recreate it or set SME_TOPIC_PARTITIONS"
                )
            if count == 0:
                waiting.append(spec.name)
        if not waiting:
            return
        if loop.time() > deadline:
            raise BrokerUnavailableError(f"topics {waiting} show no partitions yet")
        await asyncio.sleep(0.2)
