"""Configurations as the engine and the gateway see them: every record of the compacted
config topic, materialised in memory by a plain reader (not a Faust GlobalTable: open
multi-worker bugs). Every instance reads the whole topic, so a pause reaches all of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from sme.contracts.config_records import ConfigRecord, SequenceRecord, WorkspaceRecord
from sme.contracts.sequences import SequenceConfig, Status, WorkspaceSettings

log = logging.getLogger(__name__)
_RECORD: TypeAdapter[SequenceRecord | WorkspaceRecord] = TypeAdapter(ConfigRecord)
Listener = Callable[[SequenceConfig | None, SequenceConfig | None], None]


class ConfigRegistry:
    """Latest configuration per id and settings per workspace; readers get read-only views."""

    def __init__(self) -> None:
        self._configs: dict[str, SequenceConfig] = {}
        self._by_workspace: dict[str, dict[str, SequenceConfig]] = {}
        self._workspaces: dict[str, WorkspaceSettings] = {}
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Called with (old, new) whenever a sequence configuration changes."""
        self._listeners.append(listener)

    def apply(self, key: str, value: bytes | None) -> None:
        kind, _, ident = key.partition(":")
        if value is None:
            if kind == "sequence":
                self._put_sequence(ident, None)
            elif kind == "workspace":
                self._workspaces.pop(ident, None)
            return
        try:
            record = _RECORD.validate_json(value)
        except ValidationError as exc:
            log.error("ignoring invalid config record %s: %s", key, exc)
            return
        if isinstance(record, SequenceRecord):
            self._put_sequence(record.config.id, record.config)
        else:
            self._workspaces[record.settings.workspace_id] = record.settings

    def _put_sequence(self, config_id: str, config: SequenceConfig | None) -> None:
        old = self._configs.get(config_id)
        if old is not None:
            self._by_workspace.get(old.workspace_id, {}).pop(config_id, None)
        if config is None:
            self._configs.pop(config_id, None)
        else:
            self._configs[config_id] = config
            self._by_workspace.setdefault(config.workspace_id, {})[config_id] = config
        for listener in self._listeners:
            listener(old, config)

    def all_configs(self) -> list[SequenceConfig]:
        return list(self._configs.values())

    def configs_for(self, workspace_id: str) -> MappingProxyType[str, SequenceConfig]:
        return MappingProxyType(self._by_workspace.get(workspace_id, {}))

    def workspace(self, workspace_id: str) -> WorkspaceSettings | None:
        return self._workspaces.get(workspace_id)

    def get(self, config_id: str) -> SequenceConfig | None:
        return self._configs.get(config_id)

    def paused(self, config_id: str) -> bool:
        config = self._configs.get(config_id)
        return config is not None and config.status is Status.PAUSED


class TopicMirror:
    """Reads a compacted topic from the beginning, forever, without a consumer group, and
    hands every record to `apply`; `caught_up` is set once the start-up end offsets are read."""

    def __init__(
        self, bootstrap: str, topic: str, apply: Callable[[str, bytes | None], Any]
    ) -> None:
        self.topic = topic
        self.apply = apply
        self.bootstrap = bootstrap
        self.caught_up = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            await consumer.topics()  # loads cluster metadata
            numbers = consumer.partitions_for_topic(self.topic) or {0}
            partitions = [TopicPartition(self.topic, p) for p in sorted(numbers)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            pending = {tp for tp, end in ends.items() if end > 0}
            if not pending:
                self.caught_up.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key.decode() if record.key else "", record.value)
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
                if not pending and not self.caught_up.is_set():
                    self.caught_up.set()
        finally:
            await consumer.stop()
