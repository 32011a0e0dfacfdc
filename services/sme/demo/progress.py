"""The demo's live counters and the line that shows them: a bar on a terminal (rewritten in
place), a plain line per update otherwise (logs, CI). Pure formatting; the shell prints."""

from __future__ import annotations

from dataclasses import dataclass

BAR_WIDTH = 20


@dataclass(slots=True)
class Counters:
    """What the demo did so far. `enrolled` is the gateway's count (None until first read):
    the engine decides who enrolls, the demo only publishes signups."""

    users: int = 0
    events: int = 0
    commands: int = 0
    feedback: int = 0
    conversions: int = 0
    enrolled: int | None = None


def bar(elapsed: float, total: float, width: int = BAR_WIDTH) -> str:
    """`[#####.....]`: the share of the run's time gone, clamped to the bar."""
    share = 0.0 if total <= 0 else min(1.0, max(0.0, elapsed / total))
    filled = round(share * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_line(counters: Counters, elapsed: float, total: float, *, tty: bool) -> str:
    """One line of counters; with `tty` it starts with a bar (the caller rewrites it in place)."""
    enrolled = "…" if counters.enrolled is None else f"{counters.enrolled:,}"
    figures = (
        f"users {counters.users:,} | enrolled {enrolled} | events {counters.events:,} | "
        f"commands {counters.commands:,} | feedback {counters.feedback:,} | "
        f"conversions {counters.conversions:,}"
    )
    clock = f"{min(elapsed, total):4.0f}s/{total:.0f}s"
    return f"{bar(elapsed, total)} {clock}  {figures}" if tty else f"demo {clock}: {figures}"
