"""A decided batch goes out as one record batch per partition: each keyed record still lands
where the producer's own partitioner puts it (senders rely on a user's commands sharing a
partition), records of one partition keep their order, and nothing is dropped."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sme.engine.delivery import send_batches

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


async def _read(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[int, bytes, bytes]] = []
    try:
        for _ in range(60):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((r.partition, r.key or b"", r.value or b"") for r in records)
            if len(got) >= count:
                break
    finally:
        await consumer.stop()
    return got


async def test_batches_partition_like_the_producer_and_keep_order(kafka: str) -> None:
    batched, single = (f"t{uuid.uuid4().hex[:10]}.{name}" for name in ("batched", "single"))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 6, 1) for t in (batched, single)])
    finally:
        await admin.close()
    # Big enough values that one partition's records need several record batches.
    records = [
        Out(batched, f"user-{i % 37}".encode(), f"{i:06d}".encode() + b"x" * 2000)
        for i in range(1500)
    ] + [Out(batched, b"pinned", f"p{i}".encode(), partition=4) for i in range(5)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", max_batch_size=64 * 1024)
    await producer.start()
    try:
        failed, error = await send_batches(producer, records)
        assert (failed, error) == ([], None)
        for r in records[:1500]:  # the reference: one keyed send at a time
            await producer.send(single, r.value, key=r.key)
        await producer.flush()
    finally:
        await producer.stop()

    got = await _read(kafka, batched, len(records))
    reference = await _read(kafka, single, 1500)
    assert len(got) == len(records)
    where = {key: partition for partition, key, _ in reference}
    for partition, key, _ in got:
        assert partition == (4 if key == b"pinned" else where[key])
    for key in where:
        values = [value[:6] for _, k, value in got if k == key]
        assert values == sorted(values)  # one key: one partition, in the order decided
    assert [v for _, k, v in got if k == b"pinned"] == [f"p{i}".encode() for i in range(5)]
