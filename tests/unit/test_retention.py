"""Retention of the budget ledger: a partition's ledger keeps the days budgets still count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sme.core.guardrails import budget_key
from sme.core.retention import LEDGER_DAYS_KEPT, expired_ledger_keys, ledger_key_expired
from sme.core.timeutil import utc_day

NOW = datetime(2026, 3, 10, 0, 5, tzinfo=UTC)


def _key(partition: int, scope: str, day: datetime, item: str = "email") -> str:
    return f"{partition}|{budget_key(scope, utc_day(day), item)}"


def test_ledger_keys_of_days_before_yesterday_are_purged_and_today_and_yesterday_kept() -> None:
    keys = [_key(0, "c:cfg|odd", NOW - timedelta(days=d)) for d in range(5)]

    expired = expired_ledger_keys(keys, 0, NOW)

    assert expired == keys[LEDGER_DAYS_KEPT:]


def test_only_the_given_partitions_keys_are_purged() -> None:
    old = NOW - timedelta(days=3)
    keys = [_key(0, "w:acme", old), _key(1, "w:acme", old), _key(10, "w:acme", old, "cost")]

    assert expired_ledger_keys(keys, 1, NOW) == [keys[1]]


def test_keys_of_another_shape_are_never_purged() -> None:
    assert not ledger_key_expired("0|w:acme|not-a-day|email", NOW)
    assert not ledger_key_expired("garbage", NOW)


@settings(max_examples=50, deadline=None)
@given(days=st.integers(100, 2000), scopes=st.integers(1, 5))
def test_a_ledger_purged_every_day_holds_at_most_two_days_of_keys(days: int, scopes: int) -> None:
    ledger: set[str] = set()
    for day in range(days):
        now = NOW + timedelta(days=day, hours=13)
        ledger.update(
            _key(0, f"c:{s}", now, item) for s in range(scopes) for item in ("sms", "cost")
        )
        ledger.difference_update(expired_ledger_keys(ledger, 0, now))

    assert len(ledger) <= LEDGER_DAYS_KEPT * scopes * 2
