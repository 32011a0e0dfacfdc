"""Segment-compatible ingest on the real broker, through the engine: a batch posted to
`/v1/batch` with a write key enrols its user and the engine sends the sequence's first command;
a bad event in the batch is answered per event and dead-lettered while the rest is accepted;
an unknown write key (or an API key) is 401; a write key writes only its own workspace; the
README's curl example is accepted as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from sme.contracts.channels import Channel
from sme.gateway.auth import add_key
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.gateway import running_gateway
from tests.support.kafka_io import TopicReader
from tests.support.runtime import running_engine
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
WELCOME: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [{"id": "hello", "template": "hello", "channels": ["email"]}],
    "experiment": {"holdout_pct": 0, "baseline_pct": 100},
}


def readme_curl() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The README ingest section's curl: its path, JSON body and the answer shown under it."""
    section = README.split("## Ingest (Segment-compatible)", 1)[1].split("\n## ", 1)[0]
    match = re.search(
        r"curl -u \"\$SME_WRITE_KEY:\" .* http://127\.0\.0\.1:8080(/v1/\w+) -d '([^']+)'\n# (.+)",
        section,
    )
    assert match, "the README's ingest section shows a curl example and its answer"
    return match[1], orjson.loads(match[2]), orjson.loads(match[3])


def basic(key: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(key, "")


async def test_a_segment_batch_reaches_the_engine_and_bad_events_are_dead_lettered(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "write-keys.json"
    acme = add_key(keys_file, "acme-cdp", "acme", prefix="sme_wk_")
    globex = add_key(keys_file, "globex-cdp", "globex", prefix="sme_wk_")
    api_keys = tmp_path / "api-keys.json"
    api_key = add_key(api_keys, "acme-admin", "acme")
    s = test_settings.model_copy(update={"write_keys_file": keys_file, "api_keys_file": api_keys})
    await ensure_topics(s)
    async with (
        running_engine(s),
        TopicReader(s.kafka_bootstrap_servers, s.command_topic(Channel.EMAIL)) as commands,
        TopicReader(s.kafka_bootstrap_servers, s.topic_dlq) as dlq,
        TopicReader(s.kafka_bootstrap_servers, s.topic_events) as events,
        running_gateway(s, {"Authorization": f"Bearer {api_key}"}) as api,
    ):
        created = await api.post(API, json=WELCOME)
        assert created.status_code == 201, created.text

        batch = {
            "batch": [
                {
                    "type": "identify",
                    "userId": "ada",
                    "messageId": "id-1",
                    "traits": {"plan": "pro"},
                    "context": {"timezone": "Europe/Paris"},
                },
                {"type": "track", "anonymousId": "anon-7", "event": "Signed Up"},
                {
                    "type": "track",
                    "userId": "ada",
                    "event": "Signed Up",
                    "messageId": "m-1",
                    "context": {"library": {"name": "analytics.js"}},
                },
            ],
            "sentAt": "2026-11-28T09:15:00Z",
        }
        answer = await api.post("/v1/batch", json=batch, auth=basic(acme))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["success"], body["accepted"], body["rejected"]) == (False, 2, 1)
        [error] = body["errors"]
        assert error["index"] == 1
        assert [e["loc"] for e in error["errors"]] == [["userId"]]

        async def welcomed() -> bool:
            return any(
                c["user_id"] == "ada" and c["step_id"] == "hello" for c in await commands.poll()
            )

        await eventually(welcomed, timeout=60, what="ada's first command")

        async def dead_letter() -> dict[str, Any] | None:
            letters = [d for d in await dlq.poll() if d.get("service") == "gateway"]
            return letters[0] if letters else None

        letter = await eventually(dead_letter, timeout=30, what="the refused event's dead letter")
        assert letter["reason_code"] == "validation_failed"
        assert letter["source"]["topic"] == "http:/v1/batch" and letter["source"]["offset"] == 1
        assert [e["loc"] for e in letter["errors"]] == ["userId"]
        anonymous = {"type": "track", "anonymousId": "x", "event": "Opened"}
        refused = await api.post("/v1/batch", json={"batch": [anonymous] * 2}, auth=basic(acme))
        assert refused.status_code == 400, "nothing accepted: the batch is refused"
        assert (refused.json()["accepted"], refused.json()["rejected"]) == (0, 2)

        # 401: the client's API key alone, an unknown write key, a write key as a bearer;
        # and a write key cannot read or configure.
        for auth, headers in (
            (None, {}),
            (basic("sme_wk_" + "x" * 43), {}),
            (None, {"Authorization": f"Bearer {acme}"}),
        ):
            refused = await api.post(
                "/v1/track", json=batch["batch"][2], auth=auth, headers=headers
            )
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Basic")
        assert (await api.get(API, params={"workspace_id": "acme"})).status_code == 200
        for auth, headers in ((basic(acme), {}), (None, {"Authorization": f"Bearer {acme}"})):
            read = await api.get(API, params={"workspace_id": "acme"}, auth=auth, headers=headers)
            assert read.status_code == 401
            write = await api.post(API, json=WELCOME, auth=auth, headers=headers)
            assert write.status_code == 401

        # globex's key names acme in the payload: the event is globex's, nothing for acme.
        foreign = {
            "userId": "bob",
            "event": "Signed Up",
            "workspace_id": "acme",
            "messageId": "g-1",
        }
        sent = await api.post("/v1/track", json=foreign, auth=basic(globex))
        assert sent.status_code == 200 and sent.json()["success"] is True

        async def bobs_event() -> dict[str, Any] | None:
            mine = [e for e in await events.poll() if e.get("user_id") == "bob"]
            return mine[0] if mine else None

        bob = await eventually(bobs_event, timeout=30, what="bob's event on the topic")
        assert (bob["workspace_id"], bob["type"], bob["event_id"]) == ("globex", "signed_up", "g-1")

        # A refused single call: 400 with the location; a body that is not JSON: 400.
        bad = await api.post("/v1/track", json={"userId": "ada", "event": "2fa"}, auth=basic(acme))
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["errors"][0]["loc"] == ["event"]
        garbled = await api.post("/v1/batch", content=b"{nope", auth=basic(acme))
        assert garbled.status_code == 400
        big = {"userId": "ada", "event": "x", "properties": {"blob": "x" * 40_000}}
        assert (await api.post("/v1/track", json=big, auth=basic(acme))).status_code == 413

        # The README's example, as written.
        path, example, shown = readme_curl()
        readme = await api.post(path, json=example, auth=basic(acme))
        assert readme.status_code == 200, readme.text
        assert readme.json() == shown

        # bob (globex) never gets acme's welcome.
        await commands.read_to_end()
        assert not any(c["user_id"] == "bob" for c in commands.seen)


async def test_segment_limits_batch_size_and_calls_per_workspace(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "write-keys.json"
    acme = add_key(keys_file, "acme-cdp", "acme", prefix="sme_wk_")
    globex = add_key(keys_file, "globex-cdp", "globex", prefix="sme_wk_")
    s = test_settings.model_copy(
        update={"write_keys_file": keys_file, "ingest_burst": 3, "ingest_rate_per_second": 0.01}
    )
    await ensure_topics(s)
    async with running_gateway(s) as api:
        call = {"type": "track", "userId": "ada", "event": "Opened"}
        over = {"batch": [{**call, "properties": {"pad": "x" * 1000}}] * 520}
        assert 500 * 1024 < len(orjson.dumps(over)) < 1024 * 1024
        too_large = await api.post("/v1/batch", json=over, auth=basic(acme))
        assert too_large.status_code == 413
        many = await api.post("/v1/batch", json={"batch": [call] * 2501}, auth=basic(acme))
        assert many.status_code == 400
        assert many.json()["errors"][0]["errors"][0]["loc"] == ["batch"]
        big = {**call, "properties": {"pad": "x" * 40_000}}
        mixed = await api.post("/v1/batch", json={"batch": [big, call]}, auth=basic(acme))
        assert mixed.status_code == 200
        assert (mixed.json()["accepted"], mixed.json()["rejected"]) == (1, 1)
        assert mixed.json()["errors"][0]["index"] == 0
        assert mixed.json()["errors"][0]["errors"][0]["type"] == "too_large"
        limited = await api.post("/v1/track", json=call, auth=basic(acme))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        other = await api.post("/v1/track", json=call, auth=basic(globex))
        assert other.status_code == 200, "the limit is per workspace"
