"""One ClickHouse store per process, embedded (chdb) or a server, chosen by the DSN alone.

Two handles: a writer for the sink and a reader for the HTTP path, each driven from its own
single thread. chdb serialises calls on one handle, so a long insert never delays a dashboard
query, and no blocking call ever runs on the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

from sme.errors import StorageUnavailableError, StoreInUseError
from sme.storage.migrations import migrate
from sme.storage.sql import checked_identifier
from sme.storage.sql_sandbox import ENGINE_LIMITS, HIDDEN_TABLES, sandboxed

log = logging.getLogger(__name__)
T = TypeVar("T")
ERASABLE_TABLES = ("activities", "decision_log")  # every table holding user ids


class StoreLock:
    """An exclusive flock beside an embedded store, holding the owner's PID, so a second
    opener fails at once with who owns it instead of hanging or failing obscurely."""

    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(store_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise StoreInUseError(
                str(self.path.with_suffix("")), int(owner) if owner.isdigit() else None
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def embedded_path(dsn: str) -> Path | None:
    """The store directory of a `chdb://` DSN, None for a server DSN."""
    if not dsn.startswith("chdb://"):
        return None
    path = urlsplit(dsn).path
    if not path or path == ":memory:":
        raise ValueError("embedded ClickHouse needs a directory: chdb:///absolute/path")
    return Path(path)


class WriteFaults:
    """The fault seam of the writer path, for outage drills and tests: while it is on, every
    write (insert, statement, erasure) fails on the writer thread the way a lost connection
    does, before it reaches ClickHouse; reads are untouched. Off by default."""

    def __init__(self) -> None:
        self._reason: str | None = None
        self._remaining: int | None = None
        self.refused = 0

    @property
    def active(self) -> bool:
        return self._reason is not None

    def fail(self, reason: str = "connection refused", times: int | None = None) -> None:
        """Refuse writes from now on: every one, or only the next `times`."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        self._remaining = times
        self._reason = reason

    def heal(self) -> None:
        self._reason = None
        self._remaining = None

    def check(self, operation: str) -> None:
        """Raise for this write if the switch is on (called on the writer thread)."""
        reason = self._reason
        if reason is None:
            return
        self.refused += 1
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self.heal()
        raise StorageUnavailableError(f"ClickHouse {operation} failed: {reason} (injected fault)")


