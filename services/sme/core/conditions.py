"""Evaluate condition expressions (`sme.contracts.conditions`): pure and total.

`holds` reads no clock (`now` is given, for `now-P30D` bounds) and does no I/O, so a decision
replays identically. It never raises on any data: profiles and event properties come from
upstream apps, and a value of the wrong type (a string where a number is tested, a naive
date-time, a list in the middle of a property path) makes its predicate false, never an error.
Equality is type-strict: `true` is not `1`, `"5"` is not `5` (1 and 1.0 are equal numbers).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TypeGuard

from sme.contracts.conditions import (
    AllOf,
    AnyOf,
    Node,
    NotOf,
    Predicate,
    parse_bound,
    parse_instant,
)

_MISSING = object()


def holds(
    expr: Node,
    attributes: Mapping[str, object],
    properties: Mapping[str, object] | None,
    now: datetime,
) -> bool:
    """Whether `expr` holds for this profile and event (`properties` None: no event at hand,
    every property is missing). `now` must be timezone-aware."""
    if isinstance(expr, AllOf):
        return all(holds(e, attributes, properties, now) for e in expr.all)
    if isinstance(expr, AnyOf):
        return any(holds(e, attributes, properties, now) for e in expr.any)
    if isinstance(expr, NotOf):
        return not holds(expr.not_, attributes, properties, now)
    return _test(expr, _value(expr, attributes, properties), now)


def _value(
    p: Predicate, attributes: Mapping[str, object], props: Mapping[str, object] | None
) -> object:
    if p.attribute is not None:
        return attributes.get(p.attribute, _MISSING)
    node: object = props if props is not None else _MISSING
    for segment in (p.property or "").split("."):
        if not isinstance(node, Mapping):
            return _MISSING
        node = node.get(segment, _MISSING)
    return node


def _test(p: Predicate, value: object, now: datetime) -> bool:
    if p.exists is not None:
        return (value is not _MISSING and value is not None) == p.exists
    if p.equals is not None:
        return _same(value, p.equals)
    if p.one_of is not None:
        return any(_same(value, option) for option in p.one_of)
    if p.contains is not None:
        if isinstance(value, str):
            return isinstance(p.contains, str) and p.contains in value
        return isinstance(value, list | tuple) and any(_same(v, p.contains) for v in value)
    if p.min is not None or p.max is not None:
        if not _is_number(value):
            return False
        return (p.min is None or value >= p.min) and (p.max is None or value <= p.max)
    return _in_time_range(p, value, now)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: object, b: object) -> bool:
    """Type-strict equality: booleans only equal booleans, numbers numbers, strings strings."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def _in_time_range(p: Predicate, value: object, now: datetime) -> bool:
    moment = _instant(value) if isinstance(value, str) and len(value) <= 64 else None
    if moment is None:
        return False
    try:
        if p.before is not None:
            bound = _bound(p.before, now)
            if bound is None or not moment < bound:
                return False
        if p.after is not None:
            bound = _bound(p.after, now)
            if bound is None or not moment > bound:
                return False
    except (OverflowError, TypeError):  # a bound past year 9999; `now` given naive
        return False
    return p.before is not None or p.after is not None


def _bound(text: str, now: datetime) -> datetime | None:
    parsed = _parsed_bound(text)
    if isinstance(parsed, timedelta):
        return now + parsed
    return parsed


@lru_cache(maxsize=1024)
def _parsed_bound(text: str) -> datetime | timedelta | None:
    return parse_bound(text)


@lru_cache(maxsize=4096)
def _instant(text: str) -> datetime | None:
    return parse_instant(text)
