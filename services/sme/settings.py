"""The one settings object. Every knob has a default, is read from `SME_*` env vars, is
validated at start-up, and is frozen so no code path can change it mid-flight."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sme.contracts.channels import Channel
from sme.core.tracking_links import MIN_SECRET_BYTES
from sme.storage.sql import checked_identifier

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class Settings(BaseSettings):
    """Runtime configuration for the engine, the gateway and the CLI (env prefix `SME_`)."""

    model_config = SettingsConfigDict(env_prefix="SME_", frozen=True, extra="ignore")

    # --- infrastructure -------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    clickhouse_dsn: SecretStr = Field(
        SecretStr(""),
        description="clickhouse-connect DSN; empty means chdb:///<data_dir>/clickhouse "
        "(embedded engine). http://user:pass@host:8123/db selects a server.",
    )
    clickhouse_database: str = Field("sme", description="Database that holds the SME tables.")
    data_dir: Path = Field(Path("./.data"), description="Local state: table stores, chdb.")

    # --- HTTP -----------------------------------------------------------------------------
    http_host: str = Field("127.0.0.1", description="Gateway bind address.")
    http_port: int = Field(8080, ge=1, le=65535, description="Gateway HTTP port.")
    api_keys_file: Path | None = Field(
        None, description="JSON list of {id, workspace_id, sha256} API keys (`sme keys create`)."
    )
    admin_api_key: SecretStr | None = Field(None, description="Bearer key for every workspace.")
    write_keys_file: Path | None = Field(
        None,
        description="JSON list of {id, workspace_id, sha256} ingest write keys "
        "(`sme keys create --write`); without it `/v1/*` ingest answers 401.",
    )
    engine_web_host: str = Field("127.0.0.1", description="Engine /metrics bind address.")
    engine_web_port: int = Field(6066, ge=1, le=65535, description="Engine /metrics port.")

    # --- engine ---------------------------------------------------------------------------
    engine_app_id: str = Field("sme-engine", description="Engine consumer group / Faust id.")
    engine_instance: str = Field(
        "0", description="Engine instance name; each one keeps its table store in its own dir."
    )
    engine_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb", description="Faust table store for per-user state."
    )
    engine_batch_size: int = Field(
        500, ge=1, le=10_000, description="Most inputs the engine decides in one batch."
    )
    engine_batch_seconds: float = Field(
        0.005,
        gt=0,
        le=5,
        description="Longest wait to fill a batch before deciding it (under load batches fill "
        "while the previous one is decided; this only delays inputs at low rates).",
    )
    engine_session_timeout_seconds: float = Field(
        8.0,
        ge=6,
        le=300,
        description="Kafka group session timeout: a killed engine's partitions move after it.",
    )
    engine_crash_at: str = Field(
        "",
        pattern=r"^((decided|delivering|delivered|stored|acknowledged|ticked):[1-9][0-9]{0,6})?$",
        description="Fault testing only: `point:N` makes the engine exit abruptly (like kill "
        "-9) at that point of its Nth batch: decided, delivering (half the outputs sent), "
        "delivered, stored (tables written, changelogs not yet acknowledged), acknowledged; "
        "ticked (the Nth tick record sent). Empty in production.",
    )
    timer_interval_seconds: float = Field(
        0.1, gt=0, le=5, description="How often the engine wakes due users."
    )
    stats_publish_seconds: float = Field(
        1.0, gt=0, le=60, description="How often changed population statistics are shared."
    )
    max_event_bytes: int = Field(
        64 * 1024, ge=256, le=16 * 1024 * 1024, description="Larger events are dead-lettered."
    )

    # --- gateway sink ---------------------------------------------------------------------
    gateway_group_id: str = Field("sme-gateway", description="Gateway sink consumer group.")
    sink_batch_size: int = Field(
        20_000,
        ge=1,
        le=100_000,
        description="Rows per insert (ClickHouse does ~10 µs of work per row per insert; "
        "fewer, larger inserts are its advice).",
    )
    sink_flush_seconds: float = Field(1.0, gt=0, le=60, description="Max wait before insert.")
    sink_retry_max_seconds: float = Field(30.0, gt=0, description="Cap of the retry backoff.")
    erasure_rate_per_second: float = Field(
        20.0, gt=0, le=100_000, description="Erasure requests per second per workspace (429)."
    )
    erasure_burst: int = Field(
        200, ge=1, le=1_000_000, description="Erasure requests a workspace may send at once."
    )
    enrollment_rate_per_second: float = Field(
        1.0, gt=0, le=10_000, description="List-enrollment requests per second per workspace."
    )
    enrollment_burst: int = Field(
        20, ge=1, le=100_000, description="List-enrollment requests a workspace may send at once."
    )

    tracking_secret: SecretStr | None = Field(
        None,
        description="Key (at least 32 bytes) signing tracking links (`/t/o`, `/t/c`, `/t/u`); "
        "unset, those routes answer 503. Senders mint links with the same key.",
    )
    tracking_previous_secret: SecretStr | None = Field(
        None,
        description="The key before the last rotation: links it signed still work (new ones "
        "are signed by senders with the new SME_TRACKING_SECRET).",
    )
    tracking_rate_per_second: float = Field(
        500.0, gt=0, le=1_000_000, description="Tracking hits recorded per second per workspace."
    )
    tracking_burst: int = Field(
        5000, ge=1, le=10_000_000, description="Tracking hits a workspace may record at once."
    )
    ingest_rate_per_second: float = Field(
        50.0, gt=0, le=100_000, description="Ingest (`/v1/*`) calls per second per workspace."
    )
    ingest_burst: int = Field(
        500, ge=1, le=1_000_000, description="Ingest calls a workspace may send at once."
    )

    automation_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often automation rules are evaluated."
    )
    sql_max_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest run of one analyst query (POST /api/v1/sql)."
    )

    # --- topics ---------------------------------------------------------------------------
    topic_events: str = Field("sme.events", description="Engagement events in, key = user id.")
    topic_commands_prefix: str = Field(
        "sme.commands", description="Commands out: <prefix>.<channel>, key = user id."
    )
    topic_activities: str = Field("sme.activities", description="Decisions and observations.")
    topic_configs: str = Field("sme.configs", description="Compacted configurations.")
    topic_dlq: str = Field("sme.dlq", description="Dead letters with reasons.")
    topic_inputs: str = Field(
        "sme.inputs",
        description="Engine-internal: valid events repartitioned by (workspace, user), timer "
        "ticks and erase requests, each on the partition that owns the user's state.",
    )
    topic_stats: str = Field("sme.stats", description="Population statistics (compacted).")
    topic_partitions: int = Field(6, ge=1, le=1000, description="Partitions of new topics.")
    topic_replication: int = Field(1, ge=1, le=5, description="Replication of new topics.")

    # --- senders (`sme sender …`) -----------------------------------------------------------
    sender_group_prefix: str = Field(
        "sme-sender", description="Senders' consumer groups: <prefix>-<kind>-<channel>."
    )
    sender_webhook_urls: dict[Channel, AnyHttpUrl] = Field(
        default_factory=dict,
        description='Webhook URL per channel, JSON, e.g. {"email": "https://example.com/hook"}.',
    )
    sender_webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC-SHA256 key of the X-SME-Signature header (required)."
    )
    sender_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Longest wait for one delivery attempt."
    )
    sender_max_attempts: int = Field(
        5, ge=1, le=100, description="Attempts per command, the first included."
    )
    sender_backoff_base_seconds: float = Field(
        0.5, ge=0, le=60, description="First retry waits up to this; doubles per attempt."
    )
    sender_backoff_max_seconds: float = Field(
        30.0, ge=0, le=3600, description="Cap of one retry's wait (full jitter below it)."
    )
    sender_concurrency: int = Field(
        16, ge=1, le=1000, description="Commands one sender delivers at once."
    )
    sender_dedupe_size: int = Field(
        100_000, ge=1, le=10_000_000, description="Settled command ids a sender remembers."
    )
    sender_smtp_host: str = Field("127.0.0.1", description="SMTP server of `sme sender smtp`.")
    sender_smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port.")
    sender_smtp_tls: Literal["auto", "starttls", "tls", "none"] = Field(
        "auto",
        description="auto: STARTTLS when the server offers it; starttls: required; tls: "
        "implicit TLS (port 465); none: plain text.",
    )
    sender_smtp_username: str | None = Field(None, description="SMTP login (unset: none).")
    sender_smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    sender_smtp_from: str = Field(
        "", description="From address, e.g. 'Acme <news@acme.example>' (required)."
    )
    sender_smtp_templates_dir: Path | None = Field(
        None, description="Email templates: <id>.subject.txt plus <id>.html and/or <id>.txt."
    )
    sender_smtp_address_attribute: str = Field(
        "email",
        min_length=1,
        max_length=128,
        description="Profile attribute (in the data allow-list) holding the recipient address.",
    )
    sender_smtp_unsubscribe_mailto: str | None = Field(
        None, description="Address for a mailto: List-Unsubscribe entry (unset: none)."
    )
    sender_tracking_base_url: AnyHttpUrl | None = Field(
        None,
        description="The gateway's public URL: with SME_TRACKING_SECRET, senders render "
        "signed open, click and unsubscribe links under it.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")

    @model_validator(mode="before")
    @classmethod
    def _default_dsn(cls, data: Any) -> Any:
        if isinstance(data, dict) and not str(data.get("clickhouse_dsn") or ""):
            data_dir = Path(str(data.get("data_dir") or "./.data")).resolve()
            data["clickhouse_dsn"] = f"chdb://{data_dir / 'clickhouse'}"
        return data

    @field_validator("clickhouse_dsn")
    @classmethod
    def _known_scheme(cls, v: SecretStr) -> SecretStr:
        scheme = v.get_secret_value().split("://", 1)[0]
        if scheme not in {"chdb", "http", "https", "clickhouse", "clickhouses"}:
            raise ValueError("must start with chdb://, http://, https:// or clickhouse://")
        return v

    @field_validator("tracking_secret", "tracking_previous_secret")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None  # empty as unset: tracking off
        if len(v.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes (e.g. 64 hex digits)")
        return v

    @field_validator("clickhouse_database")
    @classmethod
    def _safe_identifier(cls, v: str) -> str:
        return checked_identifier(v)

    @field_validator(
        "topic_events",
        "topic_commands_prefix",
        "topic_activities",
        "topic_configs",
        "topic_dlq",
        "topic_inputs",
        "topic_stats",
    )
    @classmethod
    def _legal_topic(cls, v: str) -> str:
        if not _TOPIC.match(v):
            raise ValueError("topic names use letters, digits, '.', '_' and '-' only")
        return v

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.resolve()

    # --- derived --------------------------------------------------------------------------
    @property
    def is_embedded_clickhouse(self) -> bool:
        return self.clickhouse_dsn.get_secret_value().startswith("chdb://")

    def command_topic(self, channel: Channel) -> str:
        return f"{self.topic_commands_prefix}.{channel.value}"

    @property
    def command_topics(self) -> dict[Channel, str]:
        return {channel: self.command_topic(channel) for channel in Channel}

    @property
    def engine_table_dir(self) -> Path:
        return self.data_dir / "engine" / self.engine_instance


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and explicit overrides, for tests and the CLI)."""
    return Settings(**overrides)
