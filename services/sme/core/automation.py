"""Automation rules, decided purely: given a sequence and the figures measured for it, which
rules warn and which pause it. The gateway's monitor measures and acts; this only decides.
Each rule is judged over its own window: the monitor measures once per distinct window
(`windows`) and `evaluate` hands every rule the figures of its window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sme.contracts.sequences import AutomationRule, SequenceConfig


@dataclass(frozen=True, slots=True)
class Figures:
    """What was measured for one sequence over one window (rates), and today's spend."""

    sent: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    events: int = 0  # events received in the workspace
    rejected: int = 0  # events dead-lettered in the workspace
    cost_today: float = 0.0
    sent_today: dict[str, int] | None = None  # per channel


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: AutomationRule
    action: Literal["warn", "pause"]
    value: float
    volume: int


def measure(
    rule: AutomationRule, config: SequenceConfig, figures: Figures
) -> tuple[float, int] | None:
    """(value, volume) of a rule's metric, or None when it cannot be judged yet."""
    if rule.metric == "unsubscribe_rate":
        return _rate(figures.unsubscribed, figures.sent, rule)
    if rule.metric == "bounce_rate":
        return _rate(figures.bounced, figures.sent, rule)
    if rule.metric == "error_rate":
        return _rate(figures.rejected, figures.events, rule)
    budgets = config.guardrails
    if rule.metric == "cost_budget_spent":
        if not budgets.daily_cost_budget:
            return None
        return figures.cost_today / budgets.daily_cost_budget, figures.sent
    shares = [
        (figures.sent_today or {}).get(channel.value, 0) / limit
        for channel, limit in budgets.daily_send_budget.items()
        if limit > 0
    ]
    return (max(shares), figures.sent) if shares else None


def windows(config: SequenceConfig) -> list[timedelta]:
    """The distinct windows the sequence's rules are judged over, shortest first."""
    return sorted({rule.window for rule in config.automation_rules})


def evaluate(config: SequenceConfig, figures: Mapping[timedelta, Figures]) -> list[Verdict]:
    """Every rule judged on the figures of its own window (`figures[rule.window]`); a rule
    whose window was not measured is not judged."""
    verdicts = []
    for rule in config.automation_rules:
        measured_over = figures.get(rule.window)
        if measured_over is None:
            continue
        measured = measure(rule, config, measured_over)
        if measured is None:
            continue
        value, volume = measured
        if value >= rule.threshold - 1e-12:
            verdicts.append(Verdict(rule, "pause", value, volume))
        elif rule.warn_at is not None and value >= rule.threshold * rule.warn_at:
            verdicts.append(Verdict(rule, "warn", value, volume))
    return verdicts


def _rate(numerator: int, denominator: int, rule: AutomationRule) -> tuple[float, int] | None:
    if denominator < rule.min_volume:
        return None
    return numerator / denominator, denominator
