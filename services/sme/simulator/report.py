"""Per-arm results counted from what the core emitted (its activities), never from the
simulated world's hidden truth, plus the lift of the adaptive arm with 95% CIs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.channels import Channel
from sme.contracts.reasons import Reason
from sme.core.lift import Lift, lift_report

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

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.users if self.users else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "messages": dict(self.messages),
            "messages_total": sum(self.messages.values()),
            "suppressed": self.suppressed,
            "delivered": self.delivered,
            "bounced": self.bounced,
            "opens": self.opens,
            "clicks": self.clicks,
            "conversions": self.conversions,
            "conversion_rate": self.conversion_rate,
            "unsubscribes": self.unsubscribes,
            "cost": round(self.cost, 6),
            "send_time_deferrals": self.send_time_deferrals,
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

    def observe(self, activity: Activity) -> None:
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


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def format_lift(name: str, lift: Lift | None) -> str:
    if lift is None:
        return f"lift {name}: n/a (an arm has no users)"
    return (
        f"lift {name}: {_pct(lift.estimate)} "
        f"(95% CI {_pct(lift.ci95_low)} .. {_pct(lift.ci95_high)})"
    )


def format_text(summary: dict[str, Any]) -> str:
    """The human-readable table of a simulation summary (the `--json` object)."""
    arms: dict[str, dict[str, Any]] = summary["arms"]
    width = 12
    head = f"{'':<22}" + "".join(f"{a:>{width}}" for a in ARMS)
    lines = [
        f"sme simulate: scenario {summary['scenario']!r}, {summary['users']} users, "
        f"{summary['days']:g} days, seed {summary['seed']}",
        "",
        head,
    ]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"{label:<22}" + "".join(f"{v:>{width}}" for v in values))

    row("users", [str(arms[a]["users"]) for a in ARMS])
    for channel in Channel:
        row(f"messages {channel.value}", [str(arms[a]["messages"][channel.value]) for a in ARMS])
    row("messages total", [str(arms[a]["messages_total"]) for a in ARMS])
    row("suppressed (holdout)", [str(arms[a]["suppressed"]) for a in ARMS])
    row("opens", [str(arms[a]["opens"]) for a in ARMS])
    row("clicks", [str(arms[a]["clicks"]) for a in ARMS])
    row("conversions", [str(arms[a]["conversions"]) for a in ARMS])
    row("conversion rate", [f"{arms[a]['conversion_rate'] * 100:.2f}%" for a in ARMS])
    row("unsubscribes", [str(arms[a]["unsubscribes"]) for a in ARMS])
    row("cost", [f"{arms[a]['cost']:.2f}" for a in ARMS])
    row("send-time deferrals", [str(arms[a]["send_time_deferrals"]) for a in ARMS])
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
    lines.append(f"CI method: {LIFT_METHOD}")
    return "\n".join(lines)
