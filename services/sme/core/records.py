"""Building the contract models the core emits (commands, activities) from values it computed.

Validation of values the core built itself costs more than the rest of a send; skipping it
must not lose what validated construction gave: every field of the model, with its default
when the core does not set it (a field added to a contract reaches what the core emits), no
unknown field, no required field missing. `build` keeps exactly that, from a per-class shape
read once from the model's fields (`tests/unit/test_contract_construction.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class _Shape:
    template: dict[str, Any]  # every field in declaration order: its default, or None
    factories: tuple[tuple[str, Callable[[], Any]], ...]
    required: frozenset[str]
    fields: frozenset[str]
    new: Callable[[type[BaseModel]], Any]  # the class's bare constructor (no __init__)


@cache
def _shape(cls: type[BaseModel]) -> _Shape:
    template: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    required: set[str] = set()
    for name, info in cls.model_fields.items():
        template[name] = None
        if info.default_factory is not None:
            factories.append((name, info.default_factory))  # type: ignore[arg-type]
        elif info.default is PydanticUndefined:
            required.add(name)
        else:
            template[name] = info.default
    new = object.__new__ if cls.__new__ is object.__new__ else cls.__new__
    return _Shape(template, tuple(factories), frozenset(required), frozenset(template), new)


def build(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of `cls` with `values` and every other field at its default."""
    shape = _shape(cls)
    given = values.keys()
    data = {**shape.template, **values}  # declaration order, whatever the order given
    if given != shape.fields:  # not every field given: check, then fill in the defaults
        if not shape.required <= given or not given <= shape.fields:
            missing = sorted(shape.required - given)
            unknown = sorted(given - shape.fields)
            raise TypeError(f"{cls.__name__}: missing {missing}, unknown {unknown}")
        for name, factory in shape.factories:
            if name not in values:
                data[name] = factory()
    instance: M = shape.new(cls)
    _set(instance, "__dict__", data)
    _set(instance, "__pydantic_fields_set__", set(given))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance
