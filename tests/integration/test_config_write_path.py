"""One write path for configurations, whichever door: `sme configs apply FILE` writes as the
configuration API does (versioned create-or-update, `config_changed` activities, STOPPED is
final, the kill switch's rules, one workspace per configuration id), on the real broker and
before any gateway runs. Older topics' `sequence:<id>` records are read and superseded."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from sme.config_mirror import ConfigRegistry, TopicMirror
from sme.contracts.config_records import SequenceRecord
from sme.contracts.sequences import SequenceConfig, Status
from sme.gateway.config_service import ConfigService
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.kafka_io import TopicReader, publish

pytestmark = pytest.mark.integration
SEQUENCE: dict[str, Any] = {
    "id": "onboarding",
    "workspace_id": "acme",
    "name": "Onboarding",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def sequence(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(SEQUENCE), **changes}


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "SME_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SME_TOPIC_EVENTS": settings.topic_events,
        "SME_TOPIC_COMMANDS_PREFIX": settings.topic_commands_prefix,
        "SME_TOPIC_ACTIVITIES": settings.topic_activities,
        "SME_TOPIC_CONFIGS": settings.topic_configs,
        "SME_TOPIC_DLQ": settings.topic_dlq,
        "SME_TOPIC_INPUTS": settings.topic_inputs,
        "SME_TOPIC_STATS": settings.topic_stats,
        "SME_DATA_DIR": str(settings.data_dir),
    }


def _write(tmp_path: Path, documents: list[dict[str, Any]]) -> Path:
    path = tmp_path / f"apply-{uuid.uuid4().hex[:8]}.json"
    path.write_bytes(orjson.dumps(documents))
    return path


async def cli_apply(settings: Settings, tmp_path: Path, *documents: dict[str, Any]) -> Any:
    """`sme configs apply FILE` as an operator runs it; returns (exit code, output)."""
    path = await asyncio.to_thread(_write, tmp_path, list(documents))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sme",
        "configs",
        "apply",
        str(path),
        env=_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, output.decode()


async def topic_view(settings: Settings) -> ConfigRegistry:
    """What a service that starts now materialises from the config topic."""
    registry = ConfigRegistry()
    mirror = TopicMirror(settings.kafka_bootstrap_servers, settings.topic_configs, registry.apply)
    task = asyncio.create_task(mirror.run())
    try:
        await asyncio.wait_for(mirror.caught_up.wait(), 60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return registry


async def current(settings: Settings, config_id: str = "onboarding") -> SequenceConfig:
    config = (await topic_view(settings)).get(config_id)
    assert config is not None, f"{config_id} is not on the config topic"
    return config


@contextlib.asynccontextmanager
async def config_service(settings: Settings) -> AsyncIterator[ConfigService]:
    """The gateway's write path on a registry caught up from the topic (no HTTP)."""
    await ensure_topics(settings)
    registry = await topic_view(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield ConfigService(settings, registry, producer)
    finally:
        await producer.stop()


async def config_changes(settings: Settings) -> list[dict[str, Any]]:
    async with TopicReader(settings.kafka_bootstrap_servers, settings.topic_activities) as r:
        seen = await r.read_to_end()
    return [a for a in seen if a.get("type") == "config_changed"]  # type: ignore[misc]


async def test_configs_apply_of_an_edited_file_writes_the_next_version_and_logs_the_change(
    test_settings: Settings, tmp_path: Path
) -> None:
    s = test_settings
    code, output = await cli_apply(s, tmp_path, sequence())
    assert code == 0, output
    code, output = await cli_apply(s, tmp_path, sequence(name="Onboarding, reworded"))
    assert code == 0, output

    config = await current(s)
    assert (config.version, config.name) == (2, "Onboarding, reworded")
    changes = await config_changes(s)
    assert [(c["details"]["old_version"], c["details"]["new_version"]) for c in changes] == [
        (None, 1),
        (1, 2),
    ]
    assert {c["details"]["actor"] for c in changes} == {"cli"}


async def test_configs_apply_of_an_unchanged_file_writes_nothing(
    test_settings: Settings, tmp_path: Path
) -> None:
    s = test_settings
    for _ in range(2):
        code, output = await cli_apply(s, tmp_path, sequence())
        assert code == 0, output
    async with TopicReader(s.kafka_bootstrap_servers, s.topic_configs) as configs:
        records = await configs.read_to_end()
    assert len(records) == 1, records
    assert "unchanged" in output


async def test_configs_apply_cannot_change_a_stopped_sequence(
    test_settings: Settings, tmp_path: Path
) -> None:
    s = test_settings
    code, output = await cli_apply(s, tmp_path, sequence())
    assert code == 0, output
    async with config_service(s) as service:
        await service.stop("onboarding", "test")

    code, output = await cli_apply(s, tmp_path, sequence(status="ACTIVE", name="revived"))

    assert code != 0 and "STOPPED" in output, output
    config = await current(s)
    assert (config.status, config.version, config.name) == (Status.STOPPED, 2, "Onboarding")


async def test_configs_apply_refuses_a_config_id_that_belongs_to_another_workspace(
    test_settings: Settings, tmp_path: Path
) -> None:
    s = test_settings
    code, output = await cli_apply(s, tmp_path, sequence())
    assert code == 0, output

    code, output = await cli_apply(s, tmp_path, sequence(workspace_id="beta", name="beta's"))

    assert code != 0 and "another workspace" in output, output
    view = await topic_view(s)
    config = view.get("onboarding")
    assert config is not None and (config.workspace_id, config.name) == ("acme", "Onboarding")
    assert dict(view.configs_for("beta")) == {}


async def test_the_service_refuses_to_write_an_id_of_another_workspace_whatever_the_door(
    test_settings: Settings, tmp_path: Path
) -> None:
    from sme.gateway.config_service import ConfigConflictError

    s = test_settings
    code, output = await cli_apply(s, tmp_path, sequence())
    assert code == 0, output
    async with config_service(s) as service:
        foreign = SequenceConfig.model_validate(sequence(workspace_id="beta", version=9))
        with pytest.raises(ConfigConflictError):  # 409 through the HTTP API
            await service._publish(SequenceRecord(config=foreign))
    config = await current(s)
    assert config.workspace_id == "acme"


async def test_configs_apply_holds_a_new_sequence_paused_while_the_kill_switch_is_engaged(
    test_settings: Settings, tmp_path: Path
) -> None:
    s = test_settings
    async with config_service(s) as service:
        await service.kill_switch("acme", True, "test")

    code, output = await cli_apply(s, tmp_path, sequence())
    assert code == 0, output
    assert (await current(s)).status is Status.PAUSED
    code, output = await cli_apply(s, tmp_path, sequence(status="ACTIVE"))
    assert code != 0 and "kill switch" in output, output

    async with config_service(s) as service:
        await service.kill_switch("acme", False, "test")
    assert (await current(s)).status is Status.ACTIVE, "the release activates it"


async def test_a_sequence_published_under_the_old_key_is_updated_to_its_next_version(
    test_settings: Settings, tmp_path: Path
) -> None:
    s = test_settings
    await ensure_topics(s)
    legacy = SequenceRecord(config=SequenceConfig.model_validate(sequence(version=3)))
    await publish(
        s.kafka_bootstrap_servers,
        s.topic_configs,
        [(b"sequence:onboarding", legacy.model_dump_json().encode())],
    )

    code, output = await cli_apply(s, tmp_path, sequence(name="Onboarding v4"))

    assert code == 0, output
    config = await current(s)
    assert (config.version, config.name) == (4, "Onboarding v4")
