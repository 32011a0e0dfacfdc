"""`sme sender webhook` on the real broker against a local HTTP receiver that checks each
signature with the README's verification snippet: a 5xx is retried and then delivered, a 4xx
is bounced with its reason and not retried, a redelivered command is not POSTed twice, and a
test send is delivered without feedback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.senders.main import webhook_sender
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.conftest import unique_topic_env
from tests.support.kafka_io import TopicReader, publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
SERVICES = README.parent / "services"
SECRET = "integration-test-secret-0123456789"


def readme_verifier() -> Callable[[bytes, Any, bytes], bool]:
    """The README's `verify_sme_signature`, exactly as a receiver would paste it."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Senders") :]
    match = re.search(r"```python\n(.*?def verify_sme_signature.*?)```", section, re.DOTALL)
    assert match, "the README's Senders section has the verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    verify: Callable[[bytes, Any, bytes], bool] = namespace["verify_sme_signature"]
    return verify


class Receiver:
    """A webhook receiver: answers by command id (`flaky-*` 503 first, `bad-*` 422)."""

    def __init__(self) -> None:
        self.verify = readme_verifier()
        self.posts: Counter[str] = Counter()
        self.bad_signatures: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        command_id = str(orjson.loads(body)["command_id"])
        if request.headers.get("X-SME-Command-Id") != command_id or not self.verify(
            SECRET.encode(), request.headers, body
        ):
            self.bad_signatures.append(command_id)
            return web.Response(status=401)
        self.posts[command_id] += 1
        if command_id.startswith("bad-"):
            return web.Response(status=422, text="unknown template")
        if command_id.startswith("flaky-") and self.posts[command_id] == 1:
            return web.Response(status=503)
        return web.Response(status=202)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def command_value(command_id: str, user: str = "u-1", *, test: bool = False) -> bytes:
    return (
        Command(
            command_id=command_id,
            workspace_id="ws",
            config_id="welcome",
            config_version=1,
            user_id=user,
            step_id="s1",
            channel=Channel.EMAIL,
            template="welcome_email",
            variant="a",
            arm=Arm.ADAPTIVE,
            decided_at=datetime.now(tz=UTC),
            test=test,
        )
        .model_dump_json()
        .encode()
    )


def feedback(seen: list[dict[str, object]], command_id: str) -> list[dict[str, object]]:
    return [e for e in seen if e.get("command_id") == command_id]


async def test_webhook_sender_signs_retries_refuses_and_sends_each_command_once(
    kafka: str, tmp_path: Path
) -> None:
    env = unique_topic_env("wh")
    fields = {k.removeprefix("SME_").lower(): v for k, v in env.items()}
    receiver = Receiver()
    async with serving(receiver) as url:
        settings = Settings(
            kafka_bootstrap_servers=kafka,
            data_dir=tmp_path,
            topic_partitions=2,
            sender_webhook_urls={"email": url},
            sender_webhook_secret=SECRET,
            sender_max_attempts=3,
            sender_backoff_base_seconds=0.05,
            sender_group_prefix=f"{env['SME_ENGINE_APP_ID']}-sender",
            **fields,
        )
        await ensure_topics(settings)
        topic = settings.command_topic(Channel.EMAIL)
        sender = asyncio.create_task(webhook_sender(settings, Channel.EMAIL).run())
        try:
            async with TopicReader(kafka, settings.topic_events) as events:
                await publish(
                    kafka,
                    topic,
                    [
                        (b"u-1", command_value("ok-1")),
                        (b"u-2", command_value("flaky-1", "u-2")),
                        (b"u-3", command_value("bad-1", "u-3")),
                        (b"u-4", command_value("dup-1", "u-4")),
                        (b"u-4", command_value("test-1", "u-4", test=True)),
                    ],
                )

                async def first_outcomes() -> bool:
                    seen = await events.poll()
                    return all(feedback(seen, c) for c in ("ok-1", "flaky-1", "bad-1", "dup-1"))

                await eventually(first_outcomes, 60, what="an outcome per command")
                # The same command again, then a marker behind it on the same partition: once
                # the marker is settled, the repeat has been handled.
                await publish(
                    kafka,
                    topic,
                    [
                        (b"u-4", command_value("dup-1", "u-4")),
                        (b"u-4", command_value("mark", "u-4")),
                    ],
                )

                async def marker() -> bool:
                    return bool(feedback(await events.poll(), "mark"))

                await eventually(marker, 60, what="the marker's outcome")
                seen = await events.read_to_end()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    assert receiver.bad_signatures == []
    assert receiver.posts == {
        "ok-1": 1,
        "flaky-1": 2,
        "bad-1": 1,
        "dup-1": 1,
        "test-1": 1,
        "mark": 1,
    }
    outcomes = {
        c: [(e["type"], e["properties"]) for e in feedback(seen, c)] for c in receiver.posts
    }
    assert [t for t, _ in outcomes["ok-1"]] == ["delivered"]
    assert [t for t, _ in outcomes["dup-1"]] == ["delivered"]
    assert outcomes["test-1"] == []
    [(kind, properties)] = outcomes["flaky-1"]
    assert kind == "delivered"
    assert isinstance(properties, dict) and properties["attempts"] == 2
    [(kind, properties)] = outcomes["bad-1"]
    assert kind == "bounced"
    assert isinstance(properties, dict)
    assert (properties["reason"], properties["status"], properties["attempts"]) == (
        "rejected",
        422,
        1,
    )
    delivered = feedback(seen, "ok-1")[0]
    assert (delivered["user_id"], delivered["workspace_id"], delivered["channel"]) == (
        "u-1",
        "ws",
        "email",
    )


async def test_sme_sender_webhook_runs_as_its_own_process_and_stops_on_sigterm(
    kafka: str, tmp_path: Path
) -> None:
    env = unique_topic_env("wp")
    receiver = Receiver()
    async with serving(receiver) as url:
        child_env = {
            **os.environ,
            **env,
            "SME_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "SME_DATA_DIR": str(tmp_path),
            "SME_TOPIC_PARTITIONS": "1",
            "SME_SENDER_WEBHOOK_SECRET": SECRET,
            "SME_SENDER_GROUP_PREFIX": f"{env['SME_ENGINE_APP_ID']}-sender",
            "PYTHONPATH": str(SERVICES),
            "SME_LOG_LEVEL": "WARNING",  # stderr is read only at the end
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sme",
            "sender",
            "webhook",
            "--channel",
            "push",
            "--url",
            url,
            env=child_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            settings = Settings(
                kafka_bootstrap_servers=kafka,
                topic_partitions=1,
                **{k.removeprefix("SME_").lower(): v for k, v in env.items()},
            )
            assert child.stdout is not None
            started = await asyncio.wait_for(child.stdout.readline(), 60)  # topics exist
            assert started.startswith(b"sme sender webhook:"), started
            async with TopicReader(kafka, settings.topic_events) as events:
                value = orjson.loads(command_value("proc-1"))
                value["channel"] = "push"
                await publish(
                    kafka, settings.command_topic(Channel.PUSH), [(b"u-1", orjson.dumps(value))]
                )

                async def delivered() -> list[dict[str, object]]:
                    return feedback(await events.poll(), "proc-1")

                [outcome] = await eventually(delivered, 60, what="the process's outcome")
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(child.communicate(), 30)
    assert outcome["type"] == "delivered"
    assert outcome["channel"] == "push"
    assert receiver.posts == {"proc-1": 1}
    assert child.returncode == 0, stderr.decode()
