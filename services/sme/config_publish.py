"""Publishing configuration records to the compacted config topic: what the configuration
API does on every write, and what `sme configs apply FILE` does from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from sme.contracts.config_records import SequenceRecord, WorkspaceRecord, record_key
from sme.contracts.sequences import SequenceConfig, WorkspaceSettings
from sme.settings import Settings


def record_from_document(document: dict[str, Any]) -> SequenceRecord | WorkspaceRecord:
    """A bare sequence configuration (has `steps`) or workspace settings document."""
    if "steps" in document:
        return SequenceRecord(config=SequenceConfig.model_validate(document))
    return WorkspaceRecord(settings=WorkspaceSettings.model_validate(document))


async def publish_records(
    settings: Settings, records: list[SequenceRecord | WorkspaceRecord]
) -> None:
    """Publish and wait for the broker's acknowledgement of every record."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                settings.topic_configs,
                record.model_dump_json().encode(),
                key=record_key(record).encode(),
            )
    finally:
        await producer.stop()


def load_file(path: Path) -> list[SequenceRecord | WorkspaceRecord]:
    document = orjson.loads(path.read_bytes())
    documents = document if isinstance(document, list) else [document]
    return [record_from_document(d) for d in documents]
