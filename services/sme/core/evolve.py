"""Helpers for the core's immutable records: `evolve` (dataclasses.replace for slotted frozen
records, without replace's per-call field introspection, which dominated the decision
profile), and `PerObject` (an answer derived once per immutable configuration object)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")
_set = object.__setattr__


def evolve(record: T, **changes: Any) -> T:
    """A copy of a frozen, slotted dataclass instance with some fields changed."""
    cls = type(record)
    fresh = object.__new__(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        _set(fresh, name, changes.pop(name) if name in changes else getattr(record, name))
    if changes:
        raise TypeError(f"{cls.__name__} has no fields {sorted(changes)}")
    return fresh


class PerObject(Generic[K, T]):
    """`derive(obj)` remembered per object, for immutable inputs (frozen configurations) that
    every decision would otherwise walk again. Keyed by identity: an entry holds its object,
    so the id cannot be reused while remembered. Bounded: past `size` objects, it starts
    over (configurations are few; an edit makes a new object)."""

    __slots__ = ("_derive", "_memo", "_size")

    def __init__(self, derive: Callable[[K], T], size: int = 256) -> None:
        self._derive = derive
        self._memo: dict[int, tuple[K, T]] = {}
        self._size = size

    def __call__(self, obj: K) -> T:
        hit = self._memo.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = self._derive(obj)
        if len(self._memo) >= self._size:
            self._memo.clear()
        self._memo[id(obj)] = (obj, value)
        return value
