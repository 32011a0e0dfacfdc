"""Signed tracking links: the open pixel, click redirects and the unsubscribe link of one
command. Pure (no clock reads: the expiry comes from the command's `decided_at`, the check is
given `now`), so a sender renders the same links for a redelivered command.

A token is `<payload>.<mac>`, both base64url without padding: the payload is a JSON array
`[version, kind, workspace, user, command, channel, expires (epoch s), url]` and the mac is
HMAC-SHA256 over `sme.t.<payload>` with the tracking secret. The click target travels inside
the signed payload, so the gateway redirects only where the sender pointed (no open redirect),
and no field can be changed without the secret.

Sender authors: `links = tracking_links(command, "https://t.example.com", secret)`, then
`links.open_pixel()` for an `<img>`, `links.click(url)` for each link of the message and
`links.unsubscribe()` for the body and the `List-Unsubscribe` header (with
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, RFC 8058).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.contracts.events import Event
from sme.core.ids import stable_id
from sme.errors import SmeError

VERSION = 1
MIN_SECRET_BYTES = 32
MAX_URL = 2048
MAX_TOKEN = 4096
DEFAULT_TTL = timedelta(days=365)
_DOMAIN = b"sme.t."
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f-\x9f]")  # controls and spaces: never in a Location


class LinkKind(StrEnum):
    """What a link records, and the path segment of its route (`/t/o/…`, `/t/c/…`, `/t/u/…`)."""

    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


EVENT_TYPES = {
    LinkKind.OPEN: "opened",
    LinkKind.CLICK: "clicked",
    LinkKind.UNSUBSCRIBE: "unsubscribed",
}


class InvalidLinkError(SmeError):
    """A token that is malformed, forged, altered, of another kind, or expired."""


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a verified token says: who, which command, which channel, until when, and where
    a click goes."""

    kind: LinkKind
    workspace_id: str
    user_id: str
    command_id: str
    channel: Channel
    expires_at: int  # epoch seconds
    url: str | None = None


