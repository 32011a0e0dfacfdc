"""Bounded state that still answers every question the configuration can ask: what a
collection keeps is bounded by the configuration (or by a stated size), never by traffic."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sme.contracts.activities import ActivityType as A
from sme.contracts.reasons import Reason
from sme.contracts.sequences import SequenceConfig
from sme.core.stats import CONTEXT_GROUPS, POOLED, bounded_key, channel_key
from sme.core.user_state import UserState
from tests.unit.builders import T0, USER, WS, Driver, config, msg_step, of_type, workspace

OTHER_WATCHED = [f"viewed.page{i}" for i in range(9)]


def test_none_of_events_still_fails_after_more_than_eight_other_watched_types_arrived() -> None:
    cfg = config(
        steps=[
            msg_step("s1"),
            msg_step(
                "s2",
                wait="P1D",
                condition={"none_of_events": ["purchased"], "any_of_events": OTHER_WATCHED},
            ),
        ]
    )
    d = Driver.of(cfg)
    d.send("signed_up")
    d.send("purchased", T0 + timedelta(minutes=1))
    for i, type_ in enumerate(OTHER_WATCHED):
        d.send(type_, T0 + timedelta(minutes=2 + i))

    d.run_until(T0 + timedelta(days=2))

    assert [c.step_id for c in d.commands] == ["s1"]
    (skipped,) = of_type(d.activities, A.STEP_SKIPPED)
    assert (skipped.step_id, skipped.reason_code) == ("s2", Reason.CONDITION_FALSE)


def test_an_enrollment_remembers_only_the_event_types_its_sequence_asks_about() -> None:
    cfg = config(
        steps=[msg_step("s1"), msg_step("s2", wait="P1D", condition={"none_of_events": ["a"]})]
    )
    d = Driver.of(cfg)
    d.send("signed_up")
    for i in range(50):
        d.send(f"noise.{i}", T0 + timedelta(minutes=i))
    d.send("a", T0 + timedelta(hours=2))

    (enrollment,) = d.state.enrollments
    assert enrollment.seen == ("a",)


# --- profile attributes ------------------------------------------------------------------------


def _segmenting_config(**overrides: Any) -> SequenceConfig:
    """A sequence that asks about three attributes: an entry filter, a condition, a branch."""
    data: dict[str, Any] = {
        "entry": {
            "event_types": ["signed_up"],
            "filters": [{"key": "plan", "one_of": ["pro", "team"]}],
            "reentry": {"policy": "always"},
        },
        "steps": [
            msg_step("s1"),
            {
                "id": "b1",
                "kind": "branch",
                "branches": [{"attribute": {"key": "country", "equals": "FR"}, "goto": "s3"}],
            },
            msg_step("s2", wait="PT1H", condition={"attributes": [{"key": "vip", "equals": True}]}),
            msg_step("s3", wait="PT1H"),
        ],
        "adaptive": {"context_attributes": ["plan"]},
    }
    data.update(overrides)
    return config(**data)


ASKED = {"plan", "country", "vip"}


def test_the_profile_keeps_only_the_attributes_the_sequences_can_ask_about() -> None:
    d = Driver.of(_segmenting_config())
    for i in range(200):
        attributes: dict[str, Any] = {f"k{i}_{j}": "x" * 64 for j in range(61)}
        attributes.update(plan="pro", country="FR", vip=True)
        d.send("page_viewed", T0 + timedelta(minutes=i), user={"attributes": attributes})

    assert set(d.state.profile.attributes) == ASKED
    assert len(orjson.dumps(d.state.to_dict())) < 2048
    d.send("signed_up", T0 + timedelta(days=1))
    assert len(d.commands) == 1  # the entry filter still sees the kept attribute


def test_a_state_stored_with_every_attribute_sheds_the_unasked_ones_at_its_next_event() -> None:
    old = UserState.new(WS, USER).to_dict()
    old["at"] = {f"k{i}": i for i in range(5000)} | {"plan": "team"}
    d = Driver.of(_segmenting_config())
    d.state = UserState.from_dict(old)  # a state written by the old code still loads

    d.send("signed_up")

    assert d.state.profile.attributes == {"plan": "team"}
    assert len(d.commands) == 1


# --- whole state over long random histories ----------------------------------------------------

STATE_BOUND_BYTES = 16 * 1024
EVENT_TYPES = ["signed_up", "page_viewed", "clicked", "opened", "purchased", "churned", "a"]


def _random_history(d: Driver, rng: random.Random, events: int) -> int:
    """Random events (types, attributes with random keys and values, feedback naming recent
    commands) and the timers in between; returns the largest serialized state seen."""
    now = T0
    largest = 0
    for _ in range(events):
        now += timedelta(seconds=rng.randint(1, 4 * 3600))
        d.run_until(now)
        type_ = rng.choice(EVENT_TYPES)
        attributes: dict[str, Any] = {
            f"attr{rng.randint(0, 10**6)}": rng.choice(["v" * rng.randint(0, 40), 1, 2.5, None])
            for _ in range(rng.randint(0, 8))
        }
        if rng.random() < 0.3:
            attributes["plan"] = rng.choice(["pro", "team", "free", f"p{rng.randint(0, 999)}"])
        fields: dict[str, Any] = {"user": {"attributes": attributes}}
        if type_ in {"clicked", "opened"} and d.commands and rng.random() < 0.7:
            fields.update(command_id=rng.choice(d.commands[-5:]).command_id, channel="email")
        d.send(type_, now, **fields)
        largest = max(largest, len(orjson.dumps(d.state.to_dict())))
    return largest


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_users_stored_state_stays_under_16_kib_over_thousands_of_random_events(
    seed: int,
) -> None:
    configs = [
        _segmenting_config(id=f"seg-{i}", exit={"goal": {"event_type": "purchased"}})
        for i in range(3)
    ]
    configs += [
        config(
            id=f"watch-{i}",
            entry={"event_types": ["page_viewed"], "reentry": {"policy": "always"}},
            steps=[
                msg_step("s1"),
                msg_step(
                    "s2",
                    wait="P1D",
                    condition={"none_of_events": ["a"], "any_of_events": ["clicked"]},
                ),
            ],
        )
        for i in range(3)
    ]
    d = Driver.of(*configs, workspace=workspace(min_gap="PT1M"))

    largest = _random_history(d, random.Random(seed), 2000)

    assert largest <= STATE_BOUND_BYTES
    assert set(d.state.profile.attributes) <= ASKED
    assert len(d.state.past) <= len(configs)


# --- population statistics ---------------------------------------------------------------------


@settings(max_examples=5, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=False)),
        min_size=300,
        max_size=400,
        unique=True,
    )
)
def test_statistics_keys_stay_bounded_however_many_distinct_context_values(
    values: list[Any],
) -> None:
    cfg = config(adaptive={"context_attributes": ["plan", "country"]})
    stats: dict[str, tuple[float, float]] = {}
    for i, value in enumerate(values):
        d = Driver.of(cfg, user_id=f"u{i}", stats=stats)
        d.send("signed_up", user={"attributes": {"plan": value, "country": i}})
        d.send("clicked", channel="email", command_id=d.commands[0].command_id)

    # one step, one channel, one variant: (buckets + pooled) keys for each of the three kinds
    # (channel and variant successes, channel unsubscribes)
    assert len(stats) <= 3 * (CONTEXT_GROUPS + 1)
    assert all(bounded_key(key) for key in stats)
    assert stats[channel_key("cfg-1", "s1", "email", POOLED)] == (len(values), len(values))
