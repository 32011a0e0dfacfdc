"""The configuration API against `sme gateway` and `sme engine` processes: a sequence created
over HTTP sends through Kafka, a pause over HTTP stops it, and an erased user disappears."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import Deployment, _log_tail
from tests.support.kafka_io import TopicReader, publish
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
API = "/api/v1/035-sequential-messaging-engine"


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
            await publish(bootstrap, env["SME_TOPIC_EVENTS"], [signup("fay")])

            async def fay_processed() -> bool:  # the engine consumed fay's signup
                metrics = (await http.get(deployment.engine_metrics_url)).text
                return 'sme_events_in_total{type="signed_up"} 2.0' in metrics

            await eventually(fay_processed, timeout=30, what="the engine processing fay's signup")
            assert [c["user_id"] for c in await sms.poll()] == ["eve"], "nothing sent while paused"

        erased = await http.delete("/api/v1/workspaces/acme/users/eve")
        assert erased.status_code == 202

        async def eve_gone() -> bool:
            items = (
                await http.get(f"{API}/{config['id']}/activities", params={"user_id": "eve"})
            ).json()
            return items["items"] == []

        await eventually(eve_gone, timeout=60, what="eve's activities erased")
