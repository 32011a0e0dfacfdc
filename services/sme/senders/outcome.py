"""What one delivery attempt came to, and the feedback event a final outcome becomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sme.contracts.commands import Command
from sme.contracts.events import Event
from sme.contracts.reasons import DeliveryFailure


class Verdict(StrEnum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    """Final: the receiver refused it; retrying would not help."""
    RETRYABLE = "retryable"
    """Might pass later: a 5xx, a timeout, a refused connection."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try's result; `detail` says what the receiver answered (bounded, no body)."""

    verdict: Verdict
    detail: str
    status: int | None = None
    failure: DeliveryFailure | None = None
    """A rejection's own reason (e.g. `no_address`); unset, a rejection is `rejected`."""


def classify_http(status: int) -> Attempt:
    """2xx delivered; 408 and 429 (the receiver asks to come back) and 5xx retried; any other
    answer (a 4xx, an unexpected 1xx/3xx) refused for good."""
    if 200 <= status < 300:
        return Attempt(Verdict.DELIVERED, f"http {status}", status)
    if status in (408, 429) or status >= 500:
        return Attempt(Verdict.RETRYABLE, f"http {status}", status)
    return Attempt(Verdict.REJECTED, f"http {status}", status)


@dataclass(frozen=True, slots=True)
class Final:
    """A command's final outcome after all its attempts."""

    attempt: Attempt
    attempts: int

    @property
    def delivered(self) -> bool:
        return self.attempt.verdict is Verdict.DELIVERED

    @property
    def reason(self) -> DeliveryFailure | None:
        if self.attempt.verdict is Verdict.DELIVERED:
            return None
        if self.attempt.verdict is Verdict.REJECTED:
            return self.attempt.failure or DeliveryFailure.REJECTED
        return DeliveryFailure.RETRIES_EXHAUSTED


def feedback_event(command: Command, final: Final, sender: str, now: datetime) -> Event | None:
    """The event that tells the engine how the command ended: `delivered`, or `bounced` with
    the reason; None for a test send (it belongs to no enrollment and enters no metric). The
    event id is derived from the command id, so a re-published outcome is dropped by the
    engine's event dedupe."""
    if command.test:
        return None
    kind = "delivered" if final.delivered else "bounced"
    properties: dict[str, object] = {
        "sender": sender,
        "attempts": final.attempts,
        "detail": final.attempt.detail,
    }
    if final.attempt.status is not None:
        properties["status"] = final.attempt.status
    if final.reason is not None:
        properties["reason"] = final.reason.value
    return Event(
        event_id=f"{command.command_id}:{kind}"[:128],
        workspace_id=command.workspace_id,
        user_id=command.user_id,
        type=kind,
        occurred_at=now,
        properties=properties,
        channel=command.channel,
        command_id=command.command_id,
    )
