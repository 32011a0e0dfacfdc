"""What a simulated user does with one message: the world's hidden truth (delivery, fatigue,
open and click propensities, variant effects, active hours) turned into timed feedback. The
simulator and `sme demo` both answer with it, so the demo's users behave by the simulator's
rules, in the same order of random draws. Pure: randomness from `rng`, time from the caller."""

from __future__ import annotations

import random
from collections.abc import Callable

from sme.contracts.channels import Channel
from sme.simulator.world import CONVERSION_EVENT, NO_EFFECT, Fatigue, HiddenUser, Regime

MINUTE = 60_000
Response = tuple[str, int]
"""A feedback event type and when it happens (ms)."""


def respond(
    user: HiddenUser,
    regime: Regime,
    fatigue: Fatigue,
    channel: Channel,
    variant: str,
    at_ms: int,
    rng: random.Random,
    *,
    recent: Callable[[int], int],
    active: Callable[[int], bool],
    next_active: Callable[[int], int],
) -> list[Response]:
    """The feedback to a message arriving at `at_ms`, in time order: a bounce ends it, an
    unsubscribe ends it, an open may be followed by a click (or a view-through conversion),
    a click by a conversion. `recent(delivered_ms)`: the user's deliveries within the fatigue
    window before this one; `active` / `next_active`: the user's active hours."""
    model = regime.channels[channel]
    truth = regime.segments[user.segment]
    effect = truth.variants.get(variant, NO_EFFECT)
    if rng.random() >= model.delivery:
        return [("bounced", at_ms + MINUTE)]
    delivered = at_ms + rng.randrange(1_000, 30_000)
    out: list[Response] = [("delivered", delivered)]
    tired = recent(delivered)
    is_active = active(delivered)
    unsubscribe = truth.unsubscribe[channel] * (1 + fatigue.unsubscribe_growth * tired)
    if unsubscribe > 0 and rng.random() < unsubscribe:
        when = delivered if is_active else next_active(delivered)
        return [*out, ("unsubscribed", when + rng.randrange(MINUTE, 30 * MINUTE))]
    p_open = (
        user.open_p[channel]
        * truth.open_factor[channel]
        * effect.open
        * (1 - fatigue.open_decay) ** tired
    )
    if p_open <= 0:
        return out
    if not is_active:
        p_open *= 1 - model.missed_outside_active
    if rng.random() >= p_open:
        return out
    opened = delivered + int(rng.expovariate(1 / (model.open_delay_minutes * MINUTE)))
    if not active(opened):
        opened = next_active(opened) + rng.randrange(45 * MINUTE)
    out.append(("opened", opened))
    p_click = min(
        1.0,
        user.click_p[channel]
        * user.appeal.get(variant, 1.0)
        * (truth.click_factor[channel] * effect.click),
    )
    per_open = truth.conversion_per_open * effect.conversion
    if rng.random() >= p_click:
        if per_open > 0 and rng.random() < per_open:
            converted = opened + MINUTE + int(rng.expovariate(1 / (60 * MINUTE)))
            out.append((CONVERSION_EVENT, converted))
        return out
    clicked = opened + 1_000 + int(rng.expovariate(1 / (model.click_delay_minutes * MINUTE)))
    out.append(("clicked", clicked))
    if rng.random() < truth.conversion_per_click * effect.conversion:
        converted = clicked + 1_000 + int(rng.expovariate(1 / (20 * MINUTE)))
        out.append((CONVERSION_EVENT, converted))
    return out
