"""The simulator: deterministic for a seed, counts what the core emitted, cannot invent lift in
the null world, and in the default world at full size (20k users, 14 days, seed 1) shows the
adaptive arm beating the baseline by at least 20% with a 95% CI above zero, in under 60 s."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.simulator.cli import add_parser, main, run
from sme.simulator.run import Result, simulate
from sme.simulator.world import Scenario, load_scenario, parse_scenario, scenario_names
from tests.support.oracles import katz_lift


@pytest.fixture(scope="module")
def default_full() -> tuple[Result, float]:
    # CPU time, not wall time: the budget is the simulator's cost, whatever else the machine runs.
    started = time.process_time()
    result = simulate(load_scenario("default"), days=14, users=20_000, seed=1)
    return result, time.process_time() - started


def _data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = load_scenario(name).model_dump(mode="json")
    return data


# --- the success criterion ------------------------------------------------------------------


def test_default_world_adaptive_beats_baseline_by_20_percent(
    default_full: tuple[Result, float],
) -> None:
    """The requirement's exact run. Seed 1 is a favourable draw (the mean over seeds is in
    docs/SIMULATOR.md, Results, from bench/lift_bench.py), so this pins one run, not the
    expectation; any change to the core or the world moves it."""
    result, elapsed = default_full
    summary = result.summary()
    lift = summary["lift"]["vs_baseline"]
    assert lift["estimate"] >= 0.20, lift
    assert lift["ci95_low"] > 0, lift
    assert summary["lift"]["vs_holdout"]["ci95_low"] > 0
    assert elapsed < 60, f"took {elapsed:.1f} s of CPU"


def test_default_arms_split_10_45_45(default_full: tuple[Result, float]) -> None:
    arms = default_full[0].summary()["arms"]
    users = {name: arms[name]["users"] for name in ("adaptive", "baseline", "holdout")}
    assert sum(users.values()) == 20_000
    assert users["holdout"] == pytest.approx(2_000, rel=0.1)
    assert users["baseline"] == pytest.approx(9_000, rel=0.05)
    assert users["adaptive"] == pytest.approx(9_000, rel=0.05)


def test_null_world_shows_no_lift() -> None:
    summary = simulate(load_scenario("null"), days=14, users=5_000, seed=1).summary()
    lift = summary["lift"]["vs_baseline"]
    assert lift["ci95_low"] < 0 < lift["ci95_high"], lift


# --- determinism and accounting -------------------------------------------------------------


def test_a_seed_fixes_the_result() -> None:
    scenario = load_scenario("default")
    first = simulate(scenario, days=10, users=800, seed=3).summary()
    again = simulate(scenario, days=10, users=800, seed=3).summary()
    other = simulate(scenario, days=10, users=800, seed=4).summary()
    assert first == again
    assert json.dumps(first) == json.dumps(again)
    assert first != other


def test_counts_come_from_the_core_and_match_the_world() -> None:
    result = simulate(load_scenario("default"), days=14, users=2_000, seed=5)
    arms = result.summary()["arms"]
    assert sum(a["users"] for a in arms.values()) == 2_000
    # Every conversion the world produced was seen by the core, once.
    assert sum(a["conversions"] for a in arms.values()) == result.world_conversions
    holdout, baseline, adaptive = arms["holdout"], arms["baseline"], arms["adaptive"]
    assert holdout["messages_total"] == 0 and holdout["suppressed"] > 0
    assert holdout["cost"] == 0 and holdout["opens"] == 0
    # The baseline sends on each step's first channel (email) unless the user opted out.
    assert baseline["messages"]["email"] > 0.95 * baseline["messages_total"]
    assert baseline["send_time_deferrals"] == 0
    # The adaptive arm spreads over channels.
    assert sum(1 for n in adaptive["messages"].values() if n > 0) >= 3
    for arm in arms.values():
        assert arm["clicks"] <= arm["opens"] <= arm["delivered"] <= arm["messages_total"]
        assert arm["conversion_rate"] == pytest.approx(arm["conversions"] / arm["users"])
        assert arm["cost"] >= 0


# --- scenarios ------------------------------------------------------------------------------


def test_shipped_scenarios_load() -> None:
    assert {"default", "null", "fatigue", "costly_channel", "drift"} <= set(scenario_names())
    for name in scenario_names():
        assert load_scenario(name).name == name


def test_unknown_scenario_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        load_scenario("no-such-world")


def test_the_default_world_is_not_rigged_for_the_policy() -> None:
    """Guards on the default world: the baseline's default channel is one most users read,
    users convert without messages too, and no variant or channel is a miracle."""
    scenario = load_scenario("default")
    for step in scenario.sequence.steps:
        assert step.channels[0] is Channel.EMAIL
    total = sum(s.weight for s in scenario.segments)
    reads_email = sum(
        s.weight * (1 - s.channels[Channel.EMAIL].never_read) for s in scenario.segments
    )
    assert reads_email / total > 0.75
    assert all(s.base_conversion > 0 for s in scenario.segments)
    assert all(0.5 <= a <= 1.5 for a in scenario.variant_appeal.values())
    assert all(s.conversion_per_open == 0 for s in scenario.segments)


def test_the_null_world_is_the_same_everywhere() -> None:
    scenario = load_scenario("null")
    assert len(scenario.segments) == 1
    segment = scenario.segments[0]
    assert segment.concentration == 0
    assert len({p for p in segment.channels.values()}) == 1
    assert len({m for m in scenario.channels.values()}) == 1
    assert set(segment.channels) == set(scenario.channels)
    assert [sorted(h) for h in scenario.active_hours.values()] == [list(range(24))]
    assert not scenario.variant_appeal and not segment.variant_appeal


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("sequence", "exit"), {}, "goal"),
        (("sequence", "entry", "event_types"), ["purchased"], "signed_up"),
        (("segments", 0, "active_hours"), {"nocturnal": 1}, "unknown active-hour"),
        (("channels",), {"email": {"cost": 0.001}}, "no channel model"),
        (("segments", 0, "timezones"), {"Mars/Olympus": 1}, "time zone"),
        (("segments", 0, "channels", "email", "open"), 1.5, "less than or equal"),
    ],
)
def test_invalid_scenarios_are_rejected(path: tuple[Any, ...], value: Any, message: str) -> None:
    data = _data("default")
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate(data)


def test_a_scenario_file_may_carry_a_comment() -> None:
    data = _data("null")
    data["$comment"] = "my own world"
    assert parse_scenario(json.dumps(data)).name == "null"


# --- command line ---------------------------------------------------------------------------


def test_cli_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--users", "300", "--days", "5", "--seed", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    arms = out["arms"]
    for arm in ("adaptive", "baseline", "holdout"):
        assert {"users", "conversions", "conversion_rate"} <= set(arms[arm])
        assert arms[arm]["users"] > 0, arm  # 300 users split 10/45/45: no arm is empty
    for name, control in (("vs_baseline", "baseline"), ("vs_holdout", "holdout")):
        expected = katz_lift(
            arms["adaptive"]["conversions"],
            arms["adaptive"]["users"],
            arms[control]["conversions"],
            arms[control]["users"],
        )
        lift = out["lift"][name]
        assert lift is not None, name
        assert (lift["estimate"], lift["ci95_low"], lift["ci95_high"]) == pytest.approx(expected)
    assert out["scenario"] == "default" and out["seed"] == 2


def test_cli_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scenario", "null", "--users", "300", "--days", "3"]) == 0
    text = capsys.readouterr().out
    assert "conversion rate" in text and "lift adaptive vs baseline" in text
    assert "Katz" in text and "elapsed" in text


def test_cli_runs_a_scenario_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data("null")
    data["name"] = "mine"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    assert main(["--scenario-file", str(path), "--users", "200", "--days", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scenario"] == "mine"


def test_cli_rejects_a_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": "bad"}')
    assert main(["--scenario-file", str(path)]) == 2
    assert main(["--scenario", "nope"]) == 2
    assert main(["--scenario-file", str(tmp_path / "missing.json")]) == 2
    assert "invalid scenario" in capsys.readouterr().err


def test_cli_scenario_and_scenario_file_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--scenario", "null", "--scenario-file", str(tmp_path / "x.json")])


def test_add_parser_wires_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="sme")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["simulate", "--users", "200", "--days", "2", "--json"])
    assert args.command == "simulate"
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 200
