"""A message's content, decided purely: the template for the chosen channel and variant, and the
allow-listed data a command carries (`contracts/content.py` states the rules and bounds).

Only names on an allow-list are ever read here, so nothing else of the profile or the trigger
event can reach a command; sizes are measured as the compact JSON a sender will receive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sme.contracts.channels import Channel
from sme.contracts.content import (
    MAX_DATA_BYTES,
    MAX_DATA_VALUE_BYTES,
    MAX_TRIGGER_BYTES,
    CommandData,
    DataAllowList,
)
from sme.contracts.sequences import SequenceConfig, Step
from sme.core.evolve import PerObject
from sme.core.records import build

Trigger = tuple[tuple[str, Any], ...]
"""Allow-listed trigger-event properties remembered with an enrollment: (path, value) pairs."""
NO_DATA = CommandData()
_EMPTY_MAPS = len(b'{"attributes":{},"event":{}}')
_MISSING = object()


def resolve_template(step: Step, channel: Channel, variant: str) -> str:
    """The channel's template for the variant, else the channel's template, else the step's."""
    given = step.content.get(channel)
    if given is not None:
        chosen = given.variants.get(variant) or given.template
        if chosen:
            return chosen
    return step.template or ""


def allow_list(config: SequenceConfig, step: Step) -> DataAllowList | None:
    """A step's own allow-list replaces the sequence's (so a step can also carry less)."""
    return step.data if step.data is not None else config.data


def _allow_lists(config: SequenceConfig) -> list[DataAllowList]:
    lists = [step.data for step in config.steps if step.data is not None]
    return lists if config.data is None else [config.data, *lists]


def _trigger_paths(config: SequenceConfig) -> tuple[str, ...]:
    """Every event property some step of the sequence may carry, first-listed first."""
    paths = (path for allowed in _allow_lists(config) for path in allowed.event_properties)
    return tuple(dict.fromkeys(paths))


def _data_attributes(config: SequenceConfig) -> frozenset[str]:
    return frozenset(name for allowed in _allow_lists(config) for name in allowed.attributes)


trigger_paths = PerObject(_trigger_paths)
data_attributes = PerObject(_data_attributes)
"""The profile attributes some step may carry: the profile must keep them."""


def remember_trigger(
    config: SequenceConfig, properties: Mapping[str, Any]
) -> tuple[Trigger, tuple[str, ...]]:
    """The allow-listed properties of the enrolling event worth keeping, and the paths left out
    as too large: each value at most MAX_DATA_VALUE_BYTES, together MAX_TRIGGER_BYTES."""
    paths = trigger_paths(config)
    if not paths:
        return (), ()
    kept: list[tuple[str, Any]] = []
    omitted: list[str] = []
    total = 2  # the braces of the stored object
    for path in paths:
        value = _lookup(properties, path)
        if value is _MISSING:
            continue
        cost = _entry_cost(path, value)
        if cost is None or total + cost > MAX_TRIGGER_BYTES:
            omitted.append(path)
            continue
        kept.append((path, value))
        total += cost
    return tuple(kept), tuple(omitted)


def command_data(
    allowed: DataAllowList | None,
    attributes: Mapping[str, Any],
    trigger: Trigger,
    trigger_omitted: tuple[str, ...],
) -> CommandData:
    """Exactly the allow-listed values the user has, in allow-list order (attributes first),
    within MAX_DATA_BYTES; what does not fit is named in `omitted`."""
    if allowed is None:
        return NO_DATA
    total = _EMPTY_MAPS
    omitted: list[str] = []
    chosen: dict[str, dict[str, Any]] = {"attributes": {}, "event": {}}
    remembered = dict(trigger)
    candidates = [("attributes", n, attributes.get(n, _MISSING)) for n in allowed.attributes]
    for path in allowed.event_properties:
        if path in trigger_omitted:
            omitted.append(f"event.{path}")
        candidates.append(("event", path, remembered.get(path, _MISSING)))
    for section, name, value in candidates:
        if value is _MISSING:
            continue
        cost = _entry_cost(name, value)
        if cost is None or total + cost > MAX_DATA_BYTES:
            omitted.append(f"{section}.{name}")
            continue
        chosen[section][name] = value
        total += cost
    if not (chosen["attributes"] or chosen["event"] or omitted):
        return NO_DATA
    return build(CommandData, {**chosen, "omitted": omitted})


def _lookup(properties: Mapping[str, Any], path: str) -> Any:
    node: Any = properties
    for segment in path.split("."):
        if not isinstance(node, Mapping):
            return _MISSING
        node = node.get(segment, _MISSING)
    return node


def _entry_cost(name: str, value: Any) -> int | None:
    """Bytes of `"name":value,` in compact JSON; None if the value alone is over the bound
    (or is not JSON at all, such as an integer too large for a 64-bit reader)."""
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return None
    if size > MAX_DATA_VALUE_BYTES:
        return None
    return len(orjson.dumps(name)) + 1 + size + 1
