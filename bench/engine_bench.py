"""Engine benchmark on the real broker: end-to-end event throughput of one engine instance,
and timer lateness (decided_at minus due time) of steps that fall due together.

Publishes N signups for a 2-step sequence whose second step is due `--wait` seconds after the
first, runs one engine in-process, reads the commands back, and writes
`engine.events_per_s`, `engine.timer_lateness_p50_ms`, `engine.timer_lateness_p99_ms` into
bench/results/latest.json. Needs the local broker (`make bench` starts it)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from engines import free_port
from faust.contrib.asgi import faust_app_running
from recording import record

from sme.config_publish import publish_records, record_from_document
from sme.engine.app import Engine
from sme.settings import Settings
from sme.topics import ensure_topics


def _settings(data_dir: Path) -> Settings:
    run = f"bench{uuid.uuid4().hex[:8]}"
    return Settings(
        data_dir=data_dir,
        engine_app_id=f"{run}-engine",
        engine_web_port=free_port(),  # not a fixed port: another run may hold it
        topic_events=f"{run}.events",
        topic_commands_prefix=f"{run}.commands",
        topic_activities=f"{run}.activities",
        topic_configs=f"{run}.configs",
        topic_dlq=f"{run}.dlq",
        topic_inputs=f"{run}.inputs",
        topic_stats=f"{run}.stats",
    )


async def run(users: int, wait_s: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp))
        await ensure_topics(settings)
        config = {
            "id": "bench",
            "workspace_id": "acme",
            "name": "Bench",
            "entry": {"event_types": ["signed_up"]},
            "steps": [
                {"id": "first", "template": "t1", "channels": ["email", "push"]},
                {
                    "id": "second",
                    "wait": f"PT{wait_s}S",
                    "template": "t2",
                    "channels": ["push", "email"],
                },
            ],
            "experiment": {"holdout_pct": 0, "baseline_pct": 0},
        }
        await publish_records(settings, [record_from_document(config)])
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20
        )
        await producer.start()
        now = datetime.now().astimezone().isoformat()
        for i in range(users):
            body = {
                "event_id": f"e{i}",
                "workspace_id": "acme",
                "user_id": f"u{i}",
                "type": "signed_up",
                "occurred_at": now,
            }
            await producer.send(settings.topic_events, orjson.dumps(body), key=f"u{i}".encode())
        await producer.flush()
        await producer.stop()

        consumer = AIOKafkaConsumer(
            *settings.command_topics.values(),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        engine = Engine(settings)
        first: dict[str, datetime] = {}
        second: dict[str, datetime] = {}
        async with faust_app_running(engine.app, stop_timeout=20):
            deadline = time.monotonic() + 120 + wait_s
            while len(second) < users and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        command = orjson.loads(record.value)
                        target = first if command["step_id"] == "first" else second
                        target[command["user_id"]] = datetime.fromisoformat(command["decided_at"])
        await consumer.stop()
        lateness = sorted(
            (second[u] - first[u] - timedelta(seconds=wait_s)) / timedelta(milliseconds=1)
            for u in second
            if u in first
        )
        span = (max(first.values()) - min(first.values())).total_seconds() if first else 0.0
        return {
            "users": users,
            # From the first to the last first-step decision: excludes start-up and rebalance.
            "events_per_s": (len(first) - 1) / span if span else 0.0,
            "second_steps_fired": len(second),
            "timer_lateness_p50_ms": statistics.median(lateness) if lateness else float("nan"),
            "timer_lateness_p99_ms": lateness[int(0.99 * (len(lateness) - 1))]
            if lateness
            else float("nan"),
            "timer_lateness_max_ms": lateness[-1] if lateness else float("nan"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--wait", type=int, default=20, help="seconds between the two steps")
    args = parser.parse_args()
    figures = asyncio.run(run(args.users, args.wait))
    record("engine", {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    main()
