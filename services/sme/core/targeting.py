"""Which guardrails a send meets: frequency caps and quiet hours can target a channel and a
message category, and transactional sends stand outside caps, quiet hours and the minimum gap.

A cap with a category counts only that category's sends and holds back only that category's
steps; a cap without one counts and holds back every category, as caps did before categories.
No cap counts or holds back a transactional send (the caller leaves transactional touches out
of `Level.touches`). Quiet hours: the most specific override of a level that matches the send
(channel and category, then channel alone, then category alone) replaces the level's
`quiet_hours`; an override of null means no quiet hours for those sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sme.contracts.channels import Channel
from sme.contracts.sequences import (
    DEFAULT_CATEGORY,
    FrequencyCap,
    Guardrails,
    QuietHours,
    QuietHoursOverride,
    Step,
)
from sme.core.user_state import Touch


@dataclass(frozen=True, slots=True)
class SendKind:
    """What a message is, as far as guardrails care."""

    category: str = DEFAULT_CATEGORY
    transactional: bool = False


MARKETING = SendKind()


def kind_of(step: Step) -> SendKind:
    if step.category == DEFAULT_CATEGORY and not step.transactional:
        return MARKETING
    return SendKind(step.category, step.transactional)


def cap_limits(cap: FrequencyCap, kind: SendKind) -> bool:
    """Whether `cap` may hold back a send of this kind (on its channel, if it names one)."""
    return not kind.transactional and (cap.category is None or cap.category == kind.category)


def cap_counts(cap: FrequencyCap, touch: Touch, channel: Channel | None) -> bool:
    """Whether `cap`, asked about `channel` (None: every channel), counts this past send."""
    return (
        not touch.transactional
        and (channel is None or touch.channel == channel)
        and (cap.category is None or touch.category == cap.category)
    )


def quiet_hours_for(rules: Guardrails, channel: Channel, kind: SendKind) -> QuietHours | None:
    """The quiet hours one level sets for a send on `channel` (None: none at all)."""
    if kind.transactional:
        return None
    overrides = rules.quiet_hours_overrides
    if not overrides:
        return rules.quiet_hours
    best: QuietHoursOverride | None = None
    best_rank = 0
    for override in overrides:
        if override.channel not in (None, channel) or override.category not in (
            None,
            kind.category,
        ):
            continue
        rank = (2 if override.channel is not None else 0) + (override.category is not None)
        if rank > best_rank:
            best, best_rank = override, rank
    return rules.quiet_hours if best is None else best.quiet_hours


def quiet_windows(
    levels: Sequence[Guardrails], channels: Sequence[Channel], kind: SendKind
) -> list[QuietHours]:
    """Every quiet-hours window of any level on any of `channels`, once each: a send time
    outside them all (send-time optimisation) keeps every channel open."""
    windows = (quiet_hours_for(rules, channel, kind) for rules in levels for channel in channels)
    return list(dict.fromkeys(q for q in windows if q is not None))
