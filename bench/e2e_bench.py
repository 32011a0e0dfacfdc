"""End-to-end benchmark against the broker's limit, measured through Kafka only.

One invocation, on the real local broker, with `sme engine` as separate processes:

1. passthrough (before): a plain aiokafka consume → orjson → produce loop (bench/passthrough.py).
2. e2e: one engine (RocksDB, 6 partitions), `--users` users. Each user signs up (entry event);
   when the user's step-1 command comes back, every 2nd user answers `clicked` and every 5th
   `converted`, naming the command (`command_id`, `channel`); step 2 falls due `--wait` s after
   step 1 (a timer). Events/s = (entries + feedback + due steps) / (first publish → the last
   step-2 command read back and the engine's valid-event counter at the total).
3. memory: the engine's RSS (/proc/<pid>/status) after it is ready and after the run, / users.
4. latency: new signups paced so that entries + their due steps make half the measured rate;
   produce of each entry → its step-1 command read back (one process, one monotonic clock).
5. recovery: the engine is stopped; a new instance with an empty table store (its changelog
   holding the users) is started; seconds until `/readyz` is 200, scaled to a million users.
6. passthrough (after).
7. scaling: the same mix with `--scale-users` users, one engine then two engine processes
   (fresh topics each).

Writes `e2e`, `latency`, `memory`, `recovery`, `scaling` into bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import passthrough
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from engines import EngineProcess, rss_bytes, run_env, settings_of
from recording import record

from sme.config_publish import publish_records, record_from_document
from sme.settings import Settings
from sme.topics import ensure_topics


def _config(wait_s: int) -> dict[str, Any]:
    return {
        "id": "e2e",
        "workspace_id": "acme",
        "name": "End to end",
        "entry": {"event_types": ["signed_up"]},
        "steps": [
            {"id": "first", "template": "t1", "channels": ["email", "push"]},
            {"id": "second", "wait": f"PT{wait_s}S", "template": "t2", "channels": ["push"]},
        ],
        "experiment": {"holdout_pct": 0, "baseline_pct": 0},
    }


def _event(event_id: str, kind: str, user: str, **extra: str) -> bytes:
    body = {
        "event_id": event_id,
        "workspace_id": "acme",
        "user_id": user,
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    return orjson.dumps(body)


def _user_index(user: str) -> int:
    return int(user.lstrip("ul"))


def feedback_of(users: int) -> int:
    """Feedback events the mix sends for `users` users (every 2nd clicks, every 5th converts)."""
    return len(range(0, users, 2)) + len(range(0, users, 5))


@dataclass
class Reader:
    """Reads every command topic; answers step-1 commands with feedback; notes latencies."""

    settings: Settings
    producer: AIOKafkaProducer
    first: int = 0
    second: int = 0
    feedback_sent: int = 0
    last_output: float = 0.0
    sent_at: dict[str, float] = field(default_factory=dict)  # latency probes: user -> produced
    latencies_ms: list[float] = field(default_factory=list)
    probes_closed: bool = False  # no more latency probes will be sent
    probes_back: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.settings.command_topics.values(),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        await consumer.start()
        topic = self.settings.topic_events
        try:
            while True:
                polled = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in polled.values():
                    for r in records:
                        command = orjson.loads(r.value or b"")
                        user = command["user_id"]
                        self.last_output = now
                        if command["step_id"] != "first":
                            self.second += 1
                            continue
                        self.first += 1
                        if user.startswith("l"):
                            started = self.sent_at.pop(user, None)
                            if started is not None:
                                self.latencies_ms.append((now - started) * 1000)
                            if self.probes_closed and not self.sent_at:
                                self.probes_back.set()
                            continue
                        i = _user_index(user)
                        extra = {"command_id": command["command_id"], "channel": command["channel"]}
                        for kind, every in (("clicked", 2), ("converted", 5)):
                            if i % every == 0:
                                body = _event(f"{kind}-{user}", kind, user, **extra)
                                await self.producer.send(topic, body, key=user.encode())
                                self.feedback_sent += 1
        finally:
            await consumer.stop()


async def _prepare(tag: str, data_dir: Path, wait_s: int) -> tuple[dict[str, str], Settings]:
    env = run_env(tag, data_dir)
    settings = settings_of(env)
    await ensure_topics(settings)
    await publish_records(settings, [record_from_document(_config(wait_s))])
    return env, settings


async def _mix(
    settings: Settings, engines: list[EngineProcess], users: int, reader: Reader
) -> dict[str, float]:
    """Publish `users` signups as fast as possible; wait for every output of the mix."""
    producer = reader.producer
    expected_feedback = feedback_of(users)
    started = time.monotonic()
    for i in range(users):
        user = f"u{i}"
        await producer.send(settings.topic_events, _event(f"s-{user}", "signed_up", user))
        if i % 5000 == 0:
            for engine in engines:
                engine.check_alive()
    await producer.flush()
    published = time.monotonic()
    deadline = published + 1800
    while time.monotonic() < deadline:
        for engine in engines:
            engine.check_alive()
        if reader.second >= users and reader.feedback_sent >= expected_feedback:
            decided = sum([await e.counter("sme_events_in_total") for e in engines])
            if decided >= users + expected_feedback:
                break
        await asyncio.sleep(0.2)
    else:
        raise TimeoutError(f"mix not done: {reader.first=} {reader.second=}")
    elapsed = max(reader.last_output, time.monotonic() - 0.2) - started
    inputs = users + expected_feedback + users
    return {
        "users": users,
        "entry_events": users,
        "feedback_events": expected_feedback,
        "due_steps": users,
        "inputs": inputs,
        "publish_s": published - started,
        "seconds": elapsed,
        "events_per_s": inputs / elapsed,
    }


async def _latency(
    settings: Settings, reader: Reader, rate: float, seconds: float
) -> dict[str, Any]:
    """Entry events at `rate`/s for `seconds`; produce → step-1 command read back."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=0)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                user = f"l{sent}"
                reader.sent_at[user] = time.monotonic()
                await producer.send(settings.topic_events, _event(f"s-{user}", "signed_up", user))
                sent += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    reader.probes_closed = True
    if reader.sent_at:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.probes_back.wait(), 60)
    lat = sorted(reader.latencies_ms)
    pick = lambda q: round(lat[int(q * (len(lat) - 1))], 1) if lat else float("nan")  # noqa: E731
    return {
        "entry_rate_per_s": round(rate, 1),
        "seconds": seconds,
        "samples": len(lat),
        "missing": len(reader.sent_at),
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    }


