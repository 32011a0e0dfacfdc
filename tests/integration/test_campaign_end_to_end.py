"""A campaign end to end on the real broker and ClickHouse engine, driven through the HTTP API:
a win-back sequence with a split and a `wait_until` step, 200 users listed in one NDJSON
upload, and a test send.

Each admitted user gets the first email once; the split sends each down their sticky path
(`core.splits.split_path`), in shares plausible for the weights; the morning email goes out at
10:00 on a weekday in each user's own time zone (the engine's clock moved from one zone's
10:00 to the next, nothing sent before its time); ClickHouse records the same enrollments,
paths and sends the command topics carry; the test send reaches its topic marked `test` and
counts in no metric."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from sme.contracts.channels import Channel
from sme.core.splits import split_path
from sme.core.timeutil import from_ms, next_wall_time
from sme.engine.app import Engine
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from sme.topics import ensure_topics
from tests.support.clock import ShiftableClock
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
WORKSPACE_ZONE = "America/Sao_Paulo"
ZONES = ("America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney", None)
"""User i's profile time zone is `ZONES[i % 5]`; None: the profile has none (the workspace's
default applies)."""
USERS = [f"lapsed-{i:03d}" for i in range(200)]
ACTIVE = frozenset(u for i, u in enumerate(USERS) if i % 25 == 7)
"""Listed with a plan the entry condition refuses: skipped, never messaged."""
ADMITTED = [u for u in USERS if u not in ACTIVE]
WEIGHTS = (1.0, 3.0)
"""The split's path weights: `offer` (an SMS first), then straight to `morning`."""
WEEKDAYS = frozenset(range(5))
MORNING = time(10)
WAIT = timedelta(hours=1)
TEST_USER = "qa-anna"
BATCH = "win-back-2026-12"
WIN_BACK: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Win-back",
    "entry": {"event_types": ["went_quiet"], "when": {"attribute": "plan", "equals": "lapsed"}},
    "steps": [
        {"id": "miss_you", "template": "tpl-miss-you", "channels": ["email"]},
        {
            "id": "fork",
            "kind": "split",
            "paths": [
                {"weight": WEIGHTS[0], "goto": "offer"},
                {"weight": WEIGHTS[1], "goto": "morning"},
            ],
        },
        {"id": "offer", "template": "tpl-offer", "channels": ["sms"]},
        {
            "id": "morning",
            "template": "tpl-morning",
            "channels": ["email"],
            "wait": "PT1H",
            "wait_until": {"time": "10:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]},
        },
    ],
    "experiment": {"holdout_pct": 10, "baseline_pct": 50},
}
Command = dict[str, Any]


def zone_of(user: str) -> str:
    return ZONES[USERS.index(user) % len(ZONES)] or WORKSPACE_ZONE


async def rows(store: ClickHouseStore, sql: str, config_id: str) -> list[tuple[Any, ...]]:
    """The sequence's activity rows a query selects (`{c}` is the sequence id)."""
    result = await store.query(sql.replace("{c}", "{c:String}"), {"c": config_id})
    return [tuple(row) for row in result.result_rows]


async def at_least(
    store: ClickHouseStore, sql: str, config_id: str, count: int, what: str
) -> list[tuple[Any, ...]]:
    """The rows once there are `count` of them (the sink writes in batches)."""

    async def enough() -> list[tuple[Any, ...]] | None:
        found = await rows(store, sql, config_id)
        return found if len(found) >= count else None

    return await eventually(enough, timeout=60, what=what)


async def set_up(api: httpx.AsyncClient, engine: Engine) -> str:
    """The workspace's settings and the sequence, written through the API and known to the
    engine before anyone is listed."""
    settings = await api.put(
        "/api/v1/workspaces/acme/settings",
        json={"default_timezone": WORKSPACE_ZONE, "test_users": [TEST_USER]},
    )
    assert settings.status_code == 200, settings.text
    created = await api.post(API, json=WIN_BACK)
    assert created.status_code == 201, created.text
    config_id = str(created.json()["id"])

    async def known() -> bool:
        workspace = engine.configs.workspace("acme")
        ready = workspace is not None and workspace.default_timezone == WORKSPACE_ZONE
        return ready and engine.configs.get(config_id) is not None

    await eventually(known, timeout=60, what="the engine's copy of the sequence and settings")
    return config_id


