"""Audience entry: `POST …/{config_id}/enrollments` enrolls a list of users now.

The gateway writes no state: it puts one `EnrollRequest` per distinct user on the engine's
inputs topic, on the partition that owns the user (as erase requests), and the engine applies
each as any entry (`core.enroll`). The batch id makes the request idempotent: it is recorded
in ClickHouse (`enrollment_batches`, a digest of the users, no ids) once every record is on
the broker, so a repeat after a restart answers the first acceptance again (the same users)
or 409 (other users). A repeat that races the first, or follows a crash before the record,
queues the records again: the engine drops them by their id (workspace, sequence, batch,
user), already-enrolled users and re-entry rules."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ValidationError

from sme.contracts.enrollments import (
    BATCH_ID_PATTERN,
    MAX_ENROLLMENT_BODY,
    MAX_ENROLLMENT_USERS,
    EnrollmentAccepted,
    EnrollmentBatch,
    EnrollmentLine,
    EnrollRequest,
    ListedAttribute,
)
from sme.contracts.sequences import SequenceConfig, Status
from sme.core.user_state import state_key
from sme.gateway.config_service import InvalidConfigError, field_errors
from sme.gateway.configs_api import API, Caller, _service, principal
from sme.gateway.openapi_docs import ErrorMessage, error
from sme.gateway.rate_limit import RateLimiter, retry_after, shared_limiter
from sme.routing import owner_partition
from sme.storage.enrollment_batches import BatchRecord, find_batch, record_batch

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(principal)])
PATH = f"{API}/{{config_id}}/enrollments"
WIDER_BODIES = ((re.compile(re.escape(API) + r"/[^/]+/enrollments"), MAX_ENROLLMENT_BODY),)
"""The one route whose body may exceed the gateway's 1 MiB (see `http_guards.BodyLimit`)."""
JSON, NDJSON = "application/json", "application/x-ndjson"
MAX_REPORTED_ERRORS = 100
MIB = MAX_ENROLLMENT_BODY // (1024 * 1024)

Attributes = dict[str, ListedAttribute]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Listed:
    """A request's users, in order and distinct (the first listing of a user wins)."""

    batch_id: str
    users: dict[str, Attributes]
    received: int

    @property
    def duplicates(self) -> int:
        return self.received - len(self.users)

    def digest(self) -> str:
        """The batch's content, whatever order the users came in."""
        content = sorted(self.users.items())
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


class _Locks:
    """One lock per batch being accepted, held only while it is: a repeat waits for the first
    acceptance and then answers it, instead of queueing the users a second time."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str, str]) -> AsyncIterator[None]:
        lock, users = self._held.get(key, (asyncio.Lock(), 0))
        self._held[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[key]
            if users == 1:
                del self._held[key]
            else:
                self._held[key] = (lock, users - 1)


REQUEST_BODY = {
    "required": True,
    "content": {
        JSON: {"schema": EnrollmentBatch.model_json_schema()},
        NDJSON: {
            "schema": {
                "type": "string",
                "description": "One JSON object per line: "
                '`{"user_id": "…", "attributes": {…}}` (attributes optional, at most 64: '
                "they update the user's profile before the entry is judged). The batch id "
                f"goes in the `batch_id` query parameter. At most {MAX_ENROLLMENT_USERS:,} "
                "lines.",
            }
        },
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error(ErrorMessage, "the body is not JSON (or NDJSON) text"),
    409: error(
        ErrorMessage, "the batch id was used with other users, or the sequence is not ACTIVE"
    ),
    413: error(ErrorMessage, f"the body is over {MIB} MiB"),
    415: error(ErrorMessage, f"the body is neither {JSON} nor {NDJSON}"),
    429: error(ErrorMessage, "too many enrollment requests for this workspace; retry later"),
    503: error(ErrorMessage, "the broker or the batch record store is unavailable; retry later"),
}


@router.post(
    PATH,
    status_code=202,
    tags=["enrollments"],
    responses=RESPONSES,
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def enroll_users(
    request: Request,
    who: Caller,
    config_id: str,
    batch_id: Annotated[
        str | None,
        Query(
            pattern=BATCH_ID_PATTERN,
            max_length=128,
            description="The batch id of an NDJSON upload (with JSON it may repeat the body's).",
        ),
    ] = None,
) -> EnrollmentAccepted:
    """Enroll a list of users in the sequence now (at most 10,000 a request; 4 MiB). Each is
    queued on the broker for the engine, which applies the entry as for any trigger: the
    sequence must be ACTIVE; entry filters and `entry.when` are judged on the profile and an
    empty event (a predicate on an event property does not hold); re-entry rules, the
    experiment's arms and the guardrails apply. Users the sequence does not admit get an
    `enrollment_skipped` activity with the reason. 202 once every user is on the broker;
    the same `batch_id` again answers the same (`replayed: true`) and enrolls nobody twice;
    the same `batch_id` with other users is 409."""
    config = _service(request).get(config_id, who.workspace_id)  # 404 first, as elsewhere
    listed = parse_listing(
        request.headers.get("content-type", JSON), await request.body(), batch_id
    )
    gw = request.app.state.gw
    wait = _limiter(request).take(config.workspace_id, time.monotonic())
    if wait:
        raise HTTPException(
            429,
            "too many enrollment requests for this workspace; retry later",
            headers={"Retry-After": retry_after(wait)},
        )
    key = (config.workspace_id, config.id, listed.batch_id)
    async with _locks(request).hold(key):
        try:
            first = await find_batch(gw.store, *key)
        except Exception as exc:  # without the batch memory a repeat cannot be told apart
            log.warning("enrollment batches unreadable: %r", exc)
            raise HTTPException(
                503, "the batch record store is unavailable; retry later", {"Retry-After": "5"}
            ) from exc
        digest = listed.digest()
        if first is not None:
            if first.digest != digest:
                raise HTTPException(409, "this batch id was used with other users")
            return _answer(first, replayed=True)
        if config.status is not Status.ACTIVE:
            raise HTTPException(409, f"the sequence is {config.status.value}, not ACTIVE")
        now = datetime.now(UTC)  # to the millisecond, as stored: a replay answers alike
        accepted_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
        await _publish(request, config, listed, accepted_at)
        record = BatchRecord(
            *key, digest, listed.received, len(listed.users), listed.duplicates, accepted_at
        )
        try:
            await record_batch(gw.store, record)
        except Exception:  # the users are queued; a repeat re-queues, the engine dedupes
            log.warning("enrollment batch %s not recorded", listed.batch_id, exc_info=True)
        return _answer(record, replayed=False)


def parse_listing(content_type: str, body: bytes, query_batch_id: str | None) -> Listed:
    """The request's users, validated (422 with a location per invalid field)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == NDJSON:
        return _ndjson(body, query_batch_id)
    if media_type != JSON:
        raise HTTPException(415, f"send {JSON} or {NDJSON}")
    batch = _validated(EnrollmentBatch, body, ["body"])
    if query_batch_id is not None and query_batch_id != batch.batch_id:
        raise _invalid(["query", "batch_id"], "differs from the body's batch_id")
    users: dict[str, Attributes] = {}
    for user_id in batch.user_ids:
        users.setdefault(user_id, {})
    return Listed(batch.batch_id, users, len(batch.user_ids))


