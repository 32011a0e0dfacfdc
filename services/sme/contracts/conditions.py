"""Condition expressions: `all` / `any` / `not` over attribute and event-property predicates.

One small form shared by every place a sequence tests something (entry, step conditions,
branch rules, wait-for, exits, goal), so a campaign manager learns it once. Bounded at write
time (depth, predicate count, string and list lengths) so evaluating one is always cheap.

    {"all": [{"property": "amount", "min": 50},
             {"not": {"attribute": "plan", "one_of": ["staff", "test"]}}]}

A predicate names one value, `attribute` (the user's profile) or `property` (a dotted path into
the event at hand), and one test: `equals`, `one_of`, `exists`, `contains`, a `min`/`max`
number range, or a `before`/`after` time range. Time bounds are a date (`2026-12-01`, midnight
UTC), a date-time with an offset, or `now` with an optional ISO duration (`now-P30D`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from sme.contracts.errors import Loc, field_errors

MAX_DEPTH = 5
"""Nodes on the longest path from the root (a lone predicate is depth 1)."""
MAX_PREDICATES = 50
MAX_ONE_OF = 100
MAX_TEXT = 256
MAX_PATH_SEGMENTS = 5
MAX_RELATIVE = timedelta(days=3650)

AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PropertyPath = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,4}$"
    ),
]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Scalar = Text | bool | int | Number
TimeBound = Annotated[str, StringConstraints(min_length=3, max_length=64)]

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RELATIVE = re.compile(r"now(?:([+-])(P[0-9A-Z.]+))?")
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def parse_instant(text: str) -> datetime | None:
    """An ISO date (midnight UTC) or a date-time with an offset; anything else (a naive
    date-time included: its zone is unknown) is None."""
    if len(text) > 64:
        return None
    try:
        if _DATE.fullmatch(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None and moment.utcoffset() is not None else None


def parse_bound(text: str) -> datetime | timedelta | None:
    """A time bound: an instant, or an offset from the evaluation's `now` (a timedelta)."""
    relative = _RELATIVE.fullmatch(text)
    if relative is None:
        return parse_instant(text)
    sign, duration = relative.groups()
    if duration is None:
        return timedelta(0)
    try:
        delta = _DURATION.validate_python(duration)
    except ValidationError:
        return None
    if delta > MAX_RELATIVE:
        return None
    return -delta if sign == "-" else delta


def _special(name: str) -> bool:
    """Names that mean something else to the object models downstream tools may use."""
    return name.startswith("__") or name in ("constructor", "prototype")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_TESTS = ("equals", "one_of", "exists", "contains", "min", "max", "before", "after")
_RANGES = {"max": "min", "after": "before"}  # one range, two ends


class Predicate(_Strict):
    """One test on one value; a value of the wrong type (or missing) fails every test but
    `exists: false`."""

    attribute: AttributeName | None = Field(None, description="A profile attribute.")
    property: PropertyPath | None = Field(
        None, description="A dotted path into the event's properties, e.g. cart.total."
    )
    equals: Scalar | None = Field(None, description="Same type and value (1 is not true).")
    one_of: list[Scalar] | None = Field(None, min_length=1, max_length=MAX_ONE_OF)
    exists: bool | None = Field(None, description="Present and not null (or, false: absent).")
    contains: Scalar | None = Field(
        None, description="A substring of a string value, or an element of a list value."
    )
    min: Number | None = Field(None, description="Inclusive; numbers only.")
    max: Number | None = Field(None, description="Inclusive; numbers only.")
    before: TimeBound | None = Field(None, description="Strictly earlier than this time.")
    after: TimeBound | None = Field(None, description="Strictly later than this time.")

    @field_validator("property")
    @classmethod
    def _plain_names(cls, v: str | None) -> str | None:
        if v is not None and any(_special(segment) for segment in v.split(".")):
            raise ValueError(
                "property path names must not start with __ nor be constructor or prototype"
            )
        return v

    @field_validator("before", "after")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None and parse_bound(v) is None:
            raise ValueError(
                "give a date (2026-12-01), a date-time with an offset, or now[+-]<ISO duration>"
                f" of at most {MAX_RELATIVE.days} days"
            )
        return v

    @model_validator(mode="after")
    def _one_test(self) -> Predicate:
        errors: list[tuple[Loc, str, object]] = []
        if (self.attribute is None) == (self.property is None):
            errors.append((("attribute",), "give exactly one of attribute or property", None))
        given = [name for name in _TESTS if getattr(self, name) is not None]
        kinds = {_RANGES.get(name, name) for name in given}
        if len(kinds) != 1:
            field = given[-1] if given else "equals"
            message = (
                "give exactly one test: equals, one_of, exists, contains, "
                "a min/max range or a before/after range"
            )
            errors.append(((field,), message, None))
        if self.min is not None and self.max is not None and self.min > self.max:
            errors.append((("max",), "max must not be below min", self.max))
        low, high = parse_bound(self.after or ""), parse_bound(self.before or "")
        if isinstance(low, datetime) and isinstance(high, datetime) and low >= high:
            errors.append((("before",), "after must be earlier than before", self.before))
        if errors:
            raise field_errors("Predicate", errors)
        return self


