"""Every automation rule is judged over its own window: a burst of unsubscribes in the last
hour pauses a sequence whose hourly rule it crosses, even when another rule looks at a day
whose volume dilutes the burst.

The monitor runs against in-memory stand-ins for ClickHouse (answering the figures queries
from a list of activities, by the `since` each query asks for), the configuration service and
the producer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sme.contracts.sequences import SequenceConfig
from sme.core import automation
from sme.core.automation import Figures
from sme.gateway.automation import EVENTS_SQL, FIGURES_SQL, AutomationMonitor
from sme.settings import Settings

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Rows:
    result_rows: list[tuple[Any, ...]]


@dataclass
class FakeStore:
    """(occurred_at, type, event_type) rows of one sequence; answers the monitor's queries."""

    rows: list[tuple[datetime, str, str]]
    sinces: list[datetime] = field(default_factory=list)

    async def query(self, sql: str, params: dict[str, Any]) -> Rows:
        since: datetime = params["since"]
        self.sinces.append(since)
        recent = [r for r in self.rows if r[0] >= since]
        if sql == EVENTS_SQL:
            return Rows([(0, 0)])
        assert sql == FIGURES_SQL
        today = [r for r in self.rows if r[0] >= params["today"]]
        return Rows(
            [
                (
                    sum(1 for r in recent if r[1] == "command_emitted"),
                    sum(1 for r in recent if r[1] == "feedback" and r[2] == "unsubscribed"),
                    sum(1 for r in recent if r[1] == "feedback" and r[2] == "bounced"),
                    0.0,
                    {"email": sum(1 for r in today if r[1] == "command_emitted")},
                )
            ]
        )


@dataclass
class FakeConfigs:
    patches: list[dict[str, Any]] = field(default_factory=list)

    async def patch(self, config_id: str, patch: dict[str, Any], version: int, actor: str) -> None:
        self.patches.append(patch)


@dataclass
class FakeProducer:
    sent: list[bytes] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append(value)


class FakeCounter:
    def labels(self, *_: str) -> FakeCounter:
        return self

    def inc(self) -> None:
        pass


def noisy_sequence() -> SequenceConfig:
    return SequenceConfig.model_validate(
        {
            "id": "c",
            "workspace_id": "w",
            "name": "n",
            "entry": {"event_types": ["signed_up"]},
            "steps": [{"id": "s", "template": "t", "channels": ["email"]}],
            "automation_rules": [
                {
                    "id": "unsub-hourly",
                    "metric": "unsubscribe_rate",
                    "threshold": 0.05,
                    "min_volume": 100,
                    "window": "PT1H",
                },
                {
                    "id": "bounce-daily",
                    "metric": "bounce_rate",
                    "threshold": 0.5,
                    "min_volume": 100,
                    "window": "P1D",
                },
            ],
        }
    )


def history() -> list[tuple[datetime, str, str]]:
    """1000 quiet sends in the morning, then 100 sends and 10 unsubscribes in the last hour."""
    morning = [(NOW - timedelta(hours=6), "command_emitted", "")] * 1000
    burst = [(NOW - timedelta(minutes=30), "command_emitted", "")] * 100
    unsubscribes = [(NOW - timedelta(minutes=10), "feedback", "unsubscribed")] * 10
    return morning + burst + unsubscribes


async def test_a_rule_is_judged_over_its_own_window_not_the_longest_rules() -> None:
    store = FakeStore(history())
    configs = FakeConfigs()
    monitor = AutomationMonitor(
        Settings(),
        store,  # type: ignore[arg-type]
        configs,  # type: ignore[arg-type]
        FakeProducer(),  # type: ignore[arg-type]
        FakeCounter(),  # type: ignore[arg-type]
    )

    await monitor.check(noisy_sequence(), NOW)

    assert len(configs.patches) == 1, "the hourly burst did not pause the sequence"
    reason = configs.patches[0]["status_reason"]
    assert (reason["rule"], reason["value"], reason["volume"]) == ("unsub-hourly", 0.1, 100)
    assert sorted(set(store.sinces)) == [NOW - timedelta(days=1), NOW - timedelta(hours=1)]


def test_the_core_hands_each_rule_the_figures_of_its_window() -> None:
    config = noisy_sequence()
    hourly = Figures(sent=100, unsubscribed=10)
    daily = Figures(sent=1100, unsubscribed=10, bounced=0)

    verdicts = automation.evaluate(config, {timedelta(hours=1): hourly, timedelta(days=1): daily})

    assert [(v.rule.id, v.action) for v in verdicts] == [("unsub-hourly", "pause")]
    assert automation.windows(config) == [timedelta(hours=1), timedelta(days=1)]
