"""`evolve`: dataclasses.replace for the core's slotted frozen records, without replace's
per-call field introspection (it dominated the decision profile)."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")
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
