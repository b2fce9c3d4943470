"""Least privilege on a ClickHouse server (docs/least-privilege.md): every printed statement
parses in ClickHouse, each role holds what its process needs and nothing more, and a real run
of the service sends nothing its writer role may not run.

The statements are parsed by the engine itself (chDB): ``formatQuery`` checks the roles and
grants (and gives their canonical text, which is read here), ``EXPLAIN AST`` tells what each
statement the service sent does and to which tables.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.json.http._log_exporter import (
    OTLPLogExporter as JsonHttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult

from inprocess import embedded_store
from otel_sdk import CheckedExporter, logger_provider
from processes import run_cli
from tokenotel.api.readers import ServiceReader, StoreReader
from tokenotel.config import load_settings
from tokenotel.query.search import EventFilter
from tokenotel.query.tokens import TokenFilter
from tokenotel.service import Service, running_in_thread
from tokenotel.store.client import Store
from tokenotel.store.cluster import cluster_statements
from tokenotel.store.grants import (
    MIGRATOR_ROLE,
    READER_ROLE,
    USERS,
    WRITER_ROLE,
    grant_script,
    readable,
    schema_objects,
)

DATABASE = "tokenotel"
CLUSTER = "tokenotel_cluster"
#: What neither the writer nor the reader may ever hold, in any form (ALTER DELETE, DROP VIEW …).
FORBIDDEN_WORDS = ("ALTER", "DELETE", "TRUNCATE", "DROP", "OPTIMIZE", "CREATE", "SYSTEM", "KILL")
_GRANT = re.compile(r"^GRANT(?: ON CLUSTER \w+)? (.+) ON (\S+) TO (\w+)$")
_ROLE_GRANT = re.compile(r"^GRANT(?: ON CLUSTER \w+)? (\w+) TO (\w+)$")
_PARAMETER = re.compile(r"\{\w+:[^{}]+\}")
_TABLE = re.compile(r"^\s*TableIdentifier (\S+)", re.M)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """An embedded store with the whole schema: the parser, and the tables as migrated."""
    store = embedded_store(tmp_path_factory.mktemp("grants") / "data")
    store.connect()
    yield store
    store.close()


def canonical(engine: Store, statement: str) -> str:
    """The statement as ClickHouse formats it; raises when it does not parse."""
    return str(engine.query("SELECT formatQuery({s:String})", {"s": statement}).result_rows[0][0])


@dataclass
class Grants:
    """Each role's privileges by target (``db.table``, ``db.*``), read from canonical GRANTs."""

    privileges: dict[str, dict[str, set[str]]]
    role_of_user: dict[str, str]

    @classmethod
    def parse(cls, statements: list[str]) -> Grants:
        privileges: dict[str, dict[str, set[str]]] = {}
        role_of_user = {}
        for statement in statements:
            if match := _GRANT.match(statement):
                names, target, role = match.groups()
                held = privileges.setdefault(role, {}).setdefault(target, set())
                held.update(name.strip() for name in names.split(","))
            elif match := _ROLE_GRANT.match(statement):
                role_of_user[match[2]] = match[1]
            else:
                assert statement.startswith(("CREATE ROLE", "CREATE USER", "CREATE SETTINGS")), (
                    statement
                )
        return cls(privileges, role_of_user)

    def of(self, role: str) -> set[str]:
        return {p for held in self.privileges[role].values() for p in held}

    def allows(self, role: str, privilege: str, target: str) -> bool:
        held = self.privileges[role]
        database = target.split(".")[0]
        return privilege in held.get(target, set()) | held.get(f"{database}.*", set())

    def shows(self, role: str, target: str) -> bool:
        """Whether the role sees ``target`` at all (EXISTS, system.tables): any privilege on it."""
        held = self.privileges[role]
        return bool(held.get(target) or held.get(f"{target.split('.')[0]}.*"))


def printed(engine: Store, cluster: str | None, passwords: dict[str, str]) -> list[str]:
    sections = grant_script(DATABASE, cluster, passwords)
    return [canonical(engine, s) for section in sections for s in section.statements]


@pytest.fixture(scope="module")
def grants(engine: Store) -> Grants:
    return Grants.parse(printed(engine, None, {u.name: "pw" for u in USERS}))


@pytest.mark.parametrize("cluster", [None, CLUSTER])
def test_every_printed_statement_parses_in_clickhouse(engine: Store, cluster: str | None) -> None:
    passwords = {user.name: f"password of {user.name}" for user in USERS}
    statements = printed(engine, cluster, passwords)
    assert len(statements) > 30
    if cluster is not None:
        assert all(f"ON CLUSTER {cluster}" in s for s in statements)
    users = {s.split()[5] for s in statements if s.startswith("CREATE USER")}
    assert users == {"tokenotel_migrate", "tokenotel_serve", "tokenotel_grafana"}
    assert not any("password of" in s for s in statements)
    assert Grants.parse(statements).role_of_user == {
        "tokenotel_migrate": MIGRATOR_ROLE,
        "tokenotel_serve": WRITER_ROLE,
        "tokenotel_grafana": READER_ROLE,
    }


def test_without_a_password_no_user_is_created() -> None:
    sections = grant_script(DATABASE)
    statements = [s for section in sections for s in section.statements]
    assert not [s for s in statements if "USER" in s or "IDENTIFIED" in s]
    comments = " ".join(section.comment for section in sections)
    assert "give --writer-password-file" in comments


def test_the_password_goes_in_only_as_a_salted_hash() -> None:
    sections = grant_script(DATABASE, passwords={"tokenotel_serve": "correct horse"})
    (create,) = [s for section in sections for s in section.statements if "IDENTIFIED" in s]
    match = re.search(r"sha256_hash BY '([0-9a-f]{64})' SALT '([0-9a-f]{32})'", create)
    assert match is not None, create
    digest, salt = match.groups()
    # ClickHouse checks SHA-256 of the password followed by the salt.
    assert hashlib.sha256(f"correct horse{salt}".encode()).hexdigest() == digest
    assert "correct horse" not in create


def test_the_writer_may_not_change_or_delete_anything(grants: Grants) -> None:
    held = grants.of(WRITER_ROLE)
    assert held == {"INSERT", "SELECT"}
    assert not [p for p in held if any(word in p for word in FORBIDDEN_WORDS)]
    # Only the tables of the database, and the one system table of the retention check.
    targets = set(grants.privileges[WRITER_ROLE])
    assert {t for t in targets if not t.startswith(f"{DATABASE}.")} == {"system.tables"}
    assert not [t for t in targets if t.endswith("*")]


def test_the_reader_only_selects_in_read_only_mode(engine: Store) -> None:
    statements = printed(engine, None, {})
    grants = Grants.parse(statements)
    assert grants.of(READER_ROLE) == {"SELECT"}
    (profile,) = [s for s in statements if s.startswith("CREATE SETTINGS PROFILE")]
    assert "readonly = 1" in profile and profile.endswith(f"TO {READER_ROLE}")


def test_every_table_and_view_is_granted_and_comes_from_the_migrations(
    engine: Store, grants: Grants
) -> None:
    """A table or view created anywhere (a migration, or code) that no role names fails here:
    the reader reads every one, and the writer's come from the same list."""
    rows = engine.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    stored = {name: kind for name, kind in rows}
    objects = schema_objects()
    assert set(stored) == set(objects)
    readable_here = {n for n, kind in stored.items() if kind != "MaterializedView"}
    assert {t for t in grants.privileges[READER_ROLE]} == {f"{DATABASE}.{n}" for n in readable_here}
    writer = {t.removeprefix(f"{DATABASE}.") for t in grants.privileges[WRITER_ROLE]}
    assert writer - {"system.tables"} <= set(stored)


def test_every_migration_is_within_the_migrator_role(engine: Store, grants: Grants) -> None:
    needed = {
        "CreateQuery": {"CREATE TABLE", "CREATE VIEW"},
        "AlterQuery": {"ALTER TABLE", "ALTER VIEW"},
        "DropQuery": {"DROP TABLE"},
        "InsertQuery": {"INSERT", "SELECT"},
    }
    statements = cluster_statements(CLUSTER, DATABASE, 400)
    kinds = {_ast(engine, s)[0].split()[0] for s in statements[1:]}
    assert kinds == set(needed)
    held = grants.privileges[MIGRATOR_ROLE][f"{DATABASE}.*"]
    assert set().union(*needed.values()) | {"CREATE DATABASE"} <= held


def _ast(engine: Store, statement: str) -> list[str]:
    sql = _PARAMETER.sub("NULL", statement)
    result = engine.query("EXPLAIN AST " + sql)
    return [row[0] for row in result.result_rows]


def required(engine: Store, statement: str) -> list[tuple[str, str]]:
    """(privilege, db.table) pairs the statement needs, from its syntax tree; a statement of any
    other kind than a read or an insert needs ("<its kind>", "")."""
    lines = _ast(engine, statement)
    kind, *rest = lines[0].split()
    tables = [t if "." in t else f"{DATABASE}.{t}" for t in _TABLE.findall("\n".join(lines))]
    objects = schema_objects()
    read = []  # a view is read with the reader's rights: the tables under it too
    for table in tables:
        database, name = table.split(".", 1)
        names = readable([name], objects) if database == DATABASE else {name}
        read += [f"{database}.{n}" for n in sorted(names)]
    if kind == "SelectWithUnionQuery":
        return [("SELECT", t) for t in read]
    if kind == "InsertQuery":
        target = lines[1].split()[-1]
        return [("INSERT", f"{DATABASE}.{target}"), *(("SELECT", t) for t in read)]
    if kind in ("ExistsTableQuery", "ExistsDatabaseQuery"):
        return [("SHOW", f"{DATABASE}.{rest[0]}" if kind == "ExistsTableQuery" else rest[0])]
    return [(kind, "")]


def not_allowed(engine: Store, grants: Grants, role: str, sent: list[str]) -> list[str]:
    refused = []
    for statement in sent:
        for privilege, target in required(engine, statement):
            if privilege == "SHOW":
                ok = grants.shows(role, target) or any(
                    t.startswith(f"{target}.") for t in grants.privileges[role]
                )
            else:
                ok = grants.allows(role, privilege, target)
            if not ok:
                refused.append(f"{privilege} on {target or '?'}: {statement.strip()[:100]}")
    return refused


