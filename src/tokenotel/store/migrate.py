"""Versioned schema migrations: numbered .sql files applied once each, recorded in a table."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "tokenotel_migrations"
#: Where the analytics rollups' views read (migration 0011): an insert into it reaches them
#: and keeps nothing. An insert into token_events passes on to it, unless its writer feeds it.
FEED_TABLE = "token_events_feed"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A materialized view that writes to a table as rows arrive (refreshable views fill themselves).
_CREATE_MV = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\s+(.*)$", re.S)

CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements: split on ';' at line ends, comments dropped."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


@dataclass(frozen=True)
class Backfill:
    """What a new materialized view must add to its table from the rows already stored."""

    view: str
    target: str
    columns: list[str]
    select: str

    def sql(self, target: str | None = None, select: str | None = None) -> str:
        columns = ", ".join(self.columns)
        return f"INSERT INTO {target or self.target} ({columns})\n{select or self.select}"


def backfill_of(statement: str) -> Backfill | None:
    """The backfill of a ``CREATE MATERIALIZED VIEW … TO … AS SELECT``, from its own SELECT,
    so each rollup's query is written once. A view into the feed of the rollups has none."""
    match = _CREATE_MV.match(statement)
    if match is None:
        return None
    view, target, select = match.groups()
    if target == FEED_TABLE:  # it passes events on to the rollups, which counted them already
        return None
    return Backfill(view, target, select_columns(select), select)


def select_columns(select: str) -> list[str]:
    """Names of the outermost SELECT list's columns (alias, else the bare column)."""
    items, depth, quoted, start, in_list = [], 0, False, 0, False
    upper = select.upper()
    i = 0
    while i < len(select):
        ch = select[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and _keyword_at(upper, i, "SELECT") and not in_list:
            in_list, start = True, i + len("SELECT")
        elif not quoted and depth == 0 and in_list and _keyword_at(upper, i, "FROM"):
            items.append(select[start:i])
            break
        elif not quoted and depth == 0 and in_list and ch == ",":
            items.append(select[start:i])
            start = i + 1
        i += 1
    names = []
    for item in items:
        alias = re.search(r"\bAS\s+(\w+)\s*$", item, re.I)
        names.append(alias[1] if alias else item.strip())
    return names


def _keyword_at(upper: str, i: int, word: str) -> bool:
    end = i + len(word)
    return (
        upper.startswith(word, i)
        and (i == 0 or not (upper[i - 1].isalnum() or upper[i - 1] == "_"))
        and (end == len(upper) or not (upper[end].isalnum() or upper[end] == "_"))
    )


def available() -> list[Migration]:
    """Every migration shipped with this version, in order."""
    found = []
    for entry in resources.files("tokenotel.store.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def applied_versions(client: Client) -> set[int]:
    """Versions recorded as applied (none when the migrations table does not exist yet)."""
    if not exists(client, f"TABLE {MIGRATIONS_TABLE}"):
        return set()
    return {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}


def pending(client: Client) -> list[Migration]:
    """The migrations not yet recorded, in order: read with SELECTs only, so any user that
    may read the schema can tell whether it is current."""
    done = applied_versions(client)
    return [m for m in available() if m.version not in done]


def exists(client: Client, what: str) -> bool:
    """``EXISTS <what>`` (a database, table or view) as a truth value."""
    return client.command(f"EXISTS {what}") in (1, "1")


def migrate(client: Client, up_to: int | None = None) -> list[Migration]:
    """Applies every migration not yet recorded (up to version ``up_to``, if given); returns
    those it applied.

    Each statement is idempotent (IF NOT EXISTS), so a run interrupted half way is safe to
    repeat. A materialized view created here is then back-filled from the events already
    stored (migrations run before the service takes traffic, so nothing arrives in between).
    """
    client.command(CREATE_MIGRATIONS_TABLE)
    done = applied_versions(client)
    ran = []
    for migration in available():
        if migration.version in done or (up_to is not None and migration.version > up_to):
            continue
        log.info("applying migration %04d_%s", migration.version, migration.name)
        for statement in migration.statements():
            backfill = backfill_of(statement)
            existed = backfill is not None and exists(client, backfill.view)
            client.command(statement)
            if backfill is not None and not existed:
                client.command(backfill.sql())
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        ran.append(migration)
    return ran
