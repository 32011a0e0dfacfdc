"""The fault suite's end-of-scenario wait judges "all was due" from the engines' own first
commands: an engine that starts late behind a backlog times every later step from its
first decision, so the publishing time alone would call steps lost that are merely not
due yet (seen once as 40 "lost" last steps, all sent seconds after the wait gave up)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.faults.observer import Delivery, Observer
from tests.faults.verify import Expectation
from tests.faults.waits import all_due_at
from tests.faults.workload import CAPS, CONFIG_ID, SEQUENCE_SPAN_S, STEPS

T0 = datetime(2026, 12, 2, 1, 25, tzinfo=UTC)
STEP_IDS = tuple(step for step, _, _ in STEPS)


def _first_command(observer: Observer, user: str, at: datetime) -> None:
    delivery = Delivery(
        f"c-{user}", "acme", user, CONFIG_ID, STEP_IDS[0], "email", at, "t", 0, 0, 0
    )
    observer.first_by_step[(user, STEP_IDS[0])] = delivery


def test_nothing_is_due_while_a_user_has_no_first_command() -> None:
    observer = Observer("127.0.0.1:1", "p", "a")
    expect = Expectation(frozenset({"u1", "u2"}), CONFIG_ID, STEP_IDS, CAPS)
    _first_command(observer, "u1", T0)
    assert all_due_at(observer, expect, T0.timestamp()) is None


def test_all_is_due_a_sequence_span_after_the_latest_first_command() -> None:
    observer = Observer("127.0.0.1:1", "p", "a")
    expect = Expectation(frozenset({"u1", "u2"}), CONFIG_ID, STEP_IDS, CAPS)
    published_by = T0.timestamp()
    _first_command(observer, "u1", T0 + timedelta(seconds=2))
    _first_command(observer, "u2", T0 + timedelta(seconds=33))  # a late first start
    assert all_due_at(observer, expect, published_by) == published_by + 33 + SEQUENCE_SPAN_S


def test_the_publishing_bound_holds_when_the_engine_was_early() -> None:
    observer = Observer("127.0.0.1:1", "p", "a")
    expect = Expectation(frozenset({"u1"}), CONFIG_ID, STEP_IDS, CAPS)
    _first_command(observer, "u1", T0)
    late_bound = T0.timestamp() + 100
    assert all_due_at(observer, expect, late_bound) == late_bound
