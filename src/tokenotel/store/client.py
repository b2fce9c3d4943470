"""The ClickHouse store: embedded chDB in the data directory, or a server; same SQL for both."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import chdb
import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

from tokenotel.errors import (
    DataDirInUse,
    DeadlineExceeded,
    PermanentError,
    SchemaOutdated,
    StoreUnavailable,
)
from tokenotel.store.migrate import Migration, exists, migrate, pending
from tokenotel.store.retention import apply_retention, retention_changes

log = logging.getLogger(__name__)

EVENTS_TABLE = "token_events"
#: The settings of an insert into EVENTS_TABLE whose rows its writer feeds to FEED_TABLE (the
#: rollups' source, store/migrate.py) itself once committed: the view between the two tables
#: reads the log comment.
FED_LATER = {"log_comment": "tokenotel: rollups fed after commit"}
#: The alerts the detection rules raised (migration 0009, docs/detection.md).
ALERTS_TABLE = "token_alerts"
#: The service's own counters, a row a minute (docs/schema.md).
SERVICE_MINUTES_TABLE = "service_minutes"
#: tokenotel drops duplicate events itself before inserting, so ClickHouse need not merge
#: rows of a ReplacingMergeTree while inserting: that saves about a third of insert CPU.
INSERT_SETTINGS = {"optimize_on_insert": 0}
#: Where in the data directory the embedded engine finds the protobuf schemas of query_protobuf.
SCHEMA_DIR = "format_schemas"
#: A directory of secrets (the fingerprint key, credentials) is the user's alone.
DATA_DIR_MODE = 0o700
#: ClickHouse's answers to a statement the user may not run: ACCESS_DENIED, and READONLY for
#: a user in read-only mode.
_DENIED = ("ACCESS_DENIED", "Code: 497.", "READONLY", "Code: 164.")


@dataclass(frozen=True)
class ProtobufSchema:
    """A protobuf schema (proto3 text without imports) and the message of its rows."""

    text: str
    message: str


def with_settings(sql: str, settings: dict[str, Any] | None) -> str:
    """``sql`` (a SELECT without a SETTINGS clause) with ``settings`` in a SETTINGS clause of its
    own: the embedded engine's client would set each one before the query and back after it,
    two statements a setting and one more to read them all."""
    return f"{sql}\n{_settings_clause(settings)}" if settings else sql


def _settings_clause(settings: dict[str, Any]) -> str:
    return "SETTINGS " + ", ".join(
        f"{name} = {_literal(value)}" for name, value in settings.items()
    )


def _literal(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return str(int(value) if isinstance(value, bool) else value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _without_length(answer: bytes) -> bytes:
    """ProtobufList's output without the length it begins with (nothing for no rows)."""
    at = 0
    while at < len(answer) and answer[at] & 0x80:
        at += 1
    return answer[at + 1 :]


class ClickHouseServer:
    """Connection details of a ClickHouse server, from its URL."""

    def __init__(self, url: str, default_database: str) -> None:
        parts = urlsplit(url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (8443 if self.secure else 8123)
        self.username = unquote(parts.username or "default")
        self.password = unquote(parts.password or "")
        self.database = parts.path.strip("/") or default_database

    def __repr__(self) -> str:  # never show the password
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class StoreOptions:
    """Where the events live and how the store treats them (from the settings)."""

    data_dir: Path  # the embedded store, when there is no server
    server: ClickHouseServer | None
    database: str
    cluster: str | None  # cluster mode: the schema is managed by `tokenotel migrate --cluster`
    retention_days: int | None  # None: leave the TTLs as they are (the reading commands)
    retry_after_s: float  # how long clients are asked to wait while the store fails
    #: Nice value of the inserts and (embedded store) the merges, so reads go first; ClickHouse
    #: applies it only with CAP_SYS_NICE, and ignores it otherwise.
    ingest_nice: int = 0


def may_renice_threads() -> bool:
    """Whether this process may give a thread its priority back after lowering it, as
    ClickHouse does after each query with ``os_thread_priority``: tried on a thread of its
    own. ClickHouse asks only for CAP_SYS_NICE, which a user namespace grants without the
    right to raise a priority again; there, the query's end would abort the process."""
    outcome: list[bool] = []

    def attempt() -> None:
        thread = threading.get_native_id()
        try:
            now = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(now + 1, 19))
            os.setpriority(os.PRIO_PROCESS, thread, now)
            outcome.append(now < 19)
        except OSError:
            outcome.append(False)

    probe = threading.Thread(target=attempt, name="tokenotel-nice-probe")
    probe.start()
    probe.join()
    return outcome[0]


