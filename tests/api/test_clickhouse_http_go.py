"""Grafana's own driver against the ClickHouse HTTP interface: clickhouse-go, opened as the
ClickHouse data source opens it for protocol http (tests/api/chgo), runs every panel, variable
and alert query of grafana/ and gets what the store holds, column types included."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_endpoint import (
    PASSWORD,
    USER,
    Traffic,
    attack_traffic,
    comparable,
    grafana_queries,
    running_listener,
)

from go_build import REPO, go_built
from tokenotel.api.clickhouse_http import ClickHouseHttpListener

pytestmark = pytest.mark.e2e

CHGO = REPO / ".build" / "bin" / "tokenotel-chgo"
BUILD_SCRIPT = REPO / "tests" / "api" / "build-chgo.sh"
RUN_TIMEOUT_S = 600
#: chDB's Native output names a DateTime column's type without its zone (DateTime64 keeps it).
#: The values are instants all the same, and Grafana reads instants.
WITHOUT_ZONE = re.compile(r"\bDateTime\('[^']*'\)")


@pytest.fixture(scope="session")
def chgo() -> Path:
    return go_built(["bash", str(BUILD_SCRIPT)], CHGO, "make chgo")


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    with attack_traffic(tmp_path_factory.mktemp("clickhouse-http-go") / "data") as traffic:
        yield traffic


@pytest.fixture(scope="module")
def listener(traffic: Traffic) -> Iterator[ClickHouseHttpListener]:
    with running_listener(traffic.store) as listener:
        yield listener


def run_go(
    chgo: Path, listener: ClickHouseHttpListener, queries: list[tuple[str, str]], tmp: Path
) -> dict[str, dict[str, Any]]:
    password_file = tmp / "password"
    password_file.write_text(PASSWORD + "\n")
    queries_file = tmp / "queries.json"
    queries_file.write_text(json.dumps([{"name": n, "sql": sql} for n, sql in queries]))
    result = subprocess.run(
        [
            str(chgo),
            "-addr",
            f"127.0.0.1:{listener.port}",
            "-user",
            USER,
            "-password-file",
            str(password_file),
            "-database",
            "tokenotel",
            str(queries_file),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}


def direct(traffic: Traffic, sql: str) -> tuple[list[tuple[str, str]], list[Any]]:
    """Column names, types and rows of ``sql`` run on the store itself (one thread, as the
    interface runs it, so ties in a top-N fall alike)."""
    client = traffic.store.connect()
    described = client.query(f"DESCRIBE TABLE ({sql})").result_rows
    rows = client.query(sql, settings={"max_threads": 1}).result_rows
    types = [(r[0], WITHOUT_ZONE.sub("DateTime", r[1])) for r in described]
    return types, [comparable(list(row)) for row in rows]


def row_key(row: Any) -> str:
    """A row as text to sort and compare; numbers as floats, since JSON writes a whole Float64
    (205.0) the way it writes an integer (205)."""

    def numbers_as_floats(value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(f"{value:.9g}")
        if isinstance(value, list):
            return [numbers_as_floats(v) for v in value]
        if isinstance(value, dict):
            return {k: numbers_as_floats(v) for k, v in value.items()}
        return value

    return json.dumps(numbers_as_floats(row), sort_keys=True)


def test_every_grafana_query_through_the_go_driver_returns_what_the_store_holds(
    chgo: Path, traffic: Traffic, listener: ClickHouseHttpListener, tmp_path: Path
) -> None:
    queries = grafana_queries(traffic.now)
    results = run_go(chgo, listener, queries, tmp_path)
    shown = 0
    for origin, sql in queries:
        got = results[origin]
        assert "error" not in got, f"{origin}: {got.get('error')}"
        columns, rows = direct(traffic, sql)
        assert [(c["name"], c["type"]) for c in got["columns"]] == columns, origin
        got_rows = sorted(map(row_key, comparable(got["rows"])))
        assert got_rows == sorted(map(row_key, rows)), origin
        shown += bool(rows)
    assert shown > len(queries) // 2, "most queries show something on the attack scenario"


def test_refusals_reach_the_go_driver_as_clickhouse_exceptions(
    chgo: Path, listener: ClickHouseHttpListener, tmp_path: Path
) -> None:
    target = tmp_path / "out.tsv"
    results = run_go(
        chgo,
        listener,
        [
            ("outfile", f"SELECT 1 INTO OUTFILE '{target}'"),
            ("insert", "INSERT INTO token_events (token_id) VALUES ('x')"),
            ("file", "SELECT file('/etc/hostname')"),
            ("empty", "SELECT token_id, event_time FROM token_events WHERE 0"),
        ],
        tmp_path,
    )
    assert "code: 358" in results["outfile"]["error"] and not target.exists()
    assert "code: 164" in results["insert"]["error"]
    assert "code: 497" in results["file"]["error"]
    assert results["empty"]["columns"] == [
        {"name": "token_id", "type": "String"},
        {"name": "event_time", "type": "DateTime64(9, 'UTC')"},
    ]
    assert results["empty"]["rows"] == []