def _ndjson(body: bytes, batch_id: str | None) -> Listed:
    lines = [(i, line) for i, line in enumerate(body.split(b"\n")) if line.strip()]
    errors: list[dict[str, Any]] = []
    if batch_id is None:
        errors.append(_error(["query", "batch_id"], "required with NDJSON", "missing"))
    if not lines:
        errors.append(_error(["body"], "no lines", "too_short"))
    if len(lines) > MAX_ENROLLMENT_USERS:
        errors.append(_error(["body"], f"at most {MAX_ENROLLMENT_USERS} lines", "too_long"))
    if errors:
        raise InvalidConfigError(errors)
    users: dict[str, Attributes] = {}
    for number, line in lines:
        try:
            entry = _validated(EnrollmentLine, line, ["body", number])
        except InvalidConfigError as exc:
            errors.extend(exc.errors)
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            continue
        users.setdefault(entry.user_id, dict(entry.attributes))
    if errors:
        raise InvalidConfigError(errors[:MAX_REPORTED_ERRORS])
    assert batch_id is not None  # noqa: S101 - refused above
    return Listed(batch_id, users, len(lines))


def _validated(model: type[M], text: bytes, at: list[str | int]) -> M:
    """JSON types as documented (strict): a number is not a user id."""
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        errors = field_errors(exc)[:MAX_REPORTED_ERRORS]
        if any(e["type"] == "json_invalid" for e in errors) and at == ["body"]:
            raise HTTPException(400, "the body is not JSON text") from exc
        for e in errors:
            e["loc"] = [*at, *e["loc"][1:]]
        raise InvalidConfigError(errors) from exc


def _error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _invalid(loc: list[str | int], msg: str) -> InvalidConfigError:
    return InvalidConfigError([_error(loc, msg, "value_error")])


async def _publish(
    request: Request, config: SequenceConfig, listed: Listed, accepted_at: datetime
) -> None:
    """One record per user on the partition that owns them; returns once the broker holds
    every one (a refusal raises, answered 503: a retry with the same batch id is safe)."""
    gw = request.app.state.gw
    settings = gw.settings
    futures = []
    for user_id, attributes in listed.users.items():
        record = EnrollRequest(
            workspace_id=config.workspace_id,
            config_id=config.id,
            batch_id=listed.batch_id,
            user_id=user_id,
            attributes=attributes,
            requested_at=accepted_at,
        )
        futures.append(
            await gw.producer.send(
                settings.topic_inputs,
                record.model_dump_json().encode(),
                key=state_key(config.workspace_id, user_id).encode(),
                partition=owner_partition(config.workspace_id, user_id, settings.topic_partitions),
            )
        )
    await asyncio.gather(*futures)


def _answer(record: BatchRecord, *, replayed: bool) -> EnrollmentAccepted:
    at = record.accepted_at
    return EnrollmentAccepted(
        batch_id=record.batch_id,
        config_id=record.config_id,
        received=record.received,
        accepted=record.accepted,
        duplicates=record.duplicates,
        replayed=replayed,
        accepted_at=at if at.tzinfo else at.replace(tzinfo=UTC),
    )


def _limiter(request: Request) -> RateLimiter:
    settings = request.app.state.gw.settings
    rate, burst = settings.enrollment_rate_per_second, settings.enrollment_burst
    return shared_limiter(request.app.state, "enrollment_limiter", rate, burst)


def _locks(request: Request) -> _Locks:
    state = request.app.state
    locks: _Locks | None = getattr(state, "enrollment_locks", None)
    if locks is None:
        locks = state.enrollment_locks = _Locks()
    return locks