class AllOf(_Strict):
    """True when every member holds (an empty list holds)."""

    all: list[Expression] = Field(max_length=MAX_PREDICATES)


class AnyOf(_Strict):
    """True when at least one member holds (an empty list does not)."""

    any: list[Expression] = Field(max_length=MAX_PREDICATES)


class NotOf(BaseModel):
    """True when its member does not hold. `not` is a Python keyword: the field is `not_`,
    spelled `not` on the wire both ways."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, serialize_by_alias=True, validate_by_name=False
    )

    not_: Expression = Field(alias="not")


Node = AllOf | AnyOf | NotOf | Predicate


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((k for k in ("all", "any", "not") if k in value), "predicate")
    kinds: dict[type, str] = {AllOf: "all", AnyOf: "any", NotOf: "not", Predicate: "predicate"}
    return kinds.get(type(value))


def _children(value: Any) -> list[Any]:
    """The members of a raw (dict) or validated node; nothing for anything else."""
    if isinstance(value, AllOf | AnyOf | NotOf):
        return [value.not_] if isinstance(value, NotOf) else list(_members(value))
    if not isinstance(value, dict):
        return []
    kind = _kind(value)
    members = value.get(kind) if kind in ("all", "any", "not") else None
    if kind == "not":
        return [members]
    return list(members[: MAX_PREDICATES + 1]) if isinstance(members, list) else []


def _members(node: AllOf | AnyOf) -> list[Node]:
    return node.all if isinstance(node, AllOf) else node.any


def _within_bounds(value: Any) -> Any:
    """Depth and size are checked on the raw input before any of it is parsed, iteratively and
    stopping at the first excess, so a hostile document costs O(bounds), never a deep recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    predicates = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"an expression nests at most {MAX_DEPTH} levels deep")
        if _kind(node) == "predicate":
            predicates += 1
            if predicates > MAX_PREDICATES:
                raise ValueError(f"an expression holds at most {MAX_PREDICATES} predicates")
        stack.extend((child, depth + 1) for child in _children(node))
    return value


Expression = Annotated[
    Union[  # noqa: UP007 - the members carry tags
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[NotOf, Tag("not")],
        Annotated[Predicate, Tag("predicate")],
    ],
    Discriminator(
        _kind,
        custom_error_type="invalid_expression",
        custom_error_message="an expression is an object: all, any, not, or a predicate",
    ),
    BeforeValidator(_within_bounds),
]

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


def walk(node: Node, loc: Loc = ()) -> Iterator[tuple[Loc, Predicate]]:
    """Every predicate with its location relative to the expression (for field errors)."""
    if isinstance(node, Predicate):
        yield loc, node
    elif isinstance(node, NotOf):
        yield from walk(node.not_, (*loc, "not"))
    else:
        key = "all" if isinstance(node, AllOf) else "any"
        for i, member in enumerate(_members(node)):
            yield from walk(member, (*loc, key, i))


def property_locs(node: Node | None, at: Loc) -> list[Loc]:
    """Where an expression tests an event property: an error where no event is at hand."""
    if node is None:
        return []
    return [(*at, *loc, "property") for loc, p in walk(node) if p.property is not None]


def attribute_names(node: Node | None) -> set[str]:
    """The profile attributes an expression reads (the profile keeps only those asked about)."""
    if node is None:
        return set()
    return {p.attribute for _, p in walk(node) if p.attribute is not None}
