"""Reason codes: why a message was suppressed, deferred or skipped, why an enrollment ended.
A closed, documented set (like Braze's abort types), listed in schemas/activity.schema.json."""

from enum import StrEnum


class Reason(StrEnum):
    """Closed set of reason codes for suppressions, deferrals, skips and exits."""

    QUIET_HOURS = "quiet_hours"
    MIN_GAP = "min_gap"
    FREQUENCY_CAP = "frequency_cap"
    CHANNEL_BUDGET = "channel_budget"
    COST_BUDGET = "cost_budget"
    MAX_MESSAGES = "max_messages"
    DEFERRAL_EXPIRED = "deferral_expired"
    NO_CONSENT = "no_consent"
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    NO_ELIGIBLE_CHANNEL = "no_eligible_channel"
    CONDITION_FALSE = "condition_false"
    HOLDOUT = "holdout"
    GLOBAL_CONTROL = "global_control"
    """The user is in the workspace's global control group: every message is suppressed."""
    SEND_TIME_OPTIMISED = "send_time_optimised"
    AWAITED_EVENT = "awaited_event"
    BRANCHED = "branched"
    SPLIT = "split"
    """A split step sent the user down one of its weighted paths (details: goto, path, weight)."""
    COMPLETED = "completed"
    EXIT_EVENT = "exit_event"
    GOAL_REACHED = "goal_reached"
    CONFIG_STOPPED = "config_stopped"
    CONFIG_DELETED = "config_deleted"
    STEP_REMOVED = "step_removed"
    REENTRY_BLOCKED = "reentry_blocked"
    TOO_MANY_ENROLLMENTS = "too_many_enrollments"
    FILTER_NOT_MATCHED = "filter_not_matched"
    SEQUENCE_NOT_STARTED = "sequence_not_started"
    """An entry refused before the sequence's `starts_at`."""
    SEQUENCE_ENDED = "sequence_ended"
    """An entry refused at or after the sequence's `ends_at` (enrolled users still finish)."""
    SEQUENCE_DRAINING = "sequence_draining"
    """An entry refused while the sequence is DRAINING (enrolled users still finish)."""
    UNKNOWN_COMMAND = "unknown_command"
    """On feedback or a conversion whose event names a command this user was never sent (or
    that is forgotten): logged unattributed, no message credited."""
    NOT_ACTIVE = "not_active"
    """A list enrollment for a sequence that is not ACTIVE (paused, stopped, kill switch)."""
    ALREADY_ENROLLED = "already_enrolled"
    """A list enrollment of a user already in the sequence (the running enrollment goes on)."""


class DeliveryFailure(StrEnum):
    """Why a sender gave a command up; sent as `properties.reason` of its `bounced` feedback."""

    REJECTED = "rejected"
    """The receiver refused the message for good (a webhook's 4xx, an SMTP 5xx)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """Every attempt failed in a way that might have passed later (5xx, timeout, no
    connection) and the attempts ran out."""
    NO_ADDRESS = "no_address"
    """The command's data has no usable recipient address (an email sender reads it from an
    allow-listed profile attribute)."""
    TEMPLATE_ERROR = "template_error"
    """The message could not be rendered: the template is missing, does not parse, or names
    a value the command does not carry."""
