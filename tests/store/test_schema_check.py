"""At start the store checks the schema with SELECTs and changes it only where it is behind;
a user that may not change it (the writer or reader role on a server) is told to run
`tokenotel migrate` as the migrator (docs/least-privilege.md).

A ClickHouse server with users and roles cannot run here, so the refusal is the server's own
error raised where the statement would be sent (the store's statement hook): everything
before and after it is the real embedded store.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from inprocess import embedded_store
from tokenotel.errors import SchemaOutdated
from tokenotel.store.client import Store
from tokenotel.store.migrate import migrate
from tokenotel.store.retention import retention_changes

DDL = ("CREATE", "ALTER", "DROP", "INSERT INTO tokenotel_migrations")


def refuse_ddl(sql: str) -> None:
    """What a server answers a user without DDL rights (tokenotel_writer)."""
    if sql.lstrip().upper().startswith(DDL):
        raise DatabaseError(
            "HTTPDriver received ClickHouse error code 497\n Code: 497. DB::Exception: "
            "tokenotel_serve: Not enough privileges. To execute this query, it's necessary to "
            "have the grant CREATE TABLE ON tokenotel.*. (ACCESS_DENIED)"
        )


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    """Stores a test opens, closed at its end (one embedded engine a process at a time)."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close()


def as_writer(data_dir: Path, opened: list[Store], **settings: object) -> Store:
    store = embedded_store(data_dir, **settings)
    store.on_statement = refuse_ddl
    opened.append(store)
    return store


def test_a_missing_database_names_the_migrate_command(tmp_path: Path, opened: list[Store]) -> None:
    with pytest.raises(SchemaOutdated) as raised:
        as_writer(tmp_path / "data", opened).connect()
    message = str(raised.value)
    assert "has no database tokenotel" in message
    assert "run `tokenotel migrate --clickhouse-url …` as the migrator user" in message


def test_a_schema_behind_names_the_first_missing_migration(
    tmp_path: Path, opened: list[Store]
) -> None:
    data_dir = tmp_path / "data"
    bootstrap = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}")
    bootstrap.command("CREATE DATABASE tokenotel")
    old = clickhouse_connect.get_client(dsn=f"chdb://{data_dir}", database="tokenotel")
    migrate(old, up_to=4)
    old.close()
    bootstrap.close()
    with pytest.raises(SchemaOutdated, match="lacks migration 0005_merge_base, and this user"):
        as_writer(data_dir, opened).connect()


def test_a_current_schema_starts_without_a_change_and_retention_is_only_warned_about(
    tmp_path: Path, opened: list[Store], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    migrator = embedded_store(data_dir)
    migrator.connect()
    migrator.close()
    writer = as_writer(data_dir, opened, retention_days=30)
    with caplog.at_level(logging.WARNING):
        client = writer.connect()  # starts: the trail goes on being written
    assert "is not 30 days (retention_days), and this user may not change it" in caplog.text
    assert retention_changes(client, 400) == []  # the migrator's 400 days stay


def test_the_reading_commands_leave_the_retention_alone(
    tmp_path: Path, opened: list[Store], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    migrator = embedded_store(data_dir)
    migrator.connect()
    migrator.close()
    reader = embedded_store(data_dir, retention_days=30)
    reader = Store(replace(reader.options, retention_days=None))
    sent: list[str] = []
    reader.on_statement = sent.append
    opened.append(reader)
    client = reader.connect()
    assert [s for s in sent if s.lstrip().upper().startswith(DDL)] == []
    assert retention_changes(client, 400) == []
    assert "retention" not in caplog.text


def test_the_embedded_store_makes_its_directory_the_users_alone(
    tmp_path: Path, opened: list[Store]
) -> None:
    store = embedded_store(tmp_path / "new" / "data")
    opened.append(store)
    store.connect()
    assert stat.S_IMODE((tmp_path / "new" / "data").stat().st_mode) == 0o700