class Store:
    """One connection to ClickHouse, opened lazily and re-opened after failures.

    Until the store is reachable every call raises StoreUnavailable, so the service can start
    and stay up while ClickHouse is down.
    """

    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        self._client: Client | None = None
        self._lock = threading.Lock()
        # The writer's inserts and the checkpoints share the one connection: one at a time.
        self._write_lock = threading.RLock()
        self.applied_migrations: list[Migration] = []
        # Reads run in many threads beside the writer's inserts, and one chDB handle is one
        # connection: each thread queries through a client of its own (a new embedded handle
        # costs 0.1-0.3 ms, once a thread).
        self._thread = threading.local()
        self._readers: list[Client] = []
        self._schemas_written: set[str] = set()
        #: The embedded engine's handle for inserts (_insert_in_place), opened on the first.
        self._inserter: Any = None
        self._insert_settings = dict(INSERT_SETTINGS)
        #: Whether the inserts and (embedded) merges run ``ingest_nice`` below the reads.
        self.renices_threads = bool(options.ingest_nice) and may_renice_threads()
        if self.renices_threads:
            self._insert_settings["os_thread_priority"] = options.ingest_nice
        self._generation = 0  # closing makes every thread's client one to replace
        #: Told every statement the store's clients send, before it is sent (tests record
        #: them to hold the service to the writer role's grants, see store/grants.py).
        self.on_statement: Callable[[str], None] | None = None

    @property
    def target(self) -> str:
        """Where the data lives, for logs and messages (never with a password)."""
        if self.options.server is not None:
            return repr(self.options.server)
        return f"embedded ClickHouse in {self.options.data_dir.resolve()}"

    def connect(self) -> Client:
        """Opens the connection and brings the schema up to date where it is behind (see
        _prepare_schema); raises StoreUnavailable, or SchemaOutdated when this user may not."""
        with self._lock:
            if self._client is None:
                self._client = self._open()
            return self._client

    def _open(self) -> Client:
        options = self.options
        try:
            if options.server is None:
                options.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            bootstrap = self._new_client(None)
            try:
                if not exists(bootstrap, f"DATABASE {options.database}"):
                    if options.cluster is not None:
                        raise SchemaOutdated(
                            f"cluster {options.cluster} has no database {options.database}: "
                            f"run `tokenotel migrate --cluster {options.cluster}` first"
                        )
                    create = f"CREATE DATABASE IF NOT EXISTS {options.database}"
                    self._change_schema(
                        f"has no database {options.database}", lambda: bootstrap.command(create)
                    )
            finally:
                bootstrap.close()
            client = self._new_client(options.database)
            try:
                if options.cluster is None:
                    self._prepare_schema(client)
                else:
                    _check_cluster_schema(client, options.cluster)
            except BaseException:
                client.close()  # (an embedded engine stays open while a client does)
                raise
        except PermanentError:
            raise
        except Exception as e:
            if options.server is None and _held_elsewhere(options.data_dir, str(e)):
                raise DataDirInUse(
                    f"the data directory {options.data_dir} is in use by another process (a "
                    "running `tokenotel serve`?): read through its query API with --server "
                    "HOST:PORT, or stop it first (one process per data directory)"
                ) from None
            raise self._unavailable(f"cannot reach {self.target}", e) from None
        log.info("store ready: %s", self.target)
        return client

    def _prepare_schema(self, client: Client) -> None:
        """Checks the schema with SELECTs and changes it only where it is behind: a service
        running as the writer role (no DDL, docs/least-privilege.md) starts on a current schema
        without sending a single DDL statement."""
        behind = pending(client)
        if behind:
            first = behind[0]
            self.applied_migrations = self._change_schema(
                f"lacks migration {first.version:04d}_{first.name}", lambda: migrate(client)
            )
        days = self.options.retention_days
        if days is None:
            return
        tables = retention_changes(client, days)
        if not tables:
            return
        try:
            apply_retention(client, days, tables)
        except Exception as e:
            if not _denied(e):
                raise
            # The trail goes on being written: how long it is kept is the migrator's to change.
            log.warning(
                "retention of %s on %s is not %d days (retention_days), and this user may not "
                "change it: run `tokenotel migrate` with the same retention_days as the "
                "migrator (docs/least-privilege.md)",
                ", ".join(tables),
                self.target,
                days,
            )

    def _change_schema(self, lack: str, change: Callable[[], Any]) -> Any:
        """Runs ``change`` (DDL); a user that may not run it gets the command that can."""
        try:
            return change()
        except Exception as e:
            if not _denied(e):
                raise
            raise SchemaOutdated(
                f"the schema in {self.target} {lack}, and this user may not change it: run "
                "`tokenotel migrate --clickhouse-url …` as the migrator user first "
                "(docs/least-privilege.md)"
            ) from None

    def _new_client(self, database: str | None) -> Client:
        """A client of the embedded store or the server, on ``database`` (None: none)."""
        if self.options.server is None:
            dsn = f"chdb://{self.options.data_dir.resolve()}"
            engine = {}  # options of the engine, applied by the first client to open it
            if self.renices_threads:
                engine["os_threads_nice_value_merge_mutate"] = self.options.ingest_nice
            client = clickhouse_connect.get_client(
                dsn=dsn, database=database, chdb_options=engine or None
            )
        else:
            client = server_client(self.options.server, database)
        if self.on_statement is not None:
            _announce(client, self.on_statement)
        return client

    def ready(self) -> bool:
        """True when the store answers (whether writes succeed is the writer's to say)."""
        try:
            client = self.connect()
        except StoreUnavailable:
            return False
        return self.options.server is None or client.ping()

    def insert_arrow(
        self, table: str, data: pa.Table, settings: dict[str, Any] | None = None
    ) -> None:
        """Inserts and returns once the rows are committed; raises StoreUnavailable.
        ``settings``: the insert's own, beside the store's."""
        client = self.connect()
        settings = self._insert_settings | (settings or {})
        try:
            with self._write_lock:
                if self.options.server is None:
                    self._insert_in_place(table, data, settings)
                else:
                    client.insert_arrow(table, data, settings=settings)
        except Exception as e:
            raise self._unavailable(f"insert into {self.target} failed", e) from e

    def _insert_in_place(self, table: str, data: pa.Table, settings: dict[str, Any]) -> None:
        """An insert into the embedded engine that reads ``data``'s Arrow columns where they
        are: chDB's table function ``Python`` finds the table by its name in this frame. (The
        embedded engine's client would write them as an Arrow stream to a temporary file for
        the engine to read back: a third of the CPU of an insert of 20,000 rows.)"""
        if self._inserter is None:
            inserter = chdb.connect(str(self.options.data_dir.resolve()))  # (the clients' path)
            try:
                inserter.query(f"USE {self.options.database}")
            except BaseException:
                inserter.close()  # (an open handle keeps the engine open)
                raise
            self._inserter = inserter
        columns = ", ".join(quote_identifier(name) for name in data.column_names)
        sql = (
            f"INSERT INTO {table} ({columns}) "
            f"{_settings_clause(settings)} SELECT * FROM Python(data)"
        )
        if self.on_statement is not None:
            self.on_statement(sql)
        self._inserter.query(sql)

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        *,
        settings: dict[str, Any] | None = None,
    ) -> QueryResult:
        """Runs a SELECT (with ClickHouse ``settings``, e.g. a time limit); raises
        StoreUnavailable."""
        client = self._reader()
        try:
            return client.query(with_settings(sql, settings), parameters=parameters)
        except Exception as e:
            raise self._read_failed(e) from e

    def query_protobuf(
        self,
        sql: str,
        parameters: dict[str, Any] | None,
        schema: ProtobufSchema,
        *,
        settings: dict[str, Any] | None = None,
    ) -> bytes:
        """Runs a SELECT whose columns are named after the fields of ``schema``'s message and
        returns its rows serialized by ClickHouse (its ProtobufList format) as the body of a
        message whose field 1 repeats that message: no row passes through Python. Raises
        as ``query``."""
        client = self._reader()
        if self.options.server is None:  # (the engine would keep a schema given as text in cwd)
            given = {
                "format_schema_source": "file",
                "format_schema": str(self._schema_file(schema)),
            }
        else:
            given = {"format_schema_source": "string", "format_schema": schema.text}
        format_settings = given | {"format_schema_message_name": schema.message}
        try:
            query = with_settings(sql, (settings or {}) | format_settings)
            answer = client.raw_query(query, parameters, fmt="ProtobufList")
        except Exception as e:
            raise self._read_failed(e) from e
        return _without_length(answer)

    def _read_failed(self, error: Exception) -> DeadlineExceeded | StoreUnavailable:
        if "TIMEOUT_EXCEEDED" in str(error):  # (max_execution_time, from a deadline)
            return DeadlineExceeded(
                f"the query on {self.target} ran past its time limit and was stopped"
            )
        return self._unavailable(f"query on {self.target} failed", error)

    def _schema_file(self, schema: ProtobufSchema) -> Path:
        """``schema`` as a file in the data directory, for the embedded engine to read."""
        path = self.options.data_dir.resolve() / SCHEMA_DIR / f"{schema.message}.proto"
        with self._lock:
            if schema.message not in self._schemas_written:
                path.parent.mkdir(mode=DATA_DIR_MODE, exist_ok=True)
                path.write_text(schema.text, encoding="utf-8")
                self._schemas_written.add(schema.message)
        return path

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """Runs a SELECT and returns its rows as Arrow columns; raises StoreUnavailable."""
        client = self._reader()
        try:
            return client.query_arrow(sql, parameters=parameters)
        except Exception as e:
            raise self._unavailable(f"query on {self.target} failed", e) from e

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Runs a statement that returns no rows; raises StoreUnavailable."""
        client = self.connect()
        try:
            with self._write_lock:
                return client.command(sql, parameters=parameters)
        except Exception as e:
            raise self._unavailable(f"command on {self.target} failed", e) from e

    def _unavailable(self, what: str, error: Exception) -> StoreUnavailable:
        """The error for a failed call, asking clients to come back after ``retry_after_s``."""
        return StoreUnavailable(f"{what}: {_first_line(str(error))}", self.options.retry_after_s)

    def _reader(self) -> Client:
        """This thread's client for reads (the store connected, migrated, first)."""
        self.connect()
        held = getattr(self._thread, "client", None)
        if held is not None and held[0] == self._generation:
            return held[1]
        try:
            client = self._new_client(self.options.database)
        except Exception as e:
            raise self._unavailable(f"cannot reach {self.target}", e) from None
        with self._lock:
            self._readers.append(client)
            self._thread.client = (self._generation, client)
        return client

    def release_reader(self) -> None:
        """Closes this thread's client for reads, if it has one: for a thread that ends."""
        held = getattr(self._thread, "client", None)
        if held is None:
            return
        self._thread.client = None
        with self._lock:
            if held[1] not in self._readers:
                return  # closed with the store already
            self._readers.remove(held[1])
        held[1].close()

    def close(self) -> None:
        with self._lock:
            for client in self._readers:
                client.close()
            self._readers = []
            self._generation += 1
            if self._inserter is not None:
                self._inserter.close()
                self._inserter = None
            if self._client is not None:
                self._client.close()
                self._client = None


