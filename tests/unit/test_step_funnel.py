"""The per-step funnel's shaping: configured steps first in their order (at zero when nothing
happened there), steps no longer configured after them by id, reasons merged and sorted."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sme.storage.funnel import COUNTS, SQL, step_funnel


class _Store:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def query(self, sql: str, params: dict[str, Any]) -> SimpleNamespace:
        self.calls.append((sql, params))
        return SimpleNamespace(result_rows=self.rows)


def _row(
    step: str, base: int, suppressed: dict[str, int], exited: dict[str, int]
) -> tuple[Any, ...]:
    return (step, *(base + i for i in range(len(COUNTS))), suppressed, exited)


async def test_steps_follow_the_configuration_then_removed_steps_by_id() -> None:
    store = _Store(
        [
            _row("zeta", 1, {}, {}),
            _row("b", 10, {"quiet_hours": 2, "": 1, "holdout": 5}, {"completed": 3}),
            _row("gone", 20, {}, {"goal_reached": 1}),
        ]
    )
    params = {"w": "acme", "c": "c1", "since": None, "until": None}
    steps = await step_funnel(store, params, ["a", "b", "a"])  # type: ignore[arg-type]
    assert [(s["step_id"], s["in_config"]) for s in steps] == [
        ("a", True),
        ("b", True),
        ("gone", False),
        ("zeta", False),
    ]
    assert {k: steps[0][k] for k in COUNTS} == dict.fromkeys(COUNTS, 0)
    assert steps[0]["suppressed_by_reason"] == {} == steps[0]["exited_by_reason"]
    assert {k: steps[1][k] for k in COUNTS} == {k: 10 + i for i, k in enumerate(COUNTS)}
    assert list(steps[1]["suppressed_by_reason"].items()) == [
        ("holdout", 5),
        ("quiet_hours", 2),
        ("unspecified", 1),
    ]
    assert steps[1]["exited_by_reason"] == {"completed": 3}
    assert store.calls == [(SQL, params)]


def test_the_query_is_bounded_by_the_sorting_key_and_counts_rows_of_an_enrollment() -> None:
    for bound in (
        "workspace_id = {w:String}",
        "config_id = {c:String}",
        "toDate(occurred_at) >= {since:Date}",
        "toDate(occurred_at) < {until:Date}",
        "arm != ''",
        "FINAL",
    ):
        assert bound in SQL, bound
