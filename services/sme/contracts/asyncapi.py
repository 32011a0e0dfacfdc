"""The AsyncAPI 3.0 document of the Kafka topics (`schemas/asyncapi.yaml`), generated from the
topic layout `sme.topics` creates and the pydantic contracts, so a team that produces or consumes
a topic reads the key, the value schema, the partitions and the retention the services really
use, and which service sends or receives what. Every topic `topic_specs` creates must have a
description here: generation fails otherwise, so a new topic cannot go undocumented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sme import __version__
from sme.contracts.activities import Activity, ActivityBatch
from sme.contracts.channels import Channel
from sme.contracts.commands import Command
from sme.contracts.config_records import SequenceRecord, WorkspaceRecord
from sme.contracts.dead_letters import DeadLetter
from sme.contracts.engine_inputs import EraseRequest, ForwardedEvent, TimerTick
from sme.contracts.enrollments import EnrollRequest
from sme.contracts.events import Event
from sme.settings import Settings
from sme.topics import ENGINE_TABLES, changelog_topic, copartitioned, topic_specs

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_REF = "#/components/schemas/{model}"

REFERENCE_FIELDS = (
    "topic_events",
    "topic_commands_prefix",
    "topic_activities",
    "topic_configs",
    "topic_dlq",
    "topic_inputs",
    "topic_stats",
    "topic_partitions",
    "topic_replication",
    "engine_app_id",
    "gateway_group_id",
    "sender_group_prefix",
)
"""Settings that shape the document: taken at their defaults, whatever SME_* the environment
sets, so the committed document describes the shipped layout and never drifts with a shell."""

STATE_KEY = "`<len(workspace)>:<workspace>/<user id>`: the user's state key (workspace-scoped)."

# Values that are no pydantic model: the stats counts and the engine tables' changelog values.
INLINE_SCHEMAS: dict[str, dict[str, Any]] = {
    "StatsCounts": {
        "type": "array",
        "description": "Cumulative counts of one source partition: `[trials, successes, "
        "as_of_ms]` (`[trials, successes]` from older versions), discounted to `as_of_ms` "
        "for a sequence with a half-life. A null value (tombstone) deletes the key.",
        "items": {"type": "number", "minimum": 0},
        "minItems": 2,
        "maxItems": 3,
    },
    "UserStateValue": {
        "type": "object",
        "description": "The engine's compact user state (profile, dedupe window, enrollments, "
        "recent sends, affinity). Engine-internal, not a contract: only the engine reads it. "
        "A null value (tombstone) is an erased user.",
    },
    "LedgerValue": {
        "type": "number",
        "description": "Budget spent by one partition for a scope, UTC day and channel or cost.",
    },
    "PositionValue": {
        "type": "integer",
        "minimum": 0,
        "description": "The next `sme.inputs` offset of the partition still to decide.",
    },
}


@dataclass(frozen=True, slots=True)
class MessageDoc:
    """One kind of record on a topic: its payload (a model, or an inline schema's name)."""

    name: str
    payload: type[BaseModel] | str
    key: str
    summary: str


@dataclass(frozen=True, slots=True)
class OperationDoc:
    """Who sends or receives which messages of a topic."""

    id: str
    action: str  # "send" or "receive"
    service: str  # engine, gateway, cli, sender (`sme sender …`) or external
    messages: tuple[str, ...]
    summary: str
    group: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelDoc:
    id: str
    title: str
    description: str
    messages: tuple[MessageDoc, ...]
    operations: tuple[OperationDoc, ...]


def reference_settings() -> Settings:
    return Settings(**{name: Settings.model_fields[name].default for name in REFERENCE_FIELDS})


def _messages() -> dict[str, MessageDoc]:
    docs = [
        MessageDoc(
            "Event",
            Event,
            "Any key (conventionally the user id): the engine routes each event by its "
            "workspace and user, whatever key and partitioner the producer used.",
            "An engagement event (signup, open, click, conversion, ...) or sender feedback.",
        ),
        MessageDoc(
            "ForwardedEvent", ForwardedEvent, STATE_KEY, "A valid event and where it was read."
        ),
        MessageDoc(
            "TimerTick",
            TimerTick,
            "`tick`.",
            "Wakes the named users of the partition it is on.",
        ),
        MessageDoc("EraseRequest", EraseRequest, STATE_KEY, "Forget a user (erasure)."),
        MessageDoc(
            "EnrollRequest", EnrollRequest, STATE_KEY, "Enroll a listed user in a sequence."
        ),
        MessageDoc(
            "Command",
            Command,
            "The user id.",
            "A message to send now; dedupe on `command_id`.",
        ),
        MessageDoc(
            "Activity",
            Activity,
            "The user id; the workspace id for workspace-level activities (`config_changed`, "
            "automation); the rejected record's own key for `event_rejected`.",
            "One decision or observation.",
        ),
        MessageDoc(
            "ActivityBatch",
            ActivityBatch,
            "The user id.",
            "One user's activities of a decided batch, in decision order.",
        ),
        MessageDoc(
            "SequenceRecord",
            SequenceRecord,
            "`sequence:<len(workspace)>:<workspace>/<id>` (older topics also hold "
            "`sequence:<id>`, still read).",
            "The latest full sequence configuration; a null value deletes.",
        ),
        MessageDoc(
            "WorkspaceRecord",
            WorkspaceRecord,
            "`workspace:<workspace id>`.",
            "The latest workspace settings; a null value deletes.",
        ),
        MessageDoc(
            "DeadLetter",
            DeadLetter,
            "The original record's key.",
            "A record that could not be processed: reason, field errors, source, bytes.",
        ),
        MessageDoc(
            "StatsCounts",
            "StatsCounts",
            "`<partition>|<stat key>`.",
            "A partition's cumulative counts for one population statistic.",
        ),
        MessageDoc("UserState", "UserStateValue", STATE_KEY, "A user's state (table `users`)."),
        MessageDoc(
            "LedgerEntry",
            "LedgerValue",
            "`<partition>|<scope>|<UTC day>|<channel or cost>`.",
            "Budget spent (table `ledger`).",
        ),
        MessageDoc(
            "Position",
            "PositionValue",
            "The inputs partition number, in decimal.",
            "Decision progress of a partition (table `positions`).",
        ),
    ]
    return {doc.name: doc for doc in docs}


def _channel_docs(settings: Settings) -> dict[str, ChannelDoc]:
    """Topic name -> its description, for every topic the services use."""
    m = _messages()
    engine, intake = settings.engine_app_id, f"{settings.engine_app_id}-intake"
    docs: dict[str, ChannelDoc] = {
        settings.topic_events: ChannelDoc(
            "events",
            "Engagement events in",
            "The public intake (`SME_TOPIC_EVENTS`): applications, CDP forwarders and channel "
            "senders' feedback. Any partition count and partitioner: the engine's intake "
            "validates each event (invalid ones go to the dead-letter topic) and forwards it "
            "to the inputs partition that owns the user.",
            (m["Event"],),
            (
                OperationDoc(
                    "publishEvents",
                    "send",
                    "external",
                    ("Event",),
                    "Applications, CDPs and senders publish events and feedback.",
                ),
                OperationDoc(
                    "sendersPublishOutcomes",
                    "send",
                    "sender",
                    ("Event",),
                    "`sme sender …`: each command's outcome (delivered, failed, bounced, ...) "
                    "as an event carrying its `command_id`.",
                ),
                OperationDoc(
                    "engineIntakeReceivesEvents",
                    "receive",
                    "engine",
                    ("Event",),
                    "The engine's intake validates and routes each event (manual commits).",
                    intake,
                ),
            ),
        ),
        settings.topic_inputs: ChannelDoc(
            "inputs",
            "Engine inputs (internal)",
            "Engine-internal (`SME_TOPIC_INPUTS`): each record is on the partition that owns "
            "the user (`owner_partition(workspace, user)`), co-partitioned with the engine's "
            "table changelogs.",
            (m["ForwardedEvent"], m["TimerTick"], m["EraseRequest"], m["EnrollRequest"]),
            (
                OperationDoc(
                    "engineSendsInputs",
                    "send",
                    "engine",
                    ("ForwardedEvent", "TimerTick"),
                    "The intake forwards valid events; the engine's timers send ticks.",
                ),
                OperationDoc(
                    "gatewaySendsInputs",
                    "send",
                    "gateway",
                    ("EraseRequest", "EnrollRequest"),
                    "Erasures and list enrollments accepted by the HTTP API.",
                ),
                OperationDoc(
                    "engineDecides",
                    "receive",
                    "engine",
                    ("ForwardedEvent", "TimerTick", "EraseRequest", "EnrollRequest"),
                    "The decide agent runs the core over each batch.",
                    engine,
                ),
            ),
        ),
        settings.topic_activities: ChannelDoc(
            "activities",
            "Activities",
            "Every decision and observation (`SME_TOPIC_ACTIVITIES`), stored in ClickHouse by "
            "the gateway's sink; every report is computed from them.",
            (m["ActivityBatch"], m["Activity"]),
            (
                OperationDoc(
                    "engineSendsActivities",
                    "send",
                    "engine",
                    ("ActivityBatch", "Activity"),
                    "One batch per user per decided batch (a lone activity as is).",
                ),
                OperationDoc(
                    "gatewaySendsActivities",
                    "send",
                    "gateway",
                    ("Activity",),
                    "`config_changed` and automation activities.",
                ),
                OperationDoc(
                    "gatewaySinkReceivesActivities",
                    "receive",
                    "gateway",
                    ("ActivityBatch", "Activity"),
                    "The sink stores them in ClickHouse (unreadable ones are dead-lettered).",
                    settings.gateway_group_id,
                ),
            ),
        ),
        settings.topic_configs: ChannelDoc(
            "configs",
            "Configurations",
            "Sequence configurations and workspace settings (`SME_TOPIC_CONFIGS`), the latest "
            "full record per key; every engine and gateway reads it all from the beginning, "
            "without a consumer group, and applies records by version.",
            (m["SequenceRecord"], m["WorkspaceRecord"]),
            (
                OperationDoc(
                    "gatewayPublishesConfigs",
                    "send",
                    "gateway",
                    ("SequenceRecord", "WorkspaceRecord"),
                    "Writes of the configuration API (and of `sme configs apply`).",
                ),
                OperationDoc(
                    "engineReadsConfigs",
                    "receive",
                    "engine",
                    ("SequenceRecord", "WorkspaceRecord"),
                    "Every engine keeps every configuration in memory.",
                ),
                OperationDoc(
                    "gatewayReadsConfigs",
                    "receive",
                    "gateway",
                    ("SequenceRecord", "WorkspaceRecord"),
                    "Every gateway keeps every configuration in memory.",
                ),
            ),
        ),
        settings.topic_dlq: ChannelDoc(
            "deadLetters",
            "Dead letters",
            "Records that could not be processed (`SME_TOPIC_DLQ`), with the reason and the "
            "original bytes, for an operator to inspect and replay: nothing is lost.",
            (m["DeadLetter"],),
            (
                OperationDoc(
                    "engineSendsDeadLetters",
                    "send",
                    "engine",
                    ("DeadLetter",),
                    "Events the intake refused.",
                ),
                OperationDoc(
                    "gatewaySendsDeadLetters",
                    "send",
                    "gateway",
                    ("DeadLetter",),
                    "Activity records the sink could not read.",
                ),
                OperationDoc(
                    "operatorReadsDeadLetters",
                    "receive",
                    "external",
                    ("DeadLetter",),
                    "Operators and their tools inspect and replay them.",
                ),
            ),
        ),
        settings.topic_stats: ChannelDoc(
            "stats",
            "Population statistics",
            "Per source partition, the cumulative counts the adaptive policies learn from "
            "(`SME_TOPIC_STATS`); a partition's new owner continues from the topic.",
            (m["StatsCounts"],),
            (
                OperationDoc(
                    "enginePublishesStats",
                    "send",
                    "engine",
                    ("StatsCounts",),
                    "Changed counts, every `SME_STATS_PUBLISH_SECONDS`.",
                ),
                OperationDoc(
                    "engineReadsStats",
                    "receive",
                    "engine",
                    ("StatsCounts",),
                    "Every engine sums every partition's counts.",
                ),
            ),
        ),
    }
    for channel, topic in settings.command_topics.items():
        docs[topic] = _command_channel(channel, m["Command"], settings.sender_group_prefix)
    values = {"users": "UserState", "ledger": "LedgerEntry", "positions": "Position"}
    for table in ENGINE_TABLES:
        docs[changelog_topic(settings, table)] = _changelog_channel(table, m[values[table]])
    return docs


def _command_channel(channel: Channel, command: MessageDoc, sender_groups: str) -> ChannelDoc:
    """The built-in senders (`sme sender …`) are listed with their consumer groups
    (`SME_SENDER_GROUP_PREFIX`-kind-channel): SMTP for email only, the webhook for any."""
    name = channel.value
    label = name.replace("_", " ")
    camel = "".join(part.title() for part in name.split("_"))
    return ChannelDoc(
        f"commands{camel}",
        f"{label} commands",
        f"Messages to send now on the {label} channel (`SME_TOPIC_COMMANDS_PREFIX`.{name}). "
        "A command is never a future time: deferrals are timers inside the engine. Senders "
        "dedupe on `command_id` and report outcomes as events carrying it.",
        (command,),
        (
            OperationDoc(
                f"engineSends{camel}Commands",
                "send",
                "engine",
                ("Command",),
                "Commands the sequences decided.",
            ),
            OperationDoc(
                f"gatewaySends{camel}TestCommands",
                "send",
                "gateway",
                ("Command",),
                "Test sends (`test: true`, counted in no metric).",
            ),
            OperationDoc(
                f"senderReceives{camel}Commands",
                "receive",
                "external",
                ("Command",),
                f"A {label} sender delivers each command once and publishes its outcome.",
            ),
            *(
                OperationDoc(
                    f"{kind}SenderReceives{camel}Commands",
                    "receive",
                    "sender",
                    ("Command",),
                    f"`sme sender {kind}`: {how}; its outcome goes to the events topic.",
                    f"{sender_groups}-{kind}-{name}",
                )
                for kind, how in _BUILT_IN_SENDERS
                if kind == "webhook" or channel is Channel.EMAIL
            ),
        ),
    )


_BUILT_IN_SENDERS = (
    ("webhook", "POSTs each command, signed, to the channel's URL"),
    ("smtp", "renders the step's email template and sends it through an SMTP server"),
)


def _changelog_channel(table: str, value: MessageDoc) -> ChannelDoc:
    camel = table.title()
    return ChannelDoc(
        f"{table}Changelog",
        f"Engine table `{table}` changelog (internal)",
        f"The Faust changelog of the engine's `{table}` table, co-partitioned with the inputs "
        "topic: a partition's new owner restores the table from it. The services create it "
        "(compacted) before the engine starts.",
        (value,),
        (
            OperationDoc(
                f"engineWrites{camel}",
                "send",
                "engine",
                (value.name,),
                "Each decided batch's table writes, after its outputs are acknowledged.",
            ),
            OperationDoc(
                f"engineRestores{camel}",
                "receive",
                "engine",
                (value.name,),
                "Table recovery when partitions are assigned.",
            ),
        ),
    )


def _topic_configuration(configs: dict[str, str]) -> dict[str, Any]:
    """The topic's configuration as created, typed as the Kafka binding expects."""
    out: dict[str, Any] = {}
    for name, value in sorted(configs.items()):
        out[name] = value.split(",") if name == "cleanup.policy" else int(value)
    return out


def build_asyncapi(settings: Settings | None = None) -> dict[str, Any]:
    """The document as a mapping (key order is the document's order)."""
    settings = settings or reference_settings()
    docs = _channel_docs(settings)
    strict = copartitioned(settings)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    used: dict[str, MessageDoc] = {}
    for spec in topic_specs(settings):
        doc = docs.pop(spec.name, None)
        if doc is None:
            raise ValueError(f"topic {spec.name} has no description in sme.contracts.asyncapi")
        partitions = f"{spec.partitions} partitions"
        if spec.name in strict:
            partitions += (
                " (`SME_TOPIC_PARTITIONS`: the inputs topic and the table changelogs must agree)"
            )
        elif spec.partitions == 1:
            partitions += " (always one: every reader reads it all)"
        else:
            partitions += " when the services create it (`SME_TOPIC_PARTITIONS`)"
        channels[doc.id] = {
            "address": spec.name,
            "title": doc.title,
            "description": f"{doc.description} Created with {partitions}.",
            "messages": {
                message.name: {"$ref": f"#/components/messages/{message.name}"}
                for message in doc.messages
            },
            "bindings": {
                "kafka": {
                    "topic": spec.name,
                    "partitions": spec.partitions,
                    "replicas": settings.topic_replication,
                    **(
                        {"topicConfiguration": _topic_configuration(spec.configs)}
                        if spec.configs
                        else {}
                    ),
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        for message in doc.messages:
            used[message.name] = message
        for op in doc.operations:
            operations[op.id] = _operation(doc.id, op)
    if docs:
        raise ValueError(f"described topics the services do not create: {sorted(docs)}")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Sequential Messaging Engine topics",
            "version": __version__,
            "description": "Every Kafka topic the engine and the gateway use, generated from "
            "the pydantic contracts (`sme schemas`). Topic names and groups are the defaults "
            "(`SME_TOPIC_*`, `SME_ENGINE_APP_ID`, `SME_GATEWAY_GROUP_ID`, "
            "`SME_SENDER_GROUP_PREFIX` rename them). Values "
            "are JSON (UTF-8); the services' producers compress with zstd. Operations are "
            "tagged with the service that performs them (`sender`: the built-in `sme sender` "
            "processes; `external`: your own producers, "
            "consumers and senders).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The broker of `make run`; elsewhere SME_KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {name: _message(used[name]) for name in sorted(used)},
            "schemas": _schemas(used.values()),
        },
    }


def _operation(channel_id: str, op: OperationDoc) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": op.action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": op.summary,
        "tags": [{"name": op.service}],
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in op.messages],
    }
    if op.group is not None:
        out["bindings"] = {
            "kafka": {
                "groupId": {"type": "string", "enum": [op.group]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        }
    return out


def _payload_name(message: MessageDoc) -> str:
    return message.payload if isinstance(message.payload, str) else message.payload.__name__


def _message(message: MessageDoc) -> dict[str, Any]:
    return {
        "name": message.name,
        "title": message.name,
        "summary": message.summary,
        "contentType": "application/json",
        "payload": {"$ref": SCHEMA_REF.format(model=_payload_name(message))},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": message.key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _schemas(messages: Any) -> dict[str, Any]:
    """JSON Schemas of every payload, one component per model (shared sub-models once)."""
    models = sorted(
        {m.payload for m in messages if not isinstance(m.payload, str)}, key=lambda m: m.__name__
    )
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template=SCHEMA_REF)
    schemas: dict[str, Any] = dict(top["$defs"])
    for message in messages:
        if isinstance(message.payload, str):
            schemas[message.payload] = INLINE_SCHEMAS[message.payload]
    return {name: schemas[name] for name in sorted(schemas)}


def render_asyncapi() -> str:
    """The document as YAML, stable (same input, same bytes) so drift is a diff."""
    import yaml

    return yaml.safe_dump(
        build_asyncapi(), sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
