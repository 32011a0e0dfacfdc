"""The oracle: a policy that knows the world's true rates and, for each message the core
decides to send, picks the channel, variant and delivery hour with the highest expected value
for that user. It is the honest ceiling of a world: what the adaptive policy could reach if it
knew everything the simulator knows.

The oracle is myopic (one message at a time, given the user's recent deliveries): it does not
plan a whole sequence, skip a message, or trade a send now for one later. It keeps the core's
timing, guardrails and arm assignment, and respects consent and quiet hours, so it differs
from the adaptive arm only in the choices the adaptive policy makes.
"""

from __future__ import annotations

from typing import Literal

from sme.contracts.channels import Channel
from sme.simulator.world import NO_EFFECT, Economics, Fatigue, HiddenUser, Regime

Objective = Literal["conversions", "revenue", "net_value"]
OBJECTIVES: tuple[Objective, ...] = ("conversions", "revenue", "net_value")


def conversion_probability(
    user: HiddenUser,
    regime: Regime,
    channel: Channel,
    variant: str,
    *,
    active: bool,
    recent: int,
    fatigue: Fatigue,
) -> tuple[float, float]:
    """(P(the message converts), P(it unsubscribes)) from the true rates, following the
    world's own answer to a message step by step (see `run._Sim._respond`)."""
    model = regime.channels[channel]
    truth = regime.segments[user.segment]
    effect = truth.variants.get(variant, NO_EFFECT)
    p_unsub = min(1.0, truth.unsubscribe[channel] * (1 + fatigue.unsubscribe_growth * recent))
    p_open = (
        user.open_p[channel]
        * truth.open_factor[channel]
        * effect.open
        * (1 - fatigue.open_decay) ** recent
    )
    if not active:
        p_open *= 1 - model.missed_outside_active
    p_open = min(1.0, p_open)
    p_click = min(
        1.0,
        user.click_p[channel]
        * user.appeal.get(variant, 1.0)
        * (truth.click_factor[channel] * effect.click),
    )
    per_click = min(1.0, truth.conversion_per_click * effect.conversion)
    per_open = min(1.0, truth.conversion_per_open * effect.conversion)
    converts = p_open * (p_click * per_click + (1 - p_click) * per_open)
    return model.delivery * (1 - p_unsub) * converts, model.delivery * p_unsub


def message_value(
    user: HiddenUser,
    regime: Regime,
    channel: Channel,
    variant: str,
    *,
    active: bool,
    recent: int,
    fatigue: Fatigue,
    economics: Economics,
    objective: Objective,
) -> float:
    """Expected value of one message under the objective (the same arithmetic as the report's
    net value: conversion value - message cost - unsubscribe cost)."""
    p_conv, p_unsub = conversion_probability(
        user, regime, channel, variant, active=active, recent=recent, fatigue=fatigue
    )
    if objective == "conversions":
        return p_conv
    truth = regime.segments[user.segment]
    value = p_conv * truth.conversion_value
    if objective == "revenue":
        return value
    return value - truth.cost[channel] - p_unsub * economics.unsubscribe_cost
