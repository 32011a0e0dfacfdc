"""The sender loop shared by every channel adapter: consume the channel's command topic in
the sender's own consumer group, deliver each command once (retrying what may pass later),
publish each final outcome to the events topic, and commit only after the outcomes are
acknowledged by the broker (at-least-once; the id-derived event ids and the settled-command
memory keep repeats from counting twice or being sent twice)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.contracts.dead_letters import FieldError, RejectReason, SourcePosition
from sme.core.intake import Rejection, dead_letter
from sme.senders.dedupe import SettledCommands
from sme.senders.outcome import Attempt, Final, Verdict, feedback_event
from sme.senders.retry import RetryPolicy
from sme.settings import Settings

log = logging.getLogger(__name__)


class ChannelAdapter(Protocol):
    """One channel's way of sending: a webhook POST, an SMTP message, ..."""

    kind: str

    async def deliver(self, command: Command) -> Attempt: ...

    async def aclose(self) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(tz=UTC)


class Sender:
    def __init__(
        self,
        settings: Settings,
        channel: Channel,
        adapter: ChannelAdapter,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.adapter = adapter
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.clock = clock
        self.policy = RetryPolicy(
            settings.sender_max_attempts,
            settings.sender_backoff_base_seconds,
            settings.sender_backoff_max_seconds,
        )
        self.settled = SettledCommands(settings.sender_dedupe_size)
        self.limit = asyncio.Semaphore(settings.sender_concurrency)
        self.service = f"sender-{adapter.kind}"

    @property
    def group_id(self) -> str:
        return f"{self.settings.sender_group_prefix}-{self.adapter.kind}-{self.channel.value}"

    async def run(self) -> None:
        """Consume until cancelled."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.command_topic(self.channel),
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A batch is at most what is delivered at once, so it takes no longer than its
            # slowest command; the poll interval allows that plus a margin.
            max_poll_records=s.sender_concurrency,
            max_poll_interval_ms=int(
                (self.policy.worst_case_seconds(s.sender_timeout_seconds) + 60) * 1000
            ),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            compression_type="zstd",
        )
        await producer.start()
        try:
            await consumer.start()
            try:
                while True:
                    batches = await consumer.getmany(timeout_ms=500)
                    if batches:
                        await self._handle(producer, [r for rs in batches.values() for r in rs])
                        await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items()})
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
            await self.adapter.aclose()

    async def _handle(self, producer: AIOKafkaProducer, records: list[ConsumerRecord]) -> None:
        """Settle one batch and wait until every resulting record is acknowledged."""
        fresh: dict[str, Command] = {}
        outgoing: list[tuple[str, bytes, bytes | None]] = []
        for record in records:
            parsed = self._parse(record)
            if isinstance(parsed, Command):
                if parsed.command_id in self.settled or parsed.command_id in fresh:
                    log.info("command %s already settled: not sent again", parsed.command_id)
                    continue
                fresh[parsed.command_id] = parsed
            else:
                outgoing.append((self.settings.topic_dlq, parsed, record.key))
        finals = await asyncio.gather(*(self._settle(command) for command in fresh.values()))
        for command, final in zip(fresh.values(), finals, strict=True):
            event = feedback_event(command, final, self.adapter.kind, self.clock())
            if event is not None:
                value = event.model_dump_json().encode("utf-8")
                outgoing.append((self.settings.topic_events, value, command.user_id.encode()))
        acks = [await producer.send(topic, value, key=key) for topic, value, key in outgoing]
        if acks:
            await asyncio.gather(*acks)
        for command in fresh.values():
            self.settled.add(command.command_id)

    async def _settle(self, command: Command) -> Final:
        """Attempt until delivered, refused, or out of attempts (backing off in between)."""
        attempt_no = 0
        while True:
            attempt_no += 1
            async with self.limit:
                attempt = await self.adapter.deliver(command)
            if attempt.verdict is not Verdict.RETRYABLE or not self.policy.may_retry(attempt_no):
                break
            delay = self.policy.delay(attempt_no, self.rng)
            log.info(
                "command %s: %s, retry %d in %.2fs",
                command.command_id,
                attempt.detail,
                attempt_no,
                delay,
            )
            await asyncio.sleep(delay)
        if attempt.verdict is not Verdict.DELIVERED:
            log.warning(
                "command %s gave up after %d attempt(s): %s",
                command.command_id,
                attempt_no,
                attempt.detail,
            )
        return Final(attempt, attempt_no)

    def _parse(self, record: ConsumerRecord) -> Command | bytes:
        """The command, or the dead letter (serialised) of a value that is not one."""
        raw: bytes | None = record.value
        try:
            return Command.model_validate_json(raw or b"")
        except ValidationError as exc:
            reason = (
                RejectReason.INVALID_JSON
                if any(e["type"] == "json_invalid" for e in exc.errors())
                else RejectReason.VALIDATION_FAILED
            )
            errors = tuple(
                FieldError(loc=".".join(str(p) for p in e["loc"]), message=e["msg"], type=e["type"])
                for e in exc.errors(include_url=False, include_input=False)[:20]
            )
        key = record.key.decode("utf-8", "replace")[:256] if record.key else None
        source = SourcePosition(
            topic=record.topic, partition=record.partition, offset=record.offset, key=key
        )
        log.warning("dead-lettering an invalid command at %s", source)
        letter = dead_letter(Rejection(reason, errors), raw, source, self.clock(), self.service)
        return letter.model_dump_json().encode("utf-8")
