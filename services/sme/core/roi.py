"""What the messaging earned over doing nothing: incremental conversions and revenue of a
treated arm over the holdout, and ROI (incremental revenue less messaging cost, over cost).

The holdout's per-user rates stand for what the treated users would have done without
messages, so for a treated arm with `n` users, `x` conversions, revenue `r` and cost `c`,
against a holdout with `n_h` users, `x_h` conversions and revenue `r_h`:

    incremental conversions = x - n * x_h / n_h
    incremental revenue     = r - n * r_h / n_h
    ROI                     = (incremental revenue - c) / c        (None when c = 0)

An arm's net value prices its own figures with the sequence's `adaptive` economics:

    net value = value of conversions - cost - unsubscribes * unsubscribe_cost

where the value of conversions is the recorded revenue when the goal has a `value_property`
(conversions carry values), else conversions * conversion_value.

Pure: the reporting API and the dashboard call it on the rollup's totals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sme.contracts.sequences import SequenceConfig

METHOD = "holdout-scaled difference"
TREATMENTS = ("adaptive", "baseline")


@dataclass(frozen=True, slots=True)
class ArmTotals:
    users: int
    conversions: int
    revenue: float
    cost: float


@dataclass(frozen=True, slots=True)
class Incremental:
    conversions: float
    revenue: float
    cost: float
    roi: float | None
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def incremental(treated: ArmTotals, holdout: ArmTotals) -> Incremental:
    """Raises ValueError when either arm has no users (no rate to scale)."""
    if treated.users <= 0 or holdout.users <= 0:
        raise ValueError("both arms need users to compare rates")
    scale = treated.users / holdout.users
    revenue = treated.revenue - scale * holdout.revenue
    return Incremental(
        conversions=treated.conversions - scale * holdout.conversions,
        revenue=revenue,
        cost=treated.cost,
        roi=(revenue - treated.cost) / treated.cost if treated.cost > 0 else None,
    )


def incremental_report(arms: Mapping[str, ArmTotals]) -> dict[str, Incremental | None]:
    """Each treated arm (and both together, `messaged`) over the holdout; None where an
    arm is missing or empty."""
    holdout = arms.get("holdout")
    present = [arms[name] for name in TREATMENTS if name in arms]
    candidates = {name: arms.get(name) for name in TREATMENTS}
    candidates["messaged"] = (
        ArmTotals(
            users=sum(a.users for a in present),
            conversions=sum(a.conversions for a in present),
            revenue=sum(a.revenue for a in present),
            cost=sum(a.cost for a in present),
        )
        if present
        else None
    )
    out: dict[str, Incremental | None] = {}
    for name, treated in candidates.items():
        if treated is None or holdout is None or treated.users <= 0 or holdout.users <= 0:
            out[name] = None
        else:
            out[name] = incremental(treated, holdout)
    return out


@dataclass(frozen=True, slots=True)
class Economics:
    """How net value prices an arm: `valued` conversions carry their own value (the goal's
    `value_property`), else each is worth `conversion_value`."""

    valued: bool
    conversion_value: float
    unsubscribe_cost: float

    @classmethod
    def of(cls, config: SequenceConfig) -> Economics:
        """The sequence's current economics (a later change re-prices past windows)."""
        goal = config.exit.goal
        return cls(
            valued=goal is not None and goal.value_property is not None,
            conversion_value=config.adaptive.conversion_value,
            unsubscribe_cost=config.adaptive.unsubscribe_cost,
        )


def net_value(totals: Mapping[str, Any], economics: Economics) -> dict[str, float | None]:
    """An arm's `net_value` from its `enrolled`, `conversions`, `revenue`, `cost` and
    `unsubscribed` totals, and `net_value_per_enrolled` (None with no one enrolled)."""
    value = (
        float(totals["revenue"])
        if economics.valued
        else int(totals["conversions"]) * economics.conversion_value
    )
    net = value - float(totals["cost"]) - int(totals["unsubscribed"]) * economics.unsubscribe_cost
    enrolled = int(totals["enrolled"])
    return {"net_value": net, "net_value_per_enrolled": net / enrolled if enrolled else None}
