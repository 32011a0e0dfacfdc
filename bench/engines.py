"""`sme engine` processes for the benchmarks: unique topics per run, a temp data dir, readiness
through the engine's `/readyz`, RSS from /proc and counters from `/metrics`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from sme.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_env(tag: str, data_dir: Path) -> dict[str, str]:
    """SME_* settings unique to one run: topics, groups, data dir."""
    run = f"{tag}{uuid.uuid4().hex[:8]}"
    return {
        "SME_DATA_DIR": str(data_dir),
        "SME_ENGINE_APP_ID": f"{run}-engine",
        "SME_GATEWAY_GROUP_ID": f"{run}-gateway",
        "SME_TOPIC_EVENTS": f"{run}.events",
        "SME_TOPIC_COMMANDS_PREFIX": f"{run}.commands",
        "SME_TOPIC_ACTIVITIES": f"{run}.activities",
        "SME_TOPIC_CONFIGS": f"{run}.configs",
        "SME_TOPIC_DLQ": f"{run}.dlq",
        "SME_TOPIC_INPUTS": f"{run}.inputs",
        "SME_TOPIC_STATS": f"{run}.stats",
        "SME_LOG_LEVEL": "WARNING",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("SME_").lower(): v for k, v in env.items()})


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class EngineProcess:
    """One `python -m sme engine` with the run's env, its own instance name and web port."""

    def __init__(self, env: dict[str, str], instance: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "SME_ENGINE_INSTANCE": instance,
            "SME_ENGINE_WEB_PORT": str(self.port),
        }
        self.log = Path(env["SME_DATA_DIR"]) / f"engine-{instance}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sme",
            "engine",
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("engine not started")
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(f"engine exited: {self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async def wait_ready(self, timeout_s: float = 600) -> float:
        """Seconds from start until `/readyz` answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if await asyncio.to_thread(self._ready):
                return time.monotonic() - self.started_at
            await asyncio.sleep(0.2)
        raise TimeoutError(f"engine not ready after {timeout_s} s: {self.log.read_text()[-3000:]}")

    def _scrape(self, prefix: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            lines = r.read().decode().splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith(prefix) and not line.startswith("#")
        )

    async def counter(self, prefix: str) -> float:
        """Sum of every sample of a metric (all labels)."""
        return await asyncio.to_thread(self._scrape, prefix)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
