"""The ClickHouse HTTP interface: clickhouse-connect reads through it what it reads from the store
directly; every write, file, URL, setting and statement that reaches past the store is refused
the way ClickHouse refuses it, and nothing is written; the limits hold whatever a client asks.

The listener runs in this process over an embedded store holding the Grafana tests' attack
scenario, as the service runs it beside ingest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_endpoint import (
    PASSWORD,
    USER,
    Answer,
    Traffic,
    attack_traffic,
    basic,
    grafana_queries,
    running_listener,
    send,
)

from tokenotel.api.clickhouse_http import (
    ClickHouseHttpListener,
    QueryLimits,
    native_block,
    read_password_file,
)
from tokenotel.errors import ConfigError
from tokenotel.store.client import Store, StoreOptions

READONLY, ACCESS_DENIED, SYNTAX_ERROR, INTO_OUTFILE_NOT_ALLOWED = 164, 497, 62, 358


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    with attack_traffic(tmp_path_factory.mktemp("clickhouse-http") / "data") as traffic:
        yield traffic


@pytest.fixture(scope="module")
def listener(traffic: Traffic) -> Iterator[ClickHouseHttpListener]:
    with running_listener(traffic.store) as listener:
        yield listener


@pytest.fixture(params=[False, "gzip", "deflate"], ids=["uncompressed", "gzip", "deflate"])
def client(request: pytest.FixtureRequest, listener: ClickHouseHttpListener) -> object:
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=listener.port,
        username=USER,
        password=PASSWORD,
        database="tokenotel",
        compress=request.param,
    )


def stored_rows(traffic: Traffic) -> int:
    """Rows in every table of the store (active parts): what any write would change."""
    sql = "SELECT sum(rows) FROM system.parts WHERE active AND database = 'tokenotel'"
    return traffic.store.query(sql).result_rows[0][0]


def direct_rows(traffic: Traffic, sql: str) -> list[tuple[object, ...]]:
    """``sql`` run on the store itself, with the interface's one thread: ties in an ORDER BY …
    LIMIT (the top-N panels) then fall the same way on both sides."""
    return traffic.store.connect().query(sql, settings={"max_threads": 1}).result_rows


def refused(answer: Answer, code: int, status: int) -> str:
    """The error's text, once the answer is checked to be ClickHouse's form of that error."""
    text = answer.body.decode()
    assert (answer.status, answer.code) == (status, code), text
    assert text.startswith(f"Code: {code}. DB::Exception: "), text
    assert text.rstrip().endswith(")"), text
    return text


# ------------------------------------------------------------------ reading


def test_clickhouse_connect_reads_what_the_store_holds(traffic: Traffic, client: object) -> None:
    for origin, sql in grafana_queries(traffic.now):
        direct = direct_rows(traffic, sql)
        through = client.query(sql).result_rows  # type: ignore[attr-defined]
        assert sorted(map(repr, through)) == sorted(map(repr, direct)), origin
    sql = "SELECT token_key, event_time, client_ip, scopes, attributes FROM token_events"
    direct = traffic.store.query(sql + " ORDER BY event_id").result_rows
    assert len(direct) > 5000
    assert client.query(sql + " ORDER BY event_id").result_rows == direct  # type: ignore[attr-defined]


def test_responses_are_compressed_only_when_asked_for(listener: ClickHouseHttpListener) -> None:
    params = {"enable_http_compression": "1", "default_format": "JSONEachRow"}
    sql = "SELECT number FROM numbers(1000)"
    plain = send(listener.port, sql, {"default_format": "JSONEachRow"})
    assert plain.headers.get("Content-Encoding") is None and plain.body.startswith(b'{"number"')
    for encoding in ("gzip", "deflate"):
        headers = {**basic(), "Accept-Encoding": f"br, {encoding}"}
        compressed = send(listener.port, sql, params, headers=headers)
        assert compressed.status == 200 and compressed.headers["Content-Encoding"] == encoding
        assert len(compressed.body) < len(plain.body)
    # Accept-Encoding alone does not compress: ClickHouse needs enable_http_compression=1 too.
    headers = {**basic(), "Accept-Encoding": "gzip"}
    assert send(listener.port, sql, headers=headers).headers.get("Content-Encoding") is None


def test_arrow_json_and_tab_separated(traffic: Traffic, listener: ClickHouseHttpListener) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=listener.port, username=USER, password=PASSWORD
    )
    sql = "SELECT token_key, count() AS events FROM tokenotel.token_events GROUP BY token_key"
    arrow = client.query_arrow(sql + " ORDER BY token_key")
    direct = traffic.store.connect().query_arrow(sql + " ORDER BY token_key")
    assert arrow.to_pylist() == direct.to_pylist() and arrow.num_rows > 10
    tsv = send(listener.port, sql + " ORDER BY token_key FORMAT TabSeparated")
    assert tsv.headers["X-ClickHouse-Format"] == "TabSeparated"
    lines = [line.split("\t") for line in tsv.body.decode().splitlines()]
    assert [(k, int(n)) for k, n in lines] == [tuple(r.values()) for r in direct.to_pylist()]
    json_answer = send(listener.port, sql, {"default_format": "JSON", "database": "tokenotel"})
    assert json_answer.headers["Content-Type"].startswith("application/json")
    assert b'"meta"' in json_answer.body


def test_headers_clickhouse_clients_read(listener: ClickHouseHttpListener) -> None:
    answer = send(listener.port, "SELECT 1", {"query_id": "q-42"})
    assert answer.status == 200 and answer.body == b"1\n"
    assert answer.headers["X-ClickHouse-Query-Id"] == "q-42"
    assert answer.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert answer.headers["X-ClickHouse-Timezone"]
    assert '"read_rows":"1"' in answer.headers["X-ClickHouse-Summary"]


def test_ping_and_get(listener: ClickHouseHttpListener) -> None:
    ping = send(listener.port, None, method="GET", path="/ping", headers={})
    assert (ping.status, ping.body) == (200, b"Ok.\n")
    assert send(listener.port, None, method="GET", headers={}).body == b"Ok.\n"
    get = send(listener.port, "SELECT count() FROM system.one", method="GET")
    assert (get.status, get.body) == (200, b"1\n")


def test_query_parameters_are_bound_by_the_engine(listener: ClickHouseHttpListener) -> None:
    params = {"param_token": "tok-svc-05", "param_n": "3", "database": "tokenotel"}
    sql = "SELECT {token:String} AS t, {n:UInt8} + 1 AS n"
    assert send(listener.port, sql, params).body == b"tok-svc-05\t4\n"


def test_an_empty_native_result_still_names_its_columns(listener: ClickHouseHttpListener) -> None:
    """chDB writes nothing for no rows; clients (the Go driver) need the header block."""
    sql = "SELECT token_id, client_ip FROM token_events WHERE 0"
    answer = send(listener.port, sql, {"default_format": "Native", "database": "tokenotel"})
    assert answer.body == native_block([("token_id", "String"), ("client_ip", "IPv6")], 0)
    answer = send(listener.port, "SHOW TABLES FROM tokenotel LIKE 'nothing%' FORMAT Native")
    assert answer.body == native_block([("name", "String")], 0)


def test_the_go_driver_handshake_reports_revision_0(listener: ClickHouseHttpListener) -> None:
    """clickhouse-go decodes this answer at the revision it sent, and every later one at the
    revision() it reads here: chDB's Native is revision 0."""
    sql = "SELECT displayName(), version(), revision(), timezone()"
    params = {"default_format": "Native", "client_protocol_version": "54460"}
    body = send(listener.port, sql, params).body
    assert body.startswith(b"\x01\x00\x02\xff\xff\xff\xff\x00\x04\x01")  # block info, 4 x 1
    assert b"\nrevision()\x06UInt32\x00\x00\x00\x00\x00" in body  # no custom serialization, 0


