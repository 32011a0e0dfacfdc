"""Every shipped example configuration validates, and the old single-test condition forms still
parse unchanged next to the expression form (nothing stored before expressions breaks)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sme.contracts.sequences import SequenceConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.json"))

LEGACY: dict[str, Any] = {
    "id": "legacy",
    "workspace_id": "ws",
    "name": "Every condition in its pre-expression form",
    "entry": {
        "event_types": ["signed_up"],
        "filters": [
            {"key": "plan", "equals": "pro"},
            {"source": "property", "key": "source", "one_of": ["ads", "seo"]},
            {"key": "age", "min": 18, "max": 99},
        ],
    },
    "steps": [
        {"id": "s1", "template": "t", "channels": ["email"]},
        {
            "id": "s2",
            "template": "t",
            "channels": ["email"],
            "condition": {
                "none_of_events": ["clicked"],
                "any_of_events": ["opened"],
                "attributes": [{"key": "vip", "equals": True}],
            },
            "wait_for": {"event_type": "purchased", "timeout": "PT1H", "on_event": "exit"},
        },
        {
            "id": "b",
            "kind": "branch",
            "branches": [
                {"event_type": "clicked", "goto": "s3"},
                {"attribute": {"key": "plan", "equals": "pro"}, "goto": "exit"},
            ],
        },
        {"id": "s3", "template": "t", "channels": ["sms"]},
    ],
    "exit": {"event_types": ["unsubscribed"], "goal": {"event_type": "purchased"}},
}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_configuration_validates(path: Path) -> None:
    cfg = SequenceConfig.model_validate_json(path.read_text(encoding="utf-8"))
    assert SequenceConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_the_examples_include_one_with_expressions() -> None:
    assert any('"when"' in p.read_text(encoding="utf-8") for p in EXAMPLES)


def test_the_old_condition_forms_parse_and_round_trip_unchanged() -> None:
    cfg = SequenceConfig.model_validate(LEGACY)
    assert cfg.entry.when is None and cfg.exit.rules == []
    assert all(r.when is None for s in cfg.steps for r in s.branches)
    assert SequenceConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    assert SequenceConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_the_readme_expression_example_validates() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{\"entry\".*?)```", readme, re.DOTALL)
    assert block is not None, "README.md shows an expression example in a json block"
    example = json.loads(block.group(1))
    data = {**LEGACY, **example}
    assert SequenceConfig.model_validate(data).entry.when is not None


def test_the_readme_split_example_validates() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\{\"adaptive\".*?)```", readme, re.DOTALL)
    assert block is not None, "README.md shows a split and fixed_weights example"
    cfg = SequenceConfig.model_validate({**LEGACY, **json.loads(block.group(1))})
    assert cfg.steps[0].kind == "split"
    assert cfg.adaptive.variant_policy == "fixed_weights"
