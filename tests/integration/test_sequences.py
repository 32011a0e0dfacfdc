"""Sequences on the real broker and ClickHouse engine, in wall-clock time: a 3-step sequence
with second-scale waits, a click that changes what a condition does, timers that survive an
engine restart, and a pause that stops sends until resume."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from sme.engine.app import Engine
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.clock import ShiftableClock
from tests.support.events import event
from tests.support.kafka_io import TopicReader, publish, publish_config
from tests.support.runtime import engine_and_sink, running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
WAIT = 2  # seconds between steps
LATE = timedelta(seconds=2)  # generous bound on timer lateness here; the 1 s target is benchmarked

THREE_STEPS: dict[str, Any] = {
    "id": "onboarding",
    "workspace_id": "acme",
    "name": "Onboarding",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "hello", "template": "hello", "channels": ["email"]},
        {
            "id": "nudge",
            "wait": f"PT{WAIT}S",
            "template": "nudge",
            "channels": ["sms"],
            "condition": {"none_of_events": ["clicked"]},
        },
        {"id": "offer", "wait": f"PT{WAIT}S", "template": "offer", "channels": ["push"]},
    ],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def decided(command: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(command["decided_at"]))


@pytest.fixture(autouse=True)
async def onboarding(test_settings: Settings) -> None:
    await ensure_topics(test_settings)
    await publish_config(test_settings, THREE_STEPS)


async def test_three_steps_fire_on_time_and_a_click_suppresses_the_nudge(
    test_settings: Settings,
) -> None:
    s = test_settings
    topics = s.command_topics
    async with (
        engine_and_sink(s) as store,
        TopicReader(s.kafka_bootstrap_servers, topics["email"]) as emails,
        TopicReader(s.kafka_bootstrap_servers, topics["sms"]) as smses,
        TopicReader(s.kafka_bootstrap_servers, topics["push"]) as pushes,
    ):
        # Ada's click follows her signup on her own key, so it is decided right after her
        # enrollment and before her nudge can fall due, however slow the machine (published
        # after her hello was seen, it raced the 2 s wait).
        await publish(
            s.kafka_bootstrap_servers,
            s.topic_events,
            [
                event("s-ada", "ada", "signed_up"),
                event("s-bob", "bob", "signed_up"),
                event("c-ada", "ada", "clicked", channel="email"),
            ],
        )
        hellos = await eventually(lambda: _count(emails, 2), timeout=60, what="two hello emails")
        ada_hello = next(c for c in hellos if c["user_id"] == "ada")

        offers = await eventually(lambda: _count(pushes, 2), timeout=30, what="two offers")
        # Each user's nudge was acknowledged before their offer was decided: the sms topic
        # up to its end now holds every nudge there will be.
        nudges = await smses.read_to_end()
        assert [n["user_id"] for n in nudges] == ["bob"], "ada clicked, so her nudge is skipped"

        bob = {
            c["step_id"]: decided(c) for c in [*hellos, *nudges, *offers] if c["user_id"] == "bob"
        }
        assert (
            bob["hello"] + timedelta(seconds=WAIT)
            <= bob["nudge"]
            <= bob["hello"] + timedelta(seconds=WAIT) + LATE
        )
        assert (
            bob["nudge"] + timedelta(seconds=WAIT)
            <= bob["offer"]
            <= bob["nudge"] + timedelta(seconds=WAIT) + LATE
        )
        ada_offer = next(decided(c) for c in offers if c["user_id"] == "ada")
        assert ada_offer >= decided(ada_hello) + timedelta(seconds=2 * WAIT)

        async def activities() -> list[tuple[Any, ...]]:
            rows = (
                await store.query(
                    "SELECT user_id, type, step_id, reason_code FROM {db}.activities FINAL "
                    "WHERE config_id = 'onboarding' AND type IN "
                    "('command_emitted', 'step_skipped', 'enrollment_exited') "
                    "ORDER BY user_id, occurred_at, type"
                )
            ).result_rows
            return list(rows) if len(rows) >= 8 else []

        rows = await eventually(activities, timeout=30, what="the activities in ClickHouse")
        assert [r[1:] for r in rows if r[0] == "ada"] == [
            ("command_emitted", "hello", ""),
            ("step_skipped", "nudge", "condition_false"),
            ("command_emitted", "offer", ""),
            ("enrollment_exited", "offer", "completed"),
        ]
        assert [r[1:] for r in rows if r[0] == "bob"] == [
            ("command_emitted", "hello", ""),
            ("command_emitted", "nudge", ""),
            ("command_emitted", "offer", ""),
            ("enrollment_exited", "offer", "completed"),
        ]


async def test_a_due_step_survives_an_engine_restart_and_fires_once(
    test_settings: Settings,
) -> None:
    s = test_settings
    async with (
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["sms"]) as smses,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        async with running_engine(s):
            await publish(
                s.kafka_bootstrap_servers, s.topic_events, [event("s-cy", "cy", "signed_up")]
            )
            await eventually(emails.poll, timeout=60, what="the hello email")
        # The engine is down while the nudge falls due; a new instance recovers the state.
        async with running_engine(s):
            nudges = await eventually(smses.poll, timeout=60, what="the nudge after restart")
        assert len(nudges) == 1
        assert len(await smses.poll()) == 1


async def test_nothing_is_sent_while_paused_and_the_overdue_step_fires_once_on_resume(
    test_settings: Settings,
) -> None:
    s = test_settings
    hourly = copy.deepcopy(THREE_STEPS)
    for step in hourly["steps"][1:]:
        step["wait"] = "PT1H"  # falls due only when the test moves the engine's clock
    await publish_config(s, {**hourly, "version": 2})  # read before the engine starts
    clock = ShiftableClock()
    async with (
        running_engine(s, clock=clock) as engine,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["sms"]) as smses,
        TopicReader(s.kafka_bootstrap_servers, s.command_topics["email"]) as emails,
    ):
        await publish(s.kafka_bootstrap_servers, s.topic_events, [event("s-di", "di", "signed_up")])
        await eventually(emails.poll, timeout=60, what="the hello email")

        async def nudge_armed() -> bool:  # the hello's batch is stored and di's timer set
            return len(engine.due) == 1

        await eventually(nudge_armed, timeout=30, what="di's nudge timer armed")
        await publish_config(s, {**hourly, "status": "PAUSED", "version": 3})

        async def pause_applied() -> bool:
            return engine.configs.paused("onboarding")

        await eventually(pause_applied, timeout=30, what="the engine applying the pause")
        ticks_before = _sample(engine, "sme_timer_ticks_sent_total")
        clock.advance(timedelta(hours=1, seconds=1))  # the nudge falls due during the pause

        async def due_step_handled() -> bool:  # woken, decided, then parked with its sequence
            return _sample(engine, "sme_timer_ticks_sent_total") > ticks_before and not len(
                engine.due
            )

        await eventually(due_step_handled, timeout=30, what="the due nudge handled while paused")
        assert await smses.read_to_end() == [], "nothing may be sent while paused"
        await publish_config(s, {**hourly, "status": "ACTIVE", "version": 4})
        nudges = await eventually(smses.poll, timeout=30, what="the overdue nudge after resume")
        assert len(nudges) == 1
        assert nudges[0]["config_version"] == 4
        assert len(await smses.read_to_end()) == 1


def _sample(engine: Engine, name: str) -> float:
    return engine.metrics.registry.get_sample_value(name) or 0.0


async def _count(reader: TopicReader, n: int) -> list[dict[str, Any]]:
    seen = await reader.poll()
    return seen if len(seen) >= n else []
