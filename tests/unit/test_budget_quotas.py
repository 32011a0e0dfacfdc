"""Daily budgets are split across partitions so the day's total is never exceeded, and the
integral remainder rotates with the day so every partition gets turns: a small budget never
starves a partition's users for good."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType as A
from sme.contracts.channels import Channel
from sme.contracts.sequences import Guardrails
from sme.core import guardrails
from sme.core.guardrails import Level, budget_key, quota
from sme.core.sequence import Context
from tests.unit.builders import Driver, config

DAY0 = date(2024, 5, 1)


def on_partition(d: Driver, partition: int, partitions: int) -> Driver:
    d.ctx = lambda: Context(  # type: ignore[method-assign]
        d.configs, d.workspace, d.stats, d.ledger, partition, partitions
    )
    return d


def test_a_budget_smaller_than_the_partition_count_lets_every_partition_send_within_p_days() -> (
    None
):
    # 5 over 6 partitions: a fixed split gave one partition 0, and its users waited forever.
    cfg = config(guardrails={"daily_send_budget": {"email": 5}})
    for partition in range(6):
        d = on_partition(Driver.of(cfg), partition, 6)
        d.send("signed_up", datetime(2024, 5, 1, 10, tzinfo=UTC))
        d.run_until(datetime(2024, 5, 7, 10, tzinfo=UTC))

        assert len(d.commands) == 1, f"partition {partition} never sent"
        assert d.commands[0].decided_at < datetime(2024, 5, 7, tzinfo=UTC)


@given(st.integers(0, 40), st.integers(1, 12), st.integers(0, 3000))
def test_the_quotas_of_a_day_sum_to_the_budget_and_every_partition_gets_a_turn(
    budget: int, partitions: int, start: int
) -> None:
    first = DAY0 + timedelta(days=start)
    days = [first + timedelta(days=i) for i in range(partitions)]
    for day in days:
        shares = [quota(budget, p, partitions, True, day) for p in range(partitions)]
        assert sum(shares) == budget
        assert max(shares) - min(shares) <= 1
    if budget >= 1:
        for p in range(partitions):
            assert any(quota(budget, p, partitions, True, day) >= 1 for day in days)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 9),  # budget
    st.integers(1, 6),  # partitions
    st.lists(st.integers(0, 4), min_size=6, max_size=6),  # demand per partition per day
    st.integers(0, 400),
)
def test_partitions_spending_greedily_never_exceed_the_daily_total_and_each_gets_a_turn(
    budget: int, partitions: int, demand: list[int], start: int
) -> None:
    """Each partition decides alone from its own ledger, as the engine does."""
    rules = Guardrails.model_validate({"daily_send_budget": {"email": budget}})
    level = [Level("w:w", rules, [])]
    ledgers: list[dict[str, float]] = [{} for _ in range(partitions)]
    sent_days: dict[int, set[date]] = {p: set() for p in range(partitions)}
    totals: Counter[date] = Counter()
    first = datetime.combine(DAY0 + timedelta(days=start), datetime.min.time(), tzinfo=UTC)
    for day_no in range(partitions):
        for p in range(partitions):
            now = first + timedelta(days=day_no, hours=9 + p)
            for _ in range(demand[p] or 1):
                verdict = guardrails.evaluate(
                    [Channel.EMAIL], {}, level, now, "UTC", ledgers[p], p, partitions
                )
                if not verdict.allowed:
                    if budget:
                        assert verdict.defer_until is not None
                        assert verdict.defer_until - now <= timedelta(days=partitions)
                    break
                for key, amount in guardrails.spend(level, Channel.EMAIL, now):
                    ledgers[p][key] = ledgers[p].get(key, 0.0) + amount
                totals[now.date()] += 1
                sent_days[p].add(now.date())
    assert all(n <= budget for n in totals.values())
    if budget:
        assert all(sent_days[p] for p in range(partitions)), "a partition never got a turn"


def test_the_ledger_keys_are_per_scope_day_and_item() -> None:
    assert budget_key("c:x", "2024-05-01", "email") == "c:x|2024-05-01|email"


def test_a_zero_budget_skips_instead_of_deferring_forever() -> None:
    cfg = config(guardrails={"daily_send_budget": {"email": 0}})
    d = Driver.of(cfg)
    out = d.send("signed_up")

    assert [a.reason_code for a in out.activities if a.type is A.STEP_SKIPPED] == ["channel_budget"]
    assert d.due() is None