# ------------------------------------------------------------------ refusals


def test_several_statements_are_refused_and_none_runs(
    traffic: Traffic, listener: ClickHouseHttpListener, tmp_path: Path
) -> None:
    before = stored_rows(traffic)
    target = tmp_path / "written.csv"
    for sql in (
        "SELECT 1; SELECT 2",
        "SELECT 1; INSERT INTO token_events (token_id) VALUES ('x')",
        f"SELECT 1; INSERT INTO FUNCTION file('{target}', 'CSV') SELECT 1",
        "SELECT 1; KILL QUERY WHERE 1 SYNC",
    ):
        text = refused(send(listener.port, sql, {"database": "tokenotel"}), SYNTAX_ERROR, 400)
        assert "Multi-statements are not allowed" in text
        assert "formatQuery" not in text  # the parser's own message, not how it was asked
    text = refused(send(listener.port, "SELECT 1 FROM system.one JOIN"), SYNTAX_ERROR, 400)
    assert "formatQuery" not in text
    assert stored_rows(traffic) == before and not target.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO token_events (token_id) VALUES ('x')",
        "INSERT INTO token_events (token_id) SELECT token_id FROM token_events",
        "ALTER TABLE token_events DELETE WHERE 1",
        "TRUNCATE TABLE token_events",
        "DROP TABLE token_hours",
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
        "OPTIMIZE TABLE token_events FINAL",
        "SYSTEM STOP MERGES",
        "SYSTEM FLUSH LOGS",
        "SET readonly = 0",
        "KILL QUERY WHERE 1 SYNC",
        "KILL MUTATION WHERE 1",
        "EXPLAIN PIPELINE INSERT INTO token_events (token_id) VALUES ('x')",
    ],
)
def test_what_is_not_a_read_is_refused(
    traffic: Traffic, listener: ClickHouseHttpListener, sql: str
) -> None:
    before = stored_rows(traffic)
    refused(send(listener.port, sql, {"database": "tokenotel"}), READONLY, 500)
    assert stored_rows(traffic) == before
    assert traffic.store.query("EXISTS TABLE token_hours").result_rows == [(1,)]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "SELECT * FROM token_events LIMIT 1",
        "WITH 1 AS x SELECT x",
        "SHOW TABLES",
        "DESCRIBE TABLE token_events",
        "EXISTS TABLE token_events",
        "EXPLAIN SELECT 1",
        "EXPLAIN AST SELECT 1",
    ],
)
def test_into_outfile_writes_nothing(
    listener: ClickHouseHttpListener, tmp_path: Path, statement: str
) -> None:
    target = tmp_path / "out.tsv"
    sql = f"{statement} INTO OUTFILE '{target}' FORMAT TabSeparated"
    refused(send(listener.port, sql, {"database": "tokenotel"}), INTO_OUTFILE_NOT_ALLOWED, 500)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('{path}', 'LineAsString')",
        "SELECT file('{path}')",
        "SELECT length(file('{path}')) AS n",
        "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "SELECT * FROM remote('127.0.0.1:9', system.one)",
        "SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv', 'CSV', 'a String')",
        "SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', 'CSV', 'a String')",
        "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
        "SELECT * FROM executable('cat', 'CSV', 'a String')",
        "SELECT * FROM input('a String')",
        "SELECT * FROM token_events WHERE token_id IN (SELECT * FROM file('{path}', 'CSV', 'a'))",
        "SELECT 1 FROM system.one CROSS JOIN url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "WITH (SELECT file('{path}')) AS secret SELECT secret",
        "DESCRIBE TABLE url('http://127.0.0.1:9/', 'CSV', 'a String')",
        "DESCRIBE TABLE (SELECT file('{path}'))",
        "SHOW COLUMNS FROM token_events WHERE file('{path}') != ''",
        "EXPLAIN SELECT * FROM file('{path}', 'LineAsString')",
        "SELECT * FROM `file`('{path}', 'LineAsString')",
        "SELECT * FROM FILE('{path}', 'LineAsString')",
    ],
)
def test_nothing_outside_the_store_is_reached(
    listener: ClickHouseHttpListener, tmp_path: Path, sql: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    answer = send(listener.port, sql.format(path=secret), {"database": "tokenotel"})
    refused(answer, ACCESS_DENIED, 403)
    assert b"do not read me" not in answer.body


def test_insert_into_function_file_writes_no_file(
    listener: ClickHouseHttpListener, tmp_path: Path
) -> None:
    """readonly=2 lets chDB run this one; the statement check stops it first."""
    target = tmp_path / "written.csv"
    sql = f"INSERT INTO FUNCTION file('{target}', 'CSV') SELECT 1"
    refused(send(listener.port, sql), READONLY, 500)
    assert not target.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 SETTINGS max_execution_time = 100000",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM (SELECT getSetting('max_threads') AS t SETTINGS max_threads = 64)",
        "SELECT 1 FORMAT TabSeparated SETTINGS max_result_rows = 0",
        "SHOW TABLES SETTINGS max_threads = 64",
        "SELECT 1 SETTINGS output_format_schema = '/tmp/schema.capnp'",
    ],
)
def test_settings_in_the_query_are_refused(listener: ClickHouseHttpListener, sql: str) -> None:
    text = refused(send(listener.port, sql), READONLY, 500)
    assert "Cannot modify" in text and "URL" in text


