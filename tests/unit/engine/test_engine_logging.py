"""The engine logs at the level it is given: Faust's start-up spinner must not lower the root
logger to DEBUG (every aiokafka `log.debug` on the send path then built a record)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from sme.cli import engine_worker


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_debug_is_off_at_quiet_levels(level: str, restored_logging: None) -> None:
    app = faust.App("sme-logging-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = engine_worker(app, level)
    worker._setup_logging()
    assert logging.getLogger().getEffectiveLevel() == getattr(logging, level)
    assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
