"""What every figure means, defined once: which `activities` rows a measure counts (or sums),
and how it adds up from the daily rollups. The rollup recompute and build, the metrics and
report queries, the dashboard overview and the automation monitor all render their SQL from
here, so "sent", "bounced" or "error rate" cannot mean one thing on the dashboard and another
to the rule that pauses a sequence.

A sequence's measures count only its rows with an arm (rows of an enrollment); the event
measures count the workspace's intake rows (no sequence). Each activity id counts once: every
query over `activities` reads `FINAL`. Predicates and expressions here are constants (no value
is ever pasted); values stay bound parameters in the queries that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SEQUENCE_ROWS = "arm != ''"
"""A sequence's figures count its rows that belong to an enrollment (have an arm)."""
EVENT_TYPES = ("event_received", "event_duplicate", "event_rejected")
EVENT_ROWS = f"config_id = '' AND type IN {EVENT_TYPES!r}"
"""The workspace's event intake: rows of no sequence (a dead-lettered event has none)."""


@dataclass(frozen=True, slots=True)
class Measure:
    """`kind` over the `activities` rows where `where` holds: `count` them, `sum` a column
    (`of`), or count the `distinct` values of a column. In the rollup it is the column of
    its name, added up with `sum` (or `rollup`, an expression over rollup columns)."""

    name: str
    kind: Literal["count", "sum", "distinct"]
    where: str
    of: str = ""
    money: bool = False
    rollup: str = ""

    def over_activities(self, also: str = "") -> str:
        """The aggregate over `activities` rows; `also` narrows it (e.g. a time window)."""
        where = f"({self.where}) AND ({also})" if also else self.where
        if self.kind == "count":
            return f"countIf({where})"
        function = "sumIf" if self.kind == "sum" else "uniqExactIf"
        return f"{function}({self.of}, {where})"

    def per(self, column: str, also: str = "") -> str:
        """A count measure per value of `column`, as a map (value -> count)."""
        if self.kind != "count":
            raise ValueError(f"{self.name} is not a count")
        where = f"({self.where}) AND ({also})" if also else self.where
        return f"sumMapIf(map(toString({column}), toUInt64(1)), {where})"

    def over_rollup(self) -> str:
        """The same figure added up from the rollup's rows."""
        return self.rollup or f"sum({self.name})"


def _feedback(name: str, event_type: str) -> Measure:
    return Measure(name, "count", f"type = 'feedback' AND event_type = '{event_type}'")


ENROLLED = Measure("enrolled", "distinct", "type = 'enrolled'", of="user_id")
SENT = Measure("sent", "count", "type = 'command_emitted'")
DELIVERED = _feedback("delivered", "delivered")
OPENED = _feedback("opened", "opened")
CLICKED = _feedback("clicked", "clicked")
CONVERSIONS = Measure("conversions", "count", "type = 'conversion'")
REVENUE = Measure("revenue", "sum", "type = 'conversion'", of="value", money=True)
UNSUBSCRIBED = _feedback("unsubscribed", "unsubscribed")
BOUNCED = _feedback("bounced", "bounced")
SUPPRESSED = Measure("suppressed", "count", "type IN ('message_suppressed', 'step_skipped')")
COST = Measure("cost", "sum", "type = 'command_emitted'", of="cost", money=True)
EXITED = Measure("exited", "count", "type = 'enrollment_exited'")
"""Enrollments that ended (per step in the funnel: the step they were at)."""
STEP_DECISIONS = (
    "enrolled",
    "command_emitted",
    "message_suppressed",
    "step_skipped",
    "step_deferred",
    "step_branched",
    "enrollment_exited",
)
"""The rows that show an enrollment at a step (the funnel's `entered`: a user with one)."""

SEQUENCE_MEASURES = (
    ENROLLED,
    SENT,
    DELIVERED,
    OPENED,
    CLICKED,
    CONVERSIONS,
    REVENUE,
    UNSUBSCRIBED,
    BOUNCED,
    SUPPRESSED,
    COST,
)
"""A sequence's figures, in the order queries list them (each a `daily_rollup` column)."""
BY_REASON = "suppressed_by_reason"
"""Suppressions per reason code: `SUPPRESSED.per('reason_code')`, a rollup map column."""

RECEIVED = Measure("received", "count", "type = 'event_received'")
DUPLICATES = Measure("duplicates", "count", "type = 'event_duplicate'")
REJECTED = Measure("rejected", "count", "type = 'event_rejected'")
EVENTS = Measure(
    "events",
    "count",
    f"type IN {EVENT_TYPES!r}",
    rollup="sum(received) + sum(duplicates) + sum(rejected)",
)
"""Every event that arrived: received, duplicate or dead-lettered (the error rate's base)."""
EVENT_MEASURES = (RECEIVED, DUPLICATES, REJECTED)
"""The workspace's intake figures (each a `daily_events` column)."""

RATES: dict[str, tuple[str, str]] = {
    "conversion_rate": ("conversions", "enrolled"),
    "delivery_rate": ("delivered", "sent"),
    "open_rate": ("opened", "sent"),
    "click_rate": ("clicked", "sent"),
    "unsubscribe_rate": ("unsubscribed", "sent"),
    "bounce_rate": ("bounced", "sent"),
    "cost_per_conversion": ("cost", "conversions"),
}
"""A sequence's rates: numerator / denominator measure (None when the denominator is 0)."""
ERROR_RATE = ("rejected", "events")
"""The workspace's event error rate: dead-lettered / every event that arrived."""


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def select_list(measures: tuple[Measure, ...], also: str = "", named: bool = False) -> str:
    """`measures` over `activities`, comma-separated (aliased by name when `named`)."""
    return ",\n    ".join(
        m.over_activities(also) + (f" AS {m.name}" if named else "") for m in measures
    )


def rollup_list(measures: tuple[Measure, ...], named: bool = False) -> str:
    """`measures` added up from the rollup, comma-separated (aliased by name when `named`)."""
    return ",\n    ".join(m.over_rollup() + (f" AS {m.name}" if named else "") for m in measures)
