"""No key ever reaches a log: `sme gateway` runs as a process at DEBUG (every logger, its
uvicorn server included) with an admin and a workspace key, takes authorised, refused and
malformed requests (keys in the Authorization header, wrong keys, keys in the query string
and the path), and neither its standard output nor its standard error contains a key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sme.gateway.auth import add_key
from tests.conftest import unique_topic_env
from tests.support.infra import ROOT, free_port
from tests.support.waiting import eventually_blocking

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
ADMIN = "adm1n-K3y_for-the-log-test-9f8e7d6c5b4a"


def test_no_key_appears_in_the_gateway_logs(kafka: str, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    workspace_key = add_key(keys_file, "acme-logs", "acme")
    wrong = "sme_wrong-key-that-no-one-has-0123456789abcdef"
    port = free_port()
    env = {
        **os.environ,
        **unique_topic_env("logs"),
        "SME_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SME_DATA_DIR": str(tmp_path / "data"),
        "SME_HTTP_PORT": str(port),
        "SME_API_KEYS_FILE": str(keys_file),
        "SME_ADMIN_API_KEY": ADMIN,
        "SME_LOG_LEVEL": "DEBUG",
    }
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "sme.cli", "gateway"],
            env=env,
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:

            def ready() -> bool:
                assert gateway.poll() is None, err.read_text()
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            eventually_blocking(ready, timeout=90, what="the gateway ready")
            statuses = []
            for key in (ADMIN, workspace_key, wrong):
                for headers in (
                    {"Authorization": f"Bearer {key}"},
                    {"Authorization": f"bearer  {key}"},
                    {"Authorization": f"Basic {key}"},
                    {"Authorization": key},
                    {"X-Api-Key": key},
                ):
                    statuses.append(http.get(API, params={"workspace_id": "acme"}, headers=headers))
                    statuses.append(http.post(API, json={"name": key}, headers=headers))
                statuses.append(http.get(API, params={"workspace_id": "acme", "api_key": key}))
                statuses.append(
                    http.get(f"{API}/{key}", headers={"Authorization": f"Bearer {key}"})
                )
                statuses.append(http.get(f"/dashboard/{key}"))
                statuses.append(
                    http.get(
                        f"{API}/x/activities",
                        params={"cursor": key, "from": key},
                        headers={"Authorization": f"Bearer {ADMIN}"},
                    )
                )
            codes = {r.status_code for r in statuses}
            assert {200, 401, 404, 422} <= codes, codes
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=10)
    logs = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert "DEBUG" in logs, "the gateway logged at DEBUG"
    for key in (ADMIN, workspace_key, wrong):
        assert key not in logs
        assert key[4:20] not in logs, "not even a part of it"
