"""Event ingest compatible with Segment's HTTP tracking API: `POST /v1/track`, `/v1/identify`
and `/v1/batch`, so a CDP that forwards to a Segment-compatible endpoint feeds the engine.

Authentication is Segment's: HTTP Basic with the workspace's write key as the user name and an
empty password. Write keys live hashed in their own file (`SME_WRITE_KEYS_FILE`), apart from
the API keys: a write key can only ingest, and an API key cannot ingest. The workspace of every
event is the write key's; a `workspace_id` in the payload is ignored.

Each accepted event is published to the events topic keyed by user id, as upstream producers
do; each refused one is dead-lettered (reason, field errors, original bytes) like a refused
Kafka message, with an `event_rejected` activity for the error rate. A batch with at least one
accepted event answers 200 with the per-event errors of the others (a forwarder must not retry
what was published); a single call with a refused event, or a batch whose every event was
refused, answers 400."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from sme.contracts.dead_letters import RejectReason, SourcePosition
from sme.contracts.events import Event
from sme.contracts.segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_CALL_BYTES,
    IngestResult,
    SegmentBatch,
    SegmentIdentify,
    SegmentTrack,
)
from sme.core.ids import stable_id
from sme.core.intake import Rejection, dead_letter, rejected_activity
from sme.core.segment import field_errors, from_segment
from sme.gateway.auth import KeyRecord, hash_key, load_keys
from sme.gateway.rate_limit import retry_after, shared_limiter
from sme.settings import Settings

router = APIRouter(prefix="/v1", tags=["ingest"])
WRITE_KEY_PREFIX = "sme_wk_"
Problems = list[tuple[tuple[str | int, ...], str, str]]


class WriteKeys:
    """The write keys by hash, read once at start (a bad file stops the gateway)."""

    def __init__(self, settings: Settings) -> None:
        records = load_keys(settings.write_keys_file, "SME_WRITE_KEYS_FILE")
        self._by_hash: dict[str, KeyRecord] = {r.sha256: r for r in records}

    def workspace(self, request: Request) -> str:
        """The workspace of the request's Basic credentials, or 401 (same for every cause but
        the message, so nothing tells a guessed key from a revoked one)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not token:
            raise _unauthorized("missing write key (HTTP Basic, user = write key)")
        try:
            user = base64.b64decode(token.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthorized("malformed Basic credentials") from None
        digest = hash_key(user)
        record = self._by_hash.get(digest)  # a hash of a random key: nothing to time
        if record is None:
            raise _unauthorized("unknown write key")
        return record.workspace_id


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Basic realm="sme"'})


def _body_schema(model: type[Any]) -> dict[str, Any]:
    """The model's JSON Schema with its definitions inlined (it has no recursion), so the
    operation documents its body without shared components."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}


def _responses(limit: int) -> dict[int | str, dict[str, Any]]:
    result = {"model": IngestResult}
    return {
        400: {
            **result,
            "description": "not JSON, not a call, the call (track, identify) or every call of "
            "a batch refused",
        },
        401: {"description": "missing or unknown write key"},
        413: {"description": f"the body is over {limit} bytes"},
        429: {"description": "too many ingest calls for this workspace; see Retry-After"},
        503: {"description": "the broker did not acknowledge the write; retry later"},
    }


@router.post(
    "/track",
    response_model=IngestResult,
    responses=_responses(MAX_CALL_BYTES),
    openapi_extra={"requestBody": _body_schema(SegmentTrack)},
)
async def track(request: Request) -> JSONResponse:
    """One `track` call: the event name becomes the type (`Order Completed` ->
    `order_completed`)."""
    return await _ingest(request, "track", MAX_CALL_BYTES)


@router.post(
    "/identify",
    response_model=IngestResult,
    responses=_responses(MAX_CALL_BYTES),
    openapi_extra={"requestBody": _body_schema(SegmentIdentify)},
)
async def identify(request: Request) -> JSONResponse:
    """One `identify` call: an `identified` event; scalar traits become profile attributes."""
    return await _ingest(request, "identify", MAX_CALL_BYTES)


@router.post(
    "/batch",
    response_model=IngestResult,
    responses=_responses(MAX_BATCH_BYTES),
    openapi_extra={"requestBody": _body_schema(SegmentBatch)},
)
async def batch(request: Request) -> JSONResponse:
    """Up to 2500 `track`/`identify` calls: each accepted or refused on its own (200 with the
    refused ones' errors; they are dead-lettered)."""
    return await _ingest(request, None, MAX_BATCH_BYTES)


async def _ingest(request: Request, kind: str | None, limit: int) -> JSONResponse:
    workspace_id = request.app.state.write_keys.workspace(request)
    settings: Settings = request.app.state.gw.settings
    limiter = shared_limiter(
        request.app.state, "ingest_limiter", settings.ingest_rate_per_second, settings.ingest_burst
    )
    wait = limiter.take(workspace_id, time.monotonic())
    if wait > 0:
        raise HTTPException(
            429, "too many ingest calls for this workspace", {"Retry-After": retry_after(wait)}
        )
    raw = await request.body()
    if len(raw) > limit:
        raise HTTPException(413, f"the body is over {limit} bytes")
    sink = _Sink(request, workspace_id)
    calls, refused = _calls(raw, kind)
    if refused:  # the body itself
        sink.refuse(0, raw, None, refused, RejectReason.INVALID_JSON)
        await sink.flush()
        return _answer(sink, 400)
    now = datetime.now(UTC)
    for index, call in enumerate(calls):
        original = orjson.dumps(call)
        problems = _too_large(original, MAX_CALL_BYTES, "a call")
        if not problems:
            mapped = from_segment(call, kind, workspace_id, now)
            if isinstance(mapped, Event):
                value = mapped.model_dump_json().encode()
                problems = _too_large(value, settings.max_event_bytes, "its event")
                if not problems:
                    sink.accept(mapped.user_id, value)
                    continue
            else:
                problems = mapped
        too_large = problems[0][2] == "too_large"
        reason = RejectReason.TOO_LARGE if too_large else RejectReason.VALIDATION_FAILED
        sink.refuse(index, original, call, problems, reason)
    await sink.flush()
    nothing_taken = sink.errors and (kind is not None or not sink.accepted)
    return _answer(sink, 400 if nothing_taken else 200)


def _too_large(data: bytes, limit: int, what: str) -> Problems:
    """Segment's 32 KB per call holds inside a batch too; the event must fit the engine's
    `SME_MAX_EVENT_BYTES` (it would dead-letter a larger one)."""
    if len(data) <= limit:
        return []
    return [((), f"{what} is {len(data)} bytes; at most {limit}", "too_large")]


def _calls(raw: bytes, kind: str | None) -> tuple[list[object], Problems]:
    """The body's calls, or (none and) why the body as a whole is refused."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [((), f"the body is not JSON: {exc}", "json_invalid")]
    if kind is not None:
        return [document], []
    events = document.get("batch") if isinstance(document, dict) else None
    if not isinstance(events, list) or not events:
        return [], [(("batch",), "batch must be a non-empty list of calls", "list_type")]
    if len(events) > MAX_BATCH_EVENTS:
        message = f"{len(events)} calls; at most {MAX_BATCH_EVENTS} in one batch"
        return [], [(("batch",), message, "too_long")]
    return events, []


class _Sink:
    """Accepted events go to the events topic, refused ones to the dead letters, all sent
    together and awaited once (a broker error becomes the gateway's 503)."""

    def __init__(self, request: Request, workspace_id: str) -> None:
        gw = request.app.state.gw
        self.producer, self.settings = gw.producer, gw.settings
        self.workspace_id = workspace_id
        self.path = request.url.path
        self.request_id = uuid.uuid4().hex
        self.pending: list[asyncio.Future[Any]] = []
        self.accepted = 0
        self.errors: list[dict[str, Any]] = []

    def accept(self, user_id: str, value: bytes) -> None:
        """One event (its JSON), keyed by its user id as upstream producers key theirs."""
        key = user_id.encode()
        self.pending.append(
            asyncio.ensure_future(self._send(self.settings.topic_events, value, key))
        )
        self.accepted += 1

    def refuse(
        self,
        index: int,
        raw: bytes,
        call: object,
        problems: Problems,
        reason: RejectReason = RejectReason.VALIDATION_FAILED,
    ) -> None:
        message_id = call.get("messageId") if isinstance(call, dict) else None
        user_id = call.get("userId") if isinstance(call, dict) else None
        self.errors.append(
            {
                "index": index,
                "messageId": message_id if isinstance(message_id, str) else None,
                "errors": [{"loc": list(loc), "msg": m, "type": t} for loc, m, t in problems],
            }
        )
        key = str(user_id)[:256] if isinstance(user_id, str | int) else None
        source = SourcePosition(topic=f"http:{self.path}", partition=0, offset=index, key=key)
        rejection = Rejection(reason, field_errors(problems), self.workspace_id)
        now = datetime.now(UTC)
        letter = dead_letter(rejection, raw, source, now, service="gateway")
        activity = rejected_activity(rejection, source, now).model_copy(
            update={
                "activity_id": stable_id(
                    "activity", "event_rejected", "http", self.request_id, index
                ),
                "details": {"fields": [e.loc for e in rejection.errors][:20], "ingest": "segment"},
            }
        )
        kafka_key = key.encode() if key else None
        for topic, model in (
            (self.settings.topic_dlq, letter),
            (self.settings.topic_activities, activity),
        ):
            value = model.model_dump_json().encode()
            self.pending.append(asyncio.ensure_future(self._send(topic, value, kafka_key)))

    async def _send(self, topic: str, value: bytes, key: bytes | None) -> Any:
        return await (await self.producer.send(topic, value, key=key))

    async def flush(self) -> None:
        try:
            await asyncio.gather(*self.pending)
        finally:
            self.pending.clear()


def _answer(sink: _Sink, status: int) -> JSONResponse:
    result = IngestResult(
        success=not sink.errors,
        accepted=sink.accepted,
        rejected=len(sink.errors),
        errors=sink.errors,  # validated into IngestEventError
    )
    return JSONResponse(result.model_dump(mode="json"), status)