@pytest.mark.parametrize(
    "setting",
    ["readonly=0", "allow_ddl=1", "output_format_schema=/tmp/x.capnp", "max_block_size=1"],
)
def test_url_settings_that_are_not_allowed_are_refused(
    listener: ClickHouseHttpListener, setting: str
) -> None:
    name, value = setting.split("=")
    text = refused(send(listener.port, "SELECT 1", {name: value}), READONLY, 500)
    assert f"'{name}'" in text


def test_formats_that_read_server_files_are_refused(listener: ClickHouseHttpListener) -> None:
    for fmt in ("Template", "CapnProto", "Protobuf"):
        refused(send(listener.port, f"SELECT 1 FORMAT {fmt}"), ACCESS_DENIED, 403)
    refused(send(listener.port, "SELECT 1", {"default_format": "Template"}), ACCESS_DENIED, 403)


def test_block_compression_is_refused_with_what_to_use(listener: ClickHouseHttpListener) -> None:
    text = refused(send(listener.port, "SELECT 1", {"compress": "1"}), 48, 501)
    assert "enable_http_compression=1" in text


def test_kill_query_kills_nothing(listener: ClickHouseHttpListener) -> None:
    """Every chDB query runs as one user, the service's inserts too: KILL would reach them."""
    slow: list[Answer] = []
    runner = threading.Thread(target=slow_query, args=(listener.port, slow))
    runner.start()
    try:
        for sql in ("KILL QUERY WHERE 1 SYNC", "KILL QUERY WHERE query LIKE '%sleepEachRow%'"):
            refused(send(listener.port, sql), READONLY, 500)
    finally:
        runner.join()
    assert slow[0].status == 200 and slow[0].body == b"0\n0\n0\n0\n"


