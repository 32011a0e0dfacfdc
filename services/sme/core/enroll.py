"""List enrollment: `(state, request, now, rng, context) -> Outcome` for one listed user.

The request enters the user through the same gate as an event-triggered entry
(`_EventDecision.enter`: status, running enrollment, entry filters and `entry.when`, re-entry,
the enrollment bound, arm assignment), on the user's profile and an empty trigger event (a
predicate on an event property does not hold). Listed attributes update the profile first,
as an event's would. The request's id derives from (workspace, sequence, batch, user) and is
remembered like an event id, so a redelivered record enrolls nobody twice. A user the
sequence does not admit gets an `enrollment_skipped` activity naming why."""

from __future__ import annotations

import random
from datetime import datetime

from sme.contracts.activities import Activity, ActivityType
from sme.contracts.enrollments import EnrollRequest
from sme.contracts.events import Event, UserProfile
from sme.contracts.reasons import Reason
from sme.core.decision import Context, Outcome, event_activity
from sme.core.ids import stable_id
from sme.core.sequence import _EventDecision, _profile_keys
from sme.core.steps import advance_due
from sme.core.user_state import UserState

LIST_ENROLLMENT = "list_enrollment"
"""The `event_type` of a list enrollment's activities (its `event_id` is the enroll id)."""
SILENT_ON_EVENTS = frozenset(
    {Reason.NOT_ACTIVE, Reason.ALREADY_ENROLLED, Reason.FILTER_NOT_MATCHED}
)


def enroll_id(workspace_id: str, config_id: str, batch_id: str, user_id: str) -> str:
    """The id of one user's entry from one batch: the same whoever sends it, however often."""
    return stable_id("enroll", workspace_id, config_id, batch_id, user_id)


def as_event(request: EnrollRequest) -> Event:
    """The entry as an event without properties: what entry conditions are evaluated on."""
    return Event(
        event_id=enroll_id(
            request.workspace_id, request.config_id, request.batch_id, request.user_id
        ),
        workspace_id=request.workspace_id,
        user_id=request.user_id,
        type=LIST_ENROLLMENT,
        occurred_at=request.requested_at,
        user=UserProfile(attributes=request.attributes) if request.attributes else None,
    )


def on_enroll(
    state: UserState, request: EnrollRequest, now: datetime, rng: random.Random, ctx: Context
) -> Outcome:
    """Enroll the listed user now if the sequence admits them, then fire what is due (a first
    step without a wait sends at once)."""
    event = as_event(request)
    if state.has_seen(event.event_id):
        return Outcome(state, activities=(event_activity(event, ActivityType.EVENT_DUPLICATE),))
    run = _EventDecision(state.observe(event, _profile_keys(state, event, ctx)), now, rng, ctx)
    config = ctx.configs.get(request.config_id)
    refused = Reason.CONFIG_DELETED if config is None else run.enter(config, event)
    if refused in SILENT_ON_EVENTS or refused is Reason.CONFIG_DELETED:
        run.add(
            run.activity(
                ActivityType.ENROLLMENT_SKIPPED,
                request.config_id,
                {},
                discriminator=event.event_id,
                reason=refused,
                event=event,
                details={"batch_id": request.batch_id},
            )
        )
    elif refused is None:  # the `enrolled` activity names the batch that enrolled the user
        run.activities[:] = [_with_batch(a, request.batch_id, event) for a in run.activities]
    advance_due(run)
    return run.outcome()


def _with_batch(activity: Activity, batch_id: str, event: Event) -> Activity:
    if activity.type is not ActivityType.ENROLLED or activity.event_id != event.event_id:
        return activity
    return activity.model_copy(update={"details": {**activity.details, "batch_id": batch_id}})
