"""The engine's collector settings: start-up objects frozen, young generation collected less
often (cycles are still collected)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sme.gc_tuning import YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_is_frozen_and_cycles_still_collected(restored_gc: None) -> None:
    tune_gc()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() > 0

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # an unreachable cycle made after start-up is still freed
