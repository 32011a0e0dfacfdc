"""`make demo` against `sme engine` and `sme gateway` processes on the real broker and the
embedded ClickHouse: afterwards the HTTP API (through the typed client) shows the demo
sequence's enrollments, sends, feedback and a lift over the holdout with its interval; a second
run reuses the sequence and stops cleanly on Ctrl-C; and the dashboard in headless Chromium
shows non-zero figures (screenshot in tests/artifacts/demo-dashboard.png)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sme.client import AsyncSmeClient, GatewayUnreachable
from sme.demo.plan import demo_world
from tests.e2e.conftest import Deployment, _log_tail
from tests.support.browser import Elements, rendered_dom, screenshot
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    # The demo sender's consumer group is the test's own.
    pytest.mark.deployment_env({"SME_SENDER_GROUP_PREFIX": f"t{uuid.uuid4().hex[:10]}-sender"}),
]
ROOT = Path(__file__).resolve().parents[2]
DEMO_SECONDS = 25
DEMO_ARGS = f"--seconds {DEMO_SECONDS} --rate 10 --seed 15"


async def _make_demo(deployment: Deployment) -> str:
    """`make demo` as a newcomer runs it (bounded), its output; fails on a non-zero exit."""
    process = await asyncio.create_subprocess_exec(
        "make",
        "-s",
        "demo",
        f"DEMO_ARGS={DEMO_ARGS}",
        cwd=ROOT,
        env=deployment.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), DEMO_SECONDS + 90)
    except TimeoutError:
        process.kill()
        raise
    text = out.decode(errors="replace")
    assert process.returncode == 0, text + _log_tail(deployment)
    return text


async def _interrupted_rerun(deployment: Deployment) -> str:
    """A second run (`sme demo`, as `make demo` runs it) stopped by Ctrl-C once its counters
    show: its output, after checking it exited cleanly."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sme",
        "demo",
        "--seconds",
        "120",
        env=deployment.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout = process.stdout
    assert stdout is not None
    lines: list[str] = []

    async def counting() -> None:
        while not lines or not lines[-1].startswith("demo "):
            line = await stdout.readline()
            if not line:
                raise AssertionError(
                    "the demo ended before its counters showed:\n" + "".join(lines)
                )
            lines.append(line.decode(errors="replace"))

    try:
        await asyncio.wait_for(counting(), 60)
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        raise
    text = "".join(lines) + rest.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def _totals(metrics: dict[str, Any]) -> dict[str, int]:
    arms = metrics["arms"].values()
    keys = ("enrolled", "sent", "delivered", "opened", "clicked", "conversions")
    return {k: sum(int(a[k]) for a in arms) for k in keys}


async def test_make_demo_leaves_enrollments_sends_feedback_and_a_lift_with_its_interval(
    deployment: Deployment,
) -> None:
    started = time.monotonic()
    async with AsyncSmeClient(deployment.gateway_url, timeout=30) as client:

        async def ready() -> bool:
            try:
                return await client.ready()
            except GatewayUnreachable:
                return False

        await eventually(ready, timeout=90, what="gateway ready\n" + _log_tail(deployment))
        output = await _make_demo(deployment)

        sequence = demo_world().sequence
        found = re.search(r"sequence (\S+) created", output)
        assert found, output
        config_id = found.group(1)
        config = await client.get_config(config_id)
        assert (config.workspace_id, config.name) == (sequence.workspace_id, sequence.name)
        # the live counters and the closing account: what it left and how to remove it
        assert re.search(r"demo +\d+s/25s: users [1-9]", output), output
        assert "Left behind:" in output and f"curl -X DELETE {deployment.gateway_url}" in output
        assert f"dashboard {deployment.gateway_url}/dashboard/{config_id}" in output

        async def measured() -> dict[str, Any] | None:
            metrics = await client.metrics(config_id)
            totals = _totals(metrics)
            return metrics if all(totals.values()) else None

        metrics = await eventually(measured, timeout=60, what="the demo's figures in the API")
        totals = _totals(metrics)
        assert totals["enrolled"] >= 100, totals  # 10 signups a second for 25 s
        assert {"holdout", "baseline", "adaptive"} <= set(metrics["arms"]), metrics["arms"]
        lift = metrics["lift"]["vs_holdout"]
        assert lift is not None and lift["ci95_low"] is not None and lift["ci95_high"] is not None
        assert lift["ci95_low"] <= lift["estimate"] <= lift["ci95_high"]

        feedback = await client.activities(config_id, activity_type="feedback", limit=50)
        items = feedback["items"]
        assert items and all(item["command_id"] for item in items), items[:3]
        assert {item["event_type"] for item in items} <= {
            "delivered",
            "opened",
            "clicked",
            "bounced",
            "unsubscribed",
            "converted",
        }

        # a second run reuses the sequence, and Ctrl-C stops it cleanly with its account
        again = await _interrupted_rerun(deployment)
        assert f"sequence {config_id} reused" in again, again
        assert "stopped (interrupted)" in again and "Left behind:" in again, again
        assert "Traceback" not in again, again

        url = f"{deployment.gateway_url}/dashboard/{config_id}"
        page = Elements(await rendered_dom(url))
        assert page.body.get("data-state") == "ready", page.text.get("status")
        assert page.text["sequence-name"].startswith(sequence.name)
        for tile in ("enrolled", "sent", "conversions"):
            assert float(page.by_id[f"kpi-{tile}"]["data-value"]) > 0, tile
        assert page.by_id["kpi-lift_vs_holdout"]["data-value"] != ""
        picture = await screenshot(url, "demo-dashboard.png")
        assert picture.stat().st_size > 30_000, "a blank page compresses to a few KB"
    print(f"demo e2e: {time.monotonic() - started:.0f} s after the deployment started")
