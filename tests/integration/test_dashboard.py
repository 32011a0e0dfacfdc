"""The dashboard in Debian's headless Chromium against a gateway on the real broker and
ClickHouse engine with data the engine produced: the KPI tiles and chart data carry the
numbers recomputed directly from `activities`, every chart is drawn by the locally served
Chart.js, and a screenshot is saved (tests/artifacts/). With keys configured the page asks
for one, and a workspace key sees only its own sequences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sme.core.lift import wilson_interval
from sme.core.variants import variant_results
from sme.gateway.auth import add_key
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.browser import Elements, rendered_dom, screenshot
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
CHARTS = (
    "chart-trend",
    "chart-arms",
    "chart-lift",
    "chart-channels",
    "chart-reasons",
    "chart-errors",
)


def sequence(workspace: str = "acme", name: str = "Welcome series") -> dict[str, Any]:
    return {
        "workspace_id": workspace,
        "name": name,
        "entry": {"event_types": ["signed_up"]},
        "steps": [
            {
                "id": "hello",
                "template": "hello",
                "channels": ["email", "push"],
                "variants": ["a", "b"],
            },
            {"id": "nudge", "template": "nudge", "channels": ["email"], "wait": "PT1S"},
        ],
        "exit": {"goal": {"event_type": "purchased", "value_property": "amount"}},
        "guardrails": {"cost_per_message": {"email": 0.01, "push": 0.002}},
        "experiment": {"holdout_pct": 20, "baseline_pct": 40},
        "adaptive": {"variant_policy": "fixed_weights"},  # both variants sent in every arm
    }


def _money(value: float) -> set[str]:
    """The page's 2-decimal text of `value`, either way a rounding tie may fall."""
    return {f"{value - 1e-9:,.2f}", f"{value + 1e-9:,.2f}"}


def _pct(value: float) -> set[str]:
    """The page's 1-decimal percentage text of `value`, either way a rounding tie may fall."""
    return {f"{value * 100 - 1e-9:.1f}%", f"{value * 100 + 1e-9:.1f}%"}


async def _direct(store: ClickHouseStore, workspace: str) -> dict[str, Any]:
    """The figures recomputed straight from the activities, not from any rollup."""
    rows = (
        await store.query(
            "SELECT arm, countIf(type = 'enrolled'), countIf(type = 'command_emitted'), "
            "countIf(type = 'conversion'), sumIf(value, type = 'conversion'), "
            "sumIf(cost, type = 'command_emitted') FROM {db}.activities FINAL "
            "WHERE workspace_id = {w:String} AND arm != '' GROUP BY arm ORDER BY arm",
            {"w": workspace},
        )
    ).result_rows
    channels = (
        await store.query(
            "SELECT channel, count() FROM {db}.activities FINAL "
            "WHERE workspace_id = {w:String} AND type = 'command_emitted' "
            "GROUP BY channel ORDER BY channel",
            {"w": workspace},
        )
    ).result_rows
    intake = (
        await store.query(
            "SELECT countIf(type = 'event_rejected'), count() FROM {db}.activities FINAL "
            "WHERE workspace_id = {w:String} "
            "AND type IN ('event_received', 'event_duplicate', 'event_rejected')",
            {"w": workspace},
        )
    ).result_rows[0]
    reasons = (
        await store.query(
            "SELECT reason_code, count() FROM {db}.activities FINAL "
            "WHERE workspace_id = {w:String} AND arm != '' "
            "AND type IN ('message_suppressed', 'step_skipped') GROUP BY reason_code",
            {"w": workspace},
        )
    ).result_rows
    sends = (
        await store.query(
            "SELECT step_id, JSONExtractString(details, 'variant'), command_id "
            "FROM {db}.activities FINAL "
            "WHERE workspace_id = {w:String} AND type = 'command_emitted'",
            {"w": workspace},
        )
    ).result_rows
    converted = {
        row[0]
        for row in (
            await store.query(
                "SELECT command_id FROM {db}.activities FINAL "
                "WHERE workspace_id = {w:String} AND type = 'conversion' AND command_id != ''",
                {"w": workspace},
            )
        ).result_rows
    }
    variants: dict[tuple[str, str], tuple[int, int]] = {}
    for step, variant, command_id in sends:
        sent, conv = variants.get((step, variant), (0, 0))
        variants[(step, variant)] = (sent + 1, conv + (command_id in converted))
    arms = {arm: (e, s, c, v, k) for arm, e, s, c, v, k in rows}
    return {
        "arms": arms,
        "enrolled": sum(a[0] for a in arms.values()),
        "sent": sum(a[1] for a in arms.values()),
        "conversions": sum(a[2] for a in arms.values()),
        "revenue": sum(a[3] for a in arms.values()),
        "cost": sum(a[4] for a in arms.values()),
        "channels": dict(channels),
        "reasons": dict(reasons),
        "error_rate": intake[0] / intake[1],
        "variants": variants,
    }


