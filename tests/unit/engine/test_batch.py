"""A batch of decisions before anything is written: each user's state is read once and
threaded through the batch, a decision that changes nothing writes nothing, and the ledger
adds the batch's spend to what the table holds."""

from __future__ import annotations

from sme.core import sequence
from sme.core.user_state import UserState
from sme.engine.batch import Batch, rng_for
from tests.unit.builders import T0, WS, config, event

KEY = b"key-1"


def test_a_users_state_is_read_once_and_threaded_through_the_batch() -> None:
    reads: list[bytes] = []

    def read_state(key: bytes) -> dict[str, object] | None:
        reads.append(key)
        return None

    batch = Batch(read_state, lambda _: None)
    ctx = sequence.Context({"cfg-1": config()})
    first = batch.state(KEY) or UserState.new(WS, "user-1")
    outcome = sequence.on_event(first, event("signed_up"), T0, rng_for(1), ctx)
    assert batch.record(KEY, b"user-1", 3, outcome, before=first)
    second = batch.state(KEY)
    assert second is outcome.state, "the second decision sees the first one's state"
    assert reads == [KEY]
    write = batch.writes[KEY]
    assert write.partition == 3 and write.stored is not None and write.stored["p"] == 3
    assert [c.step_id for _, c in batch.commands] == ["s1"]


def test_a_decision_that_changes_nothing_writes_nothing() -> None:
    state = UserState.new(WS, "user-1")
    batch = Batch(lambda _: state.to_dict(), lambda _: None)
    before = batch.state(KEY)
    assert before is not None
    outcome = sequence.on_timer(before, T0, rng_for(2), sequence.Context({}))
    assert batch.record(KEY, b"user-1", 0, outcome, before=before) is False
    assert batch.writes == {} and batch.commands == [] and batch.activities == []


def test_budget_spend_adds_to_the_table_and_across_the_batch() -> None:
    batch = Batch(lambda _: None, lambda key: 2.0 if key == "4|budget" else None)
    state = UserState.new(WS, "u")
    for _ in range(2):
        outcome = sequence.Outcome(state, ledger_deltas=(("budget", 1.5),))
        batch.record(KEY, b"u", 4, outcome, before=state)
    assert batch.ledger == {"4|budget": 5.0}
    assert batch.partition_ledger(4)["budget"] == 5.0
    assert "other" not in batch.partition_ledger(4)


def test_an_erased_user_reads_as_unknown_for_the_rest_of_the_batch() -> None:
    batch = Batch(lambda _: UserState.new(WS, "u").to_dict(), lambda _: None)
    assert batch.state(KEY) is not None
    batch.erase(KEY, 1)
    assert batch.state(KEY) is None
    assert batch.writes[KEY].stored is None
