"""Retention rules for state kept outside the users table (pure: the caller passes `now`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

LEDGER_DAYS_KEPT = 2
"""Budget-ledger days kept per partition: the current UTC day (the only one budgets count)
and the day before (a decision that started just before midnight)."""


def ledger_key_expired(full_key: str, now: datetime) -> bool:
    """Whether a ledger key `<partition>|<scope>|<UTC day>|<item>` is of a day no decision
    reads any more. Keys of another shape are never reported expired."""
    parts = full_key.rsplit("|", 2)
    if len(parts) != 3:
        return False
    try:
        day = date.fromisoformat(parts[1])
    except ValueError:
        return False
    return day <= now.astimezone(UTC).date() - timedelta(days=LEDGER_DAYS_KEPT)


def expired_ledger_keys(keys: Iterable[str], partition: int, now: datetime) -> list[str]:
    """The keys of `partition`'s ledger that may be deleted at `now`."""
    prefix = f"{partition}|"
    return [k for k in keys if k.startswith(prefix) and ledger_key_expired(k, now)]
