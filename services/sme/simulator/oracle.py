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

from collections.abc import Sequence
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


Knowledge = Literal["user", "context"]
"""What an oracle knows: each user's hidden truth (`user`), or only the true mean rates of the
context groups the policy itself sees (`context`: the users sharing the values of the
sequence's `context_attributes`)."""


class ContextTable:
    """The context oracle's knowledge: the mean expected value of a message over the users of
    a context, by channel and variant, delivered inside or outside their active hours, and the
    share of the context's users active at each local hour. It ranks a user's options as the
    average user of the user's context at that local hour, with no fatigue: the ceiling of a
    policy that learned its context groups perfectly and knows nothing of the individual."""

    def __init__(
        self,
        users: Sequence[HiddenUser],
        attributes: Sequence[str],
        fatigue: Fatigue,
        economics: Economics,
        objective: Objective,
    ) -> None:
        self.attributes = tuple(attributes)
        self.fatigue, self.economics, self.objective = fatigue, economics, objective
        self.members: dict[tuple[str, ...], list[HiddenUser]] = {}
        for user in users:
            self.members.setdefault(self.context(user), []).append(user)
        self.active_share = {
            ctx: [sum(h in u.active for u in group) / len(group) for h in range(24)]
            for ctx, group in self.members.items()
        }
        self._means: dict[tuple[object, ...], tuple[float, float]] = {}

    def context(self, user: HiddenUser) -> tuple[str, ...]:
        return tuple(str(user.attributes.get(name)) for name in self.attributes)

    def value(
        self,
        user: HiddenUser,
        regime: Regime,
        regime_index: int,
        channel: Channel,
        variant: str,
        local_hour: int,
    ) -> float:
        ctx = self.context(user)
        key = (ctx, regime_index, channel, variant)
        means = self._means.get(key)
        if means is None:
            means = self._means[key] = (
                self._mean(ctx, regime, channel, variant, active=True),
                self._mean(ctx, regime, channel, variant, active=False),
            )
        share = self.active_share[ctx][local_hour]
        return share * means[0] + (1 - share) * means[1]

    def _mean(
        self, ctx: tuple[str, ...], regime: Regime, channel: Channel, variant: str, *, active: bool
    ) -> float:
        group = self.members[ctx]
        total = sum(
            message_value(
                u,
                regime,
                channel,
                variant,
                active=active,
                recent=0,
                fatigue=self.fatigue,
                economics=self.economics,
                objective=self.objective,
            )
            for u in group
        )
        return total / len(group)
