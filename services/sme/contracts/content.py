"""What a message step hands its sender to render: a template id per channel (and per variant),
and an allow-list of profile attributes and trigger-event properties copied onto the command.

Personal data leaves the engine only through the allow-list, and only in bounded size: a value
whose compact JSON is longer than MAX_DATA_VALUE_BYTES, or that would take a command's data past
MAX_DATA_BYTES, is left out and named in the command's `data.omitted` (never truncated: half a
name or a cut URL would render wrong without anyone noticing). The trigger event's allow-listed
properties are remembered with the enrollment, at most MAX_TRIGGER_BYTES of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator

from sme.contracts.channels import Channel
from sme.contracts.conditions import AttributeName, PropertyPath
from sme.contracts.errors import Loc
from sme.contracts.events import AttributeValue

MAX_DATA_VALUE_BYTES = 512
"""One value's compact JSON (UTF-8) at most: a rendering field, not a document."""
MAX_DATA_BYTES = 2048
"""A command's `data` (attributes and event properties together, compact JSON) at most."""
MAX_TRIGGER_BYTES = 1024
"""Allow-listed trigger-event properties remembered per enrollment (kept in the user's state,
which stays small: an id to look up suits a large payload better)."""
MAX_DATA_KEYS = 20

TemplateId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
VariantName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelContent(_Strict):
    """A channel's template, and per variant where variants differ. Unnamed variants use
    `template`, else the step's own `template`."""

    template: TemplateId | None = Field(None, description="The channel's template id.")
    variants: dict[VariantName, TemplateId] = Field(
        default_factory=dict,
        max_length=10,
        description="Template id per variant of the step (keys among the step's variants).",
    )


def _unique_plain(names: list[str]) -> list[str]:
    """Each name once, and none a sender's object model treats specially (they become keys of
    the command's JSON objects, which a JavaScript sender may merge into its own)."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{name!r} is listed twice (position {i})")
        if any(part.startswith("__") or part in ("constructor", "prototype")
               for part in name.split(".")):  # fmt: skip
            raise ValueError(f"{name!r}: names must not start with __ nor be constructor or "
                             "prototype")  # fmt: skip
        seen.add(name)
    return names


class DataAllowList(_Strict):
    """What a command carries for rendering; nothing else of the user leaves the engine."""

    attributes: list[AttributeName] = Field(
        default_factory=list,
        max_length=MAX_DATA_KEYS,
        description="Profile attributes copied into the command's data.attributes.",
    )
    event_properties: list[PropertyPath] = Field(
        default_factory=list,
        max_length=MAX_DATA_KEYS,
        description="Properties (dotted paths) of the event that enrolled the user, copied into "
        "the command's data.event under the path as given; list the most important first "
        f"(remembered in order, at most {MAX_TRIGGER_BYTES} bytes per enrollment).",
    )

    @field_validator("attributes", "event_properties")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        return _unique_plain(v)


class CommandData(_Strict):
    """The allow-listed values for rendering. A name absent from both maps and from `omitted`
    had no value (the user has no such attribute, the trigger event no such property, or the
    user entered without an event); render a fallback."""

    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict, description="Allow-listed profile attributes, by name."
    )
    event: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Allow-listed properties of the event that enrolled the user, by path.",
    )
    omitted: list[str] = Field(
        default_factory=list,
        description=f"Allow-listed values left out as too large (`attributes.<name>`, "
        f"`event.<path>`): over {MAX_DATA_VALUE_BYTES} bytes of compact JSON each, or past "
        f"{MAX_DATA_BYTES} bytes of data in all, or past the {MAX_TRIGGER_BYTES} bytes of "
        "event properties an enrollment remembers.",
    )


def content_errors(
    kind: str,
    channels: Sequence[Channel],
    variants: Sequence[str],
    template: str | None,
    content: Mapping[Channel, ChannelContent],
    data: DataAllowList | None,
) -> list[tuple[Loc, str, object]]:
    """A step's content checked against its channels and variants: every (channel, variant)
    the step can send resolves to a template, and nothing names a channel or variant the step
    does not have (a typo would otherwise silently send the fallback)."""
    errors: list[tuple[Loc, str, object]] = []
    if kind != "message":
        if content:
            errors.append((("content",), "only message steps have content", None))
        if data is not None:
            errors.append((("data",), "only message steps carry data", None))
        return errors
    for channel, given in content.items():
        at: Loc = ("content", channel.value)
        if channel not in channels:
            errors.append((at, f"{channel.value} is not among the step's channels", None))
        if given.template is None and not given.variants:
            errors.append((at, "give a template, per-variant templates, or both", None))
            continue
        for name in given.variants:
            if name not in variants:
                message = f"{name!r} is not among the step's variants {list(variants)}"
                errors.append(((*at, "variants", name), message, None))
        uncovered = [name for name in variants if name not in given.variants]
        if uncovered and given.template is None and template is None:
            message = f"variants {uncovered} have no template: give one here or on the step"
            errors.append(((*at, "template"), message, None))
    return errors
