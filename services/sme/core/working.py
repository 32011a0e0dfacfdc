"""A decision's mutable working copy of one user's state.

`UserState` is immutable at the boundary (the engine stores it, tests compare it); inside one
decision every change (an enrollment moved on, a touch remembered, affinity counted) is an
in-place update of this working copy, and the frozen state is built once, at the end. Copying
the whole record per change was the core's largest single cost."""

from __future__ import annotations

from datetime import datetime

from sme.contracts.channels import Channel
from sme.core.user_state import Enrollment, Past, Profile, Touch, UserState


class Working:
    """The fields of `UserState`, with the collections a decision changes made mutable.
    Enrollments are kept by config id in their stored order (a replaced one moves to the end,
    as `UserState.with_enrollment` does)."""

    __slots__ = (
        "affinity",
        "enrollments",
        "epoch",
        "events_seen",
        "hours",
        "last_event_at",
        "past",
        "profile",
        "recent_events",
        "touches",
        "user_id",
        "workspace_id",
    )

    def __init__(self, state: UserState) -> None:
        self.workspace_id = state.workspace_id
        self.user_id = state.user_id
        self.profile: Profile = state.profile
        self.recent_events = state.recent_events
        self.events_seen = state.events_seen
        self.last_event_at: datetime | None = state.last_event_at
        self.enrollments: dict[str, Enrollment] = {e.config_id: e for e in state.enrollments}
        self.past: dict[str, Past] = dict(state.past)
        self.touches: list[Touch] = list(state.touches)
        self.affinity: dict[Channel, tuple[int, int]] = dict(state.affinity)
        self.hours: dict[int, int] = dict(state.hours)
        self.epoch = state.epoch

    def enrollment(self, config_id: str) -> Enrollment | None:
        return self.enrollments.get(config_id)

    def put(self, enrollment: Enrollment) -> None:
        """Store an enrollment's new form; it becomes the last one (the stored order)."""
        self.enrollments.pop(enrollment.config_id, None)
        self.enrollments[enrollment.config_id] = enrollment

    def drop(self, config_id: str) -> None:
        self.enrollments.pop(config_id, None)

    def freeze(self) -> UserState:
        return UserState(
            self.workspace_id,
            self.user_id,
            self.profile,
            self.recent_events,
            self.events_seen,
            self.last_event_at,
            tuple(self.enrollments.values()),
            self.past,
            tuple(self.touches),
            self.affinity,
            self.hours,
            self.epoch,
        )
