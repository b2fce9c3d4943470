"""The ClickHouse store: embedded chDB in the data directory, or a server; same SQL for both."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

from tokenotel.config import ClickHouseServer, Settings
from tokenotel.errors import PermanentError, StoreUnavailable
from tokenotel.store.migrate import Migration, applied_versions, available, migrate
from tokenotel.store.retention import DEFAULT_RETENTION_DAYS, apply_retention

log = logging.getLogger(__name__)

EVENTS_TABLE = "token_events"
_LOCKED_HINT = "Cannot lock file"
#: tokenotel drops duplicate events itself before inserting, so ClickHouse need not merge
#: rows of a ReplacingMergeTree while inserting: that saves about a third of insert CPU.
INSERT_SETTINGS = {"optimize_on_insert": 0}


class DataDirInUse(PermanentError):
    """Another process (a running ``tokenotel serve``) holds the embedded store."""


class Store:
    """One connection to ClickHouse, opened lazily and re-opened after failures.

    Until the store is reachable every call raises StoreUnavailable, so the service can start
    and stay up while ClickHouse is down.
    """

    def __init__(
        self,
        data_dir: Path,
        server: ClickHouseServer | None,
        database: str = "tokenotel",
        retention_days: int = DEFAULT_RETENTION_DAYS,
        cluster: str | None = None,
    ) -> None:
        self._retention_days = retention_days
        self.cluster = cluster
        self._data_dir = data_dir
        self._server = server
        self.database = server.database if server else database
        self._client: Client | None = None
        self._lock = threading.Lock()
        self.applied_migrations: list[Migration] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(
            settings.data_dir,
            settings.server,
            settings.database,
            settings.retention_days,
            settings.cluster,
        )

    @property
    def target(self) -> str:
        """Where the data lives, for logs and messages (never with a password)."""
        if self._server is not None:
            return repr(self._server)
        return f"embedded ClickHouse in {self._data_dir.resolve()}"

    @property
    def embedded(self) -> bool:
        return self._server is None

    def connect(self) -> Client:
        """Opens the connection and applies pending migrations; raises StoreUnavailable."""
        with self._lock:
            if self._client is None:
                self._client = self._open()
            return self._client

    def _open(self) -> Client:
        try:
            if self._server is None:
                self._data_dir.mkdir(parents=True, exist_ok=True)
                dsn = f"chdb://{self._data_dir.resolve()}"
                bootstrap = clickhouse_connect.get_client(dsn=dsn)
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                client = clickhouse_connect.get_client(dsn=dsn, database=self.database)
                bootstrap.close()
            else:
                bootstrap = server_client(self._server)
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                client = server_client(self._server, self.database)
                bootstrap.close()
            if self.cluster is None:
                self.applied_migrations = migrate(client)
                apply_retention(client, self._retention_days)
            else:
                _check_cluster_schema(client, self.cluster)
        except PermanentError:
            raise
        except Exception as e:
            message = str(e)
            if _LOCKED_HINT in message or "already initialized with path" in message:
                raise DataDirInUse(
                    f"the data directory {self._data_dir} is in use by another tokenotel process; "
                    "stop it first (one process per data directory)"
                ) from None
            reason = _first_line(message)
            raise StoreUnavailable(f"cannot reach {self.target}: {reason}") from None
        log.info("store ready: %s", self.target)
        return client

    def ready(self) -> bool:
        """True when the store answers (whether writes succeed is the writer's to say)."""
        try:
            client = self.connect()
        except StoreUnavailable:
            return False
        return self._server is None or client.ping()

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Inserts and returns once the rows are committed; raises StoreUnavailable."""
        client = self.connect()
        try:
            client.insert_arrow(table, data, settings=INSERT_SETTINGS)
        except Exception as e:
            message = _first_line(str(e))
            raise StoreUnavailable(f"insert into {self.target} failed: {message}") from e

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
        client = self.connect()
        try:
            return client.query(sql, parameters=parameters)
        except Exception as e:
            raise StoreUnavailable(f"query on {self.target} failed: {_first_line(str(e))}") from e

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.connect().command(sql, parameters=parameters)

    def close(self) -> None:
        with self._lock:
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


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _check_cluster_schema(client: Client, cluster: str) -> None:
    """In cluster mode the service never changes the schema: it must be up to date already."""
    missing = [m for m in available() if m.version not in applied_versions(client)]
    if missing:
        raise SchemaOutdated(
            f"the schema on cluster {cluster} lacks migration {missing[0].version:04d}_"
            f"{missing[0].name}: run `tokenotel migrate --cluster {cluster}` first"
        )


class SchemaOutdated(PermanentError):
    """Cluster mode found migrations not yet applied."""
