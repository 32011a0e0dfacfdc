"""Per-user state kept in the engine's Faust table: ids and counters, never payloads, and
every collection bounded (the dedupe window)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sme.contracts.channels import Channel
from sme.contracts.events import AttributeValue, Event

DEDUPE_WINDOW = 64
"""How many recent event ids per user are remembered to drop producer retries."""


@dataclass(frozen=True, slots=True)
class Profile:
    timezone: str | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    consent: dict[Channel, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserState:
    workspace_id: str
    user_id: str
    profile: Profile = field(default_factory=Profile)
    recent_event_ids: tuple[str, ...] = ()
    events_seen: int = 0
    last_event_at: datetime | None = None
    welcomed_at: datetime | None = None

    @classmethod
    def new(cls, workspace_id: str, user_id: str) -> UserState:
        return cls(workspace_id=workspace_id, user_id=user_id)

    def has_seen(self, event_id: str) -> bool:
        return event_id in self.recent_event_ids

    def observe(self, event: Event) -> UserState:
        """Record an event: remember its id (bounded), merge profile data, count it."""
        ids = (*self.recent_event_ids, event.event_id)[-DEDUPE_WINDOW:]
        last = self.last_event_at
        if last is None or event.occurred_at > last:
            last = event.occurred_at.astimezone(UTC)
        return replace(
            self,
            profile=merge_profile(self.profile, event),
            recent_event_ids=ids,
            events_seen=self.events_seen + 1,
            last_event_at=last,
        )

    # --- storage form: compact JSON-able dict ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "w": self.workspace_id,
            "u": self.user_id,
            "tz": self.profile.timezone,
            "at": self.profile.attributes,
            "cs": {ch.value: ok for ch, ok in self.profile.consent.items()},
            "ids": list(self.recent_event_ids),
            "n": self.events_seen,
            "le": _to_ms(self.last_event_at),
            "wa": _to_ms(self.welcomed_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserState:
        return cls(
            workspace_id=data["w"],
            user_id=data["u"],
            profile=Profile(
                timezone=data.get("tz"),
                attributes=dict(data.get("at") or {}),
                consent={Channel(ch): bool(ok) for ch, ok in (data.get("cs") or {}).items()},
            ),
            recent_event_ids=tuple(data.get("ids") or ()),
            events_seen=int(data.get("n", 0)),
            last_event_at=_from_ms(data.get("le")),
            welcomed_at=_from_ms(data.get("wa")),
        )


def merge_profile(profile: Profile, event: Event) -> Profile:
    """Newer profile data wins field by field; absent fields keep what we knew."""
    incoming = event.user
    if incoming is None:
        return profile
    return Profile(
        timezone=incoming.timezone or profile.timezone,
        attributes={**profile.attributes, **incoming.attributes},
        consent={**profile.consent, **incoming.consent},
    )


def state_key(workspace_id: str, user_id: str) -> str:
    """Table key: users are scoped by workspace (the topic key is the user id alone). The
    workspace is length-prefixed so no pair of ids can produce another pair's key."""
    return f"{len(workspace_id)}:{workspace_id}/{user_id}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _to_ms(moment: datetime | None) -> int | None:
    """Epoch milliseconds in integer arithmetic (float timestamps lose a ms now and then)."""
    return None if moment is None else (moment - _EPOCH) // _MS


def _from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else _EPOCH + ms * _MS
