"""The deployment the e2e tests drive: `sme engine` and `sme gateway` as processes with
their own topics, ports and data directory, on the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.conftest import unique_topic_env
from tests.support.infra import free_port

WELCOME = {
    "id": "welcome",
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "hello", "template": "welcome", "channels": ["email", "push"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


@dataclass
class Deployment:
    env: dict[str, str]
    gateway_url: str
    engine_metrics_url: str
    engine: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    logs: Path


def _spawn(command: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    out = (logs / f"{command}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "sme", command], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9
    return int(process.returncode)


@pytest.fixture
def deployment(
    kafka: str, tmp_path: Path, use_docker: bool, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    """Settings of a test's own go in `@pytest.mark.deployment_env({"SME_…": "…"})`."""
    http_port, engine_port = free_port(), free_port()
    marker = request.node.get_closest_marker("deployment_env")
    env = {
        **os.environ,
        **unique_topic_env("e2e"),
        "SME_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SME_DATA_DIR": str(tmp_path / "data"),
        "SME_HTTP_PORT": str(http_port),
        "SME_ENGINE_WEB_PORT": str(engine_port),
        "SME_SINK_FLUSH_SECONDS": "0.2",
        **(marker.args[0] if marker else {}),
    }
    env.pop("SME_CLICKHOUSE_DSN", None)  # the gateway owns its own embedded store
    config_file = tmp_path / "welcome.json"
    config_file.write_bytes(orjson.dumps(WELCOME))
    applied = subprocess.run(
        [sys.executable, "-m", "sme", "configs", "apply", str(config_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    engine = _spawn("engine", env, tmp_path)
    gateway = _spawn("gateway", env, tmp_path)
    deployed = Deployment(
        env,
        f"http://127.0.0.1:{http_port}",
        f"http://127.0.0.1:{engine_port}/metrics",
        engine,
        gateway,
        tmp_path,
    )
    try:
        yield deployed
    finally:
        _stop(engine)
        _stop(gateway)


def _log_tail(deployed: Deployment) -> str:
    return "\n".join(
        f"--- {name}\n" + (deployed.logs / f"{name}.log").read_text(errors="replace")[-3000:]
        for name in ("engine", "gateway")
    )
