"""Cluster mode: the migrations rewritten as ON CLUSTER DDL for replicated, sharded tables.

Every table becomes ``<name>_local`` with a Replicated engine, plus a Distributed table under
the original name that the service reads and writes through, so the SQL elsewhere stays the
same. Events are sharded by token key (its id, else its fingerprint): one token's events, and
the rollups the materialized views compute from them, live on one shard. Materialized views
run on the local tables of each shard.
"""

from __future__ import annotations

import re

from tokenotel.errors import MigrationFailed
from tokenotel.store.client import ClickHouseServer, server_client
from tokenotel.store.migrate import (
    CREATE_MIGRATIONS_TABLE,
    FEED_TABLE,
    MIGRATIONS_TABLE,
    applied_versions,
    available,
    backfill_of,
)
from tokenotel.store.retention import RETAINED

#: Sharding expression of each table written through its Distributed table.
SHARD_KEYS = {
    "token_events": "cityHash64(if(token_id != '', token_id, token_fingerprint))",
    "token_minutes": "cityHash64(token_key)",
    "token_hours": "cityHash64(token_key)",
    "token_inventory_state": "cityHash64(token_key)",
    "token_ip_first_seen": "cityHash64(token_key)",
    "token_aliases": "cityHash64(token_key)",
}
ZOOKEEPER_PATH = "/clickhouse/tables/{{shard}}/{database}/{table}"
#: Tables every node recomputes for itself (refreshable views): replication would only race.
NOT_REPLICATED = frozenset({"top_tokens_24h"})
#: Tables only the views of each shard write, that keep nothing (the rollups' feed): a local
#: table on each node, with no Distributed table over them.
LOCAL_ONLY = frozenset({FEED_TABLE})

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)")
_ENGINE = re.compile(r"ENGINE = (\w*MergeTree)\b")
_ALTER = re.compile(r"^ALTER TABLE (\w+) ")
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (\w+)$")
_COLUMN_TTL = re.compile(r" TTL .*$", re.S)
_CREATE_MV = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)((?: REFRESH [\w ]+?)?) TO (\w+) AS"
)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+) AS")
_FROM = re.compile(r"\bFROM (\w+)")


def cluster_statements(cluster: str, database: str, retention_days: int) -> list[str]:
    """Every statement, in order, to create the schema on ``cluster`` (run on any node).

    The back-fill of each materialized view (INSERT ... SELECT from events already stored)
    cannot run ON CLUSTER; it follows its view, on local tables: on a new cluster it adds
    nothing, on an upgrade run it on one replica of each shard.
    """
    statements = [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"]
    statements += _table(CREATE_MIGRATIONS_TABLE.strip(), cluster, database, MIGRATIONS_TABLE)
    tables: set[str] = {MIGRATIONS_TABLE}
    for migration in available():
        for statement in migration.statements():
            statements += _rewrite(statement, cluster, database, tables)
        statements.append(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name) "
            f"VALUES ({migration.version}, '{migration.name}')"
        )
    for table, expression in RETAINED.items():
        statements.append(
            f"ALTER TABLE {table}_local ON CLUSTER {cluster} "
            f"MODIFY TTL {expression} + INTERVAL {retention_days} DAY"
        )
        statements.append(
            f"ALTER TABLE {table}_local ON CLUSTER {cluster} MODIFY SETTING ttl_only_drop_parts = 1"
        )
    return statements