def in_zone(message: tuple[bytes, bytes], zone: str) -> tuple[bytes, bytes]:
    """The event carrying the user's profile time zone."""
    key, value = message
    return key, orjson.dumps({**orjson.loads(value), "user": {"timezone": zone}})


async def give_time_zones(settings: Settings, store: ClickHouseStore) -> None:
    """Profile time zones arrive with events, as upstream apps send them; waits until the
    engine has decided them all (their `event_received` rows are in ClickHouse)."""
    given = ((u, ZONES[i % len(ZONES)]) for i, u in enumerate(USERS))
    zoned = [(u, zone) for u, zone in given if zone is not None]
    await publish(
        settings.kafka_bootstrap_servers,
        settings.topic_events,
        [in_zone(event(f"tz-{u}", u, "profile_updated"), z) for u, z in zoned],
    )

    async def decided() -> bool:
        result = await store.query(
            "SELECT count() FROM {db}.activities FINAL "
            "WHERE type = 'event_received' AND event_type = 'profile_updated'"
        )
        return int(result.result_rows[0][0]) >= len(zoned)

    await eventually(decided, timeout=60, what="every profile's time zone decided")


async def enroll_list(api: httpx.AsyncClient, config_id: str) -> None:
    """The list as an NDJSON upload (each line's plan updates the profile before the entry
    condition is judged); the same batch again enrolls nobody twice."""
    lines = [
        {"user_id": u, "attributes": {"plan": "active" if u in ACTIVE else "lapsed"}} for u in USERS
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines)

    async def upload() -> httpx.Response:
        return await api.post(
            f"{API}/{config_id}/enrollments",
            params={"batch_id": BATCH},
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )

    first = await upload()
    assert first.status_code == 202, first.text
    answer = first.json()
    assert (answer["received"], answer["accepted"], answer["replayed"]) == (200, 200, False)
    again = await upload()
    assert again.status_code == 202
    assert again.json() == {**answer, "replayed": True}


async def by_step(reader: TopicReader) -> dict[str, list[Command]]:
    """The non-test commands a topic holds now, per step."""
    found: dict[str, list[Command]] = defaultdict(list)
    for command in await reader.read_to_end():
        if not command["test"]:
            found[str(command["step_id"])].append(command)
    return found


def users_of(commands: list[Command]) -> Counter[str]:
    return Counter(str(c["user_id"]) for c in commands)


def within_four_sigma(hits: int, trials: int, p: float) -> bool:
    return abs(hits - trials * p) <= 4 * math.sqrt(trials * p * (1 - p))


