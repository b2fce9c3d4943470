"""docs/schema.md, the model and the migrated database describe the same columns; the cluster
DDL parses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from inprocess import embedded_store
from tokenotel.model import COLUMNS
from tokenotel.store.cluster import LOCAL_ONLY, NOT_REPLICATED, cluster_statements

DOC = Path(__file__).parents[2] / "docs" / "schema.md"


def _sections(text: str) -> dict[str, list[list[str]]]:
    """Markdown tables by the heading above them (first word of the heading)."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").split()[0] if line.lstrip("#").strip() else ""
        elif line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            tables.setdefault(heading, []).append(cells)
    return {name: rows[1:] for name, rows in tables.items()}  # without the header row


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


@pytest.fixture(scope="module")
def db_columns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    store = embedded_store(tmp_path_factory.mktemp("schema") / "data")
    try:
        rows = store.query(
            "SELECT table, name, type FROM system.columns WHERE database = 'tokenotel' "
            "ORDER BY table, position"
        ).result_rows
    finally:
        store.close()
    columns: dict[str, list[tuple]] = {}
    for table, name, type_ in rows:
        columns.setdefault(table, []).append((name, type_))
    yield columns


def test_the_document_lists_every_event_column_as_the_model_does() -> None:
    documented = [
        (_names(row[0])[0], row[1].strip("`"), row[2])
        for row in _sections(DOC.read_text())["token_events"]
    ]
    assert documented == [(c.name, c.type, c.source) for c in COLUMNS]


def test_the_migrations_create_the_columns_of_the_model(db_columns: dict) -> None:
    assert db_columns["token_events"] == [(c.name, c.type) for c in COLUMNS]


@pytest.mark.parametrize(
    "table",
    [
        "token_minutes",
        "token_hours",
        "top_tokens_24h",
        "event_minutes",
        "ip_failure_minutes",
        "token_inventory",
        "token_ip_first_seen",
        "token_aliases",
    ],
)
def test_each_rollup_is_documented_column_by_column(db_columns: dict, table: str) -> None:
    section = _sections(DOC.read_text())[table]
    documented = [name for row in section for name in _names(row[0])]
    assert documented == [name for name, _ in db_columns[table]]


def test_cluster_ddl_parses_and_is_replicated_and_distributed(tmp_path: Path) -> None:
    statements = cluster_statements("two_shards", "tokenotel", 400)
    store = embedded_store(tmp_path / "data")
    try:
        for statement in statements:  # the embedded engine's parser, not a regex, decides
            formatted = store.query("SELECT formatQuery({q:String})", {"q": statement})
            assert formatted.result_rows[0][0]
    finally:
        store.close()
    tables = {
        m[1] for s in statements if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)_local", s))
    }
    assert {
        "token_events",
        "token_minutes",
        "token_inventory_state",
        "tokenotel_migrations",
    } <= tables
    for table in tables:
        local = next(
            s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local")
        )
        assert "ON CLUSTER two_shards" in local
        if table in LOCAL_ONLY:  # keeps nothing, written by the views of its own node
            assert "ENGINE = Null" in local and " AS token_events_local " in local
            assert not any(s.startswith(f"CREATE TABLE IF NOT EXISTS {table} ") for s in statements)
            continue
        replicated = r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/"
        if table in NOT_REPLICATED:  # recomputed by every node for itself
            assert not re.search(replicated, local) and "ENGINE = MergeTree" in local
        else:
            assert re.search(replicated, local)
        distributed = next(
            s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {table} ")
        )
        assert f"Distributed(two_shards, tokenotel, {table}_local" in distributed
    events = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS token_events "))
    assert "cityHash64(if(token_id != '', token_id, token_fingerprint))" in events
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    assert views and all("ON CLUSTER two_shards" in v and "_local AS" in v for v in views)
    refreshed = [v for v in views if " REFRESH " in v]
    assert refreshed and all("FROM token_hours_local" in v for v in refreshed)
    assert all(
        "FROM token_events_local" in v or "FROM token_events_feed_local" in v
        for v in views
        if v not in refreshed
    )
