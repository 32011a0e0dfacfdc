"""Whether a sequence takes new entries now: its lifecycle (DRAINING takes none) and its
`starts_at` / `ends_at` window. Users already enrolled are never affected: they finish."""

from __future__ import annotations

from datetime import datetime

from sme.contracts.reasons import Reason
from sme.contracts.sequences import SequenceConfig, Status


def entry_closed(config: SequenceConfig, status: Status, now: datetime) -> Reason | None:
    """The reason an entry at `now` is refused, or None if the sequence takes it. `status` is
    the one the decision acts on (`Decision.status`): only ACTIVE enrols."""
    if status is Status.DRAINING:
        return Reason.SEQUENCE_DRAINING
    if config.starts_at is not None and now < config.starts_at:
        return Reason.SEQUENCE_NOT_STARTED
    if config.ends_at is not None and now >= config.ends_at:
        return Reason.SEQUENCE_ENDED
    return None