def _rewrite(statement: str, cluster: str, database: str, tables: set[str]) -> list[str]:
    if match := _CREATE_TABLE.match(statement):
        tables.add(match[1])
        return _table(statement, cluster, database, match[1])
    if match := _ALTER.match(statement):
        table = match[1]
        if table not in tables:  # a materialized view: its name stays, it reads local tables
            head = f"ALTER TABLE {table}"
            return [_localise(_on_cluster(statement, head, head, cluster), tables)]
        local = _on_cluster(
            statement, f"ALTER TABLE {table}", f"ALTER TABLE {table}_local", cluster
        )
        if " ADD COLUMN " in statement:  # the Distributed table needs the column too
            distributed = _COLUMN_TTL.sub("", statement)  # (a TTL is for the stored table)
            return [
                local,
                _on_cluster(distributed, f"ALTER TABLE {table}", f"ALTER TABLE {table}", cluster),
            ]
        return [local]
    if match := _DROP_TABLE.match(statement):
        table = match[1]
        tables.discard(table)
        return [
            f"DROP TABLE IF EXISTS {table} ON CLUSTER {cluster}",
            f"DROP TABLE IF EXISTS {table}_local ON CLUSTER {cluster}",
        ]
    if match := _CREATE_MV.match(statement):
        name, refresh, target = match[1], match[2], match[3]
        head = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} ON CLUSTER {cluster}{refresh}"
        body = _localise(statement[match.end() :], tables)
        rewritten = [f"{head} TO {target}_local AS{body}"]
        if backfill := backfill_of(statement):
            local_select = _localise(backfill.select, tables)
            rewritten.append(backfill.sql(f"{target}_local", local_select))
        return rewritten
    if match := _CREATE_VIEW.match(statement):
        name = match[1]
        return [
            f"CREATE VIEW IF NOT EXISTS {name} ON CLUSTER {cluster} AS" + statement[match.end() :]
        ]
    raise ValueError(f"no cluster form for statement: {statement[:80]}")


def _table(statement: str, cluster: str, database: str, table: str) -> list[str]:
    head = f"CREATE TABLE IF NOT EXISTS {table}"
    local = statement.replace(head, f"{head}_local ON CLUSTER {cluster}", 1)
    if table in LOCAL_ONLY:  # (made like a local table: AS names the local one)
        return [re.sub(r" AS (\w+) ", r" AS \1_local ", local, count=1)]
    path = ZOOKEEPER_PATH.format(database=database, table=f"{table}_local")
    if table not in NOT_REPLICATED:
        local = _ENGINE.sub(
            lambda m: f"ENGINE = Replicated{m[1]}('{path}', '{{replica}}')", local, count=1
        )
    shard_key = SHARD_KEYS.get(table, "rand()")
    distributed = (
        f"{head} ON CLUSTER {cluster} AS {table}_local "
        f"ENGINE = Distributed({cluster}, {database}, {table}_local, {shard_key})"
    )
    return [local, distributed]


def _on_cluster(statement: str, old: str, new: str, cluster: str) -> str:
    return statement.replace(old, f"{new} ON CLUSTER {cluster}", 1)


def _localise(sql: str, tables: set[str]) -> str:
    """Reads of our tables inside a view or backfill go to the shard's local table."""
    return _FROM.sub(lambda m: f"FROM {m[1]}_local" if m[1] in tables else m[0], sql)


def apply_cluster(
    server: ClickHouseServer, cluster: str, statements: list[str]
) -> tuple[int, list[str]]:
    """Runs the DDL of ``statements`` on ``server`` (ON CLUSTER reaches every node); records
    migrations not yet recorded. Returns how many ran, and the back-fills it left out: they
    fill local tables, so they must run on one replica of each shard."""
    try:
        client = server_client(server)
        client.command(statements[0])  # the database, before anything uses it
        client.database = server.database
        done = applied_versions(client)
        ran, backfills = 1, []
        for statement in statements[1:]:
            record = _RECORD.match(statement)
            if record and int(record[1]) in done:
                continue
            if statement.startswith("INSERT INTO") and not record:
                backfills.append(statement)
                continue
            client.command(statement)
            ran += 1
    except Exception as e:
        raise MigrationFailed(f"cluster migration on {server!r} failed: {e}") from e
    return ran, backfills


_RECORD = re.compile(rf"^INSERT INTO {MIGRATIONS_TABLE} \(version, name\) VALUES \((\d+),")