# ------------------------------------------------------------------ credentials


def test_credentials_are_taken_the_ways_clickhouse_takes_them(
    listener: ClickHouseHttpListener,
) -> None:
    port = listener.port
    assert send(port, "SELECT 1").status == 200  # Basic
    headers = {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}
    assert send(port, "SELECT 1", headers=headers).status == 200
    url = {"user": USER, "password": PASSWORD}
    assert send(port, "SELECT 1", url, headers={}).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong"),
        basic(user="default", password=PASSWORD),
        basic(password=""),
        {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD + "x"},
        {"X-ClickHouse-User": USER},
        {"Authorization": "Basic !!!not-base64"},
    ],
    ids=["none", "wrong-password", "wrong-user", "empty", "wrong-key", "no-key", "garbage"],
)
def test_wrong_or_missing_credentials_are_refused(
    listener: ClickHouseHttpListener, headers: dict[str, str]
) -> None:
    answer = send(listener.port, "SELECT 'the data'", headers=headers)
    text = refused(answer, 516, 403)
    assert "Authentication failed" in text and b"the data" not in answer.body
    wrong = {"user": USER, "password": "wrong"}
    refused(send(listener.port, "SELECT 1", wrong, headers={}), 516, 403)


def test_the_password_file(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    assert read_password_file(path) == "s3cret"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_password_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_password_file(tmp_path / "missing")


# ------------------------------------------------------------------ limits


def test_limits_are_set_on_every_query_and_a_client_only_lowers_them(traffic: Traffic) -> None:
    limits = QueryLimits(max_execution_time_s=20, max_threads=2, max_result_rows=500_000)
    sql = (
        "SELECT getSetting('max_execution_time'), getSetting('max_threads'), "
        "getSetting('max_result_rows'), getSetting('max_memory_usage'), getSetting('readonly'), "
        "getSetting('result_overflow_mode')"
    )
    forced = f"20\t2\t500000\t{limits.max_memory_usage_bytes}\t2\tthrow\n".encode()
    with running_listener(traffic.store, limits) as listener:
        assert send(listener.port, sql).body == forced
        raised = {"max_execution_time": "100000", "max_threads": "64", "max_result_rows": "0"}
        assert send(listener.port, sql, raised).body == forced
        lowered = {"max_execution_time": "5", "max_threads": "1", "max_memory_usage": "1000000"}
        expected = b"5\t1\t500000\t1000000\t2\tthrow\n"
        assert send(listener.port, sql, lowered).body == expected


@pytest.mark.parametrize(
    ("limits", "sql", "code", "status"),
    [
        (QueryLimits(max_execution_time_s=1), "SELECT count() FROM numbers(1e12)", 159, 408),
        (QueryLimits(max_result_rows=10), "SELECT number FROM numbers(100)", 396, 500),
        (
            QueryLimits(max_result_bytes=100_000),
            "SELECT toString(number) FROM numbers(100000)",
            396,
            500,
        ),
        (
            QueryLimits(max_memory_usage_bytes=50_000_000),
            "SELECT groupArray(number) FROM numbers(10000000)",
            241,
            500,
        ),
    ],
    ids=["time", "rows", "bytes", "memory"],
)
def test_a_query_over_a_limit_is_stopped_whatever_the_client_asks(
    traffic: Traffic, limits: QueryLimits, sql: str, code: int, status: int
) -> None:
    lifted = {name: "0" for name in limits.settings()} | {"max_execution_time": "3600"}
    with running_listener(traffic.store, limits) as listener:
        refused(send(listener.port, sql), code, status)
        refused(send(listener.port, sql, lifted), code, status)
        assert send(listener.port, "SELECT number FROM numbers(5)").status == 200


def slow_query(port: int, answers: list[Answer]) -> None:
    """A query that sleeps two seconds (four rows of half a second)."""
    answers.append(send(port, "SELECT sleepEachRow(0.5) FROM numbers(4)"))


def test_beyond_the_concurrency_limit_queries_are_refused(traffic: Traffic) -> None:
    limits = QueryLimits(max_concurrent_queries=1, max_queued_queries=0)
    with running_listener(traffic.store, limits) as listener:
        for _ in range(5):  # the slow query may end before the second is sent: try again
            slow: list[Answer] = []
            runner = threading.Thread(target=slow_query, args=(listener.port, slow))
            runner.start()
            deadline = time.monotonic() + 30
            while listener.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            second = send(listener.port, "SELECT 1")
            runner.join()
            assert slow[0].status == 200
            if second.status != 200:
                break
        text = refused(second, 202, 503)
        assert "Too many simultaneous queries" in text
        assert second.headers["Retry-After"] == "1"
        assert listener.in_flight == 0
        assert send(listener.port, "SELECT 1").status == 200


# ------------------------------------------------------------------ the store


def test_store_unavailable_is_a_503_and_never_a_hang(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    options = StoreOptions(not_a_directory, None, "tokenotel", None, 400, 1.0)
    with running_listener(Store(options)) as listener:
        text = refused(send(listener.port, "SELECT 1"), 210, 503)
        assert "unavailable" in text


def test_a_server_store_is_refused_with_what_to_do() -> None:
    from tokenotel.store.client import ClickHouseServer

    server = ClickHouseServer("http://u:p@clickhouse:8123/tokenotel", "tokenotel")
    options = StoreOptions(Path("unused"), server, "tokenotel", None, 400, 1.0)
    with pytest.raises(ConfigError, match="point Grafana's ClickHouse data source at"):
        ClickHouseHttpListener("127.0.0.1", 0, Store(options), user=USER, password=PASSWORD)


def test_clickhouse_connect_sees_refusals_as_clickhouse_errors(
    traffic: Traffic, listener: ClickHouseHttpListener
) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=listener.port, username=USER, password=PASSWORD
    )
    with pytest.raises(DatabaseError, match="code: 164"):
        client.command("INSERT INTO tokenotel.token_events (token_id) VALUES ('x')")
    with pytest.raises(DatabaseError, match="code: 497"):
        client.query("SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')")
