"""The broker's limit for a Python service: a plain aiokafka consume → parse (orjson) → produce
loop, one output per input, on topics of the same partition count as the engine's.

Fills a fresh input topic with `--messages` event records, then times the loop draining it
from its first record to the acknowledgement of its last output (commit per poll, as the
engine does). Run alone it writes `passthrough` into bench/results/latest.json; the end-to-end
benchmark runs it before and after the engine."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from recording import record


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, messages: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    now = datetime.now(UTC).isoformat()
    try:
        for i in range(messages):
            body = {
                "event_id": f"p{i}",
                "workspace_id": "acme",
                "user_id": f"u{i}",
                "type": "signed_up",
                "occurred_at": now,
            }
            await producer.send(topic, orjson.dumps(body), key=f"u{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def run(bootstrap: str, messages: int, partitions: int = 6) -> dict[str, float]:
    """Events/s of the loop over `messages` pre-published records (fresh topics)."""
    tag = f"pt{uuid.uuid4().hex[:8]}"
    source, sink = f"{tag}.in", f"{tag}.out"
    await create_topics(bootstrap, [source, sink], partitions)
    await fill(bootstrap, source, messages)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{tag}-group",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    started = 0.0
    try:
        deadline = time.monotonic() + 600
        while done < messages and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=500, max_records=500)
            if polled and not started:
                started = time.monotonic()
            acks = []
            for records in polled.values():
                for r in records:
                    event = orjson.loads(r.value or b"")
                    out = {"event_id": event["event_id"], "user_id": event["user_id"], "n": 1}
                    acks.append(await producer.send(sink, orjson.dumps(out), key=r.key))
            if acks:
                await asyncio.gather(*acks)
                await consumer.commit()
                done += len(acks)
        elapsed = time.monotonic() - started
    finally:
        await consumer.stop()
        await producer.stop()
    return {"messages": done, "seconds": round(elapsed, 2), "events_per_s": done / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--smoke", action="store_true", help="5,000 messages")
    args = parser.parse_args()
    figures = asyncio.run(run(args.bootstrap, 5_000 if args.smoke else args.messages))
    record("passthrough", {k: round(v, 1) for k, v in figures.items()})


if __name__ == "__main__":
    main()
