"""Ordered, idempotent schema migrations: `NNNN_name.sql` files applied in order at start-up,
recorded in `schema_migrations`, each statement written to be safe to run again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

from sme.storage.sql import checked_identifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(database: str) -> list[Migration]:
    """Read the packaged migrations; `{database}` is the validated database identifier."""
    found = []
    for entry in resources.files("sme.storage").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        sql = entry.read_text(encoding="utf-8").replace("{database}", database)
        statements = tuple(s.strip() for s in _strip_comments(sql).split(";") if s.strip())
        found.append(Migration(int(number), rest.removesuffix(".sql"), statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


def migrate(client: Client, database: str) -> list[int]:
    """Apply what is missing; return the versions applied now."""
    database = checked_identifier(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {
        row[0]
        for row in client.query(
            f"SELECT version FROM {database}.schema_migrations"  # noqa: S608 - checked identifier
        ).result_rows
    }
    applied = []
    for migration in load_migrations(database):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
            database=database,
        )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
