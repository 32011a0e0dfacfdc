"""The engine never loses a command (issue 9), reduced for CI: the fault suite's own harness
(tests/faults) with 300 users per scenario, engine kills, a 2 -> 1 -> 2 failover, a gateway
kill and first starts on topics that do not exist yet, side by side on a broker of the
suite's own. `make faults` runs the full form (more users, more kills, a broker restart,
ten first starts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.report import ScenarioResult, details, table, write_json
from tests.faults.scenarios import CI
from tests.faults.suite import run_side_by_side, suite_broker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]
SCENARIOS = ("engine-kill", "failover", "gateway-kill", "first-start")


@pytest.fixture(scope="module")
async def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, ScenarioResult]]:
    home: Path = tmp_path_factory.mktemp("faults")
    async with suite_broker(home / "broker") as broker:
        found = await run_side_by_side(broker, home, SCENARIOS, CI)
    write_json(home / "results.json", list(found.values()), {"kind": "faults-ci"})
    print("\n" + table(list(found.values())) + f"\n(details: {home / 'results.json'})")
    yield found


def _measured(result: ScenarioResult) -> ScenarioResult:
    assert result.error is None, details(result)
    return result


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_user_gets_every_step_despite_the_faults(
    results: dict[str, ScenarioResult], name: str
) -> None:
    result = _measured(results[name])
    assert result.expected > 0, details(result)
    assert result.lost == 0, details(result)


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_step_reaches_a_user_under_two_command_ids(
    results: dict[str, ScenarioResult], name: str
) -> None:
    result = _measured(results[name])
    assert result.distinct_key_duplicates == 0, details(result)


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_user_goes_over_a_frequency_cap(results: dict[str, ScenarioResult], name: str) -> None:
    result = _measured(results[name])
    assert result.over_cap_users == 0, details(result)


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_store_holds_each_activity_id_on_the_topic(
    results: dict[str, ScenarioResult], name: str
) -> None:
    result = _measured(results[name])
    assert result.store_mismatch == 0, details(result)
