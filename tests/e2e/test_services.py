"""The engine and the gateway as processes, driven only through Kafka and HTTP, the way a
deployment runs them: `sme engine` and `sme gateway` with SME_* settings."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.conftest import Deployment, _log_tail, _stop
from tests.support.infra import free_port
from tests.support.kafka_io import TopicReader, publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
API = "/api/v1/035-sequential-messaging-engine"


async def test_an_event_published_to_kafka_shows_up_in_the_gateway_and_on_the_channel_topic(
    deployment: Deployment,
) -> None:
    env = deployment.env
    async with httpx.AsyncClient(base_url=deployment.gateway_url, timeout=5) as http:

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=90, what="gateway ready\n" + _log_tail(deployment))

        async with (
            TopicReader(
                env["SME_KAFKA_BOOTSTRAP_SERVERS"], f"{env['SME_TOPIC_COMMANDS_PREFIX']}.email"
            ) as emails,
            TopicReader(env["SME_KAFKA_BOOTSTRAP_SERVERS"], env["SME_TOPIC_DLQ"]) as dlq,
        ):
            await publish(
                env["SME_KAFKA_BOOTSTRAP_SERVERS"],
                env["SME_TOPIC_EVENTS"],
                [
                    (
                        b"ada",
                        orjson.dumps(
                            {
                                "event_id": "e2e-1",
                                "workspace_id": "acme",
                                "user_id": "ada",
                                "type": "signed_up",
                                "occurred_at": "2026-11-28T08:00:00Z",
                                "user": {"consent": {"email": True}},
                            }
                        ),
                    ),
                    (b"bob", b"not json at all"),
                ],
            )

            async def listed() -> list[dict[str, object]]:
                response = await http.get(
                    f"{API}/welcome/activities",
                    params={"user_id": "ada", "type": "command_emitted"},
                )
                assert response.status_code == 200, response.text
                return list(response.json()["items"])

            items = await eventually(
                listed, timeout=90, what="the activity via the gateway\n" + _log_tail(deployment)
            )
            commands = await eventually(emails.poll, timeout=30, what="the email command")
            assert items[0]["type"] == "command_emitted"
            assert items[0]["command_id"] == commands[0]["command_id"]
            letters = await eventually(dlq.poll, timeout=30, what="the dead letter")
            assert letters[0]["reason_code"] == "invalid_json"

        page = await http.get("/dashboard/welcome")
        assert page.status_code == 200 and 'src="/static/dashboard.js"' in page.text
        assert (await http.get("/static/vendor/chart.umd.min.js")).status_code == 200
        dashboard = (await http.get(f"{API}/welcome/dashboard")).json()
        assert sum(arm["sent"] for arm in dashboard["metrics"]["arms"].values()) == 1
        assert any(d["type"] == "command_emitted" for d in dashboard["recent_decisions"])

        gateway_metrics = (await http.get("/metrics")).text
        assert "sme_sink_rows_total" in gateway_metrics
        engine_metrics = (await http.get(deployment.engine_metrics_url)).text
        assert 'sme_commands_out_total{channel="email"} 1.0' in engine_metrics
        assert 'sme_dead_letters_total{reason="invalid_json"} 1.0' in engine_metrics
        assert "sme_faust_messages_received_total" in engine_metrics

        async def lag_reported() -> bool:
            text = (await http.get(deployment.engine_metrics_url)).text
            return (
                f'sme_engine_consumer_lag{{partition="0",topic="{env["SME_TOPIC_EVENTS"]}"}} 0.0'
                in text
            )

        await eventually(lag_reported, timeout=30, what="the engine's consumer lag, caught up")

        bad_limit = await http.get(f"{API}/welcome/activities", params={"limit": 1001})
        assert bad_limit.status_code == 422
        assert bad_limit.json()["detail"][0]["loc"] == ["query", "limit"]

    assert _stop(deployment.gateway) == 0, _log_tail(deployment)
    assert _stop(deployment.engine) in (0, -signal.SIGINT), _log_tail(deployment)


async def test_a_second_gateway_on_the_same_embedded_store_fails_fast_with_the_owner(
    deployment: Deployment,
) -> None:
    lock = Path(deployment.env["SME_DATA_DIR"]) / "clickhouse.lock"

    async def held_by_the_gateway() -> bool:
        # It used to poll for up to 60 s and go on regardless; now the lock must be the
        # running gateway's before a second one is started against it.
        return lock.exists() and lock.read_text().strip() == str(deployment.gateway.pid)

    await eventually(
        held_by_the_gateway, timeout=90, what="the gateway's store lock\n" + _log_tail(deployment)
    )
    env = {**deployment.env, "SME_HTTP_PORT": str(free_port())}
    second = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sme", "gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert f"in use by PID {deployment.gateway.pid}" in second.stdout + second.stderr
