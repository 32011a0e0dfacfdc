"""Configurations as the engine and the gateway see them: every record of the compacted
config topic, materialised in memory by a plain reader (not a Faust GlobalTable: open
multi-worker bugs). Every instance reads the whole topic, so a pause reaches all of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import TypeAdapter, ValidationError

from sme.contracts.config_records import (
    ConfigRecord,
    SequenceRecord,
    WorkspaceRecord,
    legacy_sequence_key,
    record_key,
)
from sme.contracts.sequences import RUNNING, SequenceConfig, Status, WorkspaceSettings

log = logging.getLogger(__name__)
_RECORD: TypeAdapter[SequenceRecord | WorkspaceRecord] = TypeAdapter(ConfigRecord)
Listener = Callable[[SequenceConfig | None, SequenceConfig | None], None]
Versioned = SequenceConfig | WorkspaceSettings


def supersedes(new: Versioned, old: Versioned) -> bool:
    """Whether `new` replaces `old` of the same id: a higher version wins and a lower one is
    dropped (a lagging mirror or an old record never rolls a configuration back). Equal
    versions with different content (two writers built on the same version) are decided the
    same way by every reader whatever order it reads them in: the later `updated_at`, then
    the larger canonical JSON. The same record again is not a change."""
    if new.version != old.version:
        return new.version > old.version
    if new == old:
        return False
    at_new, at_old = new.updated_at, old.updated_at
    if at_new is not None and at_old is not None and at_new != at_old:
        return at_new > at_old
    if (at_new is None) != (at_old is None):
        return at_old is None
    return _canonical(new) > _canonical(old)


def _canonical(value: Versioned) -> bytes:
    return orjson.dumps(value.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


class ConfigRegistry:
    """Latest configuration per id and settings per workspace; readers get read-only views.

    Records are applied by version (`supersedes`), whatever their key: current keys
    (`sequence:<len>:<ws>/<id>`) and legacy ones (`sequence:<id>`) alike. A configuration id
    belongs to the workspace that first published it: a record of the same id for another
    workspace is ignored (logged), never applied over it. A tombstone deletes the
    configuration only if the record it holds came under that key."""

    def __init__(self) -> None:
        self._configs: dict[str, SequenceConfig] = {}
        self._keys: dict[str, str] = {}  # record key -> config id it currently holds
        self._key_of: dict[str, str] = {}  # config id -> the key of its current record
        self._by_workspace: dict[str, dict[str, SequenceConfig]] = {}
        self._workspaces: dict[str, WorkspaceSettings] = {}
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Called with (old, new) whenever a sequence configuration changes, and for each
        ACTIVE or DRAINING sequence of a workspace whose kill switch is engaged or released:
        then old and new are the same version and the held side is a view of it with status PAUSED
        (engaged: (config, paused view); released: (paused view, config)), so a listener
        that un-parks a resumed sequence un-parks it on release too."""
        self._listeners.append(listener)

    def apply(self, key: str, value: bytes | None) -> None:
        kind, _, ident = key.partition(":")
        if value is None:
            if kind == "sequence":
                config_id = self._keys.get(key)
                if config_id is not None:
                    self._put_sequence(config_id, None)
            elif kind == "workspace":
                self._put_workspace(ident, None)
            return
        try:
            record = _RECORD.validate_json(value)
        except ValidationError as exc:
            log.error("ignoring invalid config record %s: %s", key, exc)
            return
        if isinstance(record, SequenceRecord):
            self._apply_sequence(key, record.config)
        else:
            current = self._workspaces.get(record.settings.workspace_id)
            if current is None or supersedes(record.settings, current):
                self._put_workspace(record.settings.workspace_id, record.settings)

    def _apply_sequence(self, key: str, config: SequenceConfig) -> None:
        if key not in (record_key(SequenceRecord(config=config)), legacy_sequence_key(config.id)):
            log.error(
                "ignoring config record %s: its key does not name %s/%s",
                key,
                config.workspace_id,
                config.id,
            )
            return
        current = self._configs.get(config.id)
        if current is not None and current.workspace_id != config.workspace_id:
            log.error(
                "ignoring config record %s: configuration %s belongs to workspace %s",
                key,
                config.id,
                current.workspace_id,
            )
            return
        if current is None or supersedes(config, current):
            self._put_sequence(config.id, config, key)

    def _put_sequence(
        self, config_id: str, config: SequenceConfig | None, key: str | None = None
    ) -> None:
        old = self._configs.get(config_id)
        if old is not None:
            self._by_workspace.get(old.workspace_id, {}).pop(config_id, None)
        previous_key = self._key_of.pop(config_id, None)
        if previous_key is not None:
            del self._keys[previous_key]
        if config is None:
            self._configs.pop(config_id, None)
        else:
            self._configs[config_id] = config
            self._by_workspace.setdefault(config.workspace_id, {})[config_id] = config
            if key is not None:
                self._keys[key] = config_id
                self._key_of[config_id] = key
        self._notify(old, config)

    def _put_workspace(self, workspace_id: str, settings: WorkspaceSettings | None) -> None:
        old = self._workspaces.pop(workspace_id, None)
        if settings is not None:
            self._workspaces[workspace_id] = settings
        was = old is not None and old.kill_switch.engaged
        now = settings is not None and settings.kill_switch.engaged
        if was == now:
            return
        for config in list(self._by_workspace.get(workspace_id, {}).values()):
            if config.status in RUNNING:
                held = config.model_copy(update={"status": Status.PAUSED})
                self._notify(*((config, held) if now else (held, config)))

    def _notify(self, old: SequenceConfig | None, new: SequenceConfig | None) -> None:
        for listener in self._listeners:
            listener(old, new)

    def all_configs(self) -> list[SequenceConfig]:
        return list(self._configs.values())

    def configs_for(self, workspace_id: str) -> MappingProxyType[str, SequenceConfig]:
        return MappingProxyType(self._by_workspace.get(workspace_id, {}))

    def workspace(self, workspace_id: str) -> WorkspaceSettings | None:
        return self._workspaces.get(workspace_id)

    def get(self, config_id: str) -> SequenceConfig | None:
        return self._configs.get(config_id)

    def owner(self, config_id: str) -> str | None:
        """The workspace a configuration id belongs to, if it is known."""
        config = self._configs.get(config_id)
        return None if config is None else config.workspace_id

    def paused(self, config_id: str) -> bool:
        """Whether the core holds the sequence as paused (nothing of it is due): its status is
        PAUSED, or it is ACTIVE or DRAINING while its workspace's kill switch is engaged (as
        `core.sequence` decides). STOPPED is not paused: its enrollments end when woken."""
        config = self._configs.get(config_id)
        if config is None:
            return False
        if config.status is Status.PAUSED:
            return True
        settings = self._workspaces.get(config.workspace_id)
        return config.status in RUNNING and settings is not None and settings.kill_switch.engaged


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
