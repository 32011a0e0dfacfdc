"""One scenario's deployment on the suite broker: its own topics, consumer groups, database,
data directory and ports (nothing is shared between scenarios but the broker), engines and a
gateway as processes, and the sequence published with `sme configs apply`."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.conftest import unique_topic_env
from tests.faults.broker import SuiteBroker
from tests.faults.processes import Service
from tests.faults.workload import sequence_config
from tests.support.infra import free_port

APPLY_TIMEOUT_S = 120.0


class DeploymentError(RuntimeError):
    """A service or a CLI step failed in a way that leaves nothing to measure."""


def scenario_env(broker: SuiteBroker, data_dir: Path, tag: str) -> dict[str, str]:
    """The child processes' environment: no SME_* of the caller leaks in (keys, DSNs...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SME_")}
    topics = unique_topic_env(tag)
    run = topics["SME_TOPIC_EVENTS"].removesuffix(".events")
    env.update(topics)
    env.update(
        SME_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        SME_DATA_DIR=str(data_dir),
        SME_TOPIC_TIMERS=f"{run}.timers",  # engines from before SME_TOPIC_INPUTS read this one
        SME_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Deployment:
    broker: SuiteBroker
    home: Path
    env: dict[str, str]
    http_port: int = field(default_factory=free_port)
    engines: dict[str, Service] = field(default_factory=dict)
    engine_ports: dict[str, int] = field(default_factory=dict)
    gateway: Service | None = None

    @classmethod
    def create(cls, broker: SuiteBroker, home: Path, tag: str) -> Deployment:
        home.mkdir(parents=True, exist_ok=True)
        return cls(broker, home, scenario_env(broker, home / "data", tag))

    # --- names -----------------------------------------------------------------------------
    @property
    def events_topic(self) -> str:
        return self.env["SME_TOPIC_EVENTS"]

    @property
    def commands_prefix(self) -> str:
        return self.env["SME_TOPIC_COMMANDS_PREFIX"]

    @property
    def activities_topic(self) -> str:
        return self.env["SME_TOPIC_ACTIVITIES"]

    @property
    def engine_group(self) -> str:
        return self.env["SME_ENGINE_APP_ID"]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def metrics_url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.engine_ports[instance]}/metrics"

    # --- services ----------------------------------------------------------------------------
    def engine(self, instance: str) -> Service:
        """The service slot of one engine instance (created on first use, port kept)."""
        if instance not in self.engines:
            port = free_port()
            self.engine_ports[instance] = port
            env = {**self.env, "SME_ENGINE_INSTANCE": instance, "SME_ENGINE_WEB_PORT": str(port)}
            self.engines[instance] = Service(
                f"engine-{instance}", "engine", env, self.home / f"engine-{instance}.log"
            )
        return self.engines[instance]

    def start_engine(self, instance: str) -> float:
        return self.engine(instance).spawn()

    def start_gateway(self) -> float:
        if self.gateway is None:
            env = {**self.env, "SME_HTTP_PORT": str(self.http_port)}
            self.gateway = Service("gateway", "gateway", env, self.home / "gateway.log")
        return self.gateway.spawn()

    def services(self) -> list[Service]:
        return [*self.engines.values(), *([self.gateway] if self.gateway else [])]

    def crashed(self) -> list[str]:
        """Services that exited by themselves while they should have been running."""
        return [s.name for s in self.services() if s.crashed()]

    def stop_all(self) -> dict[str, int | None]:
        return {s.name: s.stop() for s in self.services()}

    async def apply_config(self) -> float:
        """`sme configs apply` of the sequence under test; returns the seconds it took."""
        path = self.home / "sequence.json"
        path.write_bytes(orjson.dumps(sequence_config(), option=orjson.OPT_INDENT_2))
        loop = asyncio.get_running_loop()
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sme",
            "configs",
            "apply",
            str(path),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), APPLY_TIMEOUT_S)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise DeploymentError(f"sme configs apply took over {APPLY_TIMEOUT_S:.0f}s") from exc
        if process.returncode != 0:
            raise DeploymentError(
                f"sme configs apply exited {process.returncode}: {output.decode()[-1500:]}"
            )
        return loop.time() - started

    def log_tails(self, chars: int = 1500) -> dict[str, str]:
        return {s.name: s.log_tail(chars) for s in self.services()}
