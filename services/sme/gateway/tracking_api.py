"""Tracking routes: the open pixel (`/t/o/…`), click redirects (`/t/c/…`) and unsubscribe
(`/t/u/…`). Unauthenticated (mail clients and their image proxies fetch them), outside `/api`:
the signed token is the authority (`sme.core.tracking_links`). A valid hit is published to the
events topic as the feedback event the engine already understands (`opened`, `clicked`,
`unsubscribed` with the command id and channel); a forged, altered or expired token gets 404
and records nothing. Without `SME_TRACKING_SECRET` every route answers 503. Hits are
rate-limited per workspace (429 with `Retry-After`)."""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import SecretStr

from sme.core.tracking_links import (
    MAX_TOKEN,
    InvalidLinkError,
    LinkClaims,
    LinkKind,
    tracking_event,
    verify,
)
from sme.gateway.openapi_docs import REF, ErrorMessage, error
from sme.gateway.rate_limit import retry_after, shared_limiter

router = APIRouter(tags=["tracking"])
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store, private"}
Token = Annotated[
    str, Path(min_length=1, max_length=MAX_TOKEN, description="A signed tracking token.")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: error(ErrorMessage, "not a valid tracking link: forged, altered or expired"),
    429: error(ErrorMessage, "too many tracking hits for this workspace; retry later"),
    503: error(ErrorMessage, "tracking is not configured, or the broker did not acknowledge"),
}
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
# The HTML routes' own media type would otherwise be given to their JSON errors too.
HTML_ROUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": doc["description"],
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorMessage")}}},
    }
    for status, doc in ERRORS.items()
}
KIND_NAMES = {LinkKind.OPEN: "open", LinkKind.CLICK: "click", LinkKind.UNSUBSCRIBE: "unsubscribe"}


@router.get(
    "/t/o/{token}",
    response_class=Response,
    responses={
        200: {
            "description": "a 1x1 transparent GIF; the open is recorded",
            "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
        },
        **ERRORS,
    },
)
async def open_pixel(request: Request, token: Token) -> Response:
    """Record `opened` for the token's command and answer a 1x1 transparent GIF."""
    await _record(request, _claims(request, token, LinkKind.OPEN))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get(
    "/t/c/{token}",
    response_class=RedirectResponse,
    status_code=302,
    responses={302: {"description": "to the signed target; the click is recorded"}, **ERRORS},
)
async def click(request: Request, token: Token) -> RedirectResponse:
    """Record `clicked` for the token's command and redirect to the URL signed into the token
    (only http/https; never a URL taken from the request)."""
    claims = _claims(request, token, LinkKind.CLICK)
    if claims.url is None:  # verify() refuses a click token without one; kept for types
        raise HTTPException(404, "not a valid tracking link")
    await _record(request, claims)
    return RedirectResponse(claims.url, 302, headers=NO_STORE)


@router.get(
    "/t/u/{token}",
    response_class=HTMLResponse,
    responses={200: {"description": "a page asking to confirm", **_HTML}, **HTML_ROUTE_ERRORS},
)
async def unsubscribe_page(request: Request, token: Token) -> HTMLResponse:
    """A confirmation page whose button POSTs to the same URL. A GET records nothing: link
    scanners and prefetchers follow links, and must not unsubscribe anyone."""
    claims = _claims(request, token, LinkKind.UNSUBSCRIBE, limited=False)
    channel = html.escape(claims.channel.value.replace("_", "-"))
    return _page(
        "Unsubscribe",
        f"<p>Stop receiving {channel} messages?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@router.post(
    "/t/u/{token}",
    response_class=HTMLResponse,
    responses={
        200: {"description": "consent withdrawn for the channel", **_HTML},
        **HTML_ROUTE_ERRORS,
    },
)
async def unsubscribe(request: Request, token: Token) -> HTMLResponse:
    """Withdraw the user's consent for the token's channel (an `unsubscribed` event: the
    engine records `consent_revoked` and sends nothing more on that channel). The one-click
    List-Unsubscribe POST of RFC 8058; its body (`List-Unsubscribe=One-Click`) is not needed."""
    claims = _claims(request, token, LinkKind.UNSUBSCRIBE)
    await _record(request, claims)
    channel = html.escape(claims.channel.value.replace("_", "-"))
    return _page("Unsubscribed", f"<p>You will receive no more {channel} messages.</p>")


def _claims(request: Request, token: str, kind: LinkKind, *, limited: bool = True) -> LinkClaims:
    """The verified token, or 404 (503 without a secret; 429 past the workspace's rate)."""
    gw = request.app.state.gw
    secret = gw.settings.tracking_secret
    if secret is None:
        raise HTTPException(503, "tracking is not configured (SME_TRACKING_SECRET is unset)")
    hits = gw.metrics.tracking_hits
    claims = _verified(token, kind, (secret, gw.settings.tracking_previous_secret))
    if claims is None:
        hits.labels(KIND_NAMES[kind], "refused").inc()
        raise HTTPException(404, "not a valid tracking link")
    if limited:
        settings = gw.settings
        limiter = shared_limiter(
            request.app.state,
            "tracking_limiter",
            settings.tracking_rate_per_second,
            settings.tracking_burst,
        )
        wait = limiter.take(claims.workspace_id, time.monotonic())
        if wait:
            hits.labels(KIND_NAMES[kind], "limited").inc()
            raise HTTPException(
                429,
                "too many tracking hits for this workspace; retry later",
                headers={"Retry-After": retry_after(wait)},
            )
    return claims


def _verified(
    token: str, kind: LinkKind, secrets: tuple[SecretStr | None, ...]
) -> LinkClaims | None:
    """The claims under the current secret, else under the previous one (links minted before
    a rotation keep working); None when neither signed it."""
    now = datetime.now(UTC)
    for secret in secrets:
        if secret is None:
            continue
        try:
            return verify(token, kind, secret.get_secret_value().encode(), now)
        except InvalidLinkError:
            continue
    return None


async def _record(request: Request, claims: LinkClaims) -> None:
    """Publish the hit's feedback event (key = user id, as upstream events); returns once the
    broker holds it (a refusal is a 503, and the client may retry: the event id is stable)."""
    gw = request.app.state.gw
    event = tracking_event(claims, datetime.now(UTC))
    await gw.producer.send_and_wait(
        gw.settings.topic_events, event.model_dump_json().encode(), key=claims.user_id.encode()
    )
    gw.metrics.tracking_hits.labels(KIND_NAMES[claims.kind], "recorded").inc()


def _page(title: str, body: str) -> HTMLResponse:
    """A bare page: no script, no style, no external resource (the gateway's CSP holds)."""
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="robots" content="noindex"></head><body><h1>{title}</h1>{body}</body></html>',
        headers=NO_STORE,
    )
