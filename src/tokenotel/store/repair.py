"""Inserts that may have half happened, and how their rollups are made whole again.

ClickHouse commits an insert's part of ``token_events`` and the parts its materialized views
write to the rollups one by one, not together. An embedded store that dies in the middle of
an insert (the service was killed) can keep the events without some of their rollup rows, or
rollup rows of events it did not keep; the client's retry then adds the events again. So
before each insert the writer notes what the insert touches (``InsertJournal``), and an
insert that did not finish is settled before the next one: every rollup row it may have
touched is counted again from the events (``recount_rollups``).

A rollup partitioned by month is recounted for the months the insert touched; the others
(keyed by token) for the tokens it touched. Recounting rebuilds those rows from every event
stored for them, so it is right whatever the interrupted insert left behind.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tokenotel.store.client import EVENTS_TABLE, Store
from tokenotel.store.migrate import FEED_TABLE

#: The materialized views that write to rollups as events are inserted (refreshable views
#: recompute themselves), with the table each writes to.
VIEWS_SQL = """
SELECT name, as_select, extract(create_table_query, ' TO [^.]+\\\\.(\\\\w+)') AS target
FROM system.tables
WHERE database = currentDatabase() AND engine = 'MaterializedView'
  AND create_table_query NOT LIKE '% REFRESH %'
ORDER BY name
"""
_FEED = re.compile(rf"\b{FEED_TABLE}\b")
TABLES_SQL = """
SELECT name, partition_key, sorting_key FROM system.tables
WHERE database = currentDatabase() AND name IN {names:Array(String)}
"""
#: The token keys of a recount, for the time it runs (a table: no keys in the SQL text).
KEYS_TABLE = "recount_token_keys"


@dataclass(frozen=True)
class InsertScope:
    """What an insert into ``token_events`` touches in the rollups: months of event time
    (as YYYYMM) and token keys (a rotation also touches its previous id)."""

    months: tuple[int, ...]
    token_keys: tuple[str, ...]

    @classmethod
    def of(cls, batch: pa.Table) -> InsertScope:
        """The scope of the rows in ``batch`` (mapped columns)."""
        times = batch["event_time"]
        months = pc.add(pc.multiply(pc.year(times), 100), pc.month(times))
        keys = pc.if_else(
            pc.not_equal(batch["token_id"], ""), batch["token_id"], batch["token_fingerprint"]
        )
        previous = pc.filter(
            batch["previous_token_id"], pc.not_equal(batch["previous_token_id"], "")
        )
        all_keys = pa.chunked_array([*keys.chunks, *previous.chunks], pa.string())
        return cls(
            tuple(sorted(pc.unique(months).to_pylist())),
            tuple(sorted(pc.unique(all_keys).to_pylist())),
        )


#: What InsertScope.of needs of the events stored by the inserts from a stamp on.
SCOPE_SINCE_SQL = f"""
SELECT event_time, token_id, token_fingerprint, previous_token_id
FROM {EVENTS_TABLE}
WHERE ingested_at >= fromUnixTimestamp64Milli({{stamp:Int64}}, 'UTC')
"""


def scope_since(store: Store, stamp: int) -> InsertScope:
    """The scope of every event stored by the inserts stamped ``stamp`` or later."""
    return InsertScope.of(store.query_arrow(SCOPE_SINCE_SQL, {"stamp": stamp}))


def _write_whole(path: Path, entry: dict[str, object]) -> None:
    """Writes ``entry`` as JSON to ``path`` whole or not at all."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(entry), encoding="utf-8")
    os.replace(temporary, path)


def _read_entry(path: Path) -> dict[str, Any] | None:
    """The JSON entry at ``path``, or None when there is no file."""
    try:
        entry: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return entry


