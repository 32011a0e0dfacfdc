"""The sequence editor in headless Chromium, driven over the DevTools protocol against a
gateway on the real broker and ClickHouse engine: typing an invalid definition shows the
gateway's field path, fixing it draws the flow, saving creates the sequence through the API,
the preview renders the decision trace, and a save over another writer's newer version is
reported as a conflict (nothing overwritten) and can be reloaded. The page must run without
a script error or a Content-Security-Policy refusal; a screenshot goes to tests/artifacts/."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sme.gateway.auth import add_key
from sme.settings import Settings
from sme.topics import ensure_topics
from tests.support.cdp import Page, headless_chromium
from tests.support.gateway import running_gateway

pytestmark = pytest.mark.integration
API = "/api/v1/035-sequential-messaging-engine"
DEFINITION: dict[str, Any] = {
    "workspace_id": "acme",
    "name": "Onboarding",
    "entry": {"event_types": ["signed_up"]},
    "steps": [
        {"id": "welcome", "template": "welcome", "channels": ["email"]},
        {
            "id": "check",
            "kind": "branch",
            "wait": "P1D",
            "branches": [{"event_type": "purchased", "goto": "thanks"}],
        },
        {
            "id": "ab",
            "kind": "split",
            "paths": [{"weight": 1, "goto": "next"}, {"weight": 3, "goto": "thanks"}],
        },
        {
            "id": "nudge",
            "template": "nudge",
            "channels": ["email", "push"],
            "wait": "P2D",
            "wait_for": {"event_type": "clicked", "timeout": "PT12H", "on_event": "exit"},
        },
        {"id": "thanks", "template": "thanks", "channels": ["email"]},
    ],
    "exit": {"goal": {"event_type": "purchased"}},
}


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


async def _validity(page: Page, expected: str) -> None:
    await page.wait_for(
        f"document.getElementById('validity').dataset.valid === {json.dumps(expected)}",
        what=f"validity {expected}",
    )


def _listed(selector: str, *fields: str) -> str:
    """JS: each element's fields (JS expressions on `e`), or null while there is none."""
    rows = f"[...document.querySelectorAll({json.dumps(selector)})].map(e => [{', '.join(fields)}])"
    return f"(() => {{ const r = {rows}; return r.length ? r : null; }})()"


async def _problems(page: Page) -> dict[str, str]:
    """The problems listed under the definition: field path → message."""
    return dict(
        await page.evaluate(_listed("#problems li", "e.dataset.path", "e.textContent")) or []
    )


