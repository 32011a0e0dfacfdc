"""Scenario results: the must-be-0 columns, recovery times, a printed table, a JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERDICT_COUNTS = (
    "users",
    "expected",
    "delivered",
    "lost",
    "deliveries",
    "duplicate_deliveries",
    "distinct_key_duplicates",
    "over_cap_users",
    "unexpected",
)
"""The verifier's counts a scenario result carries (and a composite scenario sums)."""
MUST_BE_ZERO = ("lost", "distinct_key_duplicates", "over_cap_users", "store_mismatch")


@dataclass
class Fault:
    """One injected fault (or start) and how long the system took to work again."""

    kind: str  # engine_kill, engine_start, broker_restart, gateway_kill, first_start
    target: str
    at_s: float  # seconds after the scenario's workload started
    wall: float  # wall clock, for joining with record timestamps
    recovery_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScenarioResult:
    name: str
    users: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    deliveries: int = 0
    duplicate_deliveries: int = 0
    distinct_key_duplicates: int = 0
    over_cap_users: int = 0
    unexpected: int = 0
    unpublished_events: int = 0
    topic_activity_ids: int = 0
    store_rows: int | None = None
    store_distinct: int | None = None
    failover_s: float | None = None
    duration_s: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)
    parts: list[ScenarioResult] = field(default_factory=list)  # repeated runs (first starts)
    series: list[dict[str, Any]] = field(default_factory=list)  # periodic lines (the soak)

    @property
    def store_mismatch(self) -> int | None:
        """Activity ids on the topic that the store lacks (or holds extra); None if unknown.
        Repeated runs add up their own mismatches, so two opposite ones cannot cancel out."""
        if self.parts:
            values = [p.store_mismatch for p in self.parts]
            return None if None in values else sum(v or 0 for v in values)
        if self.store_distinct is None:
            return None
        return abs(self.topic_activity_ids - self.store_distinct)

    @property
    def recoveries(self) -> list[float | None]:
        return [f.recovery_s for f in self.faults if f.kind != "engine_start"]

    @property
    def failures(self) -> list[str]:
        """Why this scenario fails (empty: it passes)."""
        reasons = [f"{name}={getattr(self, name)}" for name in MUST_BE_ZERO if getattr(self, name)]
        if self.store_mismatch is None:
            reasons.append("store not checked")
        if self.error:
            reasons.append(f"error: {self.error.splitlines()[0][:200]}")
        return reasons

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["parts"] = [part.to_json() for part in self.parts]
        data["store_mismatch"] = self.store_mismatch
        data["failures"] = self.failures
        data["passed"] = not self.failures
        return data


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"


def _recovery(result: ScenarioResult) -> str:
    values = result.recoveries
    if not values:
        return "n/a"
    known = [v for v in values if v is not None]
    text = f"max {max(known):.1f}" if known else "none"
    missing = len(values) - len(known)
    return text + (f" ({missing} never)" if missing else "")


COLUMNS: tuple[tuple[str, str], ...] = (
    ("scenario", "name"),
    ("users", "users"),
    ("expected", "expected"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("dup deliv", "duplicate_deliveries"),
    ("dk dups", "distinct_key_duplicates"),
    ("over cap", "over_cap_users"),
    ("recovery s", ""),
    ("failover s", "failover_s"),
    ("topic ids", "topic_activity_ids"),
    ("CH distinct", "store_distinct"),
    ("CH rows", "store_rows"),
    ("time s", "duration_s"),
    ("result", ""),
)


def row(result: ScenarioResult) -> list[str]:
    cells: list[str] = []
    for title, attr in COLUMNS:
        if title == "recovery s":
            cells.append(_recovery(result))
        elif title == "result":
            cells.append("PASS" if not result.failures else "FAIL")
        else:
            cells.append(_fmt(getattr(result, attr)))
    return cells


def table(results: list[ScenarioResult]) -> str:
    rows = [[title for title, _ in COLUMNS], *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(r, widths, strict=True)) for r in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def details(result: ScenarioResult) -> str:
    """The per-scenario block: the table row, every fault with its recovery, why it failed."""
    lines = [f"== {result.name}", table([result])]
    for fault in result.faults:
        extra = " ".join(f"{k}={v}" for k, v in fault.details.items() if not k.endswith("_wall"))
        lines.append(
            f"   {fault.kind:<15} {fault.target:<10} at {fault.at_s:6.1f}s"
            f"  recovery {_seconds(fault.recovery_s):>7}  {extra}".rstrip()
        )
    for key, sample in result.samples.items():
        if sample:
            lines.append(f"   {key}: {', '.join(sample)}")
    lines.extend(f"   note: {note}" for note in result.notes)
    if result.crashed:
        lines.append(f"   exited by themselves: {', '.join(result.crashed)}")
    if result.failures:
        lines.append(f"   FAIL: {'; '.join(result.failures)}")
    return "\n".join(lines)


def write_json(path: Path, results: list[ScenarioResult], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, "scenarios": [r.to_json() for r in results]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
