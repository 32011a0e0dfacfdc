"""The project's exception tree: one root, so adapters can catch ours apart from bugs."""


class SmeError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(SmeError):
    """Settings or deployment are wrong; raised at start-up, never mid-stream."""


class StoreInUseError(SmeError):
    """The embedded ClickHouse store is owned by another process (chdb allows one)."""

    def __init__(self, path: str, pid: int | None) -> None:
        owner = f"PID {pid}" if pid else "another process"
        super().__init__(
            f"ClickHouse store {path} is in use by {owner}; only one process may open an "
            "embedded store (stop it, or point SME_CLICKHOUSE_DSN at a ClickHouse server)"
        )
        self.path = path
        self.pid = pid


class StorageUnavailableError(SmeError):
    """ClickHouse did not accept a write or query; callers retry, never drop."""


class BrokerUnavailableError(SmeError):
    """Kafka could not be reached within the start-up wait."""


class TopicLayoutError(ConfigurationError):
    """A topic that must be co-partitioned with the engine's inputs has another count."""
