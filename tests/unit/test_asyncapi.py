"""`schemas/asyncapi.yaml` is exactly what the contracts and the topic layout generate, covers
every topic the services create as they create it, describes real records, and the official
AsyncAPI parser (npm `@asyncapi/parser`, installed by `make install`) finds no error in it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from jsonschema import Draft202012Validator

from sme.contracts import asyncapi
from sme.contracts.asyncapi import build_asyncapi, reference_settings, render_asyncapi
from sme.contracts.channels import Channel
from sme.contracts.config_records import SequenceRecord
from sme.senders.runner import ChannelAdapter, Sender
from sme.topics import TopicSpec, topic_specs
from tests.unit.builders import T0, Driver, config, event

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "schemas" / "asyncapi.yaml"
CHECKER = ROOT / "tests" / "asyncapi"
PARSE_SECONDS = 120


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def payload_validator(document: dict[str, Any], message: str) -> Draft202012Validator:
    """The message's payload schema, its references resolved inside the document."""
    ref = document["components"]["messages"][message]["payload"]["$ref"]
    return Draft202012Validator({"$ref": ref, "components": document["components"]})


def run_parser(path: Path) -> tuple[int, list[dict[str, str]]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the AsyncAPI check needs Node.js (see README)")
    if not (CHECKER / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail(f"{CHECKER}/node_modules is missing: run `make install` (npm ci there)")
    done = subprocess.run(
        [node, str(CHECKER / "validate.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=PARSE_SECONDS,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line]


# --- drift ----------------------------------------------------------------------------------


def test_the_committed_document_is_exactly_what_the_contracts_generate() -> None:
    assert DOCUMENT.exists(), f"{DOCUMENT} is missing; run `sme schemas` to regenerate"

    assert DOCUMENT.read_text(encoding="utf-8") == render_asyncapi(), (
        "schemas/asyncapi.yaml drifted from the contracts or the topic layout: run `sme schemas`"
    )


def test_the_yaml_reads_back_as_the_generated_document() -> None:
    assert committed() == build_asyncapi()


def test_the_environment_does_not_change_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render_asyncapi()
    monkeypatch.setenv("SME_TOPIC_EVENTS", "elsewhere.events")
    monkeypatch.setenv("SME_TOPIC_PARTITIONS", "12")

    assert render_asyncapi() == before


# --- the topics as created ------------------------------------------------------------------


def test_every_topic_the_services_create_is_a_channel_with_its_partitions_and_policy() -> None:
    specs = {spec.name: spec for spec in topic_specs(reference_settings())}
    channels = {c["address"]: c for c in committed()["channels"].values()}

    assert set(channels) == set(specs)
    for name, spec in specs.items():
        kafka = channels[name]["bindings"]["kafka"]
        assert kafka["topic"] == name
        assert kafka["partitions"] == spec.partitions
        configuration = kafka.get("topicConfiguration", {})
        assert {k: str(v) for k, v in configuration.items() if k != "cleanup.policy"} == {
            k: v for k, v in spec.configs.items() if k != "cleanup.policy"
        }
        assert configuration.get("cleanup.policy") == (
            spec.configs["cleanup.policy"].split(",") if "cleanup.policy" in spec.configs else None
        )


def test_the_compacted_topics_are_the_configs_stats_and_table_changelogs() -> None:
    configurations = {
        c["address"]: c["bindings"]["kafka"].get("topicConfiguration", {})
        for c in committed()["channels"].values()
    }
    compacted = {
        name for name, c in configurations.items() if "compact" in c.get("cleanup.policy", [])
    }

    assert compacted == {
        "sme.configs",
        "sme.stats",
        "sme-engine-users-changelog",
        "sme-engine-ledger-changelog",
        "sme-engine-positions-changelog",
    }


def test_every_channel_is_sent_and_received_and_operations_use_only_its_messages() -> None:
    document = committed()
    actions: dict[str, set[str]] = {}
    for op_id, op in document["operations"].items():
        channel_id = op["channel"]["$ref"].removeprefix("#/channels/")
        channel = document["channels"][channel_id]
        actions.setdefault(channel_id, set()).add(op["action"])
        assert op["tags"][0]["name"] in {"engine", "gateway", "sender", "external"}, op_id
        for ref in op["messages"]:
            prefix = f"#/channels/{channel_id}/messages/"
            assert ref["$ref"].startswith(prefix), op_id
            assert ref["$ref"].removeprefix(prefix) in channel["messages"], op_id

    assert actions == {channel: {"send", "receive"} for channel in document["channels"]}


def test_the_built_in_senders_are_named_with_the_consumer_groups_they_use() -> None:
    """SMTP serves email only; the webhook sender any channel; both under the group id the
    running sender really joins (`Sender.group_id`)."""
    settings = reference_settings()
    receivers = {
        (op["channel"]["$ref"].removeprefix("#/channels/"), op_id): op
        for op_id, op in committed()["operations"].items()
        if op["tags"][0]["name"] == "sender" and op["action"] == "receive"
    }
    expected: dict[tuple[str, str], str] = {}
    for channel in Channel:
        camel = "".join(part.title() for part in channel.value.split("_"))
        for kind in ("webhook", "smtp") if channel is Channel.EMAIL else ("webhook",):
            adapter = cast(ChannelAdapter, SimpleNamespace(kind=kind))
            group = Sender(settings, channel, adapter).group_id
            expected[(f"commands{camel}", f"{kind}SenderReceives{camel}Commands")] = group
    assert {
        key: op["bindings"]["kafka"]["groupId"]["enum"][0] for key, op in receivers.items()
    } == (expected)


def test_every_message_names_its_key() -> None:
    for name, message in committed()["components"]["messages"].items():
        assert message["bindings"]["kafka"]["key"]["description"], name


def test_a_topic_without_a_description_fails_the_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def with_an_extra_topic(settings: Any) -> list[TopicSpec]:
        return [*topic_specs(settings), TopicSpec("sme.undocumented", 1)]

    monkeypatch.setattr(asyncapi, "topic_specs", with_an_extra_topic)

    with pytest.raises(ValueError, match=r"sme\.undocumented"):
        build_asyncapi()


# --- the schemas describe real records ------------------------------------------------------


def test_real_records_are_accepted_by_their_message_schemas() -> None:
    document = committed()
    driver = Driver.of(config())
    driver.send("signed_up", T0)
    records = {
        "Event": [event("clicked", channel="email", command_id="c-1").model_dump(mode="json")],
        "Command": [c.model_dump(mode="json") for c in driver.commands],
        "Activity": [a.model_dump(mode="json") for a in driver.activities],
        "SequenceRecord": [SequenceRecord(config=config()).model_dump(mode="json")],
        "StatsCounts": [[3.0, 1.0], [3.0, 1.0, 1714557600000]],
    }
    assert records["Command"], "the driver sent no command to check"

    for message, examples in records.items():
        validator = payload_validator(document, message)
        for example in examples:
            assert list(validator.iter_errors(example)) == [], (message, example)


@pytest.mark.parametrize(
    ("message", "record"),
    [
        ("Event", {"event_id": "e", "workspace_id": "w", "user_id": "u", "type": "x"}),
        ("Command", {"command_id": "c"}),
        ("StatsCounts", [1.0]),
        ("SequenceRecord", {"kind": "workspace", "config": {}}),
    ],
    ids=["event-without-time", "command-without-fields", "short-counts", "wrong-kind"],
)
def test_broken_records_are_refused_by_their_message_schemas(message: str, record: Any) -> None:
    assert list(payload_validator(committed(), message).iter_errors(record)) != []


# --- the official parser --------------------------------------------------------------------


def test_the_asyncapi_parser_finds_no_error_in_the_document() -> None:
    code, diagnostics = run_parser(DOCUMENT)

    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert (code, errors) == (0, [])


def test_the_parser_check_fails_on_a_broken_document(tmp_path: Path) -> None:
    broken = tmp_path / "asyncapi.yaml"
    text = DOCUMENT.read_text(encoding="utf-8")
    broken.write_text(text.replace("action: receive", "action: listen", 1), encoding="utf-8")

    code, diagnostics = run_parser(broken)

    assert code == 1
    assert any(d["severity"] == "error" and "action" in d["path"] for d in diagnostics)
