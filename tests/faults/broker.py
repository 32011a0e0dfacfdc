"""The suite's own Kafka broker: deploy/local/kafka.sh with a data directory and ports of its
own, so broker restarts and empty-cluster starts never touch the shared broker on 9092."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.infra import ROOT, free_port

KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
SHARED_LIBS = ROOT / ".data" / "kafka" / "libs"
START_TIMEOUT_S = 120.0


class BrokerError(RuntimeError):
    """kafka.sh failed; the message carries the tail of its output."""


def _link_or_copy(source: str, target: str) -> object:
    """Hard links cost nothing on the same file system; a copy works across them."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


@dataclass
class SuiteBroker:
    """One single-node KRaft broker under `home/kafka`, on free loopback ports."""

    home: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    restarts: int = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SME_")}
        env.update(
            SME_DATA_DIR=str(self.home),
            SME_KAFKA_HOST="127.0.0.1",
            SME_KAFKA_PORT=str(self.port),
            SME_KAFKA_CONTROLLER_PORT=str(self.controller_port),
            SME_KAFKA_START_TIMEOUT=str(int(START_TIMEOUT_S)),
        )
        return env

    def _reuse_jars(self) -> None:
        """The shared broker already resolved the jars (its stamp names the pom's hash);
        linking them in spares a Maven run. Without them kafka.sh resolves them itself."""
        libs = self.home / "kafka" / "libs"
        if libs.exists() or not (SHARED_LIBS / ".pom.sha256").exists():
            return
        libs.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(SHARED_LIBS, libs, copy_function=_link_or_copy)

    def _script(self, action: str, timeout: float) -> None:
        result = subprocess.run(
            [str(KAFKA_SH), action],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"kafka.sh {action} failed: {(result.stdout + result.stderr)[-2000:]}"
            )

    def start(self) -> float:
        """Start (idempotent); returns the seconds it took."""
        started = time.monotonic()
        self._reuse_jars()
        self._script("start", START_TIMEOUT_S + 30)
        return time.monotonic() - started

    def stop(self) -> None:
        self._script("stop", 60)

    def restart(self) -> tuple[float, float]:
        """A graceful stop and a start; returns (stopped_at, ready_at) as wall-clock seconds."""
        self.stop()
        stopped_at = time.time()
        self.start()
        self.restarts += 1
        return stopped_at, time.time()

    def pid(self) -> int | None:
        pidfile = self.home / "kafka" / "broker.pid"
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def remove_data(self) -> None:
        """Drop the broker's log directory (it holds every topic of the run)."""
        shutil.rmtree(self.home / "kafka" / "kraft", ignore_errors=True)
