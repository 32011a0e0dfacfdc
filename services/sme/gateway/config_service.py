"""Configuration writes: validate, version, publish to the compacted config topic (returning
only after the broker acknowledged), apply locally so a read on this gateway sees the write at
once, and record every change as an activity (who, what, old and new version)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from sme.config_mirror import ConfigRegistry
from sme.contracts.activities import Activity, ActivityType
from sme.contracts.config_records import SequenceRecord, WorkspaceRecord, record_key
from sme.contracts.engine_inputs import EraseRequest
from sme.contracts.sequences import (
    RUNNING,
    KillSwitch,
    SequenceConfig,
    Status,
    WorkspaceSettings,
)
from sme.core.ids import stable_id
from sme.core.user_state import state_key
from sme.errors import SmeError
from sme.routing import owner_partition
from sme.settings import Settings

SERVER_FIELDS = ("id", "version", "created_at", "updated_at", "status_reason")
AUTOMATION = "automation:"
IMMUTABLE = ("id", "workspace_id", "created_at")


class ConfigConflictError(SmeError):
    """A write against a stale version, or a change to a STOPPED configuration (final)."""


class ConfigNotFoundError(SmeError):
    pass


class InvalidConfigError(SmeError):
    """Carries pydantic's field-level errors, with locations relative to the request body."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid configuration")
        self.errors = errors


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else
    replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_diff(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new` (null deletes a key)."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


M = TypeVar("M", SequenceConfig, WorkspaceSettings)


def _validated(model: type[M], document: dict[str, Any]) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidConfigError(field_errors(exc)) from exc


def _same_switch(document: object, switch: KillSwitch) -> bool:
    """A document repeats the current switch, also in a form written before a field existed
    (`draining_configs` left out is the empty default)."""
    try:
        return KillSwitch.model_validate(document) == switch
    except ValidationError:
        return False


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI reports them: locations start at the request body."""
    out: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        out.append({"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]})
    return out


class _HeldLock:
    """A per-configuration lock and how many writes hold or await it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ConfigService:
    def __init__(
        self, settings: Settings, registry: ConfigRegistry, producer: AIOKafkaProducer
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.producer = producer
        self._locks: dict[str, _HeldLock] = {}  # only configurations with a write in flight
        self._switch_lock = asyncio.Lock()  # kill switch changes and held creations, in turn

    # --- sequences ----------------------------------------------------------------------
    async def create(
        self, body: dict[str, Any], actor: str, *, dry_run: bool = False
    ) -> SequenceConfig:
        """Validate and publish a new sequence; `dry_run`: validate only (nothing published
        or logged), so an editor checks a draft by the very rules a write applies."""
        now = datetime.now(UTC)
        supplied = sorted(set(body) & set(SERVER_FIELDS))
        if supplied:
            raise InvalidConfigError(
                [
                    {"loc": ["body", f], "msg": "set by the server", "type": "server_field"}
                    for f in supplied
                ]
            )
        document = {
            **body,
            "id": str(uuid.uuid4()),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        document.setdefault("status", Status.ACTIVE.value)
        config = _validated(SequenceConfig, document)
        if dry_run:  # as it would be stored: held PAUSED while the kill switch is engaged
            return (
                config.model_copy(update={"status": Status.PAUSED})
                if self._held(config)
                else config
            )
        return await self._create(config, actor)

    def _held(self, config: SequenceConfig) -> bool:
        """A new running sequence the engaged kill switch would hold (see `_create_held`)."""
        return config.status in RUNNING and self._engaged(config.workspace_id)

    async def _create(self, config: SequenceConfig, actor: str) -> SequenceConfig:
        if self._held(config):
            async with self._switch_lock:  # not while a release is resuming what it held
                if self._engaged(config.workspace_id):
                    return await self._create_held(config, actor)
        await self._publish(SequenceRecord(config=config))
        await self._log_change(config.workspace_id, config.id, actor, None, config, ["*"])
        return config

    async def apply_sequence(
        self, document: dict[str, Any], actor: str
    ) -> tuple[SequenceConfig, str]:
        """Create-or-update from a whole configuration document that names its id (what
        `sme configs apply` does), through the same rules as the API: a new id is created at
        version 1 (PAUSED and held while the kill switch is engaged); an existing one is
        replaced by the document as a versioned update (STOPPED is final, no resume while the
        switch is engaged; a `status` left out keeps the current one; a `version` in the
        document must be the current one); an unchanged document writes nothing; an id that
        belongs to another workspace is refused. Returns the configuration and what happened
        (`created`, `updated` or `unchanged`)."""
        config_id = document.get("id")
        if not isinstance(config_id, str) or not config_id:
            raise InvalidConfigError(
                [
                    {
                        "loc": ["body", "id"],
                        "msg": "a configuration file names its id",
                        "type": "missing",
                    }
                ]
            )
        async with self._lock(config_id):
            current = self.registry.get(config_id)
            desired = {k: v for k, v in document.items() if k not in SERVER_FIELDS}
            if current is None:
                now = datetime.now(UTC)
                created = {
                    **desired,
                    "id": config_id,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                return await self._create(_validated(SequenceConfig, created), actor), "created"
            self._check_owner(config_id, document.get("workspace_id"))
            expected = document.get("version")
            if expected is not None and not isinstance(expected, int):
                raise InvalidConfigError(
                    [
                        {
                            "loc": ["body", "version"],
                            "msg": "must be a version number",
                            "type": "int_type",
                        }
                    ]
                )
            kept = {f: getattr(current, f) for f in (*SERVER_FIELDS, "status")}
            candidate = _validated(SequenceConfig, {**kept, **desired, "id": config_id})
            if candidate == current:
                if expected is not None and expected != current.version:
                    raise ConfigConflictError(
                        f"version {expected} is stale; the current version is {current.version}"
                    )
                return current, "unchanged"
            patch = merge_diff(current.model_dump(mode="json"), candidate.model_dump(mode="json"))
            updated = await self._patch(config_id, patch, expected, actor, current.workspace_id)
            return updated, "updated"

    def _check_owner(self, config_id: str, workspace_id: object) -> None:
        """A configuration id belongs to one workspace: a write naming it for another is
        refused (it would overwrite that workspace's sequence)."""
        current = self.registry.get(config_id)
        if current is not None and current.workspace_id != workspace_id:
            raise ConfigConflictError(
                f"configuration id {config_id} already belongs to another workspace"
            )

    async def _create_held(self, config: SequenceConfig, actor: str) -> SequenceConfig:
        """Created while the workspace's kill switch is engaged: stored PAUSED and added to the
        sequences the switch holds, so the release activates it (nothing is refused, nothing
        sends before the release)."""
        held = config.model_copy(update={"status": Status.PAUSED})
        await self._publish(SequenceRecord(config=held))
        await self._log_change(held.workspace_id, held.id, actor, None, held, ["*"])
        current = self.workspace(held.workspace_id)
        switch = current.kill_switch
        update = {"paused_configs": sorted({*switch.paused_configs, held.id})}
        if config.status is Status.DRAINING:
            update["draining_configs"] = sorted({*switch.draining_configs, held.id})
        await self._save_switch(current, switch.model_copy(update=update), actor)
        return held

    def _engaged(self, workspace_id: str) -> bool:
        return self.workspace(workspace_id).kill_switch.engaged

    def get(self, config_id: str, workspace_id: str | None = None) -> SequenceConfig:
        config = self.registry.get(config_id)
        if config is None or (workspace_id is not None and config.workspace_id != workspace_id):
            raise ConfigNotFoundError(config_id)
        return config

    def list_configs(
        self, workspace_id: str, limit: int, after: str | None
    ) -> tuple[list[SequenceConfig], str | None]:
        ordered = sorted(self.registry.configs_for(workspace_id).values(), key=lambda c: c.id)
        if after is not None:
            ordered = [c for c in ordered if c.id > after]
        page = ordered[:limit]
        return page, page[-1].id if len(ordered) > limit else None

    async def patch(
        self,
        config_id: str,
        patch: dict[str, Any],
        expected_version: int | None,
        actor: str,
        workspace_id: str | None = None,
        *,
        releasing: bool = False,
        dry_run: bool = False,
    ) -> SequenceConfig:
        """Read-modify-write under a per-configuration lock, so two writes through this
        gateway never both build on the same version (across gateways, use If-Match).
        `releasing`: the kill switch's own release resumes what it held. `dry_run`: every
        check, nothing published: the configuration as the write would make it."""
        async with self._lock(config_id):
            return await self._patch(
                config_id, patch, expected_version, actor, workspace_id, releasing, dry_run
            )

    @contextlib.asynccontextmanager
    async def _lock(self, config_id: str) -> AsyncIterator[None]:
        """Hold the configuration's lock. An entry lives while a write holds or awaits it, so
        the map is bounded by the writes in flight, not by every id ever written."""
        held = self._locks.setdefault(config_id, _HeldLock())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[config_id]

    async def _patch(
        self,
        config_id: str,
        patch: dict[str, Any],
        expected_version: int | None,
        actor: str,
        workspace_id: str | None,
        releasing: bool = False,
        dry_run: bool = False,
    ) -> SequenceConfig:
        current = self.get(config_id, workspace_id)
        if "version" in patch:
            body_version = patch.pop("version")
            if expected_version is None and isinstance(body_version, int):
                expected_version = body_version
        if expected_version is not None and expected_version != current.version:
            raise ConfigConflictError(
                f"version {expected_version} is stale; the current version is {current.version}"
            )
        if current.status is Status.STOPPED:
            raise ConfigConflictError("a STOPPED configuration is final")
        status = patch.get("status")  # not validated yet: any JSON value
        if "status" in patch and status is None:
            status = Status.ACTIVE.value  # null removes it: the default, so it resumes
        resuming = isinstance(status, str) and status in RUNNING  # DRAINING sends, too
        if resuming and not releasing and self._engaged(current.workspace_id):
            raise ConfigConflictError(
                "the workspace's kill switch is engaged: nothing may resume before its release"
            )
        automated = actor.startswith(AUTOMATION)
        if "status_reason" in patch and not automated:
            raise InvalidConfigError(
                [
                    {
                        "loc": ["body", "status_reason"],
                        "msg": "set by automation rules",
                        "type": "read_only",
                    }
                ]
            )
        if "status" in patch and not automated:
            patch = {**patch, "status_reason": None}  # a manual status change clears it
        for field in IMMUTABLE:
            if field in patch:
                raise InvalidConfigError(
                    [{"loc": ["body", field], "msg": "cannot be changed", "type": "immutable"}]
                )
        document = merge_patch(current.model_dump(mode="json"), patch)
        document.update(version=current.version + 1, updated_at=datetime.now(UTC).isoformat())
        config = _validated(SequenceConfig, document)
        if dry_run:
            return config
        await self._publish(SequenceRecord(config=config))
        await self._log_change(
            config.workspace_id, config.id, actor, current, config, sorted(patch)
        )
        return config

    async def stop(self, config_id: str, actor: str, workspace_id: str | None = None) -> None:
        current = self.get(config_id, workspace_id)
        if current.status is Status.STOPPED:
            return
        await self.patch(config_id, {"status": Status.STOPPED.value}, None, actor, workspace_id)

    # --- workspaces -----------------------------------------------------------------------
    def workspace(self, workspace_id: str) -> WorkspaceSettings:
        return self.registry.workspace(workspace_id) or WorkspaceSettings(workspace_id=workspace_id)

    async def put_workspace(
        self, workspace_id: str, body: dict[str, Any], actor: str
    ) -> WorkspaceSettings:
        """Settings carry the kill switch over as it is, so they are written in turn with its
        changes (never over a switch another write just changed)."""
        async with self._switch_lock:
            return await self._put_workspace(workspace_id, body, actor)

    async def apply_workspace(
        self, document: dict[str, Any], actor: str
    ) -> tuple[WorkspaceSettings, str]:
        """Settings from a whole document naming its workspace (what `sme configs apply`
        does), written as the API's PUT writes them: versioned, the kill switch carried over
        (a document may repeat the current switch, not change it: that is the kill-switch
        endpoint's), an unchanged document writes nothing."""
        workspace_id = document.get("workspace_id")
        if not isinstance(workspace_id, str) or not workspace_id:
            raise InvalidConfigError(
                [{"loc": ["body", "workspace_id"], "msg": "field required", "type": "missing"}]
            )
        async with self._switch_lock:
            current = self.registry.workspace(workspace_id)
            switch = current.kill_switch if current else KillSwitch()
            body = {
                k: v
                for k, v in document.items()
                if k not in ("workspace_id", "version", "updated_at")
            }
            if "kill_switch" in body and _same_switch(body["kill_switch"], switch):
                del body["kill_switch"]
            if current is not None and "kill_switch" not in body:
                kept = {"version": current.version, "updated_at": current.updated_at}
                candidate = {**body, **kept, "workspace_id": workspace_id}
                if _validated(WorkspaceSettings, {**candidate, "kill_switch": switch}) == current:
                    return current, "unchanged"
            settings = await self._put_workspace(workspace_id, body, actor)
            return settings, "updated" if current else "created"

    async def _put_workspace(
        self, workspace_id: str, body: dict[str, Any], actor: str
    ) -> WorkspaceSettings:
        current = self.registry.workspace(workspace_id)
        if "kill_switch" in body:
            raise InvalidConfigError(
                [
                    {
                        "loc": ["body", "kill_switch"],
                        "msg": "use the kill-switch endpoint",
                        "type": "read_only",
                    }
                ]
            )
        document = {
            **body,
            "workspace_id": workspace_id,
            "version": (current.version + 1) if current else 1,
            "updated_at": datetime.now(UTC),
            "kill_switch": (current.kill_switch if current else KillSwitch()).model_dump(),
        }
        settings = _validated(WorkspaceSettings, document)
        await self._publish(WorkspaceRecord(settings=settings))
        await self._log_change(workspace_id, "", actor, current, settings, ["workspace_settings"])
        return settings

    async def kill_switch(self, workspace_id: str, engaged: bool, actor: str) -> WorkspaceSettings:
        """Engage: pause every ACTIVE or DRAINING sequence of the workspace and remember which;
        release: return exactly those to their prior status (a sequence paused by hand stays
        paused). While engaged nothing of the workspace sends whatever its status (the core
        holds it), no sequence may resume or drain (409) and a new one is created PAUSED and
        held for the release."""
        async with self._switch_lock:
            return await self._kill_switch(workspace_id, engaged, actor)

    async def _kill_switch(self, workspace_id: str, engaged: bool, actor: str) -> WorkspaceSettings:
        current = self.workspace(workspace_id)
        if current.kill_switch.engaged == engaged:
            return current
        if engaged:
            active = [
                c for c in self.registry.configs_for(workspace_id).values() if c.status in RUNNING
            ]
            switch = KillSwitch(
                engaged=True,
                paused_configs=sorted(c.id for c in active),
                draining_configs=sorted(c.id for c in active if c.status is Status.DRAINING),
            )
            await self._save_switch(current, switch, actor)
            for config in active:
                await self.patch(
                    config.id, {"status": Status.PAUSED.value}, None, f"{actor} (kill switch)"
                )
        else:
            draining = set(current.kill_switch.draining_configs)
            for config_id in current.kill_switch.paused_configs:
                paused = self.registry.get(config_id)
                if paused is not None and paused.status is Status.PAUSED:
                    prior = Status.DRAINING if config_id in draining else Status.ACTIVE
                    await self.patch(
                        config_id,
                        {"status": prior.value},
                        None,
                        f"{actor} (kill switch)",
                        releasing=True,
                    )
            await self._save_switch(current, KillSwitch(), actor)
        return self.workspace(workspace_id)

    async def _save_switch(
        self, current: WorkspaceSettings, switch: KillSwitch, actor: str
    ) -> None:
        settings = current.model_copy(
            update={
                "kill_switch": switch,
                "version": current.version + 1,
                "updated_at": datetime.now(UTC),
            }
        )
        await self._publish(WorkspaceRecord(settings=settings))
        await self._log_change(current.workspace_id, "", actor, current, settings, ["kill_switch"])

    # --- users ------------------------------------------------------------------------------
    async def erase_user(self, workspace_id: str, user_id: str, requested_at: datetime) -> str:
        """Ask the engine to forget the user, through its inputs topic on the partition that
        owns the user's state (the partition the engine's intake routes their events to)."""
        erasure_id = str(uuid.uuid4())
        request = EraseRequest(
            workspace_id=workspace_id,
            user_id=user_id,
            erasure_id=erasure_id,
            requested_at=requested_at,
        )
        await self.producer.send_and_wait(
            self.settings.topic_inputs,
            request.model_dump_json().encode(),
            key=state_key(workspace_id, user_id).encode(),
            partition=owner_partition(workspace_id, user_id, self.settings.topic_partitions),
        )
        return erasure_id

    # --- plumbing -------------------------------------------------------------------------
    async def _publish(self, record: SequenceRecord | WorkspaceRecord) -> None:
        if isinstance(record, SequenceRecord):  # whatever door the write came through
            self._check_owner(record.config.id, record.config.workspace_id)
        key, value = record_key(record), record.model_dump_json().encode()
        await self.producer.send_and_wait(self.settings.topic_configs, value, key=key.encode())
        self.registry.apply(key, value)

    async def _log_change(
        self,
        workspace_id: str,
        config_id: str,
        actor: str,
        old: SequenceConfig | WorkspaceSettings | None,
        new: SequenceConfig | WorkspaceSettings,
        changed: list[str],
    ) -> None:
        now = datetime.now(UTC)
        activity = Activity(
            activity_id=stable_id(
                "activity",
                "config_changed",
                workspace_id,
                config_id,
                new.version,
                ",".join(changed),
            ),
            type=ActivityType.CONFIG_CHANGED,
            workspace_id=workspace_id,
            occurred_at=now,
            config_id=config_id,
            config_version=new.version,
            details={
                "actor": actor,
                "changed": changed,
                "old_version": old.version if old else None,
                "new_version": new.version,
                "status": getattr(new, "status", None),
            },
        )
        await self.producer.send_and_wait(
            self.settings.topic_activities,
            activity.model_dump_json().encode(),
            key=workspace_id.encode(),
        )