class InsertJournal:
    """One file noting the insert in progress: written before it, removed once it is
    committed. A file found at start names an insert that was interrupted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def begin(self, stamp: int, scope: InsertScope) -> None:
        _write_whole(
            self.path, {"stamp": stamp, "months": scope.months, "token_keys": scope.token_keys}
        )

    def pending(self) -> tuple[int, InsertScope] | None:
        """The insert that began and did not end, if any."""
        entry = _read_entry(self.path)
        if entry is None:
            return None
        return entry["stamp"], InsertScope(tuple(entry["months"]), tuple(entry["token_keys"]))

    def end(self) -> None:
        self.path.unlink(missing_ok=True)


class FeedJournal:
    """One file naming the first insert whose events may not all have reached the rollups
    fed after commit (``FEED_TABLE``): written before such an insert, removed once every
    committed event is fed or its rollups counted again. A file found at start names the
    inserts whose rollups must be counted again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written = path.exists()

    def begin(self, stamp: int) -> None:
        """Before an insert stamped ``stamp`` (kept if an earlier one is noted already)."""
        if self._written:
            return
        _write_whole(self.path, {"from_stamp": stamp})
        self._written = True

    def pending(self) -> int | None:
        """The stamp from which inserts may not have been fed, if any."""
        entry = _read_entry(self.path)
        return None if entry is None else int(entry["from_stamp"])

    def end(self) -> None:
        if self._written:
            self.path.unlink(missing_ok=True)
            self._written = False


def recount_rollups(store: Store, scope: InsertScope) -> list[str]:
    """Rebuilds, from the events, every rollup row that an insert of ``scope`` may have
    touched; returns the rollups recounted. Nothing else may write meanwhile.

    The embedded store's alone (the writer is given no journal for a server): it drops
    partitions, deletes rows and creates a table, which the writer role of a server may not
    (docs/least-privilege.md); a server finishes or fails an insert without the service."""
    views = rollup_views(store)
    targets = sorted({target for _, _, target in views})
    tables = {
        name: (partition_key, sorting_key)
        for name, partition_key, sorting_key in store.query(
            TABLES_SQL, {"names": targets}
        ).result_rows
    }
    for target in targets:
        partition_key, sorting_key = tables[target]
        selects = [select for _, select, into in views if into == target]
        if partition_key:
            _recount_months(store, target, partition_key, selects, scope.months)
        elif "token_key" in (column.strip() for column in sorting_key.split(",")):
            _recount_tokens(store, target, selects, scope.token_keys)
        else:
            raise ValueError(
                f"no recount rule for rollup {target}: partition it by month or sort it by "
                "token_key among its keys"
            )
    return targets


def rollup_views(store: Store) -> list[tuple[str, str, str]]:
    """Each view that writes a rollup as events arrive: (name, its SELECT over the events,
    the rollup). The views of the rollups fed through FEED_TABLE read token_events here; the
    view that passes events on to the feed is not one."""
    return [
        (name, _FEED.sub(EVENTS_TABLE, select), target)
        for name, select, target in store.query(VIEWS_SQL).result_rows
        if target != FEED_TABLE
    ]


def _recount_months(
    store: Store, target: str, partition_key: str, selects: list[str], months: tuple[int, ...]
) -> None:
    if not months:
        return
    listed = ", ".join(str(int(month)) for month in months)
    for month in months:
        store.command(f"ALTER TABLE {target} DROP PARTITION {int(month)}")
    for select in selects:
        _insert(
            store,
            target,
            select,
            f"{partition_key} IN ({listed})",
            f"toYYYYMM(event_time) IN ({listed})",
        )


def _recount_tokens(store: Store, target: str, selects: list[str], keys: tuple[str, ...]) -> None:
    if not keys:
        return
    store.command(f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (token_key String) ENGINE = Memory")
    try:
        store.command(f"TRUNCATE TABLE {KEYS_TABLE}")
        store.insert_arrow(KEYS_TABLE, pa.table({"token_key": pa.array(keys, pa.string())}))
        listed = f"(SELECT token_key FROM {KEYS_TABLE})"
        store.command(f"DELETE FROM {target} WHERE token_key IN {listed}")
        # A view may key its rows by the previous id of a rotation: read both, keep the keys.
        events = f"token_key IN {listed} OR previous_token_id IN {listed}"
        for select in selects:
            _insert(store, target, select, f"token_key IN {listed}", events)
    finally:
        store.command(f"DROP TABLE IF EXISTS {KEYS_TABLE}")


def _insert(store: Store, target: str, select: str, rows: str, events: str) -> None:
    """The view's own SELECT over the events that ``events`` admits, keeping the rows that
    ``rows`` admits, into ``target``. (``events`` holds no quote: it goes into a setting.)"""
    columns = ", ".join(row[0] for row in store.query(f"DESCRIBE ({select})").result_rows)
    filters = f"{{'{store.options.database}.{EVENTS_TABLE}': '{events}'}}"
    store.command(
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM ({select}) WHERE {rows} "
        f"SETTINGS additional_table_filters = {filters}"
    )
