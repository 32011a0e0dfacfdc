"""The senders' pure parts: signature, retry schedule, outcome mapping, settled-id memory,
and the retry loop against a scripted adapter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from sme.contracts.channels import Channel
from sme.contracts.commands import Arm, Command
from sme.contracts.reasons import DeliveryFailure
from sme.senders.dedupe import SettledCommands
from sme.senders.outcome import Attempt, Final, Verdict, classify_http, feedback_event
from sme.senders.retry import RetryPolicy
from sme.senders.runner import Sender
from sme.senders.signature import sign, verify
from sme.senders.webhook import WebhookAdapter
from sme.settings import Settings

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def command(command_id: str = "c-1", *, test: bool = False) -> Command:
    return Command(
        command_id=command_id,
        workspace_id="ws",
        config_id="welcome",
        config_version=1,
        user_id="u-1",
        step_id="s1",
        channel=Channel.EMAIL,
        template="welcome_email",
        variant="a",
        arm=Arm.ADAPTIVE,
        decided_at=NOW,
        test=test,
    )


def test_signature_verifies_only_the_signed_body_fresh_and_with_the_key() -> None:
    body = b'{"command_id":"c-1"}'
    header = sign(b"k", 1_700_000_000, body)
    assert header.startswith("v1=") and len(header) == 3 + 64
    assert verify(b"k", "1700000000", body, header, now=1_700_000_100)
    assert not verify(b"k", "1700000000", body + b" ", header, now=1_700_000_100)
    assert not verify(b"other", "1700000000", body, header, now=1_700_000_100)
    assert not verify(b"k", "1700000001", body, header, now=1_700_000_100)
    assert not verify(b"k", "1700000000", body, header, now=1_700_000_000 + 301)
    assert not verify(b"k", "-1", body, header, now=1_700_000_000)


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(max_attempts=4, base_seconds=0.5, cap_seconds=3.0)
    rng = random.Random(7)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (60, 3.0), (500, 3.0)):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
    assert [policy.may_retry(n) for n in (1, 3, 4)] == [True, True, False]


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.REJECTED),
        (400, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (408, Verdict.RETRYABLE),
        (429, Verdict.RETRYABLE),
        (500, Verdict.RETRYABLE),
        (503, Verdict.RETRYABLE),
    ],
)
def test_http_answers_map_to_verdicts(status: int, verdict: Verdict) -> None:
    assert classify_http(status) == Attempt(verdict, f"http {status}", status)


def test_outcomes_become_feedback_the_engine_knows() -> None:
    delivered = feedback_event(command(), Final(classify_http(202), 2), "webhook", NOW)
    assert delivered is not None
    assert (delivered.type, delivered.command_id, delivered.channel) == (
        "delivered",
        "c-1",
        Channel.EMAIL,
    )
    assert delivered.event_id == "c-1:delivered"
    assert "reason" not in delivered.properties
    assert delivered.properties["attempts"] == 2
    refused = feedback_event(command(), Final(classify_http(410), 1), "webhook", NOW)
    assert refused is not None and refused.type == "bounced"
    assert refused.properties["reason"] == DeliveryFailure.REJECTED.value
    assert refused.properties["status"] == 410
    gave_up = feedback_event(
        command(), Final(Attempt(Verdict.RETRYABLE, "timeout"), 5), "webhook", NOW
    )
    assert gave_up is not None and gave_up.type == "bounced"
    assert gave_up.properties["reason"] == DeliveryFailure.RETRIES_EXHAUSTED.value
    assert "status" not in gave_up.properties


def test_a_test_send_reports_no_feedback() -> None:
    final = Final(classify_http(200), 1)
    assert feedback_event(command(test=True), final, "webhook", NOW) is None


def test_settled_memory_is_bounded_and_forgets_the_oldest() -> None:
    settled = SettledCommands(capacity=3)
    for command_id in ("a", "b", "c", "a", "d"):
        settled.add(command_id)
    assert len(settled) == 3
    assert "b" not in settled
    assert all(c in settled for c in ("a", "c", "d"))
    with pytest.raises(ValueError):
        SettledCommands(0)


class ScriptedAdapter:
    kind = "scripted"

    def __init__(self, answers: list[Attempt]) -> None:
        self.answers = answers
        self.calls = 0

    async def deliver(self, command: Command) -> Attempt:
        self.calls += 1
        return self.answers.pop(0)

    async def aclose(self) -> None:
        return None


def settle(answers: list[Attempt], max_attempts: int = 3) -> tuple[Final, int]:
    settings = Settings(sender_max_attempts=max_attempts, sender_backoff_base_seconds=0.0)
    adapter = ScriptedAdapter(answers)
    final = asyncio.run(Sender(settings, Channel.EMAIL, adapter)._settle(command()))
    return final, adapter.calls


def test_retryable_failures_are_retried_until_delivered() -> None:
    final, calls = settle(
        [classify_http(503), Attempt(Verdict.RETRYABLE, "timeout"), classify_http(200)]
    )
    assert (final.delivered, final.attempts, calls) == (True, 3, 3)


def test_a_refusal_is_final_at_once() -> None:
    final, calls = settle([classify_http(422), classify_http(200)])
    assert (final.reason, final.attempts, calls) == (DeliveryFailure.REJECTED, 1, 1)


def test_retries_are_bounded() -> None:
    final, calls = settle([classify_http(500)] * 5, max_attempts=2)
    assert (final.reason, final.attempts, calls) == (DeliveryFailure.RETRIES_EXHAUSTED, 2, 2)


def test_the_webhook_sender_refuses_to_start_without_a_url_or_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sme.cli import main

    for name in ("SME_SENDER_WEBHOOK_URLS", "SME_SENDER_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["sender", "webhook", "--channel", "sms"]) == 2
    assert "no webhook URL for channel sms" in capsys.readouterr().err
    assert main(["sender", "webhook", "--channel", "sms", "--url", "http://127.0.0.1:9/h"]) == 2
    assert "SME_SENDER_WEBHOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("SME_SENDER_WEBHOOK_URLS", '{"fax": "http://127.0.0.1:9/h"}')
    assert main(["sender", "webhook", "--channel", "sms"]) == 2
    assert "sender_webhook_urls" in capsys.readouterr().err


def test_the_poll_interval_covers_a_command_that_times_out_every_time() -> None:
    policy = RetryPolicy(max_attempts=4, base_seconds=1.0, cap_seconds=3.0)
    assert policy.worst_case_seconds(10.0) == 4 * 10.0 + 1.0 + 2.0 + 3.0
    assert RetryPolicy(1, 1.0, 3.0).worst_case_seconds(2.0) == 2.0


def webhook_attempt(handler: Callable[[httpx.Request], httpx.Response]) -> Attempt:
    async def go() -> Attempt:
        adapter = WebhookAdapter(
            "https://receiver.test/hook",
            b"secret",
            5.0,
            clock=lambda: 1_700_000_000.0,
            transport=httpx.MockTransport(handler),
        )
        try:
            return await adapter.deliver(command())
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def test_the_webhook_posts_the_signed_command_and_classifies_the_answer() -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(204)

    assert webhook_attempt(answer) == Attempt(Verdict.DELIVERED, "http 204", 204)
    [request] = requests
    assert request.method == "POST"
    assert Command.model_validate_json(request.content) == command()
    assert request.headers["X-SME-Command-Id"] == "c-1"
    assert request.headers["X-SME-Timestamp"] == "1700000000"
    assert request.headers["X-SME-Signature"] == sign(b"secret", 1_700_000_000, request.content)
    assert webhook_attempt(lambda _: httpx.Response(302)).verdict is Verdict.REJECTED


def test_webhook_timeouts_and_failed_connections_are_retryable() -> None:
    def times_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert webhook_attempt(times_out) == Attempt(Verdict.RETRYABLE, "timeout")
    assert webhook_attempt(refused) == Attempt(Verdict.RETRYABLE, "connection failed: ConnectError")
    with pytest.raises(ValueError, match="secret"):
        WebhookAdapter("https://receiver.test/hook", b"", 5.0)