def server_client(server: ClickHouseServer, database: str | None = None) -> Client:
    """A client of a ClickHouse server (HTTP); raises when the server does not answer."""
    return clickhouse_connect.get_client(
        host=server.host,
        port=server.port,
        username=server.username,
        password=server.password,
        secure=server.secure,
        database=database,
        connect_timeout=3,
        send_receive_timeout=60,
    )


def _held_elsewhere(data_dir: Path, message: str) -> bool:
    """Whether an embedded store failed to open because another process holds the directory:
    ClickHouse keeps an exclusive lock on its ``status`` file while it runs (chDB reports only
    "Error initializing EmbeddedServer" then)."""
    if "Cannot lock file" in message or "already initialized with path" in message:
        return True
    try:
        with (data_dir / "status").open("rb") as status:
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(status, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _check_cluster_schema(client: Client, cluster: str) -> None:
    """In cluster mode the service never changes the schema: it must be up to date already."""
    missing = pending(client)
    if missing:
        raise SchemaOutdated(
            f"the schema on cluster {cluster} lacks migration {missing[0].version:04d}_"
            f"{missing[0].name}: run `tokenotel migrate --cluster {cluster}` first"
        )


def _denied(error: Exception) -> bool:
    """Whether ClickHouse refused ``error``'s statement for the user's lack of rights."""
    return any(mark in str(error) for mark in _DENIED)


def _announce(client: Client, on_statement: Callable[[str], None]) -> None:
    """Makes ``client`` tell ``on_statement`` each statement before sending it (an insert as
    ``INSERT INTO <table> FORMAT …``)."""

    def statement_first(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(sql: str, *args: Any, **kwargs: Any) -> Any:
            on_statement(sql)
            return method(sql, *args, **kwargs)

        return call

    def insert_first(method: Callable[..., Any], data_format: str) -> Callable[..., Any]:
        def call(table: str, *args: Any, **kwargs: Any) -> Any:
            on_statement(f"INSERT INTO {table} FORMAT {data_format}")
            return method(table, *args, **kwargs)

        return call

    # Instance attributes, so only this client reports; its own calls stay as they are.
    setattr(client, "query", statement_first(client.query))  # noqa: B010
    setattr(client, "command", statement_first(client.command))  # noqa: B010
    setattr(client, "insert", insert_first(client.insert, "Native"))  # noqa: B010
    setattr(client, "insert_arrow", insert_first(client.insert_arrow, "Arrow"))  # noqa: B010
