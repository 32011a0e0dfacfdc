"""What a simulated user does with one message, as the simulator's world decides it
(`sme.simulator.response.respond`: the same rules and order of draws), on a compressed clock:
only the delays are divided by `scale` (virtual seconds per real second) so a demo shows
answers within seconds. Pure: the randomness comes from the `rng` passed in, time from the
caller."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sme.contracts.channels import Channel
from sme.simulator.response import respond
from sme.simulator.world import Fatigue, HiddenUser, Regime


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
    in an active hour when it arrives (for the few seconds of the answers: the demo's hours
    are wall-clock hours, and an inactive user reads later by a random delay, not at the next
    active hour). A channel the world has no model of is delivered and ignored (the world's
    users never read it)."""
    if channel not in regime.channels:
        return [Reaction("delivered", 1.0 / scale)]
    responses = respond(
        user,
        regime,
        fatigue,
        channel,
        variant,
        0,
        rng,
        recent=lambda _: recent,
        active=lambda _: active,
        next_active=lambda at_ms: at_ms,
    )
    return [Reaction(kind, at_ms / 1000.0 / scale) for kind, at_ms in responses]


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
