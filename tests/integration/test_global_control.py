"""The workspace's global control group on the real broker and ClickHouse engine: control
users are enrolled in every sequence but get no command from any; their conversions are
recorded; the overview (JSON and the page in Chromium) reports the program's incremental
conversions and revenue against them, equal to the figures recomputed from the activities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sme.contracts.sequences import GlobalControl
from sme.core.global_control import in_global_control
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.browser import Elements, rendered_dom
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
WS = "acme"
CONTROL = GlobalControl(pct=50.0, salt="2026")


def sequence(name: str) -> dict[str, Any]:
    return {
        "workspace_id": WS,
        "name": name,
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
        "exit": {"goal": {"event_type": "purchased", "value_property": "amount"}},
        "experiment": {"holdout_pct": 20, "baseline_pct": 0},
    }


def users(inside: bool, count: int) -> list[str]:
    chosen = (f"g{n}" for n in range(10_000) if in_global_control(CONTROL, WS, f"g{n}") is inside)
    return [next(chosen) for _ in range(count)]


async def test_control_users_get_nothing_and_the_overview_measures_the_program(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    control, treated = users(True, 40), users(False, 40)
    buyers = control[::4] + treated[::2]  # 10 of 40 and 20 of 40
    async with running_gateway(s) as api:
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        put = await api.put(
            f"/api/v1/workspaces/{WS}/settings",
            json={"global_control": {"pct": CONTROL.pct, "salt": CONTROL.salt}},
        )
        assert put.status_code == 200, put.text
        bad = await api.put(
            f"/api/v1/workspaces/{WS}/settings", json={"global_control": {"pct": 80}}
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "global_control", "pct"]
        ids = [(await api.post(API, json=sequence(n))).json()["id"] for n in ("Welcome", "Tips")]
        async with (
            running_engine(s),
            TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
        ):
            await publish(
                s.kafka_bootstrap_servers,
                s.topic_events,
                [event(f"s-{u}", u, "signed_up") for u in control + treated],
            )

            async def walked() -> bool:  # every enrollment passed its one message step
                rows = (
                    await store.query(
                        "SELECT count() FROM {db}.activities FINAL WHERE workspace_id = 'acme' "
                        "AND type IN ('command_emitted', 'message_suppressed')"
                    )
                ).result_rows
                return bool(rows[0][0] == 2 * 80)

            await eventually(walked, timeout=90, what="every user through both sequences")
            await publish(  # one purchase converts both sequences: it is one conversion
                s.kafka_bootstrap_servers,
                s.topic_events,
                [event(f"p-{u}", u, "purchased", properties={"amount": 10.0}) for u in buyers],
            )

            async def converted() -> bool:
                rows = (
                    await store.query(
                        "SELECT count() FROM {db}.activities FINAL "
                        "WHERE workspace_id = 'acme' AND type = 'conversion'"
                    )
                ).result_rows
                return bool(rows[0][0] == 2 * len(buyers))

            await eventually(converted, timeout=90, what="the conversions recorded")
            commanded = {c["user_id"] for c in await emails.read_to_end()}
        assert commanded and commanded <= set(treated), "no command for a control user"
        rows = (
            await store.query(
                "SELECT user_id, type, arm, reason_code FROM {db}.activities FINAL "
                "WHERE workspace_id = 'acme' AND arm != ''"
            )
        ).result_rows
        for user, kind, arm, reason in rows:
            assert (arm == "global_control") == (user in control), (user, kind, arm)
            if user in control and kind == "message_suppressed":
                assert reason == "global_control"
        assert sum(1 for r in rows if r[1] == "conversion" and r[2] == "global_control") == 20

        today = datetime.now(UTC).date()
        window = {"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        body = (await api.get("/api/v1/dashboard/overview", params=window)).json()
        (program,) = body["program"]
        assert program["workspace_id"] == WS and program["status"] == "ok"
        assert program["pct"] == 50.0
        assert (program["treated"]["users"], program["treated"]["converted"]) == (40, 20)
        assert (program["control"]["users"], program["control"]["converted"]) == (40, 10)
        assert program["treated"]["revenue"] == pytest.approx(200.0)  # counted once per purchase
        assert program["control"]["revenue_per_user"] == pytest.approx(2.5)
        conv, rev = program["incremental_conversions"], program["incremental_revenue"]
        assert conv["estimate"] == pytest.approx((20 / 40 - 10 / 40) * 40)
        assert rev["estimate"] == pytest.approx((200 / 40 - 100 / 40) * 40)
        for interval in (conv, rev):
            assert interval["ci95_low"] < interval["estimate"] < interval["ci95_high"]
        per_sequence = {i["id"]: i["figures"] for i in body["items"]}
        assert set(per_sequence) == set(ids)
        for figures in per_sequence.values():  # the control is enrolled in every sequence
            assert figures["enrolled"] == 80 and figures["conversions"] == len(buyers)

        page = Elements(await rendered_dom(f"{str(api.base_url).rstrip('/')}/dashboard"))
        assert page.body.get("data-state") == "ready"
        (row,) = page.rows["program-table"]
        assert row["data-status"] == "ok"
        assert float(row["data-incremental-conversions"]) == pytest.approx(conv["estimate"])
        assert float(row["data-incremental-revenue"]) == pytest.approx(rev["estimate"])
        assert "95% CI" in page.text[f"program-{WS}"]
