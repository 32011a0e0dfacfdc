"""Preview a sequence for one made-up user, and send one step's message to a test user.

`POST …/{config_id}/preview` (the stored sequence, or a draft of it in `config`) and
`POST …/preview` (an unsaved sequence in `config`) run the real core on a virtual clock in this
process (`core.preview`): no broker, no ClickHouse, no state of any real user is read or
written. `POST …/{config_id}/test-send` publishes one command marked `test: true` to the
channel's command topic for a user listed in the workspace's `test_users` (no one else: the
route cannot reach a customer), rate-limited per workspace, with the same keys as
configuration writes. A test send records no activity: nothing of it reaches a metric, a
report or the dashboard; a log line (key, sequence, step, channel, command id) is its audit
trail, and feedback that names its command is logged by the engine as `unknown_command`,
credited to no sequence."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from sme.contracts.preview import (
    PreviewRequest,
    PreviewResponse,
    SendTestRequest,
    SendTestResponse,
)
from sme.contracts.sequences import SequenceConfig
from sme.core.preview import command_for_test_send, run_preview
from sme.gateway.config_service import InvalidConfigError
from sme.gateway.configs_api import API, WRITE, Caller, _scope, _service, principal
from sme.gateway.openapi_docs import SEQUENCE_SERVER_FIELDS, ErrorMessage, error
from sme.gateway.rate_limit import RateLimiter, retry_after, shared_limiter

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(principal)])
TEST_SEND_RATE = 1.0
"""Test sends per second per workspace (a person clicking "send test", not a campaign)."""
TEST_SEND_BURST = 10
RATE_LIMITED = error(ErrorMessage, "too many test sends for this workspace; retry later")
NOT_A_TEST_USER = error(ErrorMessage, "the user is not in the workspace's test_users")
PREVIEW_DOC = """Run the sequence for one made-up user on a virtual clock, through the engine's
own decision core, and answer with every decision in time order: enrollment and arm, each
step's send (time, channel, variant, template and the command a sender would get), every
suppression, deferral, skip and branch with its reason code, exits and conversions, then
where the user stands. Nothing is published or stored.