def checked_url(url: str) -> str:
    """An absolute http(s) URL with a host, bounded, without spaces or control characters;
    anything else (javascript:, data:, //host, relative paths) is refused."""
    if len(url) > MAX_URL or _UNSAFE_URL.search(url):
        raise InvalidLinkError("the URL is too long or holds spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidLinkError("the URL does not parse") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidLinkError("only absolute http:// and https:// URLs are tracked")
    return url


def mint(claims: LinkClaims, secret: bytes) -> str:
    """The token for `claims` (raises `InvalidLinkError` for claims the gateway would refuse)."""
    _check_secret(secret)
    _checked_claims(claims)
    payload = [
        VERSION,
        claims.kind.value,
        claims.workspace_id,
        claims.user_id,
        claims.command_id,
        claims.channel.value,
        claims.expires_at,
        claims.url,
    ]
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    body = _b64(raw)
    token = f"{body}.{_b64(_mac(body, secret))}"
    if len(token) > MAX_TOKEN:
        raise InvalidLinkError(f"the link would be over {MAX_TOKEN} characters")
    return token


def verify(token: str, kind: LinkKind, secret: bytes, now: datetime) -> LinkClaims:
    """The claims of a token minted with `secret` for `kind` and not expired at `now`;
    `InvalidLinkError` otherwise (the mac is compared in constant time, before any parsing)."""
    _check_secret(secret)
    body, dot, mac = token.partition(".")
    if not dot or len(token) > MAX_TOKEN or not _B64URL.match(body) or not _B64URL.match(mac):
        raise InvalidLinkError("not a tracking token")
    # compared as text: only the canonical encoding of the mac is accepted
    if not hmac.compare_digest(mac.encode(), _b64(_mac(body, secret)).encode()):
        raise InvalidLinkError("the token's signature does not match")
    claims = _parse(_unb64(body))
    if claims.kind != kind:
        raise InvalidLinkError("the token is for another kind of link")
    if claims.expires_at <= now.timestamp():
        raise InvalidLinkError("the link has expired")
    return claims


def tracking_event(claims: LinkClaims, now: datetime) -> Event:
    """The feedback event a verified link records. Its id is the same for every use of the
    command's link of that kind, so the engine counts the first open, the first click (of any
    link of the message) and the first unsubscribe, and marks repeats as duplicates."""
    properties: dict[str, Any] = {"source": "tracking"}
    if claims.url is not None:
        properties["url"] = claims.url
    return Event(
        event_id=stable_id("tracking", claims.kind.value, claims.workspace_id, claims.command_id),
        workspace_id=claims.workspace_id,
        user_id=claims.user_id,
        type=EVENT_TYPES[claims.kind],
        occurred_at=now.astimezone(UTC),
        properties=properties,
        channel=claims.channel,
        command_id=claims.command_id,
    )


@dataclass(frozen=True, slots=True)
class TrackingLinks:
    """The links of one command, under the gateway's public `base_url`."""

    command: Command
    base_url: str
    secret: bytes
    ttl: timedelta = DEFAULT_TTL

    def open_pixel(self) -> str:
        """URL of a 1x1 transparent GIF that records `opened`."""
        return self._url(LinkKind.OPEN, None)

    def click(self, url: str) -> str:
        """URL that records `clicked` and redirects (302) to `url` (absolute http/https)."""
        return self._url(LinkKind.CLICK, checked_url(url))

    def unsubscribe(self) -> str:
        """URL that withdraws the user's consent for the command's channel: a confirmation
        page on GET, the withdrawal on POST (one-click List-Unsubscribe, RFC 8058)."""
        return self._url(LinkKind.UNSUBSCRIBE, None)

    def _url(self, kind: LinkKind, url: str | None) -> str:
        c = self.command
        expires = int((c.decided_at + self.ttl).timestamp())
        claims = LinkClaims(kind, c.workspace_id, c.user_id, c.command_id, c.channel, expires, url)
        return f"{self.base_url.rstrip('/')}/t/{kind.value}/{mint(claims, self.secret)}"


def tracking_links(
    command: Command, base_url: str, secret: bytes | str, ttl: timedelta = DEFAULT_TTL
) -> TrackingLinks:
    """Link builders for one command: `open_pixel()`, `click(url)`, `unsubscribe()`.
    `base_url` is where the gateway is reachable from the recipient (http or https), `secret`
    the gateway's `SME_TRACKING_SECRET`, `ttl` how long after the decision links work."""
    key = secret.encode() if isinstance(secret, str) else secret
    _check_secret(key)
    checked_url(base_url)
    return TrackingLinks(command, base_url, key, ttl)


def _checked_claims(claims: LinkClaims) -> LinkClaims:
    """Claims that make a valid event and, for a click, a safe target (and only a click has
    one): a token that verifies always records."""
    if (claims.kind == LinkKind.CLICK) != (claims.url is not None):
        raise InvalidLinkError("a click link, and only a click link, carries a URL")
    if claims.url is not None:
        checked_url(claims.url)
    try:
        tracking_event(claims, datetime(2000, 1, 1, tzinfo=UTC))
    except ValidationError as exc:
        raise InvalidLinkError(f"the link's ids are not valid event ids: {exc}") from exc
    return claims


def _parse(raw: bytes) -> LinkClaims:
    try:
        value = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise InvalidLinkError("the token's payload is not JSON") from exc
    if not isinstance(value, list) or len(value) != 8 or value[0] != VERSION:
        raise InvalidLinkError("unknown token version")
    _, kind, workspace, user, command, channel, expires, url = value
    texts = (kind, workspace, user, command, channel)
    if not all(isinstance(t, str) for t in texts) or type(expires) is not int:
        raise InvalidLinkError("the token's fields have the wrong types")
    if url is not None and not isinstance(url, str):
        raise InvalidLinkError("the token's URL is not text")
    try:
        claims = LinkClaims(
            LinkKind(kind), workspace, user, command, Channel(channel), expires, url
        )
    except ValueError as exc:
        raise InvalidLinkError("unknown link kind or channel") from exc
    return _checked_claims(claims)


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidLinkError(f"the tracking secret must be at least {MIN_SECRET_BYTES} bytes")


def _mac(body: str, secret: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + body.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidLinkError("not base64url") from exc
