"""The metrics route on the real broker and ClickHouse engine: per-arm counts that equal the
activities recomputed directly, a daily series, lift with a CI, and its parameter errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sme.core.splits import fixed_variant
from sme.settings import Settings
from sme.storage.activities import ACTIVITY_COLUMNS
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import publish
from tests.support.oracles import katz_lift
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"


async def test_metrics_per_arm_match_the_activities_and_carry_the_lift(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    sequence = {
        "workspace_id": "acme",
        "name": "Measured",
        "entry": {"event_types": ["signed_up"]},
        "steps": [
            {
                "id": "hello",
                "template": "hello",
                "channels": ["email"],
                "variants": ["a", "b"],
                "variant_weights": [1, 1],
            }
        ],
        "exit": {"goal": {"event_type": "purchased", "value_property": "amount"}},
        "guardrails": {"cost_per_message": {"email": 0.01}},
        "experiment": {"holdout_pct": 20, "baseline_pct": 40},
        "adaptive": {
            "conversion_value": 50.0,
            "unsubscribe_cost": 3.0,
            "variant_policy": "fixed_weights",
        },
    }
    users = [f"m{i}" for i in range(40)]
    async with running_gateway(s) as api, running_engine(s):
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        created = (await api.post(API, json=sequence)).json()
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"s-{u}", u, "signed_up") for u in users],
        )
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"p-{u}", u, "purchased", properties={"amount": 10}) for u in users[::3]]
            + [(b"m0", b'{"workspace_id": "acme", "user_id": "m0", "type": "bad"}')],
        )

        async def converted() -> bool:
            rows = (
                await store.query(
                    "SELECT count() FROM {db}.activities FINAL WHERE type = 'conversion'"
                )
            ).result_rows
            return bool(rows[0][0] == len(users[::3]))

        await eventually(converted, timeout=60, what="the conversions recorded")
        # feedback naming the messages sent: delivered for each, opened for every other one,
        # clicked for every fourth (each counts at the message's step)
        commands = sorted(
            (
                await store.query(
                    "SELECT user_id, command_id FROM {db}.activities FINAL "
                    "WHERE type = 'command_emitted'"
                )
            ).result_rows
        )
        feedback = [
            event(f"{kind}-{user}", user, kind, command_id=command_id, channel="email")
            for i, (user, command_id) in enumerate(commands)
            for kind, every in (("delivered", 1), ("opened", 2), ("clicked", 4))
            if i % every == 0
        ]
        await publish(s.kafka_bootstrap_servers, s.topic_events, feedback)

        async def answered() -> bool:
            rows = (
                await store.query(
                    "SELECT count() FROM {db}.activities FINAL WHERE type = 'feedback'"
                )
            ).result_rows
            return bool(rows[0][0] == len(feedback))

        await eventually(answered, timeout=60, what="the feedback recorded")
        today = datetime.now(UTC).date()
        response = await api.get(
            f"{API}/{created['id']}/metrics",
            params={"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        direct = (
            await store.query(
                "SELECT arm, uniqExactIf(user_id, type = 'enrolled'), "
                "countIf(type = 'command_emitted'), countIf(type = 'conversion'), "
                "sumIf(value, type = 'conversion'), sumIf(cost, type = 'command_emitted') "
                "FROM {db}.activities FINAL WHERE arm != '' GROUP BY arm ORDER BY arm"
            )
        ).result_rows
        reported = [
            (arm, a["enrolled"], a["sent"], a["conversions"], a["revenue"], round(a["cost"], 6))
            for arm, a in sorted(body["arms"].items())
        ]
        assert reported == [(a, e, n, c, v, round(k, 6)) for a, e, n, c, v, k in direct]
        # net value: each conversion carries amount 10 (value_property), so conversion_value
        # (50) is not used; no unsubscribe was sent, each send cost 0.01
        assert all(a["unsubscribed"] == 0 for a in body["arms"].values())
        for arm, enrolled, sent, conversions, _, _ in direct:
            figures = body["arms"][arm]
            expected_net = 10.0 * conversions - 0.01 * sent
            assert figures["net_value"] == pytest.approx(expected_net), arm
            assert figures["net_value_per_enrolled"] == pytest.approx(expected_net / enrolled), arm
        assert sum(a["enrolled"] for a in body["arms"].values()) == len(users)
        assert body["arms"]["holdout"]["sent"] == 0
        assert [row["period"] for row in body["series"]] == [today.isoformat()] * len(
            body["series"]
        )
        arms = body["arms"]
        assert arms.get("adaptive", {}).get("enrolled"), "40 users split 40/40/20"
        for name, control in (("vs_baseline", "baseline"), ("vs_holdout", "holdout")):
            lift = body["lift"][name]
            treated, other = arms["adaptive"], arms.get(control, {"enrolled": 0})
            if not other["enrolled"]:  # an empty arm has no rate (a rare split of 40 users)
                assert lift is None, name
                continue
            expected = katz_lift(
                min(treated["conversions"], treated["enrolled"]),
                treated["enrolled"],
                min(other["conversions"], other["enrolled"]),
                other["enrolled"],
            )
            assert lift is not None, name
            got = (lift["estimate"], lift["ci95_low"], lift["ci95_high"])
            assert got == pytest.approx(expected), name

        # per channel, suppressions by reason, incremental figures and the error rate
        by_channel = (
            await store.query(
                "SELECT if(channel = '', 'none', channel), countIf(type = 'command_emitted'), "
                "countIf(type = 'conversion') FROM {db}.activities FINAL "
                "WHERE arm != '' GROUP BY 1 ORDER BY 1"
            )
        ).result_rows
        assert [
            (name, c["sent"], c["conversions"]) for name, c in sorted(body["channels"].items())
        ] == [tuple(row) for row in by_channel]
        holdout = body["arms"]["holdout"]
        skipped = (
            await store.query(
                "SELECT count() FROM {db}.activities FINAL "
                "WHERE arm = 'holdout' AND type = 'message_suppressed' AND reason_code = 'holdout'"
            )
        ).result_rows[0][0]
        assert skipped == holdout["enrolled"] > 0
        assert body["suppressed_by_reason"]["holdout"] == {"holdout": skipped}
        adaptive, inc = body["arms"]["adaptive"], body["incremental"]["adaptive"]
        expected = adaptive["revenue"] - adaptive["enrolled"] * (
            holdout["revenue"] / holdout["enrolled"]
        )
        assert inc["revenue"] == pytest.approx(expected)
        assert inc["roi"] == pytest.approx((expected - adaptive["cost"]) / adaptive["cost"])
        assert body["reliability"]["rejected"] == 1
        intake = len(users) + len(users[::3]) + len(feedback)
        assert body["reliability"]["received"] == intake
        assert body["reliability"]["error_rate"] == pytest.approx(1 / (intake + 1))

        # per variant: sent and converted messages as the activities say, each user's variant
        # their sticky draw in every arm, the probability of being best summing to one
        sends = (
            await store.query(
                "SELECT user_id, arm, command_id, JSONExtractString(details, 'variant') "
                "FROM {db}.activities FINAL WHERE type = 'command_emitted'"
            )
        ).result_rows
        converted = {
            row[0]
            for row in (
                await store.query(
                    "SELECT command_id FROM {db}.activities FINAL WHERE type = 'conversion'"
                )
            ).result_rows
        }
        expected_variants: dict[str, list[int]] = {}
        for user, arm, command_id, variant in sends:
            assert variant == "ab"[fixed_variant([1, 1], created["id"], "hello", user)], arm
            figures = expected_variants.setdefault(variant, [0, 0])
            figures[0] += 1
            figures[1] += command_id in converted
        per_variant = body["variants"]["hello"]["variants"]
        assert {v: [f["sent"], f["conversions"]] for v, f in per_variant.items()} == (
            expected_variants
        )
        assert sum(f["prob_best"] for f in per_variant.values()) == pytest.approx(1, abs=1e-3)
        for figures in per_variant.values():
            low, high = figures["conversion_rate_ci95"]
            assert low <= figures["conversion_rate"] <= high
        assert set(body["variants"]["hello"]["arms"]) == {"adaptive", "baseline"} & set(arms)

        # per step: each figure as counted from the activities of the step
        rows = (
            await store.query(
                "SELECT type, step_id, user_id, reason_code, event_type "
                "FROM {db}.activities FINAL WHERE arm != '' AND step_id != ''"
            )
        ).result_rows
        decisions = {
            "enrolled",
            "command_emitted",
            "message_suppressed",
            "step_skipped",
            "step_deferred",
            "step_branched",
            "enrollment_exited",
        }
        expected_step: dict[str, Any] = {
            "step_id": "hello",
            "in_config": True,
            "entered": len({u for t, step, u, _, _ in rows if step == "hello" and t in decisions}),
            "sent": 0,
            "delivered": 0,
            "opened": 0,
            "clicked": 0,
            "converted": 0,
            "suppressed": 0,
            "exited": 0,
            "suppressed_by_reason": {},
            "exited_by_reason": {},
        }
        for kind, step, _, reason, event_type in rows:
            assert step == "hello", kind
            if kind == "command_emitted":
                expected_step["sent"] += 1
            elif kind == "feedback" and event_type in ("delivered", "opened", "clicked"):
                expected_step[event_type] += 1
            elif kind == "conversion":
                expected_step["converted"] += 1
            elif kind in ("message_suppressed", "step_skipped"):
                expected_step["suppressed"] += 1
                by = expected_step["suppressed_by_reason"]
                by[reason] = by.get(reason, 0) + 1
            elif kind == "enrollment_exited":
                expected_step["exited"] += 1
                by = expected_step["exited_by_reason"]
                by[reason] = by.get(reason, 0) + 1
        assert body["steps"] == [expected_step]
        assert expected_step["entered"] == len(users)
        assert expected_step["sent"] == sum(a["sent"] for a in arms.values())
        assert expected_step["suppressed_by_reason"] == {"holdout": skipped}
        assert expected_step["converted"] > 0 and expected_step["exited"] > 0
        assert (expected_step["delivered"], expected_step["opened"], expected_step["clicked"]) == (
            len(commands),
            len(commands[::2]),
            len(commands[::4]),
        )

        # every activity delivered again (a sink redelivery): no report figure moves
        window = {"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        report_before = (await api.get(f"{API}/{created['id']}/report", params=window)).json()
        columns = ", ".join(ACTIVITY_COLUMNS)  # inserted_at is new, as in a real redelivery
        # No background merge may collapse the copies before the queries below read them.
        await store.execute("SYSTEM STOP MERGES {db}.activities", {})
        await store.execute(
            f"INSERT INTO {{db}}.activities ({columns}) SELECT {columns} FROM {{db}}.activities",  # noqa: S608 - fixed columns
            {},
        )
        doubled = (
            await store.query("SELECT count(), uniqExact(activity_id) FROM {db}.activities")
        ).result_rows[0]
        assert doubled[0] == 2 * doubled[1]
        again = (await api.get(f"{API}/{created['id']}/metrics", params=window)).json()
        assert (
            again["arms"],
            again["channels"],
            again["series"],
            again["variants"],
            again["steps"],
        ) == (body["arms"], body["channels"], body["series"], body["variants"], body["steps"])
        report_after = (await api.get(f"{API}/{created['id']}/report", params=window)).json()
        assert report_after["rows"] == report_before["rows"]
        await store.execute("SYSTEM START MERGES {db}.activities", {})

        backwards = await api.get(
            f"{API}/{created['id']}/metrics", params={"from": "2026-02-02", "to": "2026-02-01"}
        )
        assert backwards.status_code == 422
        bad_date = await api.get(f"{API}/{created['id']}/metrics", params={"from": "yesterday"})
        assert bad_date.status_code == 422
        assert (await api.get(f"{API}/nope/metrics")).status_code == 404


async def test_reports_export_as_json_csv_and_parquet_and_through_the_cli(
    test_settings: Settings, tmp_path: Any
) -> None:
    import asyncio
    import csv
    import io

    from sme.cli import main as sme

    s = test_settings
    await ensure_topics(s)
    sequence = {
        "workspace_id": "acme",
        "name": "Exported",
        "entry": {"event_types": ["signed_up"]},
        "steps": [{"id": "hello", "template": "hello", "channels": ["email", "push"]}],
        "experiment": {"holdout_pct": 0, "baseline_pct": 100},
    }
    async with running_gateway(s) as api, running_engine(s):
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        created = (await api.post(API, json=sequence)).json()
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [event(f"s-r{i}", f"r{i}", "signed_up") for i in range(5)],
        )

        async def sent() -> bool:
            rows = (
                await store.query(
                    "SELECT count() FROM {db}.activities FINAL WHERE type = 'command_emitted'"
                )
            ).result_rows
            return bool(rows[0][0] == 5)

        await eventually(sent, timeout=60, what="five sends stored")
        url = f"{API}/{created['id']}/report"
        as_json = (await api.get(url, params={"format": "json"})).json()
        assert sum(r["sent"] for r in as_json["rows"]) == 5
        assert {r["channel"] for r in as_json["rows"] if r["sent"]} == {"email"}
        assert as_json["arms"]["baseline"]["enrolled"] == 5
        as_csv = await api.get(url, params={"format": "csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert sum(int(r["sent"]) for r in rows) == 5
        assert "vs_baseline" in as_csv.headers["sme-lift"]
        as_parquet = await api.get(url, params={"format": "parquet"})
        assert as_parquet.content[:4] == b"PAR1"
        assert (await api.get(url, params={"format": "xml"})).status_code == 422

        out = tmp_path / "report.csv"
        code = await asyncio.to_thread(
            sme,
            [
                "report",
                "--config",
                created["id"],
                "--format",
                "csv",
                "--gateway",
                str(api.base_url).rstrip("/"),
                "--out",
                str(out),
            ],
        )
        assert code == 0
        assert out.read_text() == as_csv.text