async def _finished(store: ClickHouseStore, users: int) -> None:
    """Wait until every user's enrollment has ended (completed, or exited on the goal): after
    that nothing is due, so no further activity can arrive (it used to wait for 4 s without
    a new row, which a slow second step outlasts)."""

    async def all_exited() -> bool:
        rows = (
            await store.query(
                "SELECT uniqExactIf(user_id, type = 'enrolled'), "
                "uniqExactIf(user_id, type = 'enrollment_exited') FROM {db}.activities FINAL "
                "WHERE workspace_id = 'acme'"
            )
        ).result_rows
        return bool(rows[0] == (users, users))

    await eventually(all_exited, timeout=90, what="every enrollment ended")


async def test_the_dashboard_renders_the_measured_numbers_in_chromium(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    users = [f"d{i}" for i in range(60)]
    async with running_gateway(s) as api, running_engine(s):
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        created = (await api.post(API, json=sequence())).json()
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"s-{u}", u, "signed_up") for u in users]
            + [(b"d0", b'{"workspace_id": "acme", "user_id": "d0"}')],  # dead-lettered
        )

        async def greeted() -> bool:  # so purchases credit the first step's variants
            rows = (
                await store.query(
                    "SELECT uniqExact(user_id) FROM {db}.activities FINAL "
                    "WHERE workspace_id = 'acme' AND step_id = 'hello'"
                )
            ).result_rows
            return bool(rows[0][0] == len(users))

        await eventually(greeted, timeout=90, what="every user through the first step")
        hello_commands = dict(
            (
                await store.query(
                    "SELECT user_id, any(command_id) FROM {db}.activities FINAL "
                    "WHERE workspace_id = 'acme' AND step_id = 'hello' "
                    "AND type = 'command_emitted' GROUP BY user_id"
                )
            ).result_rows
        )
        named = {u: {"command_id": hello_commands[u]} for u in users if u in hello_commands}
        await publish(  # a purchase naming the user's first message credits it (and its variant)
            s.kafka_bootstrap_servers,
            s.topic_events,
            [
                event(f"p-{u}", u, "purchased", properties={"amount": 12.5}, **named.get(u, {}))
                for u in users[::4]
            ],
        )

        async def settled() -> bool:
            rows = (
                await store.query(
                    "SELECT countIf(type = 'conversion'), countIf(type = 'event_rejected') "
                    "FROM {db}.activities FINAL"
                )
            ).result_rows
            return bool(rows[0] == (len(users[::4]), 1))

        await eventually(settled, timeout=90, what="conversions and the dead letter stored")
        await _finished(store, len(users))
        direct = await _direct(store, "acme")
        assert direct["sent"] > 0 and direct["conversions"] == len(users[::4])

        url = f"{str(api.base_url).rstrip('/')}/dashboard/{created['id']}"
        page = Elements(await rendered_dom(url))
        assert page.body.get("data-state") == "ready", page.text.get("status")
        assert "no-charts" not in page.by_id, "Chart.js must be served locally"
        assert page.text["sequence-name"].startswith("Welcome series")

        def tile(name: str) -> tuple[float, str]:
            return float(page.by_id[f"kpi-{name}"]["data-value"]), page.text[f"kpi-{name}"]

        for name in ("enrolled", "sent", "conversions"):
            value, text = tile(name)
            assert value == direct[name], name
            assert f"{direct[name]:,}" in text, (name, text)
        for name in ("revenue", "cost"):
            value, text = tile(name)
            assert value == pytest.approx(direct[name]), name
            assert f"{direct[name]:,.2f}" in text, (name, text)
        rate, rate_text = tile("conversion_rate")
        assert rate == pytest.approx(direct["conversions"] / direct["enrolled"])
        assert f"{rate * 100:.1f}%" in rate_text
        error_rate, error_text = tile("error_rate")
        assert error_rate == pytest.approx(direct["error_rate"])
        assert f"{direct['error_rate'] * 100:.2f}%" in error_text

        holdout = direct["arms"]["holdout"]
        messaged = [direct["arms"][a] for a in ("adaptive", "baseline") if a in direct["arms"]]
        treated_users = sum(a[0] for a in messaged)
        incremental = sum(a[3] for a in messaged) - treated_users * holdout[3] / holdout[0]
        assert float(page.by_id["kpi-incremental_revenue"]["data-value"]) == pytest.approx(
            incremental
        )
        cost = sum(a[4] for a in messaged)
        assert float(page.by_id["kpi-roi"]["data-value"]) == pytest.approx(
            (incremental - cost) / cost
        )

        for chart in CHARTS:
            assert page.by_id[chart].get("data-rendered") == "true", chart
        arms_chart = json.loads(page.by_id["chart-arms"]["data-points"])
        assert arms_chart["arms"] == sorted(direct["arms"])
        assert arms_chart["rates"] == pytest.approx(
            [direct["arms"][a][2] / direct["arms"][a][0] for a in arms_chart["arms"]]
        )
        for rate, ci in zip(arms_chart["rates"], arms_chart["ci95"], strict=True):
            assert ci[0] <= rate <= ci[1]
        channels_chart = json.loads(page.by_id["chart-channels"]["data-points"])
        assert (
            dict(zip(channels_chart["channels"], channels_chart["sent"], strict=True))
            == (direct["channels"])
        )
        reasons_chart = json.loads(page.by_id["chart-reasons"]["data-points"])
        reasons = dict(zip(reasons_chart["reasons"], reasons_chart["counts"], strict=True))
        assert reasons == direct["reasons"] and reasons["holdout"] >= holdout[0]
        arms_text = page.text["arms-table"]  # the table's text, cells run together
        assert "net value" in arms_text and "net value / enrolled" in arms_text
        for arm, (enrolled, _, _, revenue, cost) in direct["arms"].items():
            net = revenue - cost  # the goal values conversions; unsubscribes cost nothing
            assert any(t in arms_text for t in _money(net)), (arm, net, arms_text)
            assert any(t in arms_text for t in _money(net / enrolled)), (arm, arms_text)
        # variants: one row per (step, variant) with the activities' sends and converted
        # messages, the rate and its interval, P(best) as a percentage; the leader is marked
        variant_rows = page.rows["variants-table"]
        assert [(r["data-step"], r["data-variant"]) for r in variant_rows] == sorted(
            direct["variants"]
        )
        assert {("hello", "a"), ("hello", "b")} <= set(direct["variants"])
        assert sum(direct["variants"][("hello", v)][1] for v in "ab") > 0, direct["variants"]
        by_step: dict[str, list[dict[str, str]]] = {}
        for row in variant_rows:
            step, variant = row["data-step"], row["data-variant"]
            sent, conv = direct["variants"][(step, variant)]
            assert (int(row["data-sent"]), int(row["data-conversions"])) == (sent, conv)
            text = page.text[f"variant-{step}-{variant}"]
            low, high = wilson_interval(conv, sent) or (0.0, 0.0)
            assert any(t in text for t in _pct(conv / sent)), text
            assert any(f"{a} .. {b}" in text for a in _pct(low) for b in _pct(high)), text
            prob = float(row["data-prob-best"])
            assert any(t in text for t in _pct(prob)), text
            assert ("leader" in text) == (row.get("data-leader") == "true" and prob >= 0.95)
            by_step.setdefault(step, []).append(row)
        hello = {r["data-variant"]: r for r in by_step["hello"]}
        shares = [float(r["data-prob-best"]) for r in hello.values()]
        assert sum(shares) == pytest.approx(1, abs=1e-3)
        expected = variant_results([direct["variants"][("hello", v)] for v in sorted(hello)])
        assert shares == pytest.approx([r.prob_best for r in expected], abs=1e-4)
        leader = max(hello, key=lambda v: float(hello[v]["data-prob-best"]))
        assert [v for v, r in hello.items() if r.get("data-leader") == "true"] == [leader]
        assert "leading" in hello[leader]["class"]

        # steps: one row per configured step, in order, with the activities' figures; the
        # flow draws a box per step
        step_rows = (
            await store.query(
                "SELECT step_id, type, user_id, reason_code FROM {db}.activities FINAL "
                "WHERE workspace_id = 'acme' AND arm != '' AND step_id != ''"
            )
        ).result_rows
        decided = {
            "enrolled",
            "command_emitted",
            "message_suppressed",
            "step_skipped",
            "step_deferred",
            "step_branched",
            "enrollment_exited",
        }
        expected_steps: dict[str, dict[str, Any]] = {}
        for step_id in ("hello", "nudge"):
            mine = [r for r in step_rows if r[0] == step_id]
            kinds = [r[1] for r in mine]
            expected_steps[step_id] = {
                "data-entered": str(len({r[2] for r in mine if r[1] in decided})),
                "data-sent": str(kinds.count("command_emitted")),
                "data-suppressed": str(
                    kinds.count("message_suppressed") + kinds.count("step_skipped")
                ),
                "data-converted": str(kinds.count("conversion")),
                "data-exited": str(kinds.count("enrollment_exited")),
            }
        shown = page.rows["steps-table"]
        assert [r["data-step"] for r in shown] == ["hello", "nudge"]
        for row in shown:
            assert {k: row[k] for k in expected_steps[row["data-step"]]} == (
                expected_steps[row["data-step"]]
            ), row["data-step"]
        assert expected_steps["hello"]["data-entered"] == str(len(users))
        assert int(expected_steps["hello"]["data-converted"]) > 0
        assert int(expected_steps["nudge"]["data-exited"]) > 0
        holdout_skips = sum(
            1 for r in step_rows if r[0] == "hello" and r[3] == "holdout" and r[1] != "enrolled"
        )
        title = page.by_id["step-hello"]  # the row; the suppressed total names its reasons
        assert title["data-suppressed"] == expected_steps["hello"]["data-suppressed"]
        assert f"holdout {holdout_skips:,}" in page.text["step-hello"]
        assert "steps-flow" in page.by_id
        assert "hello" in page.text["steps-flow"] and "nudge" in page.text["steps-flow"]

        decisions = page.rows["decisions-table"]
        assert 0 < len(decisions) <= 25 and all("data-activity" in r for r in decisions)

        picture = await screenshot(url, "dashboard-sequence.png")
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert picture.stat().st_size > 30_000, "a blank page compresses to a few KB"

        overview = Elements(await rendered_dom(url.rsplit("/", 1)[0]))
        assert overview.body.get("data-state") == "ready"
        assert [r["data-config"] for r in overview.rows["sequences-table"]] == [created["id"]]
        assert float(overview.by_id["kpi-conversions"]["data-value"]) == direct["conversions"]
        await screenshot(url.rsplit("/", 1)[0], "dashboard-overview.png", "1400,1000")
        assert await _direct(store, "acme") == direct, "the data moved while it was checked"


