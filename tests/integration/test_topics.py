"""Topic provisioning against the real broker."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from sme.settings import Settings
from sme.topics import changelog_topic, ensure_topics, topic_specs

pytestmark = pytest.mark.integration


async def test_every_topic_is_created_once_with_its_partitions_and_the_config_topic_is_compacted(
    test_settings: Settings,
) -> None:
    created = await ensure_topics(test_settings)
    assert sorted(created) == sorted(spec.name for spec in topic_specs(test_settings))
    assert await ensure_topics(test_settings) == []

    admin = AIOKafkaAdminClient(bootstrap_servers=test_settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(created)}
        assert (
            len(described[test_settings.topic_events]["partitions"])
            == test_settings.topic_partitions
        )
        assert (
            len(described[test_settings.command_topics["push"]]["partitions"])
            == test_settings.topic_partitions
        )
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, test_settings.topic_configs)]
        )
        entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
        changelog = changelog_topic(test_settings, "users")
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, changelog)]
        )
        entries = {entry[0]: entry[1] for entry in configs[0].resources[0][4]}
        # An erased user's state leaves the changelog within bounded time.
        assert entries["cleanup.policy"] == "compact"
        assert int(entries["max.compaction.lag.ms"]) == 24 * 3600 * 1000
        assert int(entries["delete.retention.ms"]) == 24 * 3600 * 1000
    finally:
        await admin.close()
