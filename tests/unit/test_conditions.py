"""Condition expressions: every operator and combinator, write-time bounds and field paths, and
properties of the evaluator (logic laws, totality on arbitrary JSON-like data)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from sme.contracts.conditions import (
    MAX_DEPTH,
    MAX_PREDICATES,
    Expression,
    Node,
    attribute_names,
    property_locs,
)
from sme.core.conditions import holds

EXPR: TypeAdapter[Node] = TypeAdapter(Expression)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def expr(data: Any) -> Node:
    return EXPR.validate_python(data)


def check(data: dict[str, Any], value: Any, *, on: str = "attribute") -> bool:
    """One predicate on `value` (absent when `value` is ...), as attribute or property `v`."""
    node = expr({on: "v", **data})
    bag = {} if value is ... else {"v": value}
    return holds(node, bag, bag, NOW) if on == "attribute" else holds(node, {}, bag, NOW)


def locs(data: Any) -> list[tuple[str | int, ...]]:
    with pytest.raises(ValidationError) as caught:
        EXPR.validate_python(data)
    return [e["loc"] for e in caught.value.errors()]


# --- operators -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "value", "expected"),
    [
        ({"equals": "pro"}, "pro", True),
        ({"equals": "pro"}, "free", False),
        ({"equals": 1}, 1.0, True),
        ({"equals": 1}, True, False),  # type-strict: true is not 1
        ({"equals": True}, 1, False),
        ({"equals": True}, True, True),
        ({"equals": "5"}, 5, False),
        ({"equals": "pro"}, ..., False),
        ({"one_of": ["a", "b", 3]}, "b", True),
        ({"one_of": ["a", "b", 3]}, 3, True),
        ({"one_of": ["a", "b", 3]}, "c", False),
        ({"one_of": [1]}, True, False),
        ({"exists": True}, "x", True),
        ({"exists": True}, 0, True),
        ({"exists": True}, None, False),
        ({"exists": True}, ..., False),
        ({"exists": False}, ..., True),
        ({"exists": False}, None, True),
        ({"exists": False}, "", False),
        ({"contains": "vip"}, "tags:vip,new", True),
        ({"contains": "vip"}, "tags:new", False),
        ({"contains": "vip"}, ["new", "vip"], True),
        ({"contains": 2}, [1, 2], True),
        ({"contains": 2}, "123", False),  # a number is not a substring
        ({"contains": True}, [1], False),
        ({"contains": "a"}, {"a": 1}, False),
        ({"min": 50}, 50, True),
        ({"min": 50}, 49.99, False),
        ({"min": 50}, "60", False),
        ({"min": 50}, True, False),
        ({"max": 10}, 10, True),
        ({"max": 10}, 11, False),
        ({"min": 1, "max": 2}, 1.5, True),
        ({"min": 1, "max": 2}, 3, False),
        ({"min": 1}, float("nan"), False),
        ({"before": "2026-12-01"}, "2026-11-30", True),
        ({"before": "2026-12-01"}, "2026-12-01", False),  # strict
        ({"before": "2026-12-01"}, "2026-11-30T23:59:59-01:00", False),  # 00:59 UTC on the 1st
        ({"before": "2026-12-01"}, "2026-11-30T23:59:59+00:00", True),
        ({"after": "2026-12-01T00:00:00+01:00"}, "2026-11-30T23:30:00Z", True),
        ({"after": "2026-12-01T00:00:00+01:00"}, "2026-11-30T22:30:00Z", False),
        ({"after": "2026-01-01", "before": "2027-01-01"}, "2026-06-01", True),
        ({"after": "2026-01-01", "before": "2027-01-01"}, "2027-06-01", False),
        ({"before": "2026-12-01"}, "2026-11-30T10:00:00", False),  # naive: zone unknown
        ({"before": "2026-12-01"}, "yesterday", False),
        ({"before": "2026-12-01"}, 1_700_000_000, False),
        ({"after": "now-P30D"}, "2026-11-15", True),
        ({"after": "now-P30D"}, "2026-10-15", False),
        ({"before": "now"}, "2026-12-01T11:59:59Z", True),
        ({"before": "now+PT1H"}, "2026-12-01T12:30:00Z", True),
    ],
)
def test_each_operator_on_attributes_and_properties(
    test: dict[str, Any], value: Any, expected: bool
) -> None:
    assert check(test, value) is expected
    assert check(test, value, on="property") is expected


def test_a_property_path_reaches_into_nested_objects_only() -> None:
    node = expr({"property": "cart.total", "min": 50})
    assert holds(node, {}, {"cart": {"total": 80}}, NOW)
    assert not holds(node, {}, {"cart": {"total": 20}}, NOW)
    assert not holds(node, {}, {"cart": [{"total": 80}]}, NOW)
    assert not holds(node, {}, {"cart": 80}, NOW)
    assert not holds(node, {}, {"cart.total": 80}, NOW)
    assert not holds(node, {"cart": {"total": 80}}, None, NOW)  # no event at hand


def test_attributes_and_properties_are_separate_sources() -> None:
    node = expr({"attribute": "plan", "equals": "pro"})
    assert not holds(node, {}, {"plan": "pro"}, NOW)
    assert holds(node, {"plan": "pro"}, None, NOW)


# --- combinators ---------------------------------------------------------------------------

PRO = {"attribute": "plan", "equals": "pro"}
BIG = {"property": "amount", "min": 50}


@pytest.mark.parametrize(
    ("data", "plan", "amount", "expected"),
    [
        ({"all": [PRO, BIG]}, "pro", 60, True),
        ({"all": [PRO, BIG]}, "pro", 40, False),
        ({"any": [PRO, BIG]}, "free", 60, True),
        ({"any": [PRO, BIG]}, "free", 40, False),
        ({"not": PRO}, "free", 0, True),
        ({"not": PRO}, "pro", 0, False),
        ({"all": []}, "free", 0, True),
        ({"any": []}, "pro", 60, False),
        ({"all": [{"any": [PRO, BIG]}, {"not": {"property": "coupon", "exists": True}}]}, "x", 60,
         True),
    ],
)  # fmt: skip
def test_combinators(data: dict[str, Any], plan: str, amount: int, expected: bool) -> None:
    assert holds(expr(data), {"plan": plan}, {"amount": amount}, NOW) is expected


# --- write-time validation -----------------------------------------------------------------


def test_an_expression_round_trips_through_json_with_not_spelled_not() -> None:
    node = expr({"all": [{"not": PRO}, {"any": [BIG]}]})
    dumped = EXPR.dump_python(node, mode="json")
    assert "not" in dumped["all"][0]
    assert EXPR.validate_json(EXPR.dump_json(node)) == node
    assert EXPR.validate_python(dumped) == node


def test_depth_is_bounded() -> None:
    node: dict[str, Any] = {"attribute": "a", "exists": True}
    for _ in range(MAX_DEPTH - 1):
        node = {"not": node}
    expr(node)  # exactly the limit
    assert locs({"not": node}) == [()]


def test_a_hostile_nesting_is_refused_without_recursing() -> None:
    node: dict[str, Any] = {"attribute": "a", "exists": True}
    for _ in range(50_000):
        node = {"any": [node]}
    assert locs(node) == [()]


def test_the_predicate_count_is_bounded() -> None:
    one = {"attribute": "a", "exists": True}
    expr({"any": [one] * MAX_PREDICATES})
    assert locs({"any": [one] * (MAX_PREDICATES + 1)}) == [()]
    assert locs({"any": [{"all": [one] * 30}, {"all": [one] * 30}]}) == [()]


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"attribute": "a"}, ("predicate", "equals")),
        ({"attribute": "a", "equals": 1, "min": 0}, ("predicate", "min")),
        ({"attribute": "a", "min": 0, "before": "now"}, ("predicate", "before")),
        ({"equals": 1}, ("predicate", "attribute")),
        ({"attribute": "a", "property": "b", "equals": 1}, ("predicate", "attribute")),
        ({"attribute": "a", "min": 5, "max": 1}, ("predicate", "max")),
        ({"attribute": "a", "after": "2027-01-01", "before": "2026-01-01"},
         ("predicate", "before")),
        ({"attribute": "a", "before": "2026-01-01T10:00:00"}, ("predicate", "before")),
        ({"attribute": "a", "before": "now-P99999D"}, ("predicate", "before")),
        ({"attribute": "a", "before": "tomorrow"}, ("predicate", "before")),
        ({"attribute": "a", "min": True}, ("predicate", "min")),
        ({"attribute": "a", "min": "5"}, ("predicate", "min")),
        ({"attribute": "a", "equals": "x" * 257}, ("predicate", "equals", "constrained-str")),
        ({"attribute": "a" * 65, "exists": True}, ("predicate", "attribute")),
        ({"attribute": "a", "one_of": []}, ("predicate", "one_of")),
        ({"attribute": "a", "one_of": list(range(101))}, ("predicate", "one_of")),
        ({"attribute": "a", "exists": True, "extra": 1}, ("predicate", "extra")),
        ({"property": "a.__proto__", "exists": True}, ("predicate", "property")),
        ({"property": "cart.constructor", "exists": True}, ("predicate", "property")),
        ({"property": "a..b", "exists": True}, ("predicate", "property")),
        ({"property": "a.b.c.d.e.f", "exists": True}, ("predicate", "property")),
        ({"property": "a b", "exists": True}, ("predicate", "property")),
        ({"all": [{"attribute": "a"}]}, ("all", "all", 0, "predicate", "equals")),
        ({"not": {"any": [{"property": "__x", "exists": True}]}},
         ("not", "not", "any", "any", 0, "predicate", "property")),
        ({"any": "x"}, ("any", "any")),
        ("plan == pro", ()),
    ],
)  # fmt: skip
def test_errors_name_the_field_to_fix(data: Any, loc: tuple[str | int, ...]) -> None:
    assert loc in locs(data)


def test_walkers_find_attributes_and_property_locations() -> None:
    node = expr({"all": [PRO, {"not": {"any": [BIG, {"attribute": "age", "min": 18}]}}]})
    assert attribute_names(node) == {"plan", "age"}
    assert property_locs(node, ("when",)) == [("when", "all", 1, "not", "any", 0, "property")]
    assert attribute_names(None) == set()
    assert property_locs(None, ()) == []


# --- properties ----------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c"])
SCALARS = st.one_of(
    st.booleans(),
    st.integers(-100, 100),
    st.floats(-100, 100, allow_nan=False),
    st.sampled_from(["x", "xy", "2026-11-30", "2026-12-02T00:00:00+02:00", "2026-12-01T10:00"]),
)
JSON = st.recursive(
    st.none() | SCALARS | st.text(max_size=8) | st.floats(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
TESTS = st.one_of(
    st.builds(lambda v: {"equals": v}, SCALARS),
    st.builds(lambda v: {"one_of": v}, st.lists(SCALARS, min_size=1, max_size=3)),
    st.builds(lambda v: {"exists": v}, st.booleans()),
    st.builds(lambda v: {"contains": v}, SCALARS),
    st.builds(lambda v: {"min": v}, st.integers(-50, 50)),
    st.builds(lambda v: {"max": v}, st.floats(-50, 50)),
    st.builds(lambda v: {"before": v}, st.sampled_from(["2026-12-01", "now", "now-PT1H"])),
    st.builds(lambda v: {"after": v}, st.sampled_from(["2026-11-30T12:00:00Z", "now+P1D"])),
)
PREDICATES = st.builds(
    lambda source, key, test: {source: key, **test},
    st.sampled_from(["attribute", "property"]),
    st.sampled_from(["a", "b", "a.b", "c.a"]),
    TESTS,
)
EXPRESSIONS = st.recursive(
    PREDICATES,
    lambda inner: st.one_of(
        st.builds(lambda e: {"not": e}, inner),
        st.builds(lambda es: {"all": es}, st.lists(inner, max_size=3)),
        st.builds(lambda es: {"any": es}, st.lists(inner, max_size=3)),
    ),
    max_leaves=6,
)
BAGS = st.dictionaries(KEYS, JSON, max_size=3)


def valid(data: dict[str, Any]) -> Node | None:
    try:
        return expr(data)
    except ValidationError:
        return None  # deeper than allowed: not an expression


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS, BAGS, st.none() | BAGS)
def test_the_evaluator_is_total_and_double_negation_is_identity(
    data: dict[str, Any], attributes: dict[str, Any], properties: dict[str, Any] | None
) -> None:
    node = valid(data)
    if node is None:
        return
    result = holds(node, attributes, properties, NOW)
    assert isinstance(result, bool)
    twice = valid({"not": {"not": data}})
    if twice is not None:  # within the depth bound
        assert holds(twice, attributes, properties, NOW) is result


@settings(max_examples=300, deadline=None)
@given(st.lists(PREDICATES, max_size=4), BAGS, BAGS)
def test_de_morgan_and_the_empty_combinators(
    members: list[dict[str, Any]], attributes: dict[str, Any], properties: dict[str, Any]
) -> None:
    def h(data: dict[str, Any]) -> bool:
        return holds(expr(data), attributes, properties, NOW)

    negated = [{"not": m} for m in members]
    assert h({"not": {"all": members}}) == h({"any": negated})
    assert h({"not": {"any": members}}) == h({"all": negated})
    assert h({"all": members}) == all(h(m) for m in members)
    assert h({"any": members}) == any(h(m) for m in members)
    assert h({"all": []}) and not h({"any": []})


@settings(max_examples=200, deadline=None)
@given(EXPRESSIONS, JSON, JSON, st.datetimes(timezones=st.just(UTC)))
def test_any_data_at_all_never_raises(
    data: dict[str, Any], attribute: Any, property_: Any, now: datetime
) -> None:
    node = valid(data)
    if node is None:
        return
    for props in ({"a": property_, "b": {"a": property_}, "c": {"a": property_}}, None):
        holds(node, {"a": attribute, "b": attribute, "c": attribute}, props, now)


def test_a_relative_bound_past_the_calendar_is_simply_false() -> None:
    node = expr({"attribute": "a", "before": "now+P3650D"})
    late = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    assert holds(node, {"a": "2026-01-01"}, None, late) is False
