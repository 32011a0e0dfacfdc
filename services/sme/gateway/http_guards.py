"""Guards in front of every route, as plain ASGI wrappers (so they see every response,
errors and static files included, and every request body, whatever its transfer encoding):

- `BodyLimit`: a request body over the limit gets 413 as soon as the limit is passed; the body
  is counted as it is received (chunked or not), so no more than the limit is ever buffered.
- `ResponseGuards`: security headers on every response, and a 405's `Allow` header listing
  every method of the path (several routes may share a path; Starlette names one route's)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence

from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1024 * 1024

# The dashboard loads only its own files (Chart.js is served from /static/vendor), no inline
# script or style, and is never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyLimit:
    """413 for a declared `Content-Length` over the limit before anything is read, and for a
    body (any transfer encoding) whose received bytes pass the limit, at that chunk. `wider`
    names the few paths (by regular expression) allowed a larger body, e.g. list uploads."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int = MAX_BODY,
        wider: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.wider = tuple(wider)

    def limit(self, path: str) -> int:
        return next((n for pattern, n in self.wider if pattern.fullmatch(path)), self.max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body = self.limit(scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            await _too_large(max_body)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise BodyTooLargeError(max_body)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLargeError:
            if started:
                raise
            await _too_large(max_body)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body over {limit} bytes"}, 413, headers={"Connection": "close"}
    )


class ResponseGuards:
    """Adds the security headers to every response (a route may set its own CSP, as /docs
    does), and rewrites a 405's `Allow` to every method the path's routes accept."""

    def __init__(self, app: ASGIApp, routes: Callable[[], Iterable[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if message["status"] == 405:
                    headers = [(k, v) for k, v in headers if k.lower() != b"allow"]
                    headers.append((b"allow", ", ".join(self.allowed(scope)).encode()))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, guarded)

    def allowed(self, scope: Scope) -> list[str]:
        path = get_route_path(scope)
        methods: set[str] = set()
        for route in iter_route_contexts(list(self.routes())):  # included routers flattened
            regex, route_methods = getattr(route, "path_regex", None), route.methods
            if regex is not None and route_methods and regex.match(path):
                methods |= route_methods
        return sorted(methods)


def inline_script_hashes(html: str) -> list[str]:
    """CSP source expressions allowing exactly the inline scripts of a page."""
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    ]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None