class ClickHouseStore:
    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = checked_identifier(database)
        self.write_faults = WriteFaults()
        self._lock: StoreLock | None = None
        self._writer: Client | None = None
        self._reader: Client | None = None
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="ch-write")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="ch-read")
        self._analyst: Client | None = None
        self._analyst_thread = ThreadPoolExecutor(1, thread_name_prefix="ch-analyst")

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def open(self) -> ClickHouseStore:
        """Lock (embedded only), connect both handles and apply migrations. Blocking: call it
        at start-up or through `open_async`."""
        path = embedded_path(self.dsn)
        if path is not None:
            self._lock = StoreLock(path)
            self._lock.acquire()
        try:
            self._writer = clickhouse_connect.get_client(dsn=self.dsn)
            self._reader = clickhouse_connect.get_client(dsn=self.dsn)
            applied = migrate(self._writer, self.database)
            if applied:
                log.info("ClickHouse %s: applied migrations %s", self.database, applied)
        except BaseException:
            self.close()
            raise
        return self

    async def open_async(self) -> ClickHouseStore:
        await asyncio.get_running_loop().run_in_executor(self._write_thread, self.open)
        return self

    def close(self) -> None:
        for client in (self._writer, self._reader, self._analyst):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing is best effort; the lock release below matters
                    log.exception("closing a ClickHouse client failed")
        self._writer = self._reader = self._analyst = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._write_thread, self.close)
        for pool in (self._write_thread, self._read_thread, self._analyst_thread):
            pool.shutdown(wait=False)

    # --- writes ---------------------------------------------------------------------------
    async def insert(
        self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]
    ) -> None:
        writer = self._require(self._writer)

        def run() -> None:
            self.write_faults.check(f"insert into {table}")
            writer.insert(table, rows, column_names=list(columns), database=self.database)

        await asyncio.get_running_loop().run_in_executor(self._write_thread, run)

    async def execute(self, sql: str, parameters: dict[str, Any]) -> None:
        """A write statement on the writer handle (`{db}` is the database identifier)."""
        writer = self._require(self._writer)
        statement = sql.replace("{db}", self.database)

        def run() -> None:
            self.write_faults.check("statement")
            writer.command(statement, parameters=parameters)

        await asyncio.get_running_loop().run_in_executor(self._write_thread, run)

    async def erase_users(self, users: Sequence[tuple[str, str]]) -> None:
        """Delete every row of these (workspace, user) pairs from each table holding user ids:
        one lightweight delete per table for the whole set (gone from reads at once,
        physically removed at the next merge), so a burst of erasures costs a few
        mutations, not one per user."""
        writer = self._require(self._writer)
        pairs = sorted(set(users))
        workspaces = sorted({w for w, _ in pairs})

        def run() -> None:
            self.write_faults.check("erasure")
            for table in ERASABLE_TABLES:
                writer.command(
                    f"DELETE FROM {self.database}.{table} "  # noqa: S608 - checked identifiers
                    "WHERE workspace_id IN {ws:Array(String)} "
                    "AND (workspace_id, user_id) IN {pairs:Array(Tuple(String, String))}",
                    parameters={"ws": workspaces, "pairs": pairs},
                )

        if pairs:
            await asyncio.get_running_loop().run_in_executor(self._write_thread, run)

    # --- reads ----------------------------------------------------------------------------
    async def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        """A read on the reader handle. `sql` may use `{db}` for the database identifier and
        `{name:Type}` placeholders bound server-side from `parameters`."""
        reader = self._require(self._reader)
        statement = sql.replace("{db}", self.database)

        def run() -> QueryResult:
            return reader.query(statement, parameters=parameters or {})

        return await asyncio.get_running_loop().run_in_executor(self._read_thread, run)

    async def raw(self, sql: str, parameters: dict[str, Any], fmt: str) -> bytes:
        """A read returned in a ClickHouse output format (CSVWithNames, Parquet, ...)."""
        reader = self._require(self._reader)
        statement = sql.replace("{db}", self.database)

        def run() -> bytes:
            return bytes(reader.raw_query(statement, parameters=parameters, fmt=fmt))

        return await asyncio.get_running_loop().run_in_executor(self._read_thread, run)

    async def analyst_query(self, sql: str, max_rows: int, max_seconds: float) -> QueryResult:
        """An ad-hoc analyst query, fenced twice. First `sandboxed` lets through one SELECT over
        this database's own tables (listed from system.tables now, less `HIDDEN_TABLES`)
        with allowed functions only, and returns the text to run regenerated from the checked
        tree (raises `SqlRefused` otherwise). Then the engine runs that one statement with
        `ENGINE_LIMITS` in its own SETTINGS clause: readonly=1 (no writes, no table
        functions reaching files or hosts, and no setting the query could lift), time, row,
        read and memory limits. Each query gets a client of its own, closed afterwards: a chdb
        handle keeps state from a failed or timed-out query (the next query on it got the
        previous one's rows, or failed), and no session setting ever reaches the service's
        own handles."""

        def run() -> QueryResult:
            client = clickhouse_connect.get_client(dsn=self.dsn, database=self.database)
            self._analyst = client  # closed by close() if the store shuts down meanwhile
            try:
                listed = client.query(
                    "SELECT name FROM system.tables WHERE database = {db:String}",
                    parameters={"db": self.database},
                )
                tables = frozenset(row[0] for row in listed.result_rows) - HIDDEN_TABLES
                statement = sandboxed(sql, self.database, tables)
                settings = dict(ENGINE_LIMITS)
                settings["max_execution_time"] = max_seconds
                settings["max_result_rows"] = max_rows + 1  # one more tells `truncated`
                return client.query(statement, settings=settings)
            finally:
                self._analyst = None
                client.close()

        return await asyncio.get_running_loop().run_in_executor(self._analyst_thread, run)

    async def ping(self) -> bool:
        try:
            result = await self.query("SELECT 1")
        except Exception:
            return False
        return bool(result.result_rows == [(1,)])

    @staticmethod
    def _require(client: Client | None) -> Client:
        if client is None:
            raise RuntimeError("ClickHouseStore is not open")
        return client