The timeline's events run in time order, interleaved with the user's due steps; without an
event of an entry type, a `preview-entry` event of the first entry type enrolls the user at
`start`. The sequence runs as if ACTIVE with the kill switch released, alone in its workspace
(other sequences' sends do not count against workspace caps), with empty budget ledgers and
no population statistics (the adaptive policy's priors; `seed` fixes its draws). `arm`
forces an arm; by default the user gets the arm the engine would give them."""


def _strict(
    model: type[BaseModel], document: Any, prefix: tuple[str | int, ...], strict: bool | None = None
) -> Any:
    """Validate a JSON body, errors located in the body. The preview contracts are strict
    themselves; `strict=True` makes a lax contract (a configuration) strict too."""
    try:
        return model.model_validate_json(orjson.dumps(document), strict=strict)
    except ValidationError as exc:
        raise InvalidConfigError(
            [
                {"loc": ["body", *prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
        ) from exc
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidConfigError(
            [{"loc": ["body"], "msg": f"not representable: {exc}", "type": "value_error"}]
        ) from exc


def _draft(document: dict[str, Any], config_id: str, version: int, now: datetime) -> SequenceConfig:
    """An unsaved configuration as create takes it (server fields refused), set up to run."""
    supplied = [f for f in SEQUENCE_SERVER_FIELDS if f in document]
    if supplied:
        raise InvalidConfigError(
            [
                {"loc": ["body", "config", f], "msg": "set by the server", "type": "server_field"}
                for f in supplied
            ]
        )
    server = {"id": config_id, "version": version, "created_at": now, "updated_at": None}
    config: SequenceConfig = _strict(
        SequenceConfig, {**document, **server}, ("config",), strict=True
    )
    return config


@router.post(
    f"{API}/preview",
    tags=["preview"],
    openapi_extra={"x-sme-body": "PreviewRequest"},
    summary="Preview an unsaved sequence",
)
async def preview_draft(
    request: Request, who: Caller, body: Annotated[dict[str, Any], Body()]
) -> PreviewResponse:
    """The preview of an unsaved sequence, given in `config` (required here); see
    `POST …/{config_id}/preview`."""
    parsed: PreviewRequest = _strict(PreviewRequest, body, ())
    if parsed.config is None:
        raise InvalidConfigError(
            [{"loc": ["body", "config"], "msg": "Field required", "type": "missing"}]
        )
    now = datetime.now(UTC)
    config = _draft(parsed.config, "preview", 1, now)
    _scope(who, config.workspace_id)
    return await run_in_threadpool(_preview, request, config, parsed, now)


@router.post(
    f"{API}/{{config_id}}/preview",
    tags=["preview"],
    openapi_extra={"x-sme-body": "PreviewRequest"},
    description=PREVIEW_DOC,
    summary="Preview a sequence for one user",
)
async def preview_config(
    request: Request, who: Caller, config_id: str, body: Annotated[dict[str, Any], Body()]
) -> PreviewResponse:
    stored = _service(request).get(config_id, who.workspace_id)
    parsed: PreviewRequest = _strict(PreviewRequest, body, ())
    now = datetime.now(UTC)
    config = stored
    if parsed.config is not None:
        config = _draft(parsed.config, config_id, stored.version + 1, now)
        if config.workspace_id != stored.workspace_id:
            raise InvalidConfigError(
                [
                    {
                        "loc": ["body", "config", "workspace_id"],
                        "msg": "must be the sequence's workspace",
                        "type": "value_error",
                    }
                ]
            )
    return await run_in_threadpool(_preview, request, config, parsed, now)


def _preview(
    request: Request, config: SequenceConfig, parsed: PreviewRequest, now: datetime
) -> PreviewResponse:
    """Run in a worker thread: a long preview (up to `MAX_DECISIONS` decisions) never holds
    the event loop."""
    start = parsed.effective_start(now)
    horizon_end = start + parsed.horizon
    workspace = _service(request).workspace(config.workspace_id)
    result = run_preview(
        config,
        workspace,
        parsed.user_id,
        parsed.profile,
        parsed.timeline,
        start,
        horizon_end,
        parsed.seed,
        parsed.arm,
    )
    return PreviewResponse(
        config_id=config.id,
        config_version=config.version,
        user_id=parsed.user_id,
        start=start,
        horizon_end=horizon_end,
        seed=parsed.seed,
        trace=list(result.trace),
        outcome=result.outcome,
    )


def _limiter(request: Request) -> RateLimiter:
    return shared_limiter(request.app.state, "test_send_limiter", TEST_SEND_RATE, TEST_SEND_BURST)


@router.post(
    f"{API}/{{config_id}}/test-send",
    tags=["preview"],
    openapi_extra={"x-sme-body": "SendTestRequest"},
    responses={403: NOT_A_TEST_USER, 429: RATE_LIMITED, **WRITE},
    summary="Send one step's message to a test user",
)
async def test_send(
    request: Request, who: Caller, config_id: str, body: Annotated[dict[str, Any], Body()]
) -> SendTestResponse:
    """Publish one command of a message step, marked `test: true`, to the channel's command
    topic, for a user listed in the workspace's `test_users` (403 otherwise), so senders can
    deliver it to an internal recipient. The command is built as the engine builds a send's
    (same fields and content); `channel` and `variant` default to the step's first. Consent,
    guardrails and the experiment do not apply; it records no activity and counts in no metric.
    At most 10 at once and 1 a second per workspace (429 with `Retry-After`)."""
    config = _service(request).get(config_id, who.workspace_id)
    parsed: SendTestRequest = _strict(SendTestRequest, body, ())
    step = next((s for s in config.steps if s.id == parsed.step_id), None)
    errors: list[dict[str, Any]] = []
    if step is None or step.kind != "message":
        errors.append(_error("step_id", "must name a message step of the sequence"))
    elif parsed.channel is not None and parsed.channel not in step.channels:
        errors.append(_error("channel", "must be one of the step's channels"))
    elif parsed.variant is not None and parsed.variant not in step.variants:
        errors.append(_error("variant", "must be one of the step's variants"))
    if errors or step is None:
        raise InvalidConfigError(errors)
    workspace = _service(request).workspace(config.workspace_id)
    if parsed.user_id not in workspace.test_users:
        raise HTTPException(403, "the user is not in the workspace's test_users")
    wait = _limiter(request).take(config.workspace_id, time.monotonic())
    if wait:
        raise HTTPException(
            429,
            "too many test sends for this workspace; retry later",
            headers={"Retry-After": retry_after(wait)},
        )
    channel = parsed.channel or step.channels[0]
    command = command_for_test_send(
        config,
        workspace,
        parsed.user_id,
        parsed.profile,
        step,
        channel,
        parsed.variant or step.variants[0],
        datetime.now(UTC),
        uuid.uuid4().hex,
    )
    gw = request.app.state.gw
    topic = gw.settings.command_topic(channel)
    await gw.producer.send_and_wait(
        topic, command.model_dump_json().encode(), key=parsed.user_id.encode()
    )
    log.info(
        "test send by key %s: sequence %s step %s channel %s command %s",
        who.key_id,
        config_id,
        step.id,
        channel.value,
        command.command_id,
    )
    return SendTestResponse(topic=topic, command=command)


def _error(field: str, message: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": "value_error"}
