"""JSON merge patch (RFC 7396, which obsoletes RFC 7386) as the configuration API applies a
PATCH: objects merge member by member and recursively, a null deletes, arrays and every other
value replace whole, and the target is never modified in place. Expected documents are the
RFC's own examples (appendix A), written out by hand."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sme.gateway.config_service import merge_patch

# RFC 7396 appendix A: (original, patch, result), verbatim.
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_EXAMPLES)
def test_the_rfc_examples(original: Any, patch: Any, result: Any) -> None:
    assert merge_patch(original, patch) == result


def test_a_null_deletes_a_member_and_a_missing_member_is_left_alone() -> None:
    target = {"name": "Onboarding", "exit": {"goal": {"event_type": "purchased"}}, "tags": ["a"]}

    assert merge_patch(target, {"exit": None, "absent": None}) == {
        "name": "Onboarding",
        "tags": ["a"],
    }


def test_nested_objects_merge_member_by_member_at_every_depth() -> None:
    target = {
        "guardrails": {
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "frequency_caps": [{"max": 3, "per": "P1D"}],
        },
        "experiment": {"holdout_pct": 10, "baseline_pct": 45},
    }
    patch = {"guardrails": {"quiet_hours": {"end": "09:00"}}, "experiment": {"holdout_pct": 20}}

    assert merge_patch(target, patch) == {
        "guardrails": {
            "quiet_hours": {"start": "21:00", "end": "09:00"},
            "frequency_caps": [{"max": 3, "per": "P1D"}],
        },
        "experiment": {"holdout_pct": 20, "baseline_pct": 45},
    }


def test_an_array_is_replaced_whole_never_merged_element_by_element() -> None:
    target = {"steps": [{"id": "hello", "channels": ["email"]}, {"id": "nudge"}]}
    patch = {"steps": [{"id": "hello", "channels": ["sms"]}]}

    assert merge_patch(target, patch) == {"steps": [{"id": "hello", "channels": ["sms"]}]}
    assert merge_patch({"tags": ["a", "b"]}, {"tags": []}) == {"tags": []}


def test_a_null_inside_an_array_is_a_value_not_a_deletion() -> None:
    assert merge_patch({"a": [1, 2]}, {"a": [None, 2]}) == {"a": [None, 2]}


def test_an_object_patch_over_a_scalar_builds_the_object_without_its_nulls() -> None:
    assert merge_patch({"a": 5}, {"a": {"b": 1, "c": None}}) == {"a": {"b": 1}}


def test_an_empty_patch_changes_nothing() -> None:
    target = {"a": {"b": [1, {"c": 2}]}, "d": None}
    assert merge_patch(target, {}) == target


def test_false_zero_and_empty_string_replace_like_any_other_value() -> None:
    target = {"enabled": True, "count": 3, "name": "x"}
    assert merge_patch(target, {"enabled": False, "count": 0, "name": ""}) == {
        "enabled": False,
        "count": 0,
        "name": "",
    }


def test_the_target_is_not_modified() -> None:
    target = {"a": {"b": "c", "d": {"e": 1}}, "f": [1]}
    before = copy.deepcopy(target)

    merge_patch(target, {"a": {"b": None, "d": {"e": 2}}, "f": None})

    assert target == before
