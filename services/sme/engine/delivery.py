"""Send a decided batch's records as one Kafka record batch per topic partition.

Sending record by record through the producer costs a future, a partitioner call and an
accumulator append per record, and an event-loop callback per acknowledgement; a batch's
outputs are known all at once, so they go as whole record batches (`create_batch` /
`send_batch`), one future each. Keys land on the partition the producer's own partitioner
picks (Kafka's murmur2, as for any keyed record), so senders and the sink see the same
partitioning as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka.partitioner import DefaultPartitioner


class Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def partition(self) -> int | None: ...


_PARTITIONER = DefaultPartitioner()
R = TypeVar("R", bound=Record)


async def send_batches(
    producer: Any, records: Sequence[R], on_half_sent: Callable[[], None] = lambda: None
) -> tuple[list[R], BaseException | None]:
    """Send `records` and wait for the broker; returns those whose batch failed (to retry
    with the same bytes) and the first failure. Records of one partition keep their order."""
    partitions: dict[str, list[int]] = {}
    groups: dict[tuple[str, int], list[R]] = {}
    for record in records:
        partition = record.partition
        if partition is None:
            if record.topic not in partitions:
                partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
            every = partitions[record.topic]
            partition = _PARTITIONER(record.key, every, every)
        groups.setdefault((record.topic, partition), []).append(record)
    sent: list[tuple[list[R], asyncio.Future[Any]]] = []
    half = len(groups) // 2
    for i, ((topic, partition), members) in enumerate(groups.items()):
        if i == half:
            on_half_sent()
        for builder, batch in _chunks(producer, members):
            builder.close()  # nothing else may join it: its future is these records' ack
            sent.append((batch, await producer.send_batch(builder, topic, partition=partition)))
    results = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
    failed = [
        record
        for (batch, _), result in zip(sent, results, strict=True)
        if isinstance(result, BaseException)
        for record in batch
    ]
    errors = [result for result in results if isinstance(result, BaseException)]
    return failed, errors[0] if errors else None


def _chunks(producer: Any, members: Sequence[R]) -> list[tuple[Any, list[R]]]:
    """Record batches of at most the producer's batch size (a record too large for an empty
    batch raises, as a single send of it would be refused)."""
    chunks: list[tuple[Any, list[R]]] = []
    builder, batch = producer.create_batch(), list[R]()
    for record in members:
        if builder.append(key=record.key, value=record.value, timestamp=None) is None:
            if not batch:
                raise ValueError(f"a record of {len(record.value)} bytes exceeds a batch")
            chunks.append((builder, batch))
            builder, batch = producer.create_batch(), list[R]()
            if builder.append(key=record.key, value=record.value, timestamp=None) is None:
                raise ValueError(f"a record of {len(record.value)} bytes exceeds a batch")
        batch.append(record)
    if batch:
        chunks.append((builder, batch))
    return chunks