class Recorder:
    """Every statement a store's clients send, from any thread."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, sql: str) -> None:
        with self._lock:
            self.statements.append(sql)


def test_a_real_run_sends_only_what_the_writer_and_reader_may(
    engine: Store, grants: Grants
) -> None:
    """The service on a migrated store (the module's, as `tokenotel migrate` left it): start,
    SDK traffic over OTLP/gRPC and OTLP/HTTP, the query API's reads, stop; then the reading
    commands on the stopped store. Every statement sent is recorded and checked."""
    settings = load_settings(
        data_dir=engine.options.data_dir,
        mapping_workers=0,
        grpc_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        api_listen="127.0.0.1:0",
    )
    engine.close()  # the service opens the store itself (the parser reopens it afterwards)

    service = Service(settings)
    served = Recorder()
    service.pipeline.store.on_statement = served
    secret = "ghp_" + "Zx81Yw72Xv63Wu54Vt45Us36Tr27Sq18Rp09"
    with running_in_thread(service):
        grpc_exporter = CheckedExporter(
            GrpcLogExporter(endpoint=f"127.0.0.1:{service.otlp_grpc.port}", insecure=True)
        )
        provider = logger_provider(grpc_exporter, {"service.name": "gateway"})
        logger = provider.get_logger("gateway")
        logger.emit(event_name="token.created", attributes={"token.id": "pat_1", "user.id": "al"})
        logger.emit(
            event_name="token.used",
            attributes={"token.id": "pat_1", "token.value": secret, "client.address": "192.0.2.7"},
        )
        logger.emit(event_name="token.revoked", attributes={"token.id": "pat_1"})
        provider.shutdown()
        http_exporter = CheckedExporter(
            JsonHttpLogExporter(endpoint=f"http://127.0.0.1:{service.otlp_http.port}/v1/logs")
        )
        provider = logger_provider(http_exporter, {"service.name": "app"})
        provider.get_logger("app").emit(
            event_name="token.auth_failed", attributes={"token.value": secret}
        )
        provider.shutdown()
        assert grpc_exporter.results + http_exporter.results == [LogRecordExportResult.SUCCESS] * 4
        api = ServiceReader(f"127.0.0.1:{service.api.port}")
        try:
            found = api.events(EventFilter(tokens=api.fingerprints(secret)), 10)
            assert len(found) == 4  # pat_1 (its id and its secret) and the failure
            assert api.events(EventFilter(ip="192.0.2.0/24"), 10)
            assert api.tokens(TokenFilter(), 10)
            assert api.timeline("pat_1", 10)["events"]
            assert api.summary(None, None, 3)
            next(iter(api.tail(EventFilter(), "")))  # from now: the first (empty) batch
        finally:
            api.close()

    kinds = {_ast(engine, s)[0].split()[0] for s in served.statements}
    assert kinds == {
        "ExistsDatabaseQuery",
        "ExistsTableQuery",
        "SelectWithUnionQuery",
        "InsertQuery",
    }
    assert [s for s in served.statements if s.startswith("INSERT")]
    assert not_allowed(engine, grants, WRITER_ROLE, served.statements) == []

    # The reading commands (`tokenotel query` against a server) as the reader.
    read = Recorder()
    store = Store(replace(settings.store_options, retention_days=None))
    store.on_statement = read
    reader = StoreReader(store)
    try:
        assert reader.events(EventFilter(tokens=["pat_1"]), 10)
        assert reader.tokens(TokenFilter(), 10)
        assert reader.timeline("pat_1", 10)
        assert reader.summary(None, None, 3)
    finally:
        reader.close()
    assert read.statements
    assert not_allowed(engine, grants, READER_ROLE, read.statements) == []


@pytest.mark.e2e  # runs the CLI
def test_print_grants_takes_passwords_from_files_and_prints_none(tmp_path: Path) -> None:
    files = {}
    for option, user in (("--writer-password-file", "serve"), ("--reader-password-file", "ro")):
        files[option] = tmp_path / f"{user}.password"
        files[option].write_text(f"password-of-{user}\n")
    args = [a for option, path in files.items() for a in (option, str(path))]
    result = run_cli("migrate", "--print-grants", "--clickhouse-url", "http://ch:8123/audit", *args)
    assert result.returncode == 0, result.stderr
    assert "password-of" not in result.stdout
    assert "GRANT INSERT, SELECT ON audit.token_events TO tokenotel_writer;" in result.stdout
    created = re.findall(r"^CREATE USER IF NOT EXISTS (\w+) ", result.stdout, re.M)
    assert created == ["tokenotel_serve", "tokenotel_grafana"]
    assert "-- User tokenotel_migrate (tokenotel migrate): not created" in result.stdout
    empty = tmp_path / "empty.password"
    empty.write_text("")
    refused = run_cli("migrate", "--print-grants", "--migrator-password-file", str(empty))
    assert refused.returncode == 2
    assert "is empty: write the user's password on its first line" in refused.stderr
