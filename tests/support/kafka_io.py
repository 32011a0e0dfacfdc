"""Kafka helpers for tests: publish raw values, read what a topic holds."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sme.contracts.config_records import SequenceRecord, record_key
from sme.contracts.sequences import SequenceConfig
from sme.settings import Settings
from tests.support.waiting import eventually


async def publish(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    partitions: list[int] | None = None,
) -> None:
    """Send and wait for each message; `partitions` (one per message) overrides the
    partitioner, as a producer with its own would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, (key, value) in enumerate(messages):
            partition = partitions[i] if partitions is not None else None
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def unbundled(value: Any) -> list[Any]:
    """A record's values as the tests look at them: an ActivityBatch (`{"activities": [...]}`)
    is its activities, in order; anything else is itself."""
    if isinstance(value, dict) and value.keys() == {"activities"}:
        return list(value["activities"])
    return [value]


class TopicReader:
    """Reads a topic from the beginning with its own group; `poll()` returns new messages."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.seen: list[dict[str, object]] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> list[dict[str, object]]:
        batches = await self.consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                if record.value:
                    self.seen.extend(unbundled(orjson.loads(record.value)))
        return self.seen

    async def read_to_end(self, timeout: float = 30.0) -> list[dict[str, object]]:
        """Everything the topic holds now: reads until this reader's position reaches the end
        offset (taken now) of every partition. After it, something missing from `seen` is
        missing from the topic, not merely not fetched yet."""

        async def every_partition() -> set[TopicPartition]:
            await self.poll()  # drives the group join
            assigned = self.consumer.assignment()
            topics = {tp.topic for tp in assigned}
            count = sum(len(self.consumer.partitions_for_topic(t) or ()) for t in topics)
            return set(assigned) if assigned and len(assigned) == count else set()

        partitions = await eventually(every_partition, timeout, what="the reader's partitions")
        ends = await self.consumer.end_offsets(list(partitions))

        async def at_end() -> bool:
            await self.poll()
            positions = [await self.consumer.position(tp) for tp in ends]
            return all(p >= end for p, end in zip(positions, ends.values(), strict=True))

        await eventually(at_end, timeout, interval=0.05, what="the reader at the topic's end")
        return self.seen


async def publish_config(settings: Settings, config: dict[str, object]) -> None:
    """Publish a sequence configuration the way the configuration API does."""
    record = SequenceRecord(config=SequenceConfig.model_validate(config))
    message = (record_key(record).encode(), record.model_dump_json().encode())
    await publish(settings.kafka_bootstrap_servers, settings.topic_configs, [message])
