"""The stats board (the summed view of `sme.stats`) holds only keys the core produces."""

from __future__ import annotations

import orjson

from sme.core.stats import POOLED, channel_key
from sme.engine.stats_board import StatsBoard

POOLED_KEY = channel_key("cfg-1", "s1", "email", POOLED)
BUCKET_KEY = channel_key("cfg-1", "s1", "email", "#7")


def test_counts_are_summed_over_partitions() -> None:
    board = StatsBoard()
    board.apply(f"0|{POOLED_KEY}", orjson.dumps([3, 1]))
    board.apply(f"1|{POOLED_KEY}", orjson.dumps([2, 2]))
    board.apply(f"0|{POOLED_KEY}", orjson.dumps([4, 1]))

    assert board[POOLED_KEY] == (6.0, 3.0)


def test_keys_with_raw_context_values_from_older_versions_are_ignored() -> None:
    board = StatsBoard()
    for i in range(100):
        board.apply(f"0|{channel_key('cfg-1', 's1', 'email', f'plan=p{i}')}", b"[1, 0]")
    board.apply(f"0|{BUCKET_KEY}", b"[1, 0]")

    assert list(board) == [BUCKET_KEY]


def test_a_deleted_key_is_forgotten_once_no_partition_holds_it() -> None:
    board = StatsBoard()
    board.apply(f"0|{BUCKET_KEY}", b"[2, 1]")
    board.apply(f"1|{BUCKET_KEY}", b"[3, 1]")

    board.apply(f"0|{BUCKET_KEY}", None)
    assert board[BUCKET_KEY] == (3.0, 1.0)
    board.apply(f"1|{BUCKET_KEY}", None)

    assert len(board) == 0
    assert board.partition_counts(f"1|{BUCKET_KEY}") == (0.0, 0.0)


def test_a_timed_value_is_summed_and_continued_from_its_own_time() -> None:
    board = StatsBoard()
    board.apply(f"0|{POOLED_KEY}", orjson.dumps([8.0, 2.0, 1_000]))
    board.apply(f"1|{POOLED_KEY}", orjson.dumps([2, 1]))  # an older version's value

    assert board[POOLED_KEY] == (10.0, 3.0)
    assert board.partition_record(f"0|{POOLED_KEY}", 5_000) == (8.0, 2.0, 1_000)
    assert board.partition_record(f"1|{POOLED_KEY}", 5_000) == (2.0, 1.0, 5_000)
    board.apply(f"0|{POOLED_KEY}", None)
    assert board.partition_record(f"0|{POOLED_KEY}", 7) == (0.0, 0.0, 7)


def test_get_answers_a_missing_key_with_the_default() -> None:
    board = StatsBoard()
    board.apply(f"0|{POOLED_KEY}", orjson.dumps([3, 1, 10]))
    assert board.get(POOLED_KEY) == (3.0, 1.0)
    assert board.get(BUCKET_KEY) is None
    assert board.get(BUCKET_KEY, (0.0, 0.0)) == (0.0, 0.0)
