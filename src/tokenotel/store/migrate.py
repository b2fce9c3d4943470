"""Versioned schema migrations: numbered .sql files applied once each, recorded in a table."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "tokenotel_migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

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
    exists = client.command(f"EXISTS TABLE {MIGRATIONS_TABLE}")
    if not int(exists):
        return set()
    return {row[0] for row in client.query(f"SELECT version FROM {MIGRATIONS_TABLE}").result_rows}


def migrate(client: Client, up_to: int | None = None) -> list[Migration]:
    """Applies every migration not yet recorded (up to version ``up_to``, if given); returns
    those it applied.

    Each statement is idempotent (IF NOT EXISTS), so a run interrupted half way is safe to repeat.
    """
    client.command(CREATE_MIGRATIONS_TABLE)
    done = applied_versions(client)
    ran = []
    for migration in available():
        if migration.version in done or (up_to is not None and migration.version > up_to):
            continue
        log.info("applying migration %04d_%s", migration.version, migration.name)
        for statement in migration.statements():
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        ran.append(migration)
    return ran
