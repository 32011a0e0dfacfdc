"""The webhook adapter: POST the command as JSON to the channel's URL, signed (see
`signature`), with the command id as an idempotency header; the answer is classified by
`outcome.classify_http`, a timeout or a failed connection is retryable."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from sme.contracts.commands import Command
from sme.senders.outcome import Attempt, Verdict, classify_http
from sme.senders.signature import COMMAND_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


class WebhookAdapter:
    kind = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a signing secret (SME_SENDER_WEBHOOK_SECRET)")
        self.url = url
        self.secret = secret
        self.clock = clock
        # No redirects: a 3xx is an answer, never a reason to send the body somewhere else.
        self.client = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, transport=transport
        )

    async def deliver(self, command: Command) -> Attempt:
        body = command.model_dump_json().encode("utf-8")
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            COMMAND_ID_HEADER: command.command_id,
            "User-Agent": "sme-sender/webhook",
        }
        try:
            response = await self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Attempt(Verdict.RETRYABLE, "timeout")
        except httpx.TransportError as exc:
            return Attempt(Verdict.RETRYABLE, f"connection failed: {type(exc).__name__}")
        return classify_http(response.status_code)

    async def aclose(self) -> None:
        await self.client.aclose()
