"""Several scenarios on one suite broker: one after the other (the full run: the broker
restart scenario restarts the broker the others use), or side by side (the reduced CI run,
whose scenarios leave the broker alone; each has its own topics, groups and processes, and
most of their time is spent waiting for the engine's group to notice a dead member)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from tests.faults.broker import SuiteBroker
from tests.faults.report import ScenarioResult, details
from tests.faults.scenarios import SCENARIOS, Sizes

KEEP_S = 24 * 3600.0


@contextlib.asynccontextmanager
async def suite_broker(home: Path) -> AsyncIterator[SuiteBroker]:
    """A fresh broker under `home` for the run; stopped and its data dropped afterwards
    (the logs stay for a look)."""
    broker = SuiteBroker(home)
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)
        broker.remove_data()


def run_dir(parent: Path, kind: str) -> Path:
    """A new directory for one run (broker data, service logs), unique even when several
    runs go on at once; runs of the same kind that finished over KEEP_S ago are pruned."""
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{kind}-*"):
        if old.is_dir() and time.time() - old.stat().st_mtime > KEEP_S:
            shutil.rmtree(old, ignore_errors=True)
    home = parent / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    home.mkdir()
    return home


async def run_scenarios(
    home: Path,
    names: Sequence[str],
    sizes: Sizes,
    say: Callable[[str], None] = print,
) -> list[ScenarioResult]:
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {sorted(SCENARIOS)}")
    results: list[ScenarioResult] = []
    async with suite_broker(home / "broker") as broker:
        say(f"suite broker on {broker.bootstrap} (data and logs under {home})")
        for name in names:
            started = time.monotonic()
            say(f"-- {name} ...")
            result = await SCENARIOS[name](broker, home / name, sizes)
            results.append(result)
            say(details(result))
            say(f"   ({time.monotonic() - started:.0f}s)")
    return results


async def run_side_by_side(
    broker: SuiteBroker, home: Path, names: Sequence[str], sizes: Sizes
) -> dict[str, ScenarioResult]:
    if "broker-restart" in names:
        raise ValueError("the broker restart would hit every scenario running beside it")
    results = await asyncio.gather(*(SCENARIOS[name](broker, home / name, sizes) for name in names))
    return dict(zip(names, results, strict=True))