async def _with_reader(settings: Settings) -> tuple[Reader, asyncio.Task[None]]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    await producer.start()
    reader = Reader(settings, producer)
    return reader, asyncio.create_task(reader.run())


async def _close_reader(reader: Reader, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await reader.producer.stop()


async def main_run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    bootstrap = Settings().kafka_bootstrap_servers
    before = await passthrough.run(bootstrap, args.passthrough_messages)
    print(f"passthrough before: {before['events_per_s']:.0f}/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        env, settings = await _prepare("e2e", Path(tmp), args.wait)
        engine = EngineProcess(env, "main")
        await engine.start()
        startup_s = await engine.wait_ready()
        rss_ready = rss_bytes(engine.pid)
        reader, task = await _with_reader(settings)
        try:
            mix = await _mix(settings, [engine], args.users, reader)
            print(f"engine: {mix['events_per_s']:.0f} events/s", flush=True)
            rss_after = rss_bytes(engine.pid)
            rate = mix["events_per_s"] / 2 / 2  # entries and their due steps = half the max
            latency = await _latency(settings, reader, rate, args.latency_seconds)
        finally:
            await _close_reader(reader, task)
            await engine.stop()
        restarted = EngineProcess(env, "recovered")  # an empty table store, same changelog
        await restarted.start()
        try:
            recover_s = await restarted.wait_ready(timeout_s=1800)
        finally:
            await restarted.stop()
    after = await passthrough.run(bootstrap, args.passthrough_messages)
    print(f"passthrough after: {after['events_per_s']:.0f}/s", flush=True)
    pt_mean = (before["events_per_s"] + after["events_per_s"]) / 2
    out["e2e"] = {
        **{k: round(v, 1) for k, v in mix.items()},
        "engine_events_per_s": round(mix["events_per_s"], 1),
        "passthrough_events_per_s": round(pt_mean, 1),
        "passthrough_before_events_per_s": round(before["events_per_s"], 1),
        "passthrough_after_events_per_s": round(after["events_per_s"], 1),
        "passthrough_messages": args.passthrough_messages,
        "ratio": round(mix["events_per_s"] / pt_mean, 3),
        "wait_s": args.wait,
    }
    out["latency"] = latency
    out["memory"] = {
        "users": args.users,
        "rss_ready_bytes": rss_ready,
        "rss_after_bytes": rss_after,
        "rss_bytes_per_user": round((rss_after - rss_ready) / args.users, 1),
    }
    out["recovery"] = {
        "users": args.users,
        "startup_empty_s": round(startup_s, 2),
        "restore_ready_s": round(recover_s, 2),
        "seconds_per_million_users": round(recover_s * 1_000_000 / args.users, 1),
    }
    out["scaling"] = await _scaling(args)
    return out


async def _scaling(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"users": args.scale_users}
    for count in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            env, settings = await _prepare("sc", Path(tmp), args.wait)
            engines = [EngineProcess(env, f"i{n}") for n in range(count)]
            for e in engines:
                await e.start()
            reader, task = await _with_reader(settings)
            try:
                for e in engines:
                    await e.wait_ready()
                await asyncio.sleep(2)  # both ready can still be mid-rebalance; let it settle
                for e in engines:
                    await e.wait_ready()
                mix = await _mix(settings, engines, args.scale_users, reader)
            finally:
                await _close_reader(reader, task)
                for e in engines:
                    await e.stop()
        figures[f"engines_{count}_events_per_s"] = round(mix["events_per_s"], 1)
        print(f"scaling, {count} engine(s): {mix['events_per_s']:.0f} events/s", flush=True)
    figures["speedup"] = round(
        figures["engines_2_events_per_s"] / figures["engines_1_events_per_s"], 2
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--scale-users", type=int, default=40_000)
    parser.add_argument("--passthrough-messages", type=int, default=200_000)
    parser.add_argument("--wait", type=int, default=5, help="seconds from step 1 to step 2")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--smoke", action="store_true", help="a small run for correctness")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.scale_users, args.passthrough_messages = 2_000, 1_000, 5_000
        args.latency_seconds = 5.0
    started = time.monotonic()
    sections = asyncio.run(main_run(args))
    for name, figures in sections.items():
        record(name, figures)
    print(f"e2e_bench took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
