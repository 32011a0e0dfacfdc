"""Automation rules decide purely from measured figures: pause at the threshold, warn at the
configured share before it, and judge nothing on too little volume."""

from __future__ import annotations

from typing import Any

from sme.contracts.sequences import SequenceConfig
from sme.core import automation
from sme.core.automation import Figures, Verdict


def evaluate(config: SequenceConfig, figures: Figures) -> list[Verdict]:
    """The rules judged with the same figures measured over every window."""
    return automation.evaluate(config, dict.fromkeys(automation.windows(config), figures))


def config(rule: dict[str, Any], **guardrails: Any) -> SequenceConfig:
    return SequenceConfig.model_validate(
        {
            "id": "c",
            "workspace_id": "w",
            "name": "n",
            "entry": {"event_types": ["signed_up"]},
            "steps": [{"id": "s", "template": "t", "channels": ["email", "sms"]}],
            "guardrails": guardrails,
            "automation_rules": [{"id": "r", **rule}],
        }
    )


UNSUB = {"metric": "unsubscribe_rate", "threshold": 0.05, "min_volume": 100, "warn_at": 0.8}


def test_an_unsubscribe_rate_at_the_threshold_pauses() -> None:
    [verdict] = evaluate(config(UNSUB), Figures(sent=200, unsubscribed=10))
    assert (verdict.action, verdict.value, verdict.volume) == ("pause", 0.05, 200)


def test_a_rate_past_the_warning_share_warns_and_below_it_nothing_happens() -> None:
    [verdict] = evaluate(config(UNSUB), Figures(sent=1000, unsubscribed=41))
    assert verdict.action == "warn"
    assert evaluate(config(UNSUB), Figures(sent=1000, unsubscribed=39)) == []


def test_too_little_volume_is_not_judged() -> None:
    assert evaluate(config(UNSUB), Figures(sent=99, unsubscribed=99)) == []


def test_bounce_and_error_rates_use_their_own_counts() -> None:
    bounce = {**UNSUB, "metric": "bounce_rate"}
    assert (
        evaluate(config(bounce), Figures(sent=100, bounced=5, unsubscribed=0))[0].action == "pause"
    )
    errors = {**UNSUB, "metric": "error_rate"}
    assert evaluate(config(errors), Figures(sent=0, events=100, rejected=5))[0].action == "pause"


def test_budgets_pause_when_fully_spent_and_warn_before() -> None:
    cost = {"metric": "cost_budget_spent", "threshold": 1.0, "warn_at": 0.9}
    rules = config(cost, daily_cost_budget=10.0)
    assert evaluate(rules, Figures(cost_today=10.0))[0].action == "pause"
    assert evaluate(rules, Figures(cost_today=9.2))[0].action == "warn"
    sends = {"metric": "send_budget_spent", "threshold": 1.0, "warn_at": 0.5}
    rules = config(sends, daily_send_budget={"sms": 100, "email": 1000})
    assert evaluate(rules, Figures(sent_today={"sms": 100, "email": 3}))[0].action == "pause"
    assert evaluate(rules, Figures(sent_today={"sms": 60}))[0].action == "warn"


def test_a_budget_rule_without_a_budget_never_fires() -> None:
    rule = {"metric": "cost_budget_spent", "threshold": 1.0}
    assert evaluate(config(rule), Figures(cost_today=1e9)) == []
