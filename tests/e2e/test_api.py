"""The configuration API against `sme gateway` and `sme engine` processes: a sequence created
over HTTP sends through Kafka, a pause over HTTP stops it, and an erased user disappears."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import Deployment, _log_tail
from tests.support.kafka_io import TopicReader, publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
API = "/api/v1/035-sequential-messaging-engine"
PAUSE_GRACE_SECONDS = 1.0


def signup(user: str) -> tuple[bytes, bytes]:
    body = {
        "event_id": f"s-{user}",
        "workspace_id": "acme",
        "user_id": user,
        "type": "signed_up",
        "occurred_at": "2026-11-28T08:00:00Z",
    }
    return user.encode(), orjson.dumps(body)


async def test_create_pause_and_erase_through_http_drive_the_running_engine(
    deployment: Deployment,
) -> None:
    env = deployment.env
    bootstrap = env["SME_KAFKA_BOOTSTRAP_SERVERS"]
    async with httpx.AsyncClient(base_url=deployment.gateway_url, timeout=10) as http:

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=90, what="gateway ready\n" + _log_tail(deployment))
        created = await http.post(
            API,
            json={
                "workspace_id": "acme",
                "name": "Via API",
                "entry": {"event_types": ["signed_up"]},
                "steps": [{"id": "hi", "template": "hi", "channels": ["sms"]}],
                "experiment": {"holdout_pct": 0, "baseline_pct": 100},
            },
        )
        assert created.status_code == 201, created.text
        config: dict[str, Any] = created.json()
        async with TopicReader(bootstrap, f"{env['SME_TOPIC_COMMANDS_PREFIX']}.sms") as sms:
            await publish(bootstrap, env["SME_TOPIC_EVENTS"], [signup("eve")])
            sent = await eventually(
                sms.poll, timeout=90, what="eve's sms\n" + _log_tail(deployment)
            )
            assert [(c["user_id"], c["config_id"]) for c in sent] == [("eve", config["id"])]

            paused = await http.patch(f"{API}/{config['id']}", json={"status": "PAUSED"})
            assert paused.json()["status"] == "PAUSED"
            acknowledged = time.monotonic()  # the response has arrived
            # A pause applies within a second of its acknowledgement (the engine reads it from
            # sme.configs); fay signs up after that second, so no engine may still enrol her.
            # This waits for the grace itself to pass, not for an effect.
            await asyncio.sleep(max(0.0, acknowledged + PAUSE_GRACE_SECONDS - time.monotonic()))
            await publish(bootstrap, env["SME_TOPIC_EVENTS"], [signup("fay")])

            async def engine_counter(sample: str) -> float:
                metrics = (await http.get(deployment.engine_metrics_url)).text
                line = next((x for x in metrics.splitlines() if x.startswith(sample + " ")), "")
                return float(line.split()[-1]) if line else 0.0

            async def fay_processed() -> bool:  # the engine decided fay's signup
                return await engine_counter('sme_events_in_total{type="signed_up"}') >= 2

            await eventually(fay_processed, timeout=30, what="the engine processing fay's signup")

            async def every_sms_read() -> bool:  # what the engine decided is on the topic, read
                decided = await engine_counter('sme_commands_out_total{channel="sms"}')
                return len(await sms.poll()) >= decided

            await eventually(every_sms_read, timeout=30, what="every sms the engine decided")
            assert [c["user_id"] for c in sms.seen] == ["eve"], "nothing sent while paused"

        erased = await http.delete("/api/v1/workspaces/acme/users/eve")
        assert erased.status_code == 202

        async def eve_gone() -> bool:
            items = (
                await http.get(f"{API}/{config['id']}/activities", params={"user_id": "eve"})
            ).json()
            return items["items"] == []

        await eventually(eve_gone, timeout=60, what="eve's activities erased")
