"""What `sme demo` says when it stops: what it did, what the gateway measured, what it left
behind (the sequence, the topics' records, the ClickHouse rows) and the commands that remove
it. Pure text; every command named is one that exists (the API's DELETE routes, `make`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sme.client.calls import API
from sme.demo.progress import Counters


@dataclass(frozen=True, slots=True)
class LeftBehind:
    gateway: str
    config_id: str
    config_name: str
    workspace_id: str
    events_topic: str
    command_topics: tuple[str, ...]
    activities_topic: str
    consumer_group: str
    database: str
    first_user: str | None
    keyed: bool
    """Whether the gateway needs a key: the commands then carry the header (never the key)."""


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def measured(metrics: Mapping[str, Any]) -> str | None:
    """`enrolled …, sent …, conversions …, lift vs holdout …` from a `/metrics` answer."""
    arms: Mapping[str, Mapping[str, Any]] = metrics.get("arms") or {}
    if not arms:
        return None
    totals = {k: sum(int(a.get(k, 0)) for a in arms.values()) for k in ("enrolled", "sent")}
    conversions = sum(int(a.get("conversions", 0)) for a in arms.values())
    feedback = sum(int(a.get(k, 0)) for a in arms.values() for k in ("delivered", "opened"))
    text = (
        f"enrolled {totals['enrolled']:,}, sent {totals['sent']:,}, delivered+opened "
        f"{feedback:,}, conversions {conversions:,}"
    )
    lift = (metrics.get("lift") or {}).get("vs_holdout")
    if lift:
        text += (
            f", lift vs holdout {lift['estimate']:+.0%} "
            f"(95% CI {lift['ci95_low']:+.0%} .. {lift['ci95_high']:+.0%})"
        )
    return text


def summary_lines(
    counters: Counters, reason: str, left: LeftBehind, figures: str | None
) -> list[str]:
    auth = ' -H "Authorization: Bearer $SME_ADMIN_API_KEY"' if left.keyed else ""
    config_url = f"{left.gateway}{API}/{left.config_id}"
    user = left.first_user or "<user_id>"
    where = f"workspace_id = '{left.workspace_id}'"
    query = f"SELECT type, count() FROM activities WHERE {where} GROUP BY type"  # noqa: S608 - printed
    lines = [
        f"sme demo: stopped ({reason}). Published {counters.users:,} signups and "
        f"{counters.feedback:,} feedback events ({_plural(counters.conversions, 'conversion')}); "
        f"answered {counters.commands:,} commands.",
    ]
    if figures:
        lines.append(f"The gateway measured: {figures}.")
    lines += [
        "",
        "Left behind:",
        f'  sequence    {left.config_id} "{left.config_name}" (workspace {left.workspace_id}), '
        f"still ACTIVE: {left.gateway}/dashboard/{left.config_id}",
        f"  Kafka       the demo's events on {left.events_topic}, the engine's commands on "
        f"{', '.join(left.command_topics)}, activities on {left.activities_topic} (until "
        f"the topics' retention); consumer group {left.consumer_group}",
        f"  ClickHouse  the activities of workspace {left.workspace_id} in database "
        f'{left.database}: sme sql "{query}"',
        f"  users       {counters.users:,} simulated users ({user}, …) with engine state",
        "",
        "To remove it:",
        "  stop the sequence (STOPPED is final; its figures stay for reporting; the next demo "
        "creates a new one):",
        f"    curl -X DELETE{auth} {config_url}",
        "  erase one simulated user (state, activities) through the erasure API:",
        f"    curl -X DELETE{auth} {left.gateway}/api/v1/workspaces/{left.workspace_id}"
        f"/users/{user}",
        "  remove all local data (broker topics, engine state, ClickHouse) after stopping "
        "`make run`:",
        "    make clean",
    ]
    return lines
