"""Least privilege on a ClickHouse server: the roles tokenotel's processes run as, and the
statements that create them (``tokenotel migrate --print-grants``, docs/least-privilege.md).

- **migrator** — DDL on the database: what the migrations, retention and cluster mode do.
- **writer** — the running service: INSERT into what ingest writes, SELECT on what it reads.
  No ALTER, DELETE, TRUNCATE, DROP or OPTIMIZE.
- **reader** — Grafana and the reading commands: SELECT, in read-only mode.

The tables come from the migrations themselves (``schema_objects``), so a new table is
readable by the reader at once; what the service writes and reads is the one list below
(``SERVICE_WRITES``, ``SERVICE_READS``), held by tests/store/test_grants.py to every statement
a real run of the service sends.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from tokenotel.store.client import ALERTS_TABLE, EVENTS_TABLE, SERVICE_MINUTES_TABLE
from tokenotel.store.ledger import CHECKPOINTS_TABLE, LEDGER_TABLE
from tokenotel.store.migrate import MIGRATIONS_TABLE, available

MIGRATOR_ROLE = "tokenotel_migrator"
WRITER_ROLE = "tokenotel_writer"
READER_ROLE = "tokenotel_reader"

#: What the running service writes itself; the materialized views then write their rollups
#: (see ``writer_inserts``). A table the service starts to write goes here, with its reads below.
SERVICE_WRITES: frozenset[str] = frozenset(
    {EVENTS_TABLE, LEDGER_TABLE, CHECKPOINTS_TABLE, ALERTS_TABLE, SERVICE_MINUTES_TABLE}
)
#: What the running service reads: at start (the schema check), to prime the writer (recent
#: event ids, each token's lifecycle, the ledger), to settle or seal a failed insert, and for
#: the query API (verify included; a search by fingerprint or hash reads token_aliases), and
#: for detection at start (the alerts raised lately, each token's last use in token_minutes),
#: and for the compliance report (GenerateReport reads service_minutes too).
SERVICE_READS: frozenset[str] = frozenset(
    {
        MIGRATIONS_TABLE, EVENTS_TABLE, "token_inventory", "token_aliases", LEDGER_TABLE,
        CHECKPOINTS_TABLE, ALERTS_TABLE, "token_minutes", SERVICE_MINUTES_TABLE,
    }
)  # fmt: skip
#: System tables the service and the migrator read: ``tables``, for the retention check at
#: start. ClickHouse shows each user the rows of the tables it may see; the grant matters where
#: ``select_from_system_db_requires_grant`` is on.
SYSTEM_READS: frozenset[str] = frozenset({"tables"})

#: Everything the migrator does, on the database: create it, create, change and drop tables
#: and views (migrations, retention TTLs), back-fill new rollups, record each migration.
MIGRATOR_PRIVILEGES = (
    "CREATE DATABASE",
    "CREATE TABLE",
    "CREATE VIEW",
    "ALTER TABLE",
    "ALTER VIEW",
    "DROP TABLE",
    "DROP VIEW",
    "SELECT",
    "INSERT",
)
#: Grafana's plugin sets max_execution_time on every query: the one setting a reader changes.
READER_SETTINGS = "readonly = 1, max_execution_time CHANGEABLE_IN_READONLY"

Kind = Literal["table", "view", "materialized view"]

_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)")
_CREATE_MV = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)( REFRESH [\w ]+?)? TO (\w+) AS\s+(.*)$", re.S
)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (\w+) AS\s+(.*)$", re.S)
_MODIFY_QUERY = re.compile(r"^ALTER TABLE (\w+) MODIFY QUERY\s+(.*)$", re.S)
_DROP = re.compile(r"^DROP (?:TABLE|VIEW) IF EXISTS (\w+)$")
_FROM = re.compile(r"\b(?:FROM|JOIN) (\w+)")


@dataclass(frozen=True)
class SchemaObject:
    """A table or view the migrations leave in the database."""

    name: str
    kind: Kind
    reads: frozenset[str] = frozenset()  # a view's tables
    writes: str | None = None  # a materialized view's table (TO …)
    refreshable: bool = False  # a materialized view that recomputes itself on a schedule


def schema_objects() -> dict[str, SchemaObject]:
    """Every table and view the migrations create and do not drop, by name, read from the
    migration files (and the migrations table, which migrate.py creates)."""
    objects = {MIGRATIONS_TABLE: SchemaObject(MIGRATIONS_TABLE, "table")}
    for migration in available():
        for statement in migration.statements():
            if match := _CREATE_TABLE.match(statement):
                objects[match[1]] = SchemaObject(match[1], "table")
            elif match := _CREATE_MV.match(statement):
                name, refresh, target, select = match.groups()
                reads = _reads(select, objects)
                objects[name] = SchemaObject(
                    name, "materialized view", reads, target, refreshable=bool(refresh)
                )
            elif match := _CREATE_VIEW.match(statement):
                objects[match[1]] = SchemaObject(match[1], "view", _reads(match[2], objects))
            elif (match := _MODIFY_QUERY.match(statement)) and match[1] in objects:
                objects[match[1]] = replace(objects[match[1]], reads=_reads(match[2], objects))
            elif match := _DROP.match(statement):
                objects.pop(match[1], None)
    return objects


def _reads(select: str, known: Mapping[str, SchemaObject]) -> frozenset[str]:
    return frozenset(name for name in _FROM.findall(select) if name in known)


def readable(names: Iterable[str], objects: Mapping[str, SchemaObject]) -> set[str]:
    """``names`` and every table a view among them reads: a view runs with the rights of the
    user reading it (ClickHouse's SQL SECURITY INVOKER, the default for views)."""
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        view = objects.get(name)
        if view is not None and view.kind == "view":
            pending.extend(view.reads)
    return found


def writer_inserts(objects: Mapping[str, SchemaObject]) -> set[str]:
    """What ingest writes: the service's own tables, and the rollups the materialized views
    fill as rows arrive in them. On ClickHouse 24.2 and later a view writes with its definer's
    rights (the migrator); before, and with SQL SECURITY INVOKER, with the inserting user's."""
    written = set(SERVICE_WRITES)
    grew = True
    while grew:
        grew = False
        for view in objects.values():
            fed = view.kind == "materialized view" and not view.refreshable
            if fed and view.reads & written and view.writes not in written:
                assert view.writes is not None
                written.add(view.writes)
                grew = True
    return written


@dataclass(frozen=True)
class Grant:
    """Privileges on one target: ``db.table``, ``db.*`` or ``*.*``."""

    privileges: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class Role:
    name: str
    purpose: str
    grants: tuple[Grant, ...]
    settings: str | None = None  # a settings profile for everyone holding the role


@dataclass(frozen=True)
class User:
    """A user to log in with, holding one role; ``option`` names its password file option."""

    name: str
    role: str
    who: str
    option: str


USERS = (
    User("tokenotel_migrate", MIGRATOR_ROLE, "tokenotel migrate", "--migrator-password-file"),
    User("tokenotel_serve", WRITER_ROLE, "tokenotel serve", "--writer-password-file"),
    User(
        "tokenotel_grafana",
        READER_ROLE,
        "Grafana's data source, and tokenotel query/tokens/timeline/summary/tail",
        "--reader-password-file",
    ),
)


def roles(database: str, cluster: str | None = None) -> list[Role]:
    """The migrator, writer and reader roles for ``database`` (in cluster mode, the local
    tables too: a Distributed table passes reads and writes on to them)."""
    objects = schema_objects()

    def on(names: Iterable[str]) -> list[str]:
        targets = []
        for name in sorted(names):
            targets.append(f"{database}.{name}")
            if cluster is not None and objects[name].kind == "table":
                targets.append(f"{database}.{name}_local")
        return targets

    def per_table(privileges: dict[str, list[str]]) -> tuple[Grant, ...]:
        return tuple(Grant(tuple(p), target) for target, p in sorted(privileges.items()))

    migrator = [Grant(MIGRATOR_PRIVILEGES, f"{database}.*")]
    migrator += [Grant(("SELECT",), f"system.{name}") for name in sorted(SYSTEM_READS)]
    if cluster is not None:
        migrator.append(Grant(("CLUSTER",), "*.*"))  # ON CLUSTER statements
    writer: dict[str, list[str]] = {}
    for target in on(writer_inserts(objects)):
        writer.setdefault(target, []).append("INSERT")
    for target in on(readable(SERVICE_READS, objects)):
        writer.setdefault(target, []).append("SELECT")
    writer |= {f"system.{name}": ["SELECT"] for name in SYSTEM_READS}
    views_and_tables = [name for name, o in objects.items() if o.kind != "materialized view"]
    reader = {target: ["SELECT"] for target in on(views_and_tables)}
    return [
        Role(MIGRATOR_ROLE, "creates and upgrades the schema (DDL)", tuple(migrator)),
        Role(WRITER_ROLE, "the running service: ingest and the query API", per_table(writer)),
        Role(READER_ROLE, "Grafana and the reading commands", per_table(reader), READER_SETTINGS),
    ]


@dataclass(frozen=True)
class Section:
    """Statements with a comment above them."""

    comment: str
    statements: list[str]


def grant_script(
    database: str, cluster: str | None = None, passwords: Mapping[str, str] | None = None
) -> list[Section]:
    """The roles, and a user for each whose password is given (user name -> password): the
    password goes in only as a salted SHA-256 (ClickHouse's ``sha256_hash``), never itself."""
    passwords = passwords or {}
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    sections = []
    for role in roles(database, cluster):
        statements = [f"CREATE ROLE IF NOT EXISTS {role.name}{on_cluster}"]
        statements += [
            f"GRANT{on_cluster} {', '.join(g.privileges)} ON {g.target} TO {role.name}"
            for g in role.grants
        ]
        if role.settings is not None:
            statements.append(
                f"CREATE SETTINGS PROFILE IF NOT EXISTS {role.name}{on_cluster} "
                f"SETTINGS {role.settings} TO {role.name}"
            )
        sections.append(Section(f"Role {role.name}: {role.purpose}.", statements))
    for user in USERS:
        password = passwords.get(user.name)
        if password is None:
            sections.append(
                Section(
                    f"User {user.name} ({user.who}): not created, give {user.option} for it; "
                    f"or grant {user.role} to a user of your own.",
                    [],
                )
            )
            continue
        salt = secrets.token_hex(16)
        digest = hashlib.sha256((password + salt).encode("utf-8")).hexdigest()
        sections.append(
            Section(
                f"User {user.name}: {user.who}.",
                [
                    f"CREATE USER IF NOT EXISTS {user.name}{on_cluster} "
                    f"IDENTIFIED WITH sha256_hash BY '{digest}' SALT '{salt}'",
                    f"GRANT{on_cluster} {user.role} TO {user.name}",
                ],
            )
        )
    return sections


def script_text(sections: list[Section]) -> str:
    """The sections as a file ``clickhouse-client --multiquery`` runs."""
    parts = []
    for section in sections:
        lines = [f"-- {section.comment}"] + [f"{s};" for s in section.statements]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
