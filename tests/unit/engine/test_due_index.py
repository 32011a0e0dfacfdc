"""The due-index: one wake-up per due step however late the engine runs, nothing lost when a
tick cannot be sent, bounded retries when the core raises, resume without a table scan."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sme.engine.timers import FAILURE_BACKOFF_MS, DueIndex

A, B = b"1:w/a", b"1:w/b"


def test_a_woken_user_is_not_woken_again_until_their_tick_is_processed() -> None:
    due = DueIndex()
    due.put(A, 0, 1_000)
    assert [w.key for w in due.pop_due(1_000)] == [A]
    assert due.pop_due(3_600_000) == [], "in flight: an hour late is still one wake-up"
    assert due.in_flight == 1
    due.put(A, 0, 5_000)  # the tick was processed: the next due step is armed
    assert due.in_flight == 0
    assert [w.due_ms for w in due.pop_due(5_000)] == [5_000]


def test_a_tick_that_could_not_be_sent_is_rearmed() -> None:
    due = DueIndex()
    due.put(A, 2, 1_000)
    woken = due.pop_due(1_000)
    due.rearm(woken, 2_000)
    assert due.pop_due(1_999) == []
    assert [(w.key, w.partition) for w in due.pop_due(2_000)] == [(A, 2)]


def test_a_user_whose_timer_keeps_raising_is_retried_with_backoff_then_given_up() -> None:
    due = DueIndex()
    now = 0
    due.put(A, 0, now)
    for backoff in FAILURE_BACKOFF_MS:
        assert [w.key for w in due.pop_due(now)] == [A]
        assert due.failed(A, 0, now) is True
        assert due.pop_due(now + backoff - 1) == []
        now += backoff
    assert [w.key for w in due.pop_due(now)] == [A]
    assert due.failed(A, 0, now) is False, "tries spent: the caller dead-letters it"
    assert due.pop_due(now + 10**9) == [] and len(due) == 0


def test_resuming_a_sequence_wakes_its_parked_users_and_no_one_else() -> None:
    due = DueIndex()
    due.put(A, 0, None, parked=["paused-seq"])
    due.put(B, 1, None, parked=["other-seq"])
    assert due.pop_due(10**12) == []
    assert due.resume("paused-seq", 50) == 1
    assert [w.key for w in due.pop_due(50)] == [A]
    assert due.resume("paused-seq", 60) == 0, "woken once"


def test_partitions_given_away_are_forgotten() -> None:
    due = DueIndex()
    due.put(A, 0, 10)
    due.put(B, 1, 10)
    due.retain_partitions({1})
    assert [w.key for w in due.pop_due(10)] == [B]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "pop", "rearm", "forget"]),
            st.integers(0, 3),  # user
            st.integers(0, 100),  # time step
        ),
        max_size=60,
    )
)
def test_between_two_decisions_a_user_is_woken_at_most_once(
    ops: list[tuple[str, int, int]],
) -> None:
    due = DueIndex()
    now = 0
    woken_since_put: dict[bytes, int] = {}
    last_woken: dict[bytes, list] = {}
    for op, user, step in ops:
        key = f"1:w/{user}".encode()
        now += step
        if op == "put":
            due.put(key, user % 2, now + step)
            woken_since_put[key] = 0
        elif op == "pop":
            for wakeup in due.pop_due(now):
                woken_since_put[wakeup.key] = woken_since_put.get(wakeup.key, 0) + 1
                last_woken[wakeup.key] = [wakeup]
                assert woken_since_put[wakeup.key] == 1, "woken twice without a decision"
        elif op == "rearm" and key in last_woken:
            due.rearm(last_woken.pop(key), now)  # a failed send: may be woken once more
            woken_since_put[key] = 0
        elif op == "forget":
            due.forget(key)
            woken_since_put[key] = 0
    assert len(due) <= 4