async def test_with_keys_the_page_asks_for_one_and_a_key_sees_only_its_workspace(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    acme = add_key(keys_file, "acme-ui", "acme")
    globex = add_key(keys_file, "globex-ui", "globex")
    settings = test_settings.model_copy(update={"api_keys_file": keys_file})
    async with running_gateway(settings, headers={"Authorization": f"Bearer {acme}"}) as api:
        created = (await api.post(API, json=sequence("acme", "Acme welcome"))).json()
        base = str(api.base_url).rstrip("/")
        page = f"{base}/dashboard/{created['id']}"

        anonymous = Elements(await rendered_dom(page))
        assert anonymous.body.get("data-state") == "login"
        assert "api-key" in anonymous.by_id

        keyed = Elements(await rendered_dom(f"{page}#key={acme}"))
        assert keyed.body.get("data-state") == "ready"
        assert keyed.text["sequence-name"].startswith("Acme welcome")
        assert keyed.by_id["kpi-sent"]["data-value"] == "0"
        assert keyed.rows["variants-table"] == []
        assert [(r["data-step"], r["data-entered"]) for r in keyed.rows["steps-table"]] == [
            ("hello", "0"),
            ("nudge", "0"),
        ], "configured steps are listed at zero"
        assert keyed.text["variants-table-empty"] == "no variant figures in this window"

        foreign = Elements(await rendered_dom(f"{page}#key={globex}"))
        assert foreign.body.get("data-state") == "error"
        assert "404" in foreign.text["status"]
        theirs = Elements(await rendered_dom(f"{base}/dashboard#key={globex}"))
        assert theirs.body.get("data-state") == "ready"
        assert theirs.rows["sequences-table"] == [], "another workspace's sequences stay hidden"

        drained = await api.patch(f"{API}/{created['id']}", json={"status": "DRAINING"})
        assert drained.status_code == 200, drained.text
        draining = Elements(await rendered_dom(f"{page}#key={acme}"))
        assert draining.text["sequence-status"] == "DRAINING"
        assert "no new entries" in draining.text["draining"]
