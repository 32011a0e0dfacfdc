"""Per-user state kept in the engine's Faust table: ids and counters, never payloads, and
every collection bounded. Stored as compact JSON (short keys, epoch milliseconds)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm
from sme.contracts.events import AttributeValue, Event
from sme.contracts.sequences import DEFAULT_CATEGORY, MAX_CAP
from sme.core.evolve import evolve
from sme.core.timeutil import from_ms, opt_from_ms, opt_to_ms, to_ms

DEDUPE_WINDOW = 32
"""How many recent event ids (hashed) per user are remembered to drop producer retries."""
MAX_TOUCHES = MAX_CAP
"""Latest touches remembered per user; older sends are kept only while a frequency cap or a
minimum gap of the workspace still counts them (bounded by the caps' `max`)."""
MAX_ENROLLMENTS = 16
CHANNEL_CODES = {ch: i for i, ch in enumerate(Channel)}
CODE_CHANNELS = dict(enumerate(Channel))
ARM_CODES = {arm: i for i, arm in enumerate(Arm)}
CODE_ARMS = dict(enumerate(Arm))


@lru_cache(maxsize=64)  # an event is looked up, then remembered: one hash, not two
def event_fingerprint(event_id: str) -> str:
    """48-bit hash of an event id: a tenth of the bytes, collisions ~1e-13 per window."""
    return hashlib.blake2b(event_id.encode(), digest_size=6).hexdigest()


def short_command_id(command_id: str) -> str:
    return command_id.replace("-", "")[:16]


@dataclass(frozen=True, slots=True)
class Profile:
    timezone: str | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    consent: dict[Channel, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Touch:
    """One message decided for the user (sent, or suppressed in the holdout)."""

    at_ms: int
    config_id: str
    step_id: str
    channel: Channel | None
    command: str  # short_command_id
    arm: Arm
    variant: str
    group: str = "*"
    rewarded: bool = False
    category: str = DEFAULT_CATEGORY  # what category caps count
    transactional: bool = False  # no cap or minimum gap counts it


@dataclass(frozen=True, slots=True)
class Past:
    """What outlives an enrollment: for re-entry, ids, and one conversion per enrollment.

    One per sequence the user ever entered, never evicted: `seq` counts the user's enrollments
    in that sequence and is part of every command and activity id of an enrollment, so ids are
    unique for the life of the user and `reentry: never` means never. Bounded by the
    workspace's sequences (about 40 bytes each), not by traffic."""

    enrolled_ms: int
    seq: int
    converted: bool = False
    arm: Arm | None = None
    """The arm the user was exposed to (the arm of record for a conversion after the enrollment
    ended, and for re-entry); None only in states stored before it was kept."""


@dataclass(frozen=True, slots=True)
class Enrollment:
    config_id: str
    version: int
    arm: Arm
    seq: int  # this user's n-th enrollment in this config: part of every id
    enrolled_ms: int
    step: int  # index into the config's steps
    step_id: str
    step_ms: int  # when the current step started (the "previous step" for conditions)
    due_ms: int
    sent: int = 0
    seen: tuple[str, ...] = ()  # watched event types seen since the step started
    deferrals: int = 0  # deferrals at this step (part of the deferral activity ids)
    timed: bool = False  # send-time optimisation already applied at this step
    trigger: tuple[tuple[str, Any], ...] = ()  # allow-listed trigger-event properties (bounded)
    trigger_omitted: tuple[str, ...] = ()  # allow-listed ones too large to keep


@dataclass(frozen=True, slots=True)
class UserState:
    workspace_id: str
    user_id: str
    profile: Profile = field(default_factory=Profile)
    recent_events: tuple[str, ...] = ()
    events_seen: int = 0
    last_event_at: datetime | None = None
    enrollments: tuple[Enrollment, ...] = ()
    past: dict[str, Past] = field(default_factory=dict)  # config id -> last enrolment
    touches: tuple[Touch, ...] = ()
    affinity: dict[Channel, tuple[int, int]] = field(default_factory=dict)  # (sent, engaged)
    hours: dict[int, int] = field(default_factory=dict)  # local hour -> engagements
    epoch: str = ""  # which life of the user this is (set on creation; part of every id)

    @classmethod
    def new(cls, workspace_id: str, user_id: str, epoch: str = "") -> UserState:
        return cls(workspace_id=workspace_id, user_id=user_id, epoch=epoch)

    def has_seen(self, event_id: str) -> bool:
        return event_fingerprint(event_id) in self.recent_events

    def observe(self, event: Event, keep: Collection[str] | None = None) -> UserState:
        """Record an event: remember its id (bounded), merge profile data, count it. With
        `keep` (the attribute keys the workspace's sequences can ask about), the profile holds
        only those attributes: bounded by the configuration, whatever events carry."""
        ids = (*self.recent_events, event_fingerprint(event.event_id))[-DEDUPE_WINDOW:]
        last = self.last_event_at
        if last is None or event.occurred_at > last:
            last = event.occurred_at.astimezone(UTC)
        return evolve(
            self,
            profile=merge_profile(self.profile, event, keep),
            recent_events=ids,
            events_seen=self.events_seen + 1,
            last_event_at=last,
        )

    def next_due_ms(self) -> int | None:
        return min((e.due_ms for e in self.enrollments), default=None)

    def enrollment(self, config_id: str) -> Enrollment | None:
        return next((e for e in self.enrollments if e.config_id == config_id), None)

    def with_enrollment(self, enrollment: Enrollment) -> UserState:
        others = tuple(e for e in self.enrollments if e.config_id != enrollment.config_id)
        return evolve(self, enrollments=(*others, enrollment))

    def without_enrollment(self, config_id: str) -> UserState:
        return evolve(
            self, enrollments=tuple(e for e in self.enrollments if e.config_id != config_id)
        )

    # --- storage form: compact JSON-able dict -------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"w": self.workspace_id, "u": self.user_id, "n": self.events_seen}
        if self.profile.timezone:
            out["tz"] = self.profile.timezone
        if self.profile.attributes:
            out["at"] = self.profile.attributes
        if self.profile.consent:
            out["cs"] = {ch.value: ok for ch, ok in self.profile.consent.items()}
        if self.recent_events:
            out["ids"] = list(self.recent_events)
        if self.last_event_at is not None:
            out["le"] = opt_to_ms(self.last_event_at)
        if self.enrollments:
            out["en"] = [_enrollment_row(e) for e in self.enrollments]
        if self.past:
            out["pa"] = {k: _past_row(p) for k, p in self.past.items()}
        if self.touches:
            out["to"] = [_touch_row(t) for t in self.touches]
        if self.affinity:
            out["af"] = {ch.value: list(v) for ch, v in self.affinity.items()}
        if self.hours:
            out["hr"] = {str(h): n for h, n in self.hours.items()}
        if self.epoch:
            out["ep"] = self.epoch
        return out

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
            recent_events=tuple(data.get("ids") or ()),
            events_seen=int(data.get("n", 0)),
            last_event_at=opt_from_ms(data.get("le")),
            enrollments=tuple(_enrollment_from(r) for r in data.get("en") or ()),
            past={k: _past_from(v) for k, v in (data.get("pa") or {}).items()},
            touches=tuple(_touch_from(r) for r in data.get("to") or ()),
            affinity={
                Channel(ch): (int(v[0]), int(v[1])) for ch, v in (data.get("af") or {}).items()
            },
            hours={int(h): int(n) for h, n in (data.get("hr") or {}).items()},
            epoch=str(data.get("ep") or ""),
        )


def merge_profile(profile: Profile, event: Event, keep: Collection[str] | None = None) -> Profile:
    """Newer profile data wins field by field; absent fields keep what we knew. With `keep`,
    attributes outside it are dropped (also those a state stored before kept)."""
    incoming = event.user
    if incoming is not None:
        profile = Profile(
            timezone=incoming.timezone or profile.timezone,
            attributes={**profile.attributes, **incoming.attributes},
            consent={**profile.consent, **incoming.consent},
        )
    if keep is not None and any(k not in keep for k in profile.attributes):
        attributes = {k: v for k, v in profile.attributes.items() if k in keep}
        profile = Profile(profile.timezone, attributes, profile.consent)
    return profile


def state_key(workspace_id: str, user_id: str) -> str:
    """Table key: users are scoped by workspace (the topic key is the user id alone). The
    workspace is length-prefixed so no pair of ids can produce another pair's key."""
    return f"{len(workspace_id)}:{workspace_id}/{user_id}"


def _past_row(p: Past) -> list[Any]:
    row: list[Any] = [p.enrolled_ms, p.seq, int(p.converted)]
    if p.arm is not None:
        row.append(ARM_CODES[p.arm])
    return row


def _past_from(r: list[Any]) -> Past:
    arm = CODE_ARMS[r[3]] if len(r) > 3 else None
    return Past(int(r[0]), int(r[1]), bool(r[2]), arm)


def _enrollment_row(e: Enrollment) -> list[Any]:
    row = [
        e.config_id,
        e.version,
        ARM_CODES[e.arm],
        e.seq,
        e.enrolled_ms,
        e.step,
        e.step_id,
        e.step_ms,
        e.due_ms,
        e.sent,
        list(e.seen),
        e.deferrals,
        int(e.timed),
    ]
    if e.trigger or e.trigger_omitted:  # only sequences with a data allow-list pay for it
        row.append(dict(e.trigger))
        if e.trigger_omitted:
            row.append(list(e.trigger_omitted))
    return row


def _enrollment_from(r: list[Any]) -> Enrollment:
    return Enrollment(
        r[0],
        int(r[1]),
        CODE_ARMS[r[2]],
        int(r[3]),
        int(r[4]),
        int(r[5]),
        r[6],
        int(r[7]),
        int(r[8]),
        int(r[9]),
        tuple(r[10]),
        int(r[11]),
        bool(r[12]) if len(r) > 12 else False,
        tuple(r[13].items()) if len(r) > 13 else (),
        tuple(r[14]) if len(r) > 14 else (),
    )


def _touch_row(t: Touch) -> list[Any]:
    """The category and the transactional flag are written only when not the defaults, so a
    touch of an uncategorised marketing step costs no more than before categories."""
    code = -1 if t.channel is None else CHANNEL_CODES[t.channel]
    row: list[Any] = [
        t.at_ms,
        t.config_id,
        t.step_id,
        code,
        t.command,
        ARM_CODES[t.arm],
        t.variant,
        t.group,
        int(t.rewarded),
    ]
    if t.transactional:
        row.extend((t.category, 1))
    elif t.category != DEFAULT_CATEGORY:
        row.append(t.category)
    return row


def _touch_from(r: list[Any]) -> Touch:
    """Rows stored before categories have nine fields: a marketing, non-transactional send."""
    channel = None if r[3] == -1 else CODE_CHANNELS[r[3]]
    category = str(r[9]) if len(r) > 9 else DEFAULT_CATEGORY
    transactional = bool(r[10]) if len(r) > 10 else False
    return Touch(
        int(r[0]),
        r[1],
        r[2],
        channel,
        r[4],
        CODE_ARMS[r[5]],
        r[6],
        r[7],
        bool(r[8]),
        category,
        transactional,
    )


__all__ = [
    "DEDUPE_WINDOW",
    "Enrollment",
    "Past",
    "Profile",
    "Touch",
    "UserState",
    "from_ms",
    "merge_profile",
    "state_key",
    "to_ms",
]
