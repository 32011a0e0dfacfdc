"""Per-arm results counted from what the core emitted (its activities), never from the
simulated world's hidden truth, plus the lift of the adaptive arm with 95% CIs.

Two exceptions, both named as such: `spend` (the world's bill, which knows per-segment prices
the core's price list cannot) and conversion `value` (per-segment, the world's), from which
cost per conversion and net value are computed; and the oracle arm, whose channel choices are
the simulator's, so its messages and cost are the world's record of what it sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.reasons import Reason
from sme.core.lift import Lift, lift_report
from sme.simulator.world import Economics

ARMS = ("adaptive", "baseline", "holdout")
LIFT_METHOD = (
    "Relative lift = rate_adaptive / rate_control - 1. 95% CI: Katz log interval "
    "(delta method on the log ratio of two binomial proportions): "
    "exp(log RR +/- 1.96 * sqrt(1/x_a - 1/n_a + 1/x_b - 1/n_b)) - 1; when an arm has zero "
    "conversions, 0.5 is added to every cell (Haldane-Anscombe)."
)


@dataclass(slots=True)
class ArmTally:
    users: int = 0
    messages: dict[str, int] = field(default_factory=lambda: {ch.value: 0 for ch in Channel})
    suppressed: int = 0  # holdout: messages decided but not sent
    delivered: int = 0
    bounced: int = 0
    opens: int = 0
    clicks: int = 0
    conversions: int = 0
    unsubscribes: int = 0
    cost: float = 0.0
    send_time_deferrals: int = 0
    daily_conversions: list[int] = field(default_factory=list)  # by virtual day
    # The world's side (see the module docstring):
    sent: dict[str, int] = field(default_factory=lambda: {ch.value: 0 for ch in Channel})
    spend: float = 0.0
    value: float = 0.0

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.users if self.users else 0.0

    def to_dict(
        self, economics: Economics | None = None, days: int = 0, *, world_view: bool = False
    ) -> dict[str, Any]:
        """The arm's figures; `world_view` counts messages and cost from what the world
        delivered (the oracle arm, whose choices the core never made)."""
        econ = economics or Economics()
        messages = dict(self.sent if world_view else self.messages)
        cost = self.spend if world_view else self.cost
        daily = [*self.daily_conversions, *[0] * max(0, days - len(self.daily_conversions))]
        net = self.value - self.spend - self.unsubscribes * econ.unsubscribe_cost
        return {
            "users": self.users,
            "messages": messages,
            "messages_total": sum(messages.values()),
            "suppressed": self.suppressed,
            "delivered": self.delivered,
            "bounced": self.bounced,
            "opens": self.opens,
            "clicks": self.clicks,
            "conversions": self.conversions,
            "conversion_rate": self.conversion_rate,
            "unsubscribes": self.unsubscribes,
            "cost": round(cost, 6),
            "send_time_deferrals": self.send_time_deferrals,
            "spend": round(self.spend, 6),
            "cost_per_conversion": (
                round(self.spend / self.conversions, 6) if self.conversions else None
            ),
            "unsubscribe_rate": self.unsubscribes / self.users if self.users else 0.0,
            "conversion_value": round(self.value, 6),
            "net_value": round(net, 6),
            "daily_conversions": daily,
            "daily_conversion_rate": [n / self.users if self.users else 0.0 for n in daily],
        }


_FEEDBACK_FIELDS = {
    "delivered": "delivered",
    "bounced": "bounced",
    "opened": "opens",
    "clicked": "clicks",
}


@dataclass(slots=True)
class Tally:
    """Counts per arm, fed one core activity at a time."""

    arms: dict[str, ArmTally] = field(default_factory=lambda: {a: ArmTally() for a in ARMS})

    def observe(self, activity: Activity, day: int = 0) -> None:
        """Count one activity; `day` is the virtual day it happened on (for daily rates)."""
        arm = activity.arm
        if arm is None:
            return
        tally = self.arms[arm.value]
        kind = activity.type
        if kind is ActivityType.EXPOSURE:
            tally.users += 1
        elif kind is ActivityType.COMMAND_EMITTED:
            if activity.channel is not None:
                tally.messages[activity.channel.value] += 1
            tally.cost += activity.cost
        elif kind is ActivityType.MESSAGE_SUPPRESSED:
            tally.suppressed += 1
        elif kind is ActivityType.FEEDBACK:
            name = _FEEDBACK_FIELDS.get(activity.event_type)
            if name is not None:
                setattr(tally, name, getattr(tally, name) + 1)
        elif kind is ActivityType.CONVERSION:
            tally.conversions += 1
            daily = tally.daily_conversions
            if day >= len(daily):
                daily.extend([0] * (day + 1 - len(daily)))
            daily[day] += 1
        elif kind is ActivityType.CONSENT_REVOKED:
            tally.unsubscribes += 1
        elif (
            kind is ActivityType.STEP_DEFERRED
            and activity.reason_code == Reason.SEND_TIME_OPTIMISED
        ):
            tally.send_time_deferrals += 1

    def lift(self) -> dict[str, Lift | None]:
        return lift_report({a: (t.conversions, t.users) for a, t in self.arms.items()})


def lift_dict(lift: dict[str, Lift | None]) -> dict[str, Any]:
    return {name: (value.to_dict() if value else None) for name, value in lift.items()}


def share_of_oracle(adaptive: Lift | None, oracle: Lift | None) -> float | None:
    """The adaptive arm's lift over the baseline as a share of the oracle's: (adaptive -
    baseline) / (oracle - baseline) in relative terms, each against its own run's baseline
    (the same users). None when the oracle shows no positive lift: no ceiling to share."""
    if adaptive is None or oracle is None or oracle.estimate <= 0:
        return None
    return adaptive.estimate / oracle.estimate


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def format_lift(name: str, lift: Lift | None) -> str:
    if lift is None:
        return f"lift {name}: n/a (an arm has no users)"
    return (
        f"lift {name}: {_pct(lift.estimate)} "
        f"(95% CI {_pct(lift.ci95_low)} .. {_pct(lift.ci95_high)})"
    )


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def format_text(summary: dict[str, Any]) -> str:
    """The human-readable table of a simulation summary (the `--json` object)."""
    arms: dict[str, dict[str, Any]] = summary["arms"]
    shown = [a for a in (*ARMS, "oracle", "context_oracle") if a in arms]
    width = 15
    head = f"{'':<22}" + "".join(f"{a:>{width}}" for a in shown)
    lines = [
        f"sme simulate: scenario {summary['scenario']!r}, {summary['users']} users, "
        f"{summary['days']:g} days, seed {summary['seed']}",
        "",
        head,
    ]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"{label:<22}" + "".join(f"{v:>{width}}" for v in values))

    row("users", [str(arms[a]["users"]) for a in shown])
    for channel in Channel:
        row(f"messages {channel.value}", [str(arms[a]["messages"][channel.value]) for a in shown])
    row("messages total", [str(arms[a]["messages_total"]) for a in shown])
    row("suppressed (holdout)", [str(arms[a]["suppressed"]) for a in shown])
    row("opens", [str(arms[a]["opens"]) for a in shown])
    row("clicks", [str(arms[a]["clicks"]) for a in shown])
    row("conversions", [str(arms[a]["conversions"]) for a in shown])
    row("conversion rate", [f"{arms[a]['conversion_rate'] * 100:.2f}%" for a in shown])
    row("unsubscribes", [str(arms[a]["unsubscribes"]) for a in shown])
    row("cost", [f"{arms[a]['cost']:.2f}" for a in shown])
    row("send-time deferrals", [str(arms[a]["send_time_deferrals"]) for a in shown])
    row("cost per conversion", [_money(arms[a]["cost_per_conversion"]) for a in shown])
    row("net value", [f"{arms[a]['net_value']:.2f}" for a in shown])
    lines.append("")
    lift = summary["lift"]
    for name in ("vs_baseline", "vs_holdout"):
        value = lift[name]
        lines.append(
            format_lift(
                f"adaptive {name.replace('_', ' ')}",
                Lift(**value) if value is not None else None,
            )
        )
    for oracle in ("oracle", "context_oracle"):
        if f"{oracle}_vs_baseline" not in lift:
            continue
        value = lift[f"{oracle}_vs_baseline"]
        label = oracle.replace("_", " ")
        lines.append(format_lift(f"{label} vs baseline", Lift(**value) if value else None))
        share = summary[f"lift_share_of_{oracle}"]
        lines.append(
            f"adaptive share of the {label}'s lift: "
            + ("n/a" if share is None else f"{share * 100:.0f}%")
        )
    lines.append(f"CI method: {LIFT_METHOD}")
    return "\n".join(lines)
