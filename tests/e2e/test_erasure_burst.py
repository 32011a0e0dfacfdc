"""A burst of 10,000 erasures in one workspace does not stall another workspace's reports.

Engine and gateway run as processes. 10,000 users of `acme` sign up; then, with the erasure
rate limit lifted (to measure the worst case a limit would otherwise prevent), 10,000
`DELETE …/users/{user}` requests arrive as fast as the gateway takes them, while `beta` keeps
publishing events. Each `beta` probe measures the time from its event's publication until the
workspace's report counts it; the slowest must stay under 30 s. Afterwards every erasure is
complete: no `acme` user is left in the report, in ClickHouse, or in the engine (its sign-ups
start over: a user whose state survived would not be enrolled again)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import Deployment, _log_tail
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.deployment_env(
        {"SME_ERASURE_RATE_PER_SECOND": "100000", "SME_ERASURE_BURST": "100000"}
    ),
]
API = "/api/v1/035-sequential-messaging-engine"
USERS = int(os.environ.get("SME_TEST_ERASURE_BURST", "10000"))
REPORT_DELAY_LIMIT = 30.0
CONCURRENCY = 32
BETA: dict[str, Any] = {
    "workspace_id": "beta",
    "name": "Beta welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "hi", "template": "hi", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def _signup(workspace: str, user: str, n: int) -> tuple[bytes, bytes]:
    return user.encode(), orjson.dumps(
        {
            "event_id": f"{workspace}-{user}-{n}",
            "workspace_id": workspace,
            "user_id": user,
            "type": "signed_up",
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    )


async def _publish_many(env: dict[str, str], messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=env["SME_KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    await producer.start()
    try:
        sent = [await producer.send(env["SME_TOPIC_EVENTS"], v, key=k) for k, v in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _enrolled(http: httpx.AsyncClient, config_id: str) -> int:
    response = await http.get(f"{API}/{config_id}/metrics")
    assert response.status_code == 200, response.text
    return int(response.json()["arms"].get("baseline", {}).get("enrolled", 0))


async def _gateway_metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_a_burst_of_erasures_does_not_stall_another_workspaces_reports(
    deployment: Deployment,
) -> None:
    env = deployment.env
    async with httpx.AsyncClient(base_url=deployment.gateway_url, timeout=60) as http:

        async def ready() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=90, what="gateway ready\n" + _log_tail(deployment))
        beta = await http.post(API, json=BETA)
        assert beta.status_code == 201, beta.text
        beta_id = beta.json()["id"]
        users = [f"user/{n}%" for n in range(USERS)]  # ids a path must carry encoded
        await _publish_many(env, [_signup("acme", u, 1) for u in users])

        async def all_enrolled() -> bool:
            return await _enrolled(http, "welcome") == USERS

        await eventually(
            all_enrolled, timeout=300, what="every acme user enrolled\n" + _log_tail(deployment)
        )

        delays: list[float] = []
        stop = asyncio.Event()

        async def probe_beta() -> None:
            n = 0
            while not stop.is_set() or n < 2:
                published = time.monotonic()
                await _publish_many(env, [_signup("beta", f"probe-{n}", 1)])
                n += 1

                async def counted(expected: int = n) -> bool:
                    return await _enrolled(http, beta_id) >= expected

                await eventually(counted, timeout=120, interval=0.1, what=f"beta probe {n}")
                delays.append(time.monotonic() - published)

        prober = asyncio.create_task(probe_beta())
        started = time.monotonic()
        erasure_ids: list[str] = []
        queue = list(users)

        async def erase_some() -> None:
            while queue:
                user = queue.pop()
                url = f"/api/v1/workspaces/acme/users/{quote(user, safe='')}"
                response = await http.delete(url)
                assert response.status_code == 202, response.text
                erasure_ids.append(response.json()["erasure_id"])

        await asyncio.gather(*(erase_some() for _ in range(CONCURRENCY)))
        accepted = time.monotonic() - started

        async def all_completed() -> bool:
            return await _gateway_metric(http, "sme_erasures_completed_total") >= USERS

        await eventually(all_completed, timeout=600, interval=0.5, what="every erasure completed")
        completed = time.monotonic() - started
        stop.set()
        await asyncio.wait_for(prober, 180)

        print(
            f"\n{USERS} erasures accepted in {accepted:.1f} s, completed in {completed:.1f} s;"
            f" beta report delay over {len(delays)} probes: max {max(delays):.2f} s,"
            f" median {sorted(delays)[len(delays) // 2]:.2f} s"
        )
        assert max(delays) < REPORT_DELAY_LIMIT, delays
        assert await _enrolled(http, "welcome") == 0, "the rollup was recomputed without them"
        left = await http.post(
            "/api/v1/sql",
            json={
                "query": "SELECT count() FROM activities WHERE workspace_id = 'acme' "
                "AND user_id != ''"
            },
        )
        assert left.status_code == 200, left.text
        assert left.json()["rows"] == [[0]]
        progress = await http.get(f"/api/v1/workspaces/acme/erasures/{erasure_ids[0]}")
        assert progress.status_code == 200, progress.text
        assert progress.json()["state"] == "completed"
        assert progress.json()["rows_deleted"] >= 1

        # The engine forgot them too: signing up again enrolls each once more.
        sample = users[:50]
        await _publish_many(env, [_signup("acme", u, 2) for u in sample])

        async def enrolled_again() -> bool:
            return await _enrolled(http, "welcome") == len(sample)

        await eventually(enrolled_again, timeout=120, what="erased users enrolled afresh")
