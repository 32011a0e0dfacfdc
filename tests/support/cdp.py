"""Debian's headless Chromium driven interactively over the DevTools protocol, on the pipe
Chromium opens with `--remote-debugging-pipe` (commands in on fd 3, answers out on fd 4, each
a JSON message ended by a NUL byte), so a test can type, click and wait on a page without a
WebSocket client. Console errors, uncaught exceptions and CSP refusals are collected, so a
test can assert the page ran clean."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.browser import ARTIFACTS, chromium
from tests.support.waiting import eventually

MAX_MESSAGE = 64 * 1024 * 1024  # a full-page screenshot comes back base64-encoded


class PageError(AssertionError):
    pass


class Browser:
    def __init__(self, process: asyncio.subprocess.Process, commands: int, answers: int) -> None:
        self.process = process
        self._commands = commands
        self._answers = answers
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self.problems: list[str] = []  # console errors, exceptions, CSP refusals
        self._reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_MESSAGE)
        pipe = os.fdopen(self._answers, "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        while True:
            try:
                raw = await reader.readuntil(b"\0")
            except asyncio.IncompleteReadError:
                break
            message = json.loads(raw[:-1])
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self._event(message)
        for future in self._pending.values():
            future.set_exception(PageError("chromium closed its DevTools pipe"))

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(
                "exception: " + details.get("exception", {}).get("description", details["text"])
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append("console: " + repr(params.get("args")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]  # a 4xx answer is logged too ("network"): the page's business
            if entry.get("source") != "network":
                self.problems.append(f"log ({entry.get('source')}): {entry.get('text')}")

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise PageError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str, width: int = 1400, height: int = 1000) -> Page:
        target = await self.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        for domain in ("Runtime", "Log", "Page"):
            await page.call(f"{domain}.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        await page.call("Page.navigate", {"url": url})
        return page


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.call(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The expression's value (awaited if a promise), as JSON."""
        answer = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            raise PageError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 20) -> Any:
        """Poll until the expression is truthy (bounded); its value."""

        async def probe() -> Any:
            try:
                return await self.evaluate(expression)
            except PageError:  # e.g. no document.body yet while the page loads
                return None

        return await eventually(probe, timeout=timeout, interval=0.1, what=what)

    async def type_into(self, element_id: str, text: str) -> None:
        """Replace the field's text as typing would: focus, select all, insert (input events)."""
        await self.evaluate(
            f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); "
            "e.focus(); e.select(); })()"
        )
        await self.call("Input.insertText", {"text": text})

    async def click(self, element_id: str) -> None:
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).click()")

    async def screenshot(self, name: str) -> Path:
        """The whole page as a PNG in tests/artifacts/."""
        shot = await self.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        ARTIFACTS.mkdir(exist_ok=True)
        target = ARTIFACTS / name
        target.write_bytes(base64.b64decode(shot["data"]))
        return target


def _above_4(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


@contextlib.asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for the block; its DevTools pipe is the only way in."""
    commands_read, commands_write = os.pipe()
    answers_read, answers_write = os.pipe()
    # the child's ends above 4, so mapping one onto 3 cannot clobber the other
    commands_read, answers_write = (_above_4(fd) for fd in (commands_read, answers_write))
    # Chromium's helpers may still be writing the profile as it is removed
    with tempfile.TemporaryDirectory(prefix="sme-chromium-", ignore_cleanup_errors=True) as profile:
        # bash maps the pipe ends onto the descriptors Chromium expects (3 in, 4 out)
        process = await asyncio.create_subprocess_exec(
            "/bin/bash",  # dash takes single-digit descriptors only
            "-c",
            f'exec "$0" "$@" 3<&{commands_read} 4>&{answers_write}',
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
            pass_fds=(commands_read, answers_write),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(answers_write)
        browser = Browser(process, commands_write, answers_read)
        browser._reader = asyncio.create_task(browser._read())
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.call("Browser.close"), 5)
            os.close(commands_write)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser._reader, 5)
