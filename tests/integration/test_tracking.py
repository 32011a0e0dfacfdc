"""Tracking routes on the real broker and ClickHouse engine: an open pixel and a click recorded
as feedback on the message they name, a redirect only to the signed URL, forged links refused
with nothing recorded, and an unsubscribe that stops the channel's next step."""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import urlsplit

import orjson
import pytest
from pydantic import SecretStr

from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.core.tracking_links import tracking_links
from sme.settings import Settings
from sme.storage.clickhouse import ClickHouseStore
from tests.support.clock import ShiftableClock
from tests.support.events import event
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader, publish
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
SECRET = "0123456789abcdef0123456789abcdef-tracking"
TARGET = "https://shop.example.com/cart?item=42"


def _path(url: str) -> str:
    return urlsplit(url).path


async def _rows(store: ClickHouseStore, sql: str) -> list[tuple[object, ...]]:
    return list((await store.query(sql)).result_rows)


async def test_opens_clicks_and_unsubscribes_are_recorded_and_forged_links_are_not(
    test_settings: Settings,
) -> None:
    s = test_settings.model_copy(update={"tracking_secret": SecretStr(SECRET)})
    clock = ShiftableClock()
    sequence = {
        "workspace_id": "acme",
        "name": "Tracked",
        "entry": {"event_types": ["signed_up"]},
        "steps": [
            {"id": "hello", "template": "hello", "channels": ["email"]},
            {"id": "again", "template": "again", "channels": ["email"], "wait": "P1D"},
        ],
        "experiment": {"holdout_pct": 0, "baseline_pct": 0},
    }
    async with running_gateway(s) as api, running_engine(s, clock=clock):
        store: ClickHouseStore = api.gateway_app.state.gw.store  # type: ignore[attr-defined]
        assert (await api.post(API, json=sequence)).status_code == 201
        await publish(s.kafka_bootstrap_servers, s.topic_events, [event("s-u1", "u1", "signed_up")])

        async with TopicReader(
            s.kafka_bootstrap_servers, s.command_topic(Channel.EMAIL)
        ) as commands:

            async def first_command() -> list[dict[str, object]]:
                return await commands.poll()

            (sent,) = await eventually(first_command, timeout=60, what="the first command")
        command = Command.model_validate(sent)
        links = tracking_links(command, str(api.base_url), SECRET)
        body, mac = _path(links.click(TARGET)).split("/")[-1].split(".")
        payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload[-1] = "https://evil.example.net/"
        forged = "/t/c/" + base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")
        forged += f".{mac}"
        other_secret = tracking_links(command, str(api.base_url), "x" * 32)

        # forged, altered and foreign-secret links: 404 and nothing published
        for url in (
            forged,
            _path(other_secret.open_pixel()),
            _path(other_secret.click("https://evil.example.net/")),
            f"/t/c/{body}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BA'}",
            _path(links.open_pixel()).replace("/t/o/", "/t/c/"),  # an open token as a click
            "/t/o/not-a-token",
        ):
            response = await api.get(url)
            assert response.status_code == 404, (url, response.text)
            assert "location" not in response.headers
        assert (await api.post(_path(other_secret.unsubscribe()))).status_code == 404

        pixel = await api.get(_path(links.open_pixel()))
        assert pixel.status_code == 200
        assert pixel.headers["content-type"] == "image/gif"
        assert pixel.content.startswith(b"GIF89a")
        assert (await api.get(_path(links.open_pixel()))).status_code == 200  # a repeat open
        click = await api.get(_path(links.click(TARGET)))
        assert click.status_code == 302
        assert click.headers["location"] == TARGET
        page = await api.get(_path(links.unsubscribe()))
        assert page.status_code == 200
        assert '<form method="post">' in page.text

        async with TopicReader(s.kafka_bootstrap_servers, s.topic_events) as events:
            published = await events.read_to_end()
        tracked = [e for e in published if e.get("command_id")]
        assert sorted(str(e["type"]) for e in tracked) == ["clicked", "opened", "opened"]
        assert {(e["user_id"], e["command_id"], e["channel"]) for e in tracked} == {
            ("u1", command.command_id, "email")
        }
        assert len({e["event_id"] for e in tracked}) == 2  # the repeat open has the same id
        assert next(e for e in tracked if e["type"] == "clicked")["properties"] == {
            "source": "tracking",
            "url": TARGET,
        }

        async def feedback() -> list[tuple[object, ...]]:
            rows = await _rows(
                store,
                "SELECT command_id, step_id, event_type FROM {db}.activities FINAL "
                "WHERE type = 'feedback' ORDER BY event_type",
            )
            return rows if len(rows) == 2 else []

        rows = await eventually(feedback, timeout=60, what="the open and click recorded")
        assert rows == [
            (command.command_id, "hello", "clicked"),
            (command.command_id, "hello", "opened"),
        ]

        unsubscribed = await api.post(
            _path(links.unsubscribe()),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert unsubscribed.status_code == 200, unsubscribed.text

        async def revoked() -> bool:
            rows = await _rows(
                store, "SELECT count() FROM {db}.activities FINAL WHERE type = 'consent_revoked'"
            )
            return rows[0][0] == 1

        await eventually(revoked, timeout=60, what="the consent withdrawal recorded")
        clock.advance(timedelta(days=1, minutes=1))

        async def skipped() -> list[tuple[object, ...]]:
            return await _rows(
                store,
                "SELECT step_id, reason_code FROM {db}.activities FINAL "
                "WHERE type = 'step_skipped'",
            )

        assert await eventually(skipped, timeout=60, what="the next step skipped") == [
            ("again", "no_consent")
        ]
        sent_rows = await _rows(
            store, "SELECT count() FROM {db}.activities FINAL WHERE type = 'command_emitted'"
        )
        assert sent_rows[0][0] == 1


async def test_without_a_secret_the_tracking_routes_answer_503(test_settings: Settings) -> None:
    async with running_gateway(test_settings) as api:
        for method, path in (("GET", "/t/o/x.y"), ("GET", "/t/c/x.y"), ("POST", "/t/u/x.y")):
            response = await api.request(method, path)
            assert response.status_code == 503
            assert "SME_TRACKING_SECRET" in orjson.loads(response.content)["detail"]
