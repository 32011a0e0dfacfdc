"""Session infrastructure shared by the integration and e2e suites."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sme.settings import Settings
from tests.support.infra import clickhouse_dsn, docker_engine_answers, kafka_bootstrap


@pytest.fixture(scope="session")
def use_docker() -> bool:
    return docker_engine_answers()


@pytest.fixture(scope="session")
def kafka(use_docker: bool) -> Iterator[str]:
    """Bootstrap servers of a real broker."""
    with kafka_bootstrap(use_docker) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def clickhouse(use_docker: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of the one ClickHouse store the test process shares (tests isolate by database)."""
    with clickhouse_dsn(use_docker, tmp_path_factory.mktemp("clickhouse") / "store") as dsn:
        yield dsn


def unique_topic_env(tag: str) -> dict[str, str]:
    """SME_* topic/group settings unique to one test, so tests never see each other's data."""
    run = f"t{uuid.uuid4().hex[:10]}"
    return {
        "SME_TOPIC_EVENTS": f"{run}.events",
        "SME_TOPIC_COMMANDS_PREFIX": f"{run}.commands",
        "SME_TOPIC_ACTIVITIES": f"{run}.activities",
        "SME_TOPIC_CONFIGS": f"{run}.configs",
        "SME_TOPIC_DLQ": f"{run}.dlq",
        "SME_TOPIC_INPUTS": f"{run}.inputs",
        "SME_TOPIC_STATS": f"{run}.stats",
        "SME_ENGINE_APP_ID": f"{run}-engine",
        "SME_GATEWAY_GROUP_ID": f"{run}-gateway",
        "SME_CLICKHOUSE_DATABASE": f"{tag}_{run}",
    }


@pytest.fixture
def test_settings(kafka: str, clickhouse: str, tmp_path: Path) -> Settings:
    """Settings for one in-process test: unique topics, groups and database."""
    env = unique_topic_env("it")
    fields = {k.removeprefix("SME_").lower(): v for k, v in env.items()}
    return Settings(
        kafka_bootstrap_servers=kafka,
        clickhouse_dsn=clickhouse,
        data_dir=tmp_path,
        engine_store="memory",
        sink_flush_seconds=0.2,
        **fields,
    )
