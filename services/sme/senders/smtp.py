"""The SMTP adapter: render the command's email (`email_render`) and hand it to an SMTP server.
A 2xx acceptance is `delivered`; a 5xx reply is final (`rejected`, the reply as the detail);
a 4xx reply, a timeout or a lost connection is retried; a message that cannot be rendered or
has no address is bounced at once with its own reason. One connection per message: simple
and isolated, at the cost of a handshake each (a local relay makes that cheap)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Literal

import aiosmtplib

from sme.contracts.commands import Command
from sme.contracts.reasons import DeliveryFailure
from sme.core.tracking_links import TrackingLinks
from sme.senders.email_render import EmailRenderer, RenderError
from sme.senders.outcome import Attempt, Verdict

log = logging.getLogger(__name__)

TlsMode = Literal["auto", "starttls", "tls", "none"]


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    tls: TlsMode = "auto"
    username: str | None = None
    password: str | None = None


def classify_smtp(code: int, message: str) -> Attempt:
    """2xx delivered, 4xx (try again later) retried, 5xx (and anything else) refused for good."""
    detail = f"smtp {code} {' '.join(message.split())}"[:300]
    if 200 <= code < 300:
        return Attempt(Verdict.DELIVERED, detail, code)
    if 400 <= code < 500:
        return Attempt(Verdict.RETRYABLE, detail, code)
    return Attempt(Verdict.REJECTED, detail, code)


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


class SmtpAdapter:
    kind = "smtp"

    def __init__(
        self,
        renderer: EmailRenderer,
        server: SmtpServer,
        timeout_s: float,
        address_attribute: str = "email",
        links: Callable[[Command], TrackingLinks] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.renderer = renderer
        self.server = server
        self.timeout_s = timeout_s
        self.address_attribute = address_attribute
        self.links = links
        self.clock = clock
        self.envelope_from = parseaddr(renderer.identity.from_address)[1]

    async def deliver(self, command: Command) -> Attempt:
        try:
            links = self.links(command) if self.links is not None else None
            message = self.renderer.render(command, self.address_attribute, links, self.clock())
        except RenderError as exc:
            return Attempt(Verdict.REJECTED, exc.detail, failure=exc.failure)
        except Exception as exc:  # a header the message model refuses, say: never crash the loop
            log.exception("command %s could not be rendered", command.command_id)
            detail = f"render: {type(exc).__name__}: {exc}"[:300]
            return Attempt(Verdict.REJECTED, detail, failure=DeliveryFailure.TEMPLATE_ERROR)
        s = self.server
        try:
            _, response = await aiosmtplib.send(
                message,
                sender=self.envelope_from,
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                use_tls=s.tls == "tls",
                start_tls={"auto": None, "starttls": True, "tls": False, "none": False}[s.tls],
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            return classify_smtp(refusal.code, refusal.message)
        except aiosmtplib.SMTPTimeoutError:
            return Attempt(Verdict.RETRYABLE, "timeout")
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            return Attempt(Verdict.RETRYABLE, f"connection failed: {type(exc).__name__}")
        except aiosmtplib.SMTPResponseException as exc:
            return classify_smtp(exc.code, exc.message)
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS required but not offered
            return Attempt(Verdict.RETRYABLE, f"smtp: {type(exc).__name__}: {exc}"[:300])
        return classify_smtp(250, response)  # aiosmtplib raises on any other reply

    async def aclose(self) -> None:
        return None
