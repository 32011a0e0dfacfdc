"""The demo's pure parts: the world's answer to a message (rates from the scenario, delays
divided by the time scale), organic conversions, the progress line, the sequence's create
body against the contracts, reusing an earlier run's sequence (scripted gateway), the
closing account, and a clear one-line error for a gateway that does not answer."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from sme.cli import main
from sme.client import AsyncSmeClient
from sme.contracts.channels import Channel
from sme.contracts.sequences import SequenceConfig, Status
from sme.demo.plan import SERVER_FIELDS, create_body, demo_world, reusable
from sme.demo.progress import Counters, bar, progress_line
from sme.demo.reactions import organic_conversion_after, plan_reactions
from sme.demo.run import DemoError, demo_sequence, ensure_sequence
from sme.demo.summary import LeftBehind, measured, summary_lines
from sme.simulator.world import HiddenUser, Scenario, draw_user, regimes

WORLD = demo_world()
BASE = "http://gateway.test"


def world_with(**channel_model: float) -> Scenario:
    """The demo world with the email channel model changed."""
    email = WORLD.channels[Channel.EMAIL].model_copy(update=channel_model)
    return WORLD.model_copy(update={"channels": {**WORLD.channels, Channel.EMAIL: email}})


def reader(world: Scenario = WORLD) -> HiddenUser:
    """A user of the `readers` segment (who reads email), drawn from `world`."""
    rng = random.Random(3)
    for index in range(1000):
        user = draw_user(world, index, f"u{index}", rng)
        if user.segment == "readers" and user.open_p[Channel.EMAIL] > 0:
            return user
    raise AssertionError("no reader drawn")


def answers(
    world: Scenario, user: HiddenUser, n: int, *, recent: int = 0, active: bool = True
) -> list[list[str]]:
    """The kinds of feedback of `n` messages to `user` (email, one variant)."""
    rng = random.Random(11)
    regime = regimes(world)[0]
    out = []
    for _ in range(n):
        reactions = plan_reactions(
            user, regime, world.fatigue, Channel.EMAIL, "welcome_plain",
            recent=recent, active=active, rng=rng, scale=3600.0,
        )  # fmt: skip
        out.append([r.kind for r in reactions])
    return out


# --- the world's answer -------------------------------------------------------------------


def test_the_answers_follow_the_world_rates() -> None:
    user = reader()
    n = 20_000
    runs = answers(WORLD, user, n)
    kinds = Counter(kind for run in runs for kind in run)
    model = WORLD.channels[Channel.EMAIL]
    assert kinds["delivered"] + kinds["bounced"] == n
    assert kinds["delivered"] / n == pytest.approx(model.delivery, abs=0.01)
    delivered_kept = kinds["delivered"] - kinds["unsubscribed"]
    assert kinds["opened"] / delivered_kept == pytest.approx(user.open_p[Channel.EMAIL], abs=0.02)
    click = user.click_p[Channel.EMAIL] * user.appeal.get("welcome_plain", 1.0)
    assert kinds["clicked"] / kinds["opened"] == pytest.approx(click, abs=0.03)
    per_click = WORLD.segments[0].conversion_per_click
    assert kinds["converted"] / kinds["clicked"] == pytest.approx(per_click, abs=0.04)
    for run in runs:  # the funnel's order: nothing opens unless delivered, converts unless clicked
        assert run[0] in {"delivered", "bounced"}
        if "opened" in run:
            assert run[:2] == ["delivered", "opened"]
        if "converted" in run:
            assert run[-2:] == ["clicked", "converted"]


def test_the_world_decides_not_the_demo() -> None:
    user = reader()
    assert {tuple(r) for r in answers(world_with(delivery=0.0), user, 200)} == {("bounced",)}
    nobody_reads = answers(world_with(missed_outside_active=1.0), user, 500, active=False)
    assert all("opened" not in run for run in nobody_reads)
    leaving = answers(world_with(unsubscribe_per_delivery=1.0), user, 200)
    assert {tuple(r) for r in leaving} <= {("delivered", "unsubscribed"), ("bounced",)}
    tired = Counter(k for r in answers(WORLD, user, 5000, recent=10) for k in r)
    fresh = Counter(k for r in answers(WORLD, user, 5000) for k in r)
    assert tired["opened"] < fresh["opened"] * 0.5, "fatigue makes opens rarer"


def test_delays_are_the_world_s_divided_by_the_scale() -> None:
    user = reader()
    regime = regimes(WORLD)[0]

    def times(scale: float) -> list[float]:
        rng = random.Random(5)
        return [
            r.after
            for _ in range(300)
            for r in plan_reactions(
                user, regime, WORLD.fatigue, Channel.EMAIL, "welcome_plain",
                recent=0, active=True, rng=rng, scale=scale,
            )
        ]  # fmt: skip

    slow, fast = times(60), times(3600)
    assert fast == pytest.approx([t * 60 / 3600 for t in slow])
    # a virtual hour per second: the world's 30-minute mean open delay is half a second
    assert 0 < sum(fast) / len(fast) < 5


def test_organic_conversions_come_at_the_segment_s_base_rate_within_the_horizon() -> None:
    rng = random.Random(2)
    user = reader()
    horizon = WORLD.conversion_horizon_days * 86_400 / 3600  # real seconds at 3600x
    draws = [organic_conversion_after(user, rng, 3600) for _ in range(20_000)]
    within = sum(1 for d in draws if d is not None and d <= horizon) / len(draws)
    assert within == pytest.approx(WORLD.segments[0].base_conversion, abs=0.006)
    assert organic_conversion_after(replace(user, base_hazard=0.0), rng, 3600) is None


# --- progress and the closing account ---------------------------------------------------------


def test_progress_line_on_a_terminal_and_in_a_log() -> None:
    counters = Counters(users=1234, events=5000, commands=900, feedback=2000, conversions=42)
    plain = progress_line(counters, 30.4, 120, tty=False)
    assert plain == (
        "demo   30s/120s: users 1,234 | enrolled … | events 5,000 | commands 900 | "
        "feedback 2,000 | conversions 42"
    )
    counters.enrolled = 1200
    live = progress_line(counters, 60, 120, tty=True)
    assert live.startswith("[##########..........]   60s/120s  users 1,234 | enrolled 1,200")
    assert bar(500, 120) == "[" + "#" * 20 + "]" and bar(-1, 120) == "[" + "." * 20 + "]"
    assert "120s/120s" in progress_line(counters, 125, 120, tty=False)


def left_behind(keyed: bool) -> LeftBehind:
    return LeftBehind(
        gateway=BASE,
        config_id="c-1",
        config_name="Demo: welcome series",
        workspace_id="demo",
        events_topic="sme.events",
        command_topics=("sme.commands.email", "sme.commands.push"),
        activities_topic="sme.activities",
        consumer_group="sme-sender-demo",
        database="sme",
        first_user="demo-abc-00000",
        keyed=keyed,
    )


def test_the_closing_account_names_what_is_left_and_the_commands_that_remove_it() -> None:
    text = "\n".join(summary_lines(Counters(users=10), "120 s are up", left_behind(False), None))
    assert f"curl -X DELETE {BASE}/api/v1/035-sequential-messaging-engine/c-1" in text
    assert f"curl -X DELETE {BASE}/api/v1/workspaces/demo/users/demo-abc-00000" in text
    assert "make clean" in text and "sme.commands.email, sme.commands.push" in text
    assert f"{BASE}/dashboard/c-1" in text and "Authorization" not in text
    assert "(1 conversion);" in "\n".join(
        summary_lines(Counters(conversions=1), "interrupted", left_behind(False), None)
    )
    keyed = "\n".join(summary_lines(Counters(), "interrupted", left_behind(True), None))
    assert '-H "Authorization: Bearer $SME_ADMIN_API_KEY"' in keyed


def test_measured_figures_name_the_lift_and_its_interval() -> None:
    arm = {"enrolled": 10, "sent": 20, "delivered": 18, "opened": 9, "conversions": 2}
    lift = {"estimate": 1.5, "ci95_low": 0.2, "ci95_high": 4.0}
    text = measured({"arms": {"adaptive": arm, "holdout": arm}, "lift": {"vs_holdout": lift}})
    assert text == (
        "enrolled 20, sent 40, delivered+opened 54, conversions 4, "
        "lift vs holdout +150% (95% CI +20% .. +400%)"
    )
    assert measured({"arms": {}}) is None


# --- the sequence ----------------------------------------------------------------------------


def test_the_create_body_is_a_valid_sequence_with_a_holdout_and_short_waits() -> None:
    body = create_body(WORLD.sequence)
    assert not set(body) & set(SERVER_FIELDS)
    server = {"id": "new", "version": 1}
    config = SequenceConfig.model_validate_json(orjson.dumps({**body, **server}), strict=True)
    assert config.experiment.holdout_pct > 0 and config.experiment.baseline_pct > 0
    assert config.exit.goal is not None and config.exit.goal.event_type == "converted"
    assert all(step.wait <= timedelta(seconds=30) for step in config.steps)
    assert config.guardrails.quiet_hours is None and not config.adaptive.send_time.enabled


def stored(name: str, status: Status, version: int = 1) -> SequenceConfig:
    return WORLD.sequence.model_copy(
        update={"id": f"id-{status.value}", "name": name, "status": status, "version": version}
    )


def test_a_second_run_reuses_the_sequence_unless_it_was_stopped() -> None:
    name = WORLD.sequence.name
    live = stored(name, Status.ACTIVE)
    assert (
        reusable([stored(name, Status.STOPPED), live, stored("other", Status.ACTIVE)], name) == live
    )
    assert reusable([stored(name, Status.STOPPED)], name) is None


class Gateway:
    """A scripted gateway holding the sequences it was given or created."""

    def __init__(self, *configs: SequenceConfig, status: int = 200) -> None:
        self.configs = list(configs)
        self.status = status
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "unknown API key"})
        if request.method == "GET":
            items = [c.model_dump(mode="json") for c in self.configs]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        body = orjson.loads(request.content)
        if request.method == "POST":
            created = SequenceConfig.model_validate({**body, "id": "new-1"})
            self.configs.append(created)
            return httpx.Response(201, content=created.model_dump_json())
        current = self.configs[0].model_copy(update={"status": Status(body["status"])})
        return httpx.Response(200, content=current.model_dump_json())

    def client(self) -> AsyncSmeClient:
        return AsyncSmeClient(BASE, transport=httpx.MockTransport(self))


async def test_the_first_run_creates_the_sequence_and_the_next_ones_reuse_it() -> None:
    gateway = Gateway()
    async with gateway.client() as client:
        first, done = await ensure_sequence(client, WORLD.sequence)
        assert (first.id, done) == ("new-1", "created")
        again, done = await ensure_sequence(client, WORLD.sequence)
        assert (again.id, done) == ("new-1", "reused")
    assert gateway.calls == ["GET", "POST", "GET"]
    paused = Gateway(stored(WORLD.sequence.name, Status.PAUSED, 3))
    async with paused.client() as client:
        resumed, done = await ensure_sequence(client, WORLD.sequence)
    assert (resumed.status, done) == (Status.ACTIVE, "resumed")


async def test_a_refused_key_is_a_one_line_reason() -> None:
    async with Gateway(status=401).client() as client:
        with pytest.raises(DemoError, match=r"refused the API key .*SME_ADMIN_API_KEY"):
            await demo_sequence(client, WORLD.sequence, BASE)


def test_no_gateway_is_one_line_on_stderr_and_a_non_zero_exit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--gateway", "http://127.0.0.1:9", "--seconds", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "sme: no gateway answers at http://127.0.0.1:9: start one with `make run` "
        "(or point --gateway at yours)"
    )
    assert main(["demo", "--gateway", "ftp://gateway.test"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_the_readme_s_five_minutes_are_make_run_then_make_demo() -> None:
    """The newcomer's path names the two targets, and `make demo` runs `sme demo` (the e2e
    test runs it against real services)."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Five minutes", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make run", "make demo"]
    assert "/dashboard/" in section and "make clean" in section and "DELETE" in section
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    assert "\ndemo: " in makefile and "\t$(BIN)/sme demo $(DEMO_ARGS)\n" in makefile