async def test_edit_validate_draw_save_preview_and_conflict_in_chromium(
    test_settings: Settings,
) -> None:
    await ensure_topics(test_settings)
    async with running_gateway(test_settings) as api, headless_chromium() as browser:
        base = str(api.base_url).rstrip("/")
        page = await browser.open(f"{base}/dashboard/editor?workspace=acme")
        await page.wait_for("document.body.dataset.state === 'ready'", what="the editor")
        await _validity(page, "true")  # the starting template is valid
        starter = json.loads(await page.evaluate("document.getElementById('definition').value"))
        assert starter["workspace_id"] == "acme"

        # a JSON syntax error, located here, with line and column
        await page.type_into("definition", '{\n  "name": "x",\n  "steps": [}\n}')
        await _validity(page, "false")
        assert await page.evaluate("document.getElementById('validity').textContent") == (
            "JSON syntax error at line 3, column 13"
        )

        # invalid for the contract: the gateway's field path, through the dry run
        broken = copy.deepcopy(DEFINITION)
        del broken["steps"][0]["channels"]
        broken["steps"][2]["paths"][1]["goto"] = "nowhere"
        await page.type_into("definition", _text(broken))
        await _validity(page, "false")
        assert (
            "a message step needs at least one channel"
            in (await _problems(page))["steps[0].channels"]
        )
        await page.evaluate(  # a problem points at its place: here the step missing the field
            "document.querySelector('#problems li[data-path=\"steps[0].channels\"]').click()"
        )
        caret = await page.evaluate("document.getElementById('definition').selectionStart")
        typed = _text(broken)
        assert typed[caret] == "{" and '"id": "welcome"' in typed[caret : caret + 40]
        broken["steps"][0]["channels"] = ["email"]  # now the graph is checked: a bad jump
        await page.type_into("definition", _text(broken))
        await page.wait_for(
            "!!document.querySelector('#problems li[data-path=\"steps[2].paths[1].goto\"]')",
            what="the jump's field error",
        )
        assert "names no step" in (await _problems(page))["steps[2].paths[1].goto"]
        assert await page.evaluate("document.getElementById('save').disabled") is True

        # fixed: valid, and the flow is drawn with its steps, waits, branch and split
        await page.type_into("definition", _text(DEFINITION))
        await _validity(page, "true")
        flow = await page.wait_for(
            _listed(
                "#editor-flow g.flow-step", "e.dataset.step", "e.dataset.kind", "e.textContent"
            ),
            what="the flow drawing",
        )
        assert [(s, k) for s, k, _ in flow] == [
            ("welcome", "message"),
            ("check", "branch"),
            ("ab", "split"),
            ("nudge", "message"),
            ("thanks", "message"),
        ]
        boxes = {s: text for s, _, text in flow}
        assert "wait P1D" in boxes["check"] and "1 rule" in boxes["check"]
        assert "wait for clicked ≤ PT12H" in boxes["nudge"] and "email, push" in boxes["nudge"]
        jumps = await page.evaluate(
            _listed("#editor-flow g.flow-jump", "e.dataset.from", "e.dataset.to", "e.textContent")
        )
        assert sorted(jumps) == sorted(
            [
                ["check", "thanks", "if purchased → thanks"],
                ["ab", "next", "25% split → next"],
                ["ab", "thanks", "75% split → thanks"],
                ["nudge", "exit", "on clicked → exit"],
            ]
        )
        listed = (await api.get(API, params={"workspace_id": "acme"})).json()
        assert listed["items"] == [], "validating stores nothing"

        # save: created through the API, the address becomes the sequence's
        await page.click("save")
        await page.wait_for(
            "document.getElementById('status').textContent.startsWith('Saved version 1')",
            what="the save",
        )
        config_id = (await page.evaluate("location.pathname")).rsplit("/", 1)[1]
        stored = (await api.get(f"{API}/{config_id}")).json()
        assert stored["name"] == "Onboarding" and stored["version"] == 1
        assert [s["id"] for s in stored["steps"]] == [s["id"] for s in DEFINITION["steps"]]

        # preview of the user's journey: the decision trace, readable
        sample = {"user_id": "u-1", "arm": "adaptive", "profile": {"consent": {"email": True}}}
        await page.type_into("sample-user", json.dumps(sample))
        await page.click("run-preview")
        trace = await page.wait_for(
            _listed("#trace-table tbody tr", "e.dataset.type", "e.dataset.step", "e.textContent"),
            what="the preview trace",
        )
        kinds = [(kind, step) for kind, step, _ in trace]
        assert ("enrolled", "welcome") in kinds or kinds[0][0] == "enrolled", kinds
        assert ("command_emitted", "welcome") in kinds, kinds
        assert any(k == "step_branched" for k, _ in kinds), kinds
        outcome = await page.evaluate("document.getElementById('outcome').textContent")
        assert "Enrolled in the adaptive arm" in outcome

        # a conflict: another writer saves version 2 after this page loaded version 1
        mine = {**DEFINITION, "name": "Onboarding (mine)"}
        await page.type_into("definition", _text(mine))
        await _validity(page, "true")
        hostile = '<img src=x onerror="document.title=1"> (theirs)'  # shown as text, never run
        theirs = await api.patch(
            f"{API}/{config_id}", json={"name": hostile}, headers={"If-Match": '"1"'}
        )
        assert theirs.status_code == 200, theirs.text
        await page.click("save")
        await page.wait_for(
            "!document.getElementById('conflict').hidden", what="the conflict notice"
        )
        notice = await page.evaluate("document.getElementById('conflict').textContent")
        assert "version 1 is stale; the current version is 2" in notice
        current = (await api.get(f"{API}/{config_id}")).json()
        assert (current["name"], current["version"]) == (hostile, 2)
        picture = await page.screenshot("editor.png")
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert picture.stat().st_size > 30_000, "a blank page compresses to a few KB"

        await page.click("reload")
        await page.wait_for(
            "document.getElementById('doc-version').dataset.version === '2'", what="the reload"
        )
        text = json.loads(await page.evaluate("document.getElementById('definition').value"))
        assert text["name"] == hostile
        assert await page.evaluate("document.getElementById('title').textContent") == hostile
        assert await page.evaluate("document.querySelectorAll('img').length") == 0
        assert await page.evaluate("document.getElementById('conflict').hidden") is True
        await _validity(page, "true")
        assert browser.problems == [], browser.problems


async def test_with_keys_the_editor_asks_for_one_and_a_key_edits_only_its_workspace(
    test_settings: Settings, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    acme = add_key(keys_file, "acme-editor", "acme")
    globex = add_key(keys_file, "globex-editor", "globex")
    settings = test_settings.model_copy(update={"api_keys_file": keys_file})
    headers = {"Authorization": f"Bearer {acme}"}
    async with running_gateway(settings, headers) as api, headless_chromium() as browser:
        created = (await api.post(API, json=DEFINITION)).json()
        base = str(api.base_url).rstrip("/")
        page = await browser.open(f"{base}/dashboard/editor/{created['id']}")
        await page.wait_for("document.body.dataset.state === 'login'", what="the key prompt")
        await page.type_into("api-key", acme)
        await page.evaluate("document.getElementById('login-form').requestSubmit()")
        await page.wait_for("document.body.dataset.state === 'ready'", what="the editor")
        await _validity(page, "true")
        text = json.loads(await page.evaluate("document.getElementById('definition').value"))
        assert text["name"] == "Onboarding"

        theirs = await browser.open(f"{base}/dashboard/editor/{created['id']}#key={globex}")
        await theirs.wait_for("document.body.dataset.state === 'error'", what="not found")
        assert "404" in await theirs.evaluate("document.getElementById('status').textContent")
        new = await browser.open(f"{base}/dashboard/editor?workspace=acme#key={globex}")
        await _validity(new, "false")
        assert await new.evaluate("document.getElementById('validity').textContent") == (
            "workspace acme is not one this key may write to"
        )
        assert browser.problems == [], browser.problems
