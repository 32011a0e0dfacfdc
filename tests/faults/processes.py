"""`sme engine` / `sme gateway` as child processes: spawned with their settings, crashed with
SIGKILL (no shutdown hook runs, exactly like a machine loss), stopped gracefully at the end."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT_S = 30.0


@dataclass
class Service:
    """One named service slot; each (re)start appends to the same log file."""

    name: str
    command: str  # "engine" or "gateway"
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # wall clock of the latest spawn
    spawns: int = 0
    exits: list[int] = field(default_factory=list)  # exit codes seen (kills included)

    def spawn(self) -> float:
        """Start the process; returns the wall-clock spawn time."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(
                f"\n=== spawn {self.spawns + 1} of {self.name} at {time.time():.3f}\n".encode()
            )
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sme", self.command],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.spawns += 1
        self.started_at = time.time()
        return self.started_at

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> float:
        """SIGKILL and reap; returns the wall-clock kill time."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        killed_at = time.time()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.exits.append(self.process.wait(timeout=STOP_TIMEOUT_S))
        self.process = None  # killed by us: not a crash
        return killed_at

    def stop(self) -> int | None:
        """SIGINT, then SIGKILL if it does not exit in time; the exit code (None if never run)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        code = int(self.process.returncode)
        self.exits.append(code)
        self.process = None
        return code

    def crashed(self) -> bool:
        """Exited by itself (not by our hand) while it should be running."""
        return self.process is not None and self.process.poll() is not None

    def rss_kib(self) -> int | None:
        """Resident set size from /proc/<pid>/status (VmRSS), None if not running."""
        if not self.alive or self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
