"""What a simulated user does with one message, as the simulator's world decides it, on a
compressed clock: the rates are the world's (channel delivery, the user's drawn open and click
propensities, variant effects, fatigue, unsubscribes, conversion per click or per open); only
the delays are divided by `scale` (virtual seconds per real second) so a demo shows answers
within seconds. Pure: the randomness comes from the `rng` passed in, time from the caller.

The order of draws follows `sme.simulator.run._Sim._respond`, and so do the rules: a bounce
ends it, an unsubscribe ends it, an open may be followed by a click (or a view-through
conversion), a click by a conversion."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sme.contracts.channels import Channel
from sme.simulator.world import CONVERSION_EVENT, NO_EFFECT, Fatigue, HiddenUser, Regime

MINUTE = 60.0
CLICK_TO_CONVERSION_MINUTES = 20.0
"""Mean delay from a click to its conversion (the simulator's)."""
OPEN_TO_CONVERSION_MINUTES = 60.0
"""Mean delay from an open to a view-through conversion (the simulator's)."""


@dataclass(frozen=True, slots=True)
class Reaction:
    """One feedback event to publish `after` real seconds from the message's arrival."""

    kind: str
    after: float


def plan_reactions(
    user: HiddenUser,
    regime: Regime,
    fatigue: Fatigue,
    channel: Channel,
    variant: str,
    *,
    recent: int,
    active: bool,
    rng: random.Random,
    scale: float,
) -> list[Reaction]:
    """The feedback the world gives to a message on `channel` with `variant`, in time order.
    `recent`: the user's deliveries within the fatigue window; `active`: whether the user is
    in an active hour when it arrives. A channel the world has no model of is delivered and
    ignored (the world's users never read it)."""
    model = regime.channels.get(channel)
    if model is None:
        return [Reaction("delivered", 1.0 / scale)]
    truth = regime.segments[user.segment]
    effect = truth.variants.get(variant, NO_EFFECT)
    if rng.random() >= model.delivery:
        return [Reaction("bounced", MINUTE / scale)]
    delivered = rng.uniform(1.0, 30.0)  # virtual seconds, as the simulator's
    out = [Reaction("delivered", delivered / scale)]
    unsubscribe = truth.unsubscribe[channel] * (1 + fatigue.unsubscribe_growth * recent)
    if unsubscribe > 0 and rng.random() < unsubscribe:
        when = delivered + rng.uniform(MINUTE, 30 * MINUTE)
        return [*out, Reaction("unsubscribed", when / scale)]
    p_open = (
        user.open_p.get(channel, 0.0)
        * truth.open_factor[channel]
        * effect.open
        * (1 - fatigue.open_decay) ** recent
    )
    if not active:
        p_open *= 1 - model.missed_outside_active
    if p_open <= 0 or rng.random() >= p_open:
        return out
    opened = delivered + rng.expovariate(1 / (model.open_delay_minutes * MINUTE))
    out.append(Reaction("opened", opened / scale))
    p_click = min(
        1.0,
        user.click_p.get(channel, 0.0)
        * user.appeal.get(variant, 1.0)
        * truth.click_factor[channel]
        * effect.click,
    )
    if rng.random() >= p_click:
        per_open = truth.conversion_per_open * effect.conversion
        if per_open > 0 and rng.random() < per_open:
            mean = OPEN_TO_CONVERSION_MINUTES * MINUTE
            converted = opened + MINUTE + rng.expovariate(1 / mean)
            out.append(Reaction(CONVERSION_EVENT, converted / scale))
        return out
    clicked = opened + 1.0 + rng.expovariate(1 / (model.click_delay_minutes * MINUTE))
    out.append(Reaction("clicked", clicked / scale))
    if rng.random() < truth.conversion_per_click * effect.conversion:
        mean = CLICK_TO_CONVERSION_MINUTES * MINUTE
        converted = clicked + 1.0 + rng.expovariate(1 / mean)
        out.append(Reaction(CONVERSION_EVENT, converted / scale))
    return out


def organic_conversion_after(user: HiddenUser, rng: random.Random, scale: float) -> float | None:
    """Real seconds from signup until the user converts without any message (the world's
    hazard: P(within the scenario's horizon) = the segment's base_conversion), or None for
    a user with no organic conversion at all."""
    if user.base_hazard <= 0:
        return None
    if math.isinf(user.base_hazard):
        return 0.0
    virtual_ms = rng.expovariate(user.base_hazard)
    return virtual_ms / 1000.0 / scale