async def test_a_listed_audience_splits_and_waits_for_local_mornings_end_to_end(
    test_settings: Settings,
) -> None:
    s = test_settings
    await ensure_topics(s)
    clock = ShiftableClock()
    async with (
        running_engine(s, clock=clock) as engine,
        running_gateway(s) as api,
        TopicReader(s.kafka_bootstrap_servers, s.command_topic(Channel.EMAIL)) as emails,
        TopicReader(s.kafka_bootstrap_servers, s.command_topic(Channel.SMS)) as smses,
    ):
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        config_id = await set_up(api, engine)
        await give_time_zones(s, store)
        await enroll_list(api, config_id)

        # Entry: the admitted users enrolled from the batch, the others skipped by the filter.
        enrolled = await at_least(
            store,
            "SELECT user_id, arm, event_type, JSONExtractString(details, 'batch_id') "
            "FROM {db}.activities FINAL WHERE config_id = {c} AND type = 'enrolled'",
            config_id,
            len(ADMITTED),
            "the enrollments in ClickHouse",
        )
        assert sorted(u for u, *_ in enrolled) == ADMITTED
        assert {(e, b) for _, _, e, b in enrolled} == {("list_enrollment", BATCH)}
        arms = {str(u): str(arm) for u, arm, *_ in enrolled}
        held = {u for u, arm in arms.items() if arm == "holdout"}
        messaged = sorted(u for u in ADMITTED if u not in held)
        assert held and set(arms.values()) - {"holdout"} <= {"adaptive", "baseline"}
        skipped = await at_least(
            store,
            "SELECT user_id, reason_code, JSONExtractString(details, 'batch_id') "
            "FROM {db}.activities FINAL WHERE config_id = {c} AND type = 'enrollment_skipped'",
            config_id,
            len(ACTIVE),
            "the filtered users' skips",
        )
        assert sorted(skipped) == [(u, "filter_not_matched", BATCH) for u in sorted(ACTIVE)]

        # The split: every enrolled user (every arm) down their sticky path, once.
        branched = await at_least(
            store,
            "SELECT user_id, step_id, reason_code, details FROM {db}.activities FINAL "
            "WHERE config_id = {c} AND type = 'step_branched'",
            config_id,
            len(ADMITTED),
            "the split decisions in ClickHouse",
        )
        paths = {str(u): json.loads(d)["path"] for u, step, reason, d in branched}
        assert sorted(u for u, *_ in branched) == ADMITTED, "each user split once"
        assert {(step, reason) for _, step, reason, _ in branched} == {("fork", "split")}
        assert paths == {u: split_path(WEIGHTS, config_id, "fork", u) for u in ADMITTED}
        offered = {u for u, path in paths.items() if path == 0}
        assert within_four_sigma(len(offered), len(ADMITTED), WEIGHTS[0] / sum(WEIGHTS)), (
            len(offered),
            len(ADMITTED),
        )

        # The first decisions: when each user entered, and every timer armed at their morning.
        first = await at_least(
            store,
            "SELECT user_id, toUnixTimestamp64Milli(occurred_at) FROM {db}.activities FINAL "
            "WHERE config_id = {c} AND step_id = 'miss_you' "
            "AND type IN ('command_emitted', 'message_suppressed')",
            config_id,
            len(ADMITTED),
            "every user's first step decided",
        )
        entered = {str(u): from_ms(int(ms)) for u, ms in first}
        assert sorted(entered) == ADMITTED
        mornings = {
            u: next_wall_time(at + WAIT, zone_of(u), MORNING, WEEKDAYS) for u, at in entered.items()
        }

        async def armed() -> bool:
            return len(engine.due) == len(ADMITTED)

        await eventually(armed, timeout=60, what="every enrolled user's morning timer armed")
        first_emails = await by_step(emails)
        assert users_of(first_emails["miss_you"]) == Counter(messaged)
        assert "morning" not in first_emails, "not before the users' local mornings"

        async def offers_sent() -> bool:
            return len(await smses.poll()) >= len(offered - held)

        await eventually(offers_sent, timeout=60, what="the split's SMS offers")

        # The mornings: the clock moved to each distinct due time in turn; each user's morning
        # email comes at it, and no one's before theirs.
        for due in sorted(set(mornings.values())):
            clock.advance(max(timedelta(0), due - clock() - timedelta(seconds=2)))
            now_due = {u for u, at in mornings.items() if at <= due and u not in held}

            async def sent_by_now(expected: set[str] = now_due) -> set[str] | None:
                got = {str(c["user_id"]) for c in await emails.poll() if c["step_id"] == "morning"}
                return got if got >= expected else None

            got = await eventually(sent_by_now, timeout=60, what=f"the mornings due at {due}")
            assert got == now_due, "no morning before the user's local 10:00"

        emailed, texted = await by_step(emails), await by_step(smses)
        assert set(emailed) == {"miss_you", "morning"} and set(texted) == {"offer"}
        assert users_of(emailed["miss_you"]) == Counter(messaged)
        assert users_of(emailed["morning"]) == Counter(messaged)
        assert users_of(texted["offer"]) == Counter(sorted(offered - held))
        for command in emailed["morning"]:
            user = str(command["user_id"])
            sent_at = datetime.fromisoformat(str(command["decided_at"]))
            local = sent_at.astimezone(ZoneInfo(zone_of(user)))
            assert (local.hour, local.minute, local.weekday() in WEEKDAYS) == (10, 0, True), (
                user,
                local,
            )
            assert mornings[user] <= sent_at < mornings[user] + timedelta(seconds=30)
        commands = [c for step in (*emailed.values(), *texted.values()) for c in step]
        for command in commands:
            user = str(command["user_id"])
            assert command["arm"] == arms[user]
            assert (command["config_id"], command["template"]) == (
                config_id,
                f"tpl-{str(command['step_id']).replace('_', '-')}",
            )

        # ClickHouse holds the same sends, and the holdout's suppressions in their place.
        emitted = await at_least(
            store,
            "SELECT user_id, step_id, channel, command_id, arm FROM {db}.activities FINAL "
            "WHERE config_id = {c} AND type = 'command_emitted'",
            config_id,
            len(commands),
            "every send in ClickHouse",
        )
        assert sorted(tuple(map(str, row)) for row in emitted) == sorted(
            (
                str(c["user_id"]),
                str(c["step_id"]),
                str(c["channel"]),
                str(c["command_id"]),
                str(c["arm"]),
            )
            for c in commands
        )
        holdout_steps = [(u, "miss_you") for u in held] + [(u, "morning") for u in held]
        holdout_steps += [(u, "offer") for u in held & offered]
        suppressed = await at_least(
            store,
            "SELECT user_id, step_id, reason_code FROM {db}.activities FINAL "
            "WHERE config_id = {c} AND type = 'message_suppressed'",
            config_id,
            len(holdout_steps),
            "the holdout's suppressions",
        )
        assert sorted(suppressed) == sorted((u, step, "holdout") for u, step in holdout_steps)

        # A test send: on the channel's topic, marked test, recorded nowhere.
        refused = await api.post(
            f"{API}/{config_id}/test-send", json={"user_id": messaged[0], "step_id": "morning"}
        )
        assert refused.status_code == 403, "a customer is never a test user"
        tested = await api.post(
            f"{API}/{config_id}/test-send", json={"user_id": TEST_USER, "step_id": "morning"}
        )
        assert tested.status_code == 200, tested.text
        test_command = tested.json()["command"]
        assert (test_command["test"], test_command["template"]) == (True, "tpl-morning")

        async def test_sent() -> list[Command]:
            return [c for c in await emails.poll() if c["user_id"] == TEST_USER]

        assert await eventually(test_sent, timeout=30, what="the test send") == [test_command]

        # /metrics counts the enrolled users' sends only, per arm and per step.
        since = datetime.now(UTC).date() - timedelta(days=1)
        until = max(mornings.values()).date() + timedelta(days=2)

        async def metrics() -> dict[str, Any] | None:
            response = await api.get(
                f"{API}/{config_id}/metrics",
                params={"from": since.isoformat(), "to": until.isoformat()},
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            exited = {row["step_id"]: row["exited"] for row in body["steps"]}
            return body if exited.get("morning") == len(ADMITTED) else None

        report = await eventually(metrics, timeout=60, what="every enrollment completed")
        assert sum(arm["sent"] for arm in report["arms"].values()) == len(commands)
        assert sum(arm["enrolled"] for arm in report["arms"].values()) == len(ADMITTED)
        steps = {row["step_id"]: row for row in report["steps"]}
        sent = Counter(str(c["step_id"]) for c in commands)
        assert {step: row["sent"] for step, row in steps.items()} == {
            "miss_you": sent["miss_you"],
            "fork": 0,
            "offer": sent["offer"],
            "morning": sent["morning"],
        }
        assert steps["fork"]["entered"] == len(ADMITTED)
        assert steps["morning"]["exited_by_reason"] == {"completed": len(ADMITTED)}
        assert steps["miss_you"]["suppressed_by_reason"] == {"holdout": len(held)}
