"""Configuration files onto the compacted config topic, for `sme configs apply FILE` (and
tools that set up a sequence): through the configuration API's own write path, not around it.

The command catches up a registry of its own from the config topic (as the gateway does), then
hands each document to `ConfigService`: versioned create-or-update, validation, STOPPED is
final, the kill switch's rules, one workspace per configuration id, a `config_changed`
activity, and the broker's acknowledgement before it returns. It needs no gateway, so a
deployment can be configured before its services start."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from sme.config_mirror import ConfigRegistry, TopicMirror
from sme.contracts.config_records import SequenceRecord, WorkspaceRecord
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings
from sme.errors import SmeError
from sme.gateway.config_service import ConfigService
from sme.settings import Settings

CATCH_UP_SECONDS = 60.0
ACTOR = "cli"


class ConfigTopicUnavailableError(SmeError):
    """The config topic could not be read up to its end, so no write is based on it."""


@dataclass(frozen=True, slots=True)
class Applied:
    kind: str  # "sequence" or "workspace"
    name: str  # <workspace>/<id>, or the workspace id
    version: int
    outcome: str  # created, updated or unchanged

    def __str__(self) -> str:
        return f"{self.outcome} {self.kind} {self.name} (version {self.version})"


def record_from_document(document: dict[str, Any]) -> SequenceRecord | WorkspaceRecord:
    """A bare sequence configuration (has `steps`) or workspace settings document."""
    if "steps" in document:
        return SequenceRecord(config=SequenceConfig.model_validate(document))
    return WorkspaceRecord(settings=WorkspaceSettings.model_validate(document))


def load_file(path: Path) -> list[SequenceRecord | WorkspaceRecord]:
    """Every document of a file (one, or a list), each validated."""
    document = orjson.loads(path.read_bytes())
    documents = document if isinstance(document, list) else [document]
    return [record_from_document(d) for d in documents]


async def apply_records(
    settings: Settings, records: list[SequenceRecord | WorkspaceRecord], actor: str = ACTOR
) -> list[Applied]:
    """Write each record as the configuration API would, in order; stops at the first one
    refused (the error says why). Only what the document set is applied: defaults it left
    out are the model's, and server fields (`version`, timestamps) are the service's."""
    registry = ConfigRegistry()
    mirror = TopicMirror(settings.kafka_bootstrap_servers, settings.topic_configs, registry.apply)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    reading = asyncio.create_task(mirror.run(), name="config-mirror")
    try:
        await _caught_up(mirror, reading)
        await producer.start()
        service = ConfigService(settings, registry, producer)
        applied: list[Applied] = []
        for record in records:
            if isinstance(record, SequenceRecord):
                document = record.config.model_dump(mode="json", exclude_unset=True)
                config, outcome = await service.apply_sequence(document, actor)
                name = f"{config.workspace_id}/{config.id}"
                applied.append(Applied("sequence", name, config.version, outcome))
            else:
                document = record.settings.model_dump(mode="json", exclude_unset=True)
                ws, outcome = await service.apply_workspace(document, actor)
                applied.append(Applied("workspace", ws.workspace_id, ws.version, outcome))
        return applied
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading
        await producer.stop()


async def publish_records(
    settings: Settings, records: list[SequenceRecord | WorkspaceRecord]
) -> list[Applied]:
    """Kept for callers of the former raw publisher: the same write path as `apply_records`."""
    return await apply_records(settings, records)


async def _caught_up(mirror: TopicMirror, reading: asyncio.Task[None]) -> None:
    waiting = asyncio.create_task(mirror.caught_up.wait())
    try:
        done, _ = await asyncio.wait(
            {waiting, reading}, timeout=CATCH_UP_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiting.cancel()
    if waiting not in done:
        cause = reading.exception() if reading.done() and not reading.cancelled() else None
        raise ConfigTopicUnavailableError(
            f"could not read {mirror.topic} to its end within {CATCH_UP_SECONDS:.0f}s"
            + (f": {cause!r}" if cause else "")
        ) from cause
