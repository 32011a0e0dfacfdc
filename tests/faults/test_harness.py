"""The harness's own logic, without a broker: the verifier's columns, the workload, the
failover reading of committed offsets, and the Prometheus parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sme.contracts.sequences import SequenceConfig
from tests.faults.group import GroupProbe, Sample
from tests.faults.observer import Delivery
from tests.faults.prom import gauge_sum, histogram
from tests.faults.verify import Expectation, over_cap, verify
from tests.faults.workload import CAPS, CONFIG_ID, KeyMode, Workload, sequence_config

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
STEPS = ("welcome", "nudge", "last")


def _command(user: str, step: str, at_s: float, command_id: str | None = None) -> Delivery:
    return Delivery(
        command_id=command_id or f"{user}-{step}",
        workspace_id="acme",
        user_id=user,
        config_id=CONFIG_ID,
        step_id=step,
        channel="email",
        decided_at=T0 + timedelta(seconds=at_s),
        topic="t.commands.email",
        partition=0,
        offset=0,
        produced_ms=0,
    )


def _expect(*users: str) -> Expectation:
    return Expectation(frozenset(users), CONFIG_ID, STEPS, CAPS)


def _journey(user: str) -> list[Delivery]:
    return [_command(user, step, at) for step, at in zip(STEPS, (0, 5, 15), strict=True)]


def test_a_user_with_all_three_steps_is_clean() -> None:
    verdict = verify(_expect("ada"), _journey("ada"))
    assert (verdict.expected, verdict.delivered, verdict.lost) == (3, 3, 0)
    assert verdict.clean


def test_a_missing_step_is_lost_and_named() -> None:
    verdict = verify(_expect("ada", "bob"), [*_journey("ada"), *_journey("bob")[:2]])
    assert verdict.lost == 1
    assert verdict.lost_sample == ["bob/last"]


def test_the_same_command_twice_is_a_duplicate_delivery_not_a_failure() -> None:
    verdict = verify(_expect("ada"), [*_journey("ada"), _command("ada", "nudge", 5)])
    assert verdict.duplicate_deliveries == 1
    assert verdict.distinct_key_duplicates == 0
    assert verdict.clean


def test_one_step_under_two_command_ids_is_a_distinct_key_duplicate() -> None:
    again = _command("ada", "nudge", 6, command_id="other-id")
    verdict = verify(_expect("ada"), [*_journey("ada"), again])
    assert verdict.distinct_key_duplicates == 1
    assert verdict.distinct_key_sample == ["ada/faults/nudge"]
    assert not verdict.clean


def test_a_re_enrolled_user_goes_over_the_daily_cap() -> None:
    second = [
        _command("ada", s, at + 60, command_id=f"2-{s}")
        for s, at in zip(STEPS, (0, 5, 15), strict=True)
    ]
    verdict = verify(_expect("ada"), [*_journey("ada"), *second])
    assert verdict.over_cap_users == 1


def test_three_sends_inside_nine_seconds_break_the_short_cap() -> None:
    times = [T0, T0 + timedelta(seconds=4), T0 + timedelta(seconds=8.9)]
    assert over_cap(times, CAPS)
    assert not over_cap([T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=15)], CAPS)


def test_commands_nobody_asked_for_are_counted_as_unexpected() -> None:
    verdict = verify(_expect("ada"), [*_journey("ada"), _command("eve", "welcome", 0)])
    assert verdict.unexpected == 1


def test_the_sequence_is_a_valid_configuration_with_never_reentry_and_caps() -> None:
    config = SequenceConfig.model_validate(sequence_config())
    assert [s.wait for s in config.steps] == [
        timedelta(0),
        timedelta(seconds=5),
        timedelta(seconds=10),
    ]
    assert config.entry.reentry.policy == "never"
    assert len({s.channels[0] for s in config.steps}) == 3
    assert [(c.max, c.per) for c in config.guardrails.frequency_caps] == list(CAPS)


def test_the_workload_varies_keys_and_repeats_events_in_time_order() -> None:
    plan = list(Workload(users=60, rate=100, tag="w").plan())
    signups = [e for e in plan if e.kind == "signup"]
    assert len(signups) == 60
    assert {e.key_mode for e in signups} == set(KeyMode)
    assert all(e.key is None for e in plan if e.key_mode is KeyMode.NONE)
    wrong = [e for e in plan if e.key_mode is KeyMode.WRONG]
    assert wrong and all(e.key != e.user.encode() for e in wrong)
    assert [e.at for e in plan] == sorted(e.at for e in plan)
    mode_of = {e.user: e.key_mode for e in signups}
    follow_ups = [e for e in plan if e.kind in ("redelivery", "second_signup")]
    assert follow_ups and all(e.key_mode != mode_of[e.user] for e in follow_ups)
    resent = {e.event_id for e in signups if e.resent}
    assert resent == {e.event_id for e in plan if e.kind == "redelivery"}


def _sample(at: float, committed: dict[int, int], ends: dict[int, int]) -> Sample:
    return Sample(
        at,
        {("t.events", p): o for p, o in committed.items()},
        {("t.events", p): o for p, o in ends.items()},
        2,
        "Stable",
    )


def test_the_partitions_whose_commits_stop_after_a_kill_are_its_and_resume_later() -> None:
    probe = GroupProbe("127.0.0.1:1", "g")
    probe.samples.extend(
        [
            _sample(100.0, {0: 10, 1: 8}, {0: 12, 1: 12}),
            _sample(101.5, {0: 12, 1: 10}, {0: 14, 1: 14}),  # 1: the victim's last commit
            _sample(102.0, {0: 15, 1: 10}, {0: 16, 1: 20}),  # 0 moves, 1 stalls
            _sample(104.0, {0: 18, 1: 10}, {0: 19, 1: 25}),
            _sample(130.0, {0: 20, 1: 26}, {0: 20, 1: 26}),  # 1 taken over
        ]
    )
    stalls = probe.stalls_after(kill_at=101.0)
    assert [(s.partition, s.resumed_after_s) for s in stalls] == [(1, 29.0)]


METRICS = """\
# TYPE sme_engine_consumer_lag gauge
sme_engine_consumer_lag{partition="0",topic="t.events"} 3.0
sme_engine_consumer_lag{partition="1",topic="t.events"} 4.0
# TYPE sme_timer_lateness_seconds histogram
sme_timer_lateness_seconds_bucket{le="0.1"} 50.0
sme_timer_lateness_seconds_bucket{le="0.5"} 90.0
sme_timer_lateness_seconds_bucket{le="1.0"} 100.0
sme_timer_lateness_seconds_bucket{le="+Inf"} 100.0
sme_timer_lateness_seconds_count 100.0
sme_timer_lateness_seconds_sum 12.0
"""


def test_lag_and_lateness_come_from_the_metrics_and_are_none_when_missing() -> None:
    assert gauge_sum(METRICS) == 7.0
    lateness = histogram(METRICS)
    assert lateness is not None
    assert lateness.quantile(0.5) == 0.1
    p99 = lateness.quantile(0.99)
    assert p99 is not None and 0.5 < p99 <= 1.0
    assert gauge_sum("# nothing here\n") is None
    assert histogram(None) is None


def test_an_interval_of_a_histogram_is_the_difference_unless_the_process_restarted() -> None:
    later = histogram(METRICS)
    earlier = histogram(METRICS.replace("100.0", "60.0"))
    assert later is not None and earlier is not None
    assert later.minus(earlier).count == 40.0
    assert earlier.minus(later).count == 60.0  # counts went down: a new process
