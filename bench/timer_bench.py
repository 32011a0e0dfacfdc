"""Timer benchmark: many steps due in the same minute while events keep arriving.

Enrolls `--users` users into a 2-step sequence as fast as the engine takes them (one `sme
engine` process on the real broker, RocksDB tables), so their second steps fall due spread over
about a minute, `--wait` seconds after their first. While those steps fire, a steady stream of
other events (`--background` per second) keeps arriving. Lateness of a step is its command's
`decided_at` minus its due time (first step's `decided_at` + wait). Also reports the engine's
own counters: tick records sent per timed step, and wake-ups that changed nothing (which must
not write state). Writes `timers.*` into bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from engines import free_port
from recording import record

from sme.config_publish import publish_records, record_from_document
from sme.settings import Settings
from sme.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]


def _env(data_dir: Path, port: int) -> dict[str, str]:
    run = f"tb{uuid.uuid4().hex[:8]}"
    return {
        "SME_DATA_DIR": str(data_dir),
        "SME_ENGINE_APP_ID": f"{run}-engine",
        "SME_ENGINE_WEB_PORT": str(port),
        "SME_TOPIC_EVENTS": f"{run}.events",
        "SME_TOPIC_COMMANDS_PREFIX": f"{run}.commands",
        "SME_TOPIC_ACTIVITIES": f"{run}.activities",
        "SME_TOPIC_CONFIGS": f"{run}.configs",
        "SME_TOPIC_DLQ": f"{run}.dlq",
        "SME_TOPIC_INPUTS": f"{run}.inputs",
        "SME_TOPIC_STATS": f"{run}.stats",
        "SME_LOG_LEVEL": "WARNING",
    }


def _event(i: int, kind: str, user: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{kind}-{i}",
            "workspace_id": "acme",
            "user_id": user,
            "type": kind,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    )


async def _background(settings: Settings, rate: float, stop: asyncio.Event) -> int:
    """Other users' events at `rate` per second until `stop`."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            for _ in range(due - sent):
                await producer.send(settings.topic_events, _event(sent, "page_viewed", f"bg{sent}"))
                sent += 1
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    wanted = ("sme_timer_ticks_sent_total", "sme_timer_wakeups_unchanged_total")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return {
        line.split()[0]: float(line.split()[1])
        for line in lines
        if line.startswith(wanted) and not line.startswith("#")
    }


async def run(users: int, wait_s: int, background: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = _env(Path(tmp), port)
        settings = Settings(**{k.removeprefix("SME_").lower(): v for k, v in env.items()})
        await ensure_topics(settings)
        config = {
            "id": "timers",
            "workspace_id": "acme",
            "name": "Timers",
            "entry": {"event_types": ["signed_up"]},
            "steps": [
                {"id": "first", "template": "t1", "channels": ["email"]},
                {"id": "second", "wait": f"PT{wait_s}S", "template": "t2", "channels": ["push"]},
            ],
            "experiment": {"holdout_pct": 0, "baseline_pct": 100},
        }
        await publish_records(settings, [record_from_document(config)])
        engine = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sme",
            "engine",
            env={**os.environ, **env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(Path(tmp) / "engine.log").open("wb"),
        )
        consumer = AIOKafkaConsumer(
            *settings.command_topics.values(),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20
        )
        await producer.start()
        for i in range(users):
            await producer.send(settings.topic_events, _event(i, "signed_up", f"u{i}"))
        await producer.flush()
        await producer.stop()
        stop = asyncio.Event()
        noise = asyncio.create_task(_background(settings, background, stop))
        first: dict[str, datetime] = {}
        second: dict[str, datetime] = {}
        deadline = time.monotonic() + 600 + wait_s
        try:
            while len(second) < users and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        command = orjson.loads(record.value)
                        target = first if command["step_id"] == "first" else second
                        target[command["user_id"]] = datetime.fromisoformat(command["decided_at"])
                if engine.returncode is not None:
                    raise RuntimeError((Path(tmp) / "engine.log").read_text()[-3000:])
            counters = await asyncio.to_thread(_scrape, port)
        finally:
            stop.set()
            background_sent = await noise
            await consumer.stop()
            engine.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(engine.wait(), 30)
            except TimeoutError:
                engine.kill()
        wait = timedelta(seconds=wait_s)
        lateness = sorted(
            (second[u] - first[u] - wait) / timedelta(milliseconds=1) for u in second if u in first
        )
        due = sorted(first[u] + wait for u in second if u in first)
        ticks = counters.get("sme_timer_ticks_sent_total", float("nan"))
        return {
            "users": users,
            "second_steps_fired": len(second),
            "due_window_s": (due[-1] - due[0]).total_seconds() if due else float("nan"),
            "background_events": background_sent,
            "lateness_p50_ms": lateness[len(lateness) // 2] if lateness else float("nan"),
            "lateness_p99_ms": lateness[int(0.99 * (len(lateness) - 1))]
            if lateness
            else float("nan"),
            "lateness_max_ms": lateness[-1] if lateness else float("nan"),
            "tick_records": ticks,
            "wakeups_unchanged": counters.get("sme_timer_wakeups_unchanged_total", float("nan")),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--wait", type=int, default=120, help="seconds between the two steps")
    parser.add_argument("--background", type=float, default=100.0, help="other events/s")
    args = parser.parse_args()
    figures = asyncio.run(run(args.users, args.wait, args.background))
    record("timers", {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()})


if __name__ == "__main__":
    main()
