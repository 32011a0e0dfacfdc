"""Where the tests' Kafka and ClickHouse come from: testcontainers when a Docker engine
answers, otherwise the project's local broker (deploy/local/kafka.sh) and embedded chdb.
There is no Docker engine on the development machines, so the fallback is the path CI runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def docker_engine_answers() -> bool:
    if os.environ.get("SME_TEST_NO_DOCKER") or shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextmanager
def kafka_bootstrap(use_docker: bool) -> Iterator[str]:
    if use_docker:
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    subprocess.run([str(ROOT / "deploy/local/kafka.sh"), "start"], check=True, timeout=300)
    yield os.environ.get("SME_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@contextmanager
def clickhouse_dsn(use_docker: bool, embedded_dir: Path) -> Iterator[str]:
    if use_docker:
        from testcontainers.community.clickhouse import ClickHouseContainer

        with ClickHouseContainer("clickhouse/clickhouse-server:25.8", port=8123) as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
            yield f"http://{container.username}:{container.password}@{host}:{port}/"
        return
    yield f"chdb://{embedded_dir}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
