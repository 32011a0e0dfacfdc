"""One set of hand-made activities in a real embedded store: the rollup-based metrics, the
report and the automation monitor count the same sends, bounces, unsubscribes, cost and event
error rate, and each equals the count worked out by hand (written here, not computed by the
code under test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, Counter

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.sequences import SequenceConfig
from sme.core.roi import Economics
from sme.gateway.automation import AutomationMonitor
from sme.settings import Settings
from sme.storage.activities import ACTIVITY_COLUMNS, activity_row
from sme.storage.clickhouse import ClickHouseStore
from sme.storage.metrics import report_json, report_params, sequence_metrics
from sme.storage.rollup import Rollup

pytestmark = pytest.mark.integration
WS, CONFIG = "acme", "agree"

# By hand, for the sequence `agree` (both arms, the whole day):
EXPECTED_ARMS: dict[str, dict[str, Any]] = {
    "baseline": {
        "enrolled": 3,  # a, b, c (a's enrollment row delivered twice counts once)
        "sent": 4,  # a email, b email, c sms, a sms (one re-delivered row counts once)
        "delivered": 3,
        "opened": 2,
        "clicked": 1,
        "conversions": 2,
        "revenue": 15.5,  # 10 + 5.5
        "unsubscribed": 1,
        "bounced": 1,
        "suppressed": 2,  # one message_suppressed, one step_skipped
        "cost": 0.12,  # 0.01 + 0.01 + 0.05 + 0.05
    },
    "adaptive": {
        "enrolled": 1,
        "sent": 1,
        "delivered": 0,
        "opened": 0,
        "clicked": 0,
        "conversions": 0,
        "revenue": 0.0,
        "unsubscribed": 0,
        "bounced": 1,
        "suppressed": 0,
        "cost": 0.01,
    },
}
EXPECTED_SENT, EXPECTED_UNSUBSCRIBED, EXPECTED_BOUNCED = 5, 1, 2
EXPECTED_COST = 0.13
EXPECTED_SENT_PER_CHANNEL = {"email": 3, "sms": 2}
EXPECTED_EVENTS, EXPECTED_REJECTED = 15, 3  # 10 received + 2 duplicates + 3 dead-lettered
EXPECTED_ERROR_RATE = 0.2  # 3 of the 15 events that arrived
# Net value (conversion_value 10, unsubscribe_cost 2): value of conversions - cost - 2 x unsub.
EXPECTED_NET_VALUED = {  # the recorded revenue (the goal has a value_property)
    "baseline": (13.38, 4.46),  # 15.5 - 0.12 - 2 x 1; / 3 enrolled
    "adaptive": (-0.01, -0.01),  # 0 - 0.01 - 0; / 1 enrolled
}
EXPECTED_NET_PRICED = {  # conversions x conversion_value (no value_property)
    "baseline": (17.88, 5.96),  # 2 x 10 - 0.12 - 2 x 1; / 3 enrolled
    "adaptive": (-0.01, -0.01),
}


@pytest.fixture
async def store(test_settings: Settings) -> AsyncIterator[ClickHouseStore]:
    opened = await ClickHouseStore(
        test_settings.clickhouse_dsn.get_secret_value(), test_settings.clickhouse_database
    ).open_async()
    try:
        yield opened
    finally:
        await opened.aclose()


def _today_before(now: datetime) -> datetime:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + (now - midnight) / 2  # today (UTC) and in the past


def _activities(at: datetime) -> list[Activity]:
    def a(kind: ActivityType, **fields: Any) -> Activity:
        values: dict[str, Any] = {"workspace_id": WS, "config_id": CONFIG, **fields}
        return Activity(activity_id=str(uuid.uuid4()), type=kind, occurred_at=at, **values)

    def send(user: str, channel: str, cost: float, arm: str = "baseline") -> Activity:
        return a(
            ActivityType.COMMAND_EMITTED,
            user_id=user,
            arm=arm,
            step_id="s1",
            channel=channel,
            cost=cost,
        )

    def feedback(user: str, event_type: str, arm: str = "baseline") -> Activity:
        return a(
            ActivityType.FEEDBACK,
            user_id=user,
            arm=arm,
            step_id="s1",
            channel="email",
            event_type=event_type,
        )

    enrolled_a = a(ActivityType.ENROLLED, user_id="a", arm="baseline")
    sent_b = send("b", "email", 0.01)
    rows = [
        enrolled_a,
        enrolled_a,  # re-delivered: same activity id
        a(ActivityType.ENROLLED, user_id="b", arm="baseline"),
        a(ActivityType.ENROLLED, user_id="c", arm="baseline"),
        send("a", "email", 0.01),
        sent_b,
        sent_b,
        send("c", "sms", 0.05),
        send("a", "sms", 0.05),
        feedback("a", "delivered"),
        feedback("b", "delivered"),
        feedback("c", "delivered"),
        feedback("a", "opened"),
        feedback("b", "opened"),
        feedback("a", "clicked"),
        feedback("b", "unsubscribed"),
        feedback("c", "bounced"),
        a(ActivityType.CONVERSION, user_id="a", arm="baseline", value=10.0),
        a(ActivityType.CONVERSION, user_id="b", arm="baseline", value=5.5),
        a(ActivityType.MESSAGE_SUPPRESSED, user_id="c", arm="baseline", reason_code="quiet_hours"),
        a(ActivityType.STEP_SKIPPED, user_id="b", arm="baseline", reason_code="no_consent"),
        a(ActivityType.ENROLLED, user_id="d", arm="adaptive"),
        send("d", "email", 0.01, arm="adaptive"),
        feedback("d", "bounced", arm="adaptive"),
        # Not the sequence's: unattributed feedback, another sequence's send, a rule warning.
        a(ActivityType.FEEDBACK, user_id="e", config_id="", event_type="unsubscribed"),
        a(ActivityType.COMMAND_EMITTED, user_id="e", config_id="other", arm="baseline"),
        a(ActivityType.AUTOMATION_WARNING),
    ]
    for n in range(10):
        rows.append(a(ActivityType.EVENT_RECEIVED, config_id="", user_id=f"u{n}"))
    for n in range(2):
        rows.append(a(ActivityType.EVENT_DUPLICATE, config_id="", user_id=f"u{n}"))
    for _ in range(3):
        rows.append(a(ActivityType.EVENT_REJECTED, config_id="", reason_code="invalid_json"))
    rows.append(
        a(
            ActivityType.EVENT_REJECTED,
            workspace_id="other",
            config_id="",
            reason_code="invalid_json",
        )
    )
    return rows


def _config(value_property: str | None = "amount") -> SequenceConfig:
    return SequenceConfig.model_validate(
        {
            "id": CONFIG,
            "workspace_id": WS,
            "name": "Agree",
            "entry": {"event_types": ["signed_up"]},
            "steps": [{"id": "s1", "template": "t", "channels": ["email", "sms"]}],
            "exit": {"goal": {"event_type": "purchased", "value_property": value_property}},
            "adaptive": {"conversion_value": 10.0, "unsubscribe_cost": 2.0},
        }
    )


def _per_arm(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        arm = totals.setdefault(row["arm"], dict.fromkeys(EXPECTED_ARMS["baseline"], 0))
        for key in arm:
            arm[key] += row[key]
    return totals


def _rounded(arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        arm: {key: round(float(figures[key]), 6) for key in EXPECTED_ARMS["baseline"]}
        for arm, figures in arms.items()
    }


async def test_the_rollup_metrics_the_report_and_the_automation_monitor_count_alike(
    test_settings: Settings, store: ClickHouseStore
) -> None:
    now = datetime.now(UTC)
    at = _today_before(now)
    await store.insert("activities", [activity_row(x) for x in _activities(at)], ACTIVITY_COLUMNS)
    await Rollup(store).refresh()
    today = at.date()
    tomorrow = today + timedelta(days=1)

    metrics = await sequence_metrics(
        store, WS, CONFIG, today, tomorrow, "day", Economics.of(_config())
    )
    priced = await sequence_metrics(
        store, WS, CONFIG, today, tomorrow, "day", Economics.of(_config(value_property=None))
    )
    report = await report_json(store, report_params(WS, CONFIG, today, tomorrow))
    monitor = AutomationMonitor(
        test_settings,
        store,
        cast(Any, None),  # the configuration service and producer act; measuring needs neither
        cast(Any, None),
        Counter("warnings", "test", ["metric"], registry=CollectorRegistry()),
    )
    figures = await monitor._figures(_config(), now - timedelta(days=1), now)

    expected = _rounded(EXPECTED_ARMS)
    assert _rounded(metrics["arms"]) == expected
    assert _rounded(_per_arm(report)) == expected
    for got, want in ((metrics, EXPECTED_NET_VALUED), (priced, EXPECTED_NET_PRICED)):
        assert {
            arm: (round(f["net_value"], 6), round(f["net_value_per_enrolled"], 6))
            for arm, f in got["arms"].items()
        } == want
    assert {row["day"] for row in report} == {today.isoformat()}

    totals = {
        key: sum(arm[key] for arm in metrics["arms"].values()) for key in expected["baseline"]
    }
    assert (figures.sent, figures.unsubscribed, figures.bounced) == (
        totals["sent"],
        totals["unsubscribed"],
        totals["bounced"],
    )
    assert (figures.sent, figures.unsubscribed, figures.bounced) == (
        EXPECTED_SENT,
        EXPECTED_UNSUBSCRIBED,
        EXPECTED_BOUNCED,
    )
    assert round(figures.cost_today, 6) == round(totals["cost"], 6) == EXPECTED_COST
    assert figures.sent_today == EXPECTED_SENT_PER_CHANNEL
    assert {
        name: entry["sent"] for name, entry in metrics["channels"].items() if entry["sent"]
    } == EXPECTED_SENT_PER_CHANNEL

    reliability = metrics["reliability"]
    assert (figures.events, figures.rejected) == (EXPECTED_EVENTS, EXPECTED_REJECTED)
    assert reliability["rejected"] == EXPECTED_REJECTED
    assert reliability["error_rate"] == pytest.approx(EXPECTED_ERROR_RATE)
    assert figures.rejected / figures.events == pytest.approx(reliability["error_rate"])
    assert metrics["suppressed_by_reason"] == {
        "adaptive": {},
        "baseline": {"quiet_hours": 1, "no_consent": 1},
    }
