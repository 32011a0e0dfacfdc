"""Crash consistency, point by point: the engine process exits abruptly (no flush, no commit,
like kill -9) at one named moment of its pipeline, a new engine process takes over, and every
user still receives each step's command exactly under one id — whatever the moment:
after deciding, halfway through sending, after the broker holds the outputs, after the tables
were written but before their changelogs were acknowledged (restarted on the same local store,
and on a fresh one that recovers from the changelog), after everything was acknowledged, and
right after a timer tick was sent."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from sme.config_publish import publish_records, record_from_document
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.conftest import unique_topic_env
from tests.e2e.conftest import _stop
from tests.support.infra import free_port
from tests.support.kafka_io import publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
USERS = 120
STEPS = ("hello", "nudge", "offer")
SEQUENCE = {
    "id": "onboarding",
    "workspace_id": "acme",
    "name": "Onboarding",
    "entry": {"event_types": ["signed_up"], "reentry": {"policy": "never"}},
    "steps": [
        {"id": "hello", "template": "hello", "channels": ["email"]},
        {"id": "nudge", "wait": "PT2S", "template": "nudge", "channels": ["sms"]},
        {"id": "offer", "wait": "PT3S", "template": "offer", "channels": ["push"]},
    ],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def _engine(env: dict[str, str], logs: Path, name: str) -> subprocess.Popen[bytes]:
    out = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "sme", "engine"], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def _signups() -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC).isoformat()
    return [
        (
            f"k{i % 7}".encode(),  # not the user: the engine routes by (workspace, user)
            orjson.dumps(
                {
                    "event_id": f"s{i}",
                    "workspace_id": "acme",
                    "user_id": f"u{i}",
                    "type": "signed_up",
                    "occurred_at": now,
                }
            ),
        )
        for i in range(USERS)
    ]


class Commands:
    """Every command on the channel topics, read from the beginning."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(
            *settings.command_topics.values(),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        self.ids: dict[tuple[str, str], set[str]] = {}

    async def read(self) -> int:
        batches = await self.consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for record in records:
                command = orjson.loads(record.value)
                pair = (command["user_id"], command["step_id"])
                self.ids.setdefault(pair, set()).add(command["command_id"])
        return len(self.ids)


@pytest.mark.parametrize(
    ("point", "same_store"),
    [
        ("decided:3", True),
        ("delivering:3", True),
        ("delivered:3", True),
        ("stored:3", True),
        ("stored:3", False),
        ("acknowledged:3", True),
        ("ticked:2", True),
    ],
)
async def test_a_crash_at_any_point_loses_no_command_and_mints_no_second_id(
    kafka: str, tmp_path: Path, point: str, same_store: bool
) -> None:
    env = {
        **os.environ,
        **unique_topic_env("crash"),
        "SME_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SME_DATA_DIR": str(tmp_path / "data"),
        "SME_ENGINE_WEB_PORT": str(free_port()),
        "SME_ENGINE_BATCH_SIZE": "20",  # several batches, so the crash lands mid-stream
    }
    settings = Settings(
        **{k.removeprefix("SME_").lower(): v for k, v in env.items() if k.startswith("SME_")}
    )
    await ensure_topics(settings)
    await publish_records(settings, [record_from_document(SEQUENCE)])
    commands = Commands(settings)
    await commands.consumer.start()
    crashing = _engine({**env, "SME_ENGINE_CRASH_AT": point}, tmp_path, "crashing")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        await publish(kafka, settings.topic_events, _signups())

        async def crashed() -> bool:
            return crashing.poll() is not None

        log = tmp_path / "crashing.log"
        await eventually(crashed, timeout=120, what=f"the crash at {point}")
        assert crashing.returncode == 137, log.read_text(errors="replace")[-3000:]
        instance = "0" if same_store else "1"
        survivor = _engine({**env, "SME_ENGINE_INSTANCE": instance}, tmp_path, "survivor")

        expected = {(f"u{i}", step) for i in range(USERS) for step in STEPS}

        async def everyone_got_every_step() -> bool:
            return await commands.read() >= USERS * len(STEPS)

        try:
            await eventually(everyone_got_every_step, timeout=150, what="every user's steps")
        except AssertionError as exc:
            missing = sorted(expected - set(commands.ids))
            tail = (tmp_path / "survivor.log").read_text(errors="replace")[-4000:]
            message = f"{len(missing)} commands missing: {missing[:20]}\n{tail}"
            raise AssertionError(message) from exc
        assert set(commands.ids) == expected, "no command lost, none made up"
        minted_twice = {pair: ids for pair, ids in commands.ids.items() if len(ids) > 1}
        assert minted_twice == {}, "a redelivered input re-sends the same id"
    finally:
        await commands.consumer.stop()
        _stop(crashing)
        if survivor is not None:
            _stop(survivor)
