"""`send_batches`: one record batch per topic partition, and when a batch fails, exactly its
records come back to be sent again (the others are on the broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sme.engine.delivery import send_batches


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


class Batch:
    def __init__(self, room: int) -> None:
        self.records: list[bytes] = []
        self.room = room
        self.closed = False

    def append(self, *, key: bytes | None, value: bytes, timestamp: float | None) -> Any:
        if self.closed or len(self.records) == self.room:
            return None
        self.records.append(value)
        return object()

    def close(self) -> None:
        self.closed = True


class Producer:
    def __init__(self, failing: set[tuple[str, int]], room: int = 100) -> None:
        self.failing, self.room = failing, room
        self.sent: list[tuple[str, int, list[bytes], bool]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        assert batch.closed, "a batch is closed before it is handed over"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if (topic, partition) in self.failing:
            future.set_exception(ConnectionError("broker went away"))
        else:
            future.set_result(None)
        self.sent.append((topic, partition, batch.records, (topic, partition) in self.failing))
        return future


async def test_only_the_failed_batch_comes_back() -> None:
    records = [Out("a", None, b"a%d" % i, partition=i % 3) for i in range(9)]
    producer = Producer(failing={("a", 1)})
    failed, error = await send_batches(producer, records)
    assert [r.value for r in failed] == [b"a1", b"a4", b"a7"]
    assert isinstance(error, ConnectionError)
    assert {(t, p): v for t, p, v, _ in producer.sent} == {
        ("a", 0): [b"a0", b"a3", b"a6"],
        ("a", 1): [b"a1", b"a4", b"a7"],
        ("a", 2): [b"a2", b"a5", b"a8"],
    }


async def test_a_full_batch_continues_in_the_next_in_order() -> None:
    records = [Out("t", b"same-user", b"%d" % i) for i in range(7)]
    producer = Producer(failing=set(), room=3)
    failed, error = await send_batches(producer, records)
    assert (failed, error) == ([], None)
    assert [v for _, _, values, _ in producer.sent for v in values] == [b"%d" % i for i in range(7)]
    assert [len(values) for _, _, values, _ in producer.sent] == [3, 3, 1]
    assert len({p for _, p, _, _ in producer.sent}) == 1  # one key, one partition
