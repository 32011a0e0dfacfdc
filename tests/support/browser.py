"""Debian's headless Chromium (installed by `make browser`) driven from tests: the DOM after
the page's scripts ran, and a screenshot."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
BUDGET_MS = 20_000


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium is not installed: run `make browser` (Debian package)")
    return path


async def _run(url: str, *extra: str, timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory(prefix="sme-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={BUDGET_MS}",
            *extra,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            raise
        if process.returncode != 0:
            raise RuntimeError(f"chromium exited {process.returncode}: {err.decode()[-2000:]}")
        return out.decode()


async def rendered_dom(url: str) -> str:
    """The page's DOM once its scripts have run (virtual time lets fetches finish)."""
    return await _run(url, "--dump-dom")


async def screenshot(url: str, name: str, size: str = "1400,2400") -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    await _run(url, f"--screenshot={target}", f"--window-size={size}", "--hide-scrollbars")
    return target


class Elements(HTMLParser):
    """Elements by id (their attributes and text) from a dumped DOM."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.text: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self.rows: dict[str, list[dict[str, str]]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._table: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = values
        ident = values.get("id")
        if ident:
            self.by_id[ident] = values
            self.text[ident] = ""
        if tag == "table" and ident:
            self._table.append(ident)
            self.rows[ident] = []
        if tag == "tr" and self._table and values:
            self.rows[self._table[-1]].append(values)
        if tag not in {"br", "img", "input", "meta", "link"}:
            self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if tag == "table" and open_tag == "table" and self._table:
                self._table.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.text[ident] += data
