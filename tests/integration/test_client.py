"""The Python client against the real gateway (real broker, embedded ClickHouse): every kind
of call answers its typed model, refusals arrive as typed errors with the server's fields,
and the README's example runs as written."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sme.client import AsyncSmeClient, Conflict, InvalidRequest, NotFound, Unauthorized
from sme.contracts.preview import PreviewRequest, SendTestRequest
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
SEQUENCE: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Welcome",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "welcome", "template": "tpl-welcome", "channels": ["email"]},
        {"id": "tips", "wait": "P2D", "template": "tpl-tips", "channels": ["email", "push"]},
    ],
    "experiment": {"holdout_pct": 0, "baseline_pct": 0},
}


@pytest.fixture
async def gateway_url(test_settings: Settings) -> AsyncIterator[str]:
    await ensure_topics(test_settings)
    async with running_gateway(test_settings) as http:
        yield str(http.base_url).rstrip("/")


async def test_the_client_speaks_every_kind_of_call(gateway_url: str) -> None:
    async with AsyncSmeClient(gateway_url) as sme:
        assert await sme.ready()
        created = await sme.create_config(SEQUENCE)
        assert (created.version, created.name) == (1, "Welcome")
        assert await sme.get_config(created.id) == created
        assert [c.id for c in (await sme.list_configs("acme")).items] == [created.id]
        draft = await sme.create_config({**SEQUENCE, "name": "Draft"}, dry_run=True)
        assert draft.name == "Draft"
        with pytest.raises(InvalidRequest):
            await sme.create_config({**SEQUENCE, "steps": []}, dry_run=True)
        tried = await sme.patch_config(created.id, {"name": "Tried"}, if_version=1, dry_run=True)
        assert (tried.version, tried.name) == (2, "Tried")
        assert [c.name for c in (await sme.list_configs("acme")).items] == ["Welcome"]

        patched = await sme.patch_config(created.id, {"name": "Renamed"}, if_version=1)
        assert (patched.version, patched.name) == (2, "Renamed")
        with pytest.raises(Conflict):
            await sme.patch_config(created.id, {"name": "Stale"}, if_version=1)
        assert (await sme.get_config(created.id)).name == "Renamed"
        assert len(await sme.config_versions(created.id)) == 2

        with pytest.raises(InvalidRequest) as refused:
            await sme.create_config({**SEQUENCE, "steps": [{"id": "x", "channels": ["fax"]}]})
        assert refused.value.status == 422
        assert any(e["loc"][:2] == ["body", "steps"] for e in refused.value.errors)
        with pytest.raises(NotFound):
            await sme.get_config("no-such-sequence")

        preview = await sme.preview(created.id, PreviewRequest(user_id="anna"))
        assert (preview.config_id, preview.user_id) == (created.id, "anna")
        assert preview.outcome.enrolled
        assert [e.step_id for e in preview.trace if e.type == "command_emitted"][:1] == ["welcome"]

        accepted = await sme.enroll(created.id, "batch-1", ["anna", "ben", "anna"])
        assert (accepted.accepted, accepted.duplicates, accepted.replayed) == (2, 1, False)
        assert (await sme.enroll(created.id, "batch-1", ["anna", "ben", "anna"])).replayed
        with pytest.raises(Conflict):
            await sme.enroll(created.id, "batch-1", ["carl"])

        metrics = await sme.metrics(created.id)
        assert (metrics["config_id"], metrics["arms"]) == (created.id, {})  # nothing sent yet
        assert {"lift", "series", "steps"} <= set(metrics)
        assert (await sme.report(created.id, "csv")).startswith(b'"day","arm"')

        with pytest.raises(Unauthorized, match="test_users"):
            await sme.test_send(created.id, SendTestRequest(user_id="tess", step_id="welcome"))
        settings = await sme.put_workspace(
            "acme", {"default_timezone": "Europe/Paris", "test_users": ["tess"]}
        )
        assert (settings.default_timezone, settings.test_users) == ("Europe/Paris", ["tess"])
        sent = await sme.test_send(created.id, SendTestRequest(user_id="tess", step_id="welcome"))
        assert (sent.command.user_id, sent.command.step_id) == ("tess", "welcome")
        assert (await sme.get_workspace("acme")) == settings
        with pytest.raises(InvalidRequest) as zone:
            await sme.put_workspace("acme", {"default_timezone": "Mars/Olympus"})
        assert zone.value.errors[0]["loc"] == ["body", "default_timezone"]
        assert (await sme.kill_switch("acme", True)).paused_configs == [created.id]
        assert not (await sme.kill_switch("acme", False)).engaged

        await sme.delete_config(created.id)
        assert (await sme.get_config(created.id)).status in {"STOPPED", "DRAINING"}


async def test_the_readme_example_runs_as_written(
    gateway_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python client") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Python client section has an example"
    monkeypatch.setenv("SME_URL", gateway_url)
    monkeypatch.delenv("SME_API_KEY", raising=False)
    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            exec(compile(match.group(1), "README.md", "exec"), {})  # noqa: S102 - our README

    await asyncio.to_thread(run)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("refused: 409 ")
    assert lines[1] == "Welcome v2 2 2 day"


async def test_the_cli_reports_a_refusal_through_the_client(
    gateway_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sme.cli import main as sme

    code = await asyncio.to_thread(
        sme, ["report", "--config", "no-such-sequence", "--gateway", gateway_url]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("sme: 404 ")
    assert await asyncio.to_thread(sme, ["sql", "SELECT", "--gateway", gateway_url]) == 1
    assert capsys.readouterr().err.startswith("sme: 400 ")
