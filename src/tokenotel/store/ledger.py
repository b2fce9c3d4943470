"""The ledger: every committed insert as leaves of an append-only Merkle tree.

Each insert the writer commits becomes one leaf per month of events it wrote (a month is a
partition of ``token_events``, and retention drops whole partitions' parts): its sequence
number (its index in the tree), its stamp (the ``ingested_at`` of all its rows), the month,
how many rows, their oldest and newest event time, and the digest of those rows
(``row_digest``). The writer appends the leaves right after the insert commits, in commit
order; the tree over them is signed in checkpoints (``tokenotel.integrity``).

Between an insert's commit and its leaves the service may die, or the ledger's own insert
may fail: a small journal names the stamp in flight, and that stamp, and only it, is sealed
later from the rows the store holds (its leaves marked ``recovered``). Rows under any other
stamp without a leaf are what ``tokenotel verify`` reports as inserted.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tokenotel.store import merkle
from tokenotel.store.client import EVENTS_TABLE, Store
from tokenotel.store.row_digest import DIGEST_COLUMNS, rows_digest

log = logging.getLogger(__name__)

LEDGER_TABLE = "ledger"
#: In the data directory: the stamp of the insert whose leaves are not written yet.
JOURNAL_FILE = "seal-in-progress"
CHECKPOINTS_TABLE = "checkpoints"
_LEAF = struct.Struct(">BQqIQqq?32s")
_LEAF_VERSION = 1
_LEDGER_SCHEMA = pa.schema(
    [
        ("sequence", pa.uint64()),
        ("ingested_at", pa.timestamp("ms", tz="UTC")),
        ("partition", pa.uint32()),
        ("rows", pa.uint64()),
        ("oldest_event", pa.timestamp("ns", tz="UTC")),
        ("newest_event", pa.timestamp("ns", tz="UTC")),
        ("recovered", pa.bool_()),
        ("rows_sha256", pa.binary(32)),
    ]
)
LEAVES_SQL = f"""
SELECT sequence, toUnixTimestamp64Milli(ingested_at) AS stamp, partition, rows,
       toUnixTimestamp64Nano(oldest_event) AS oldest, toUnixTimestamp64Nano(newest_event) AS newest,
       recovered, rows_sha256
FROM {LEDGER_TABLE}
WHERE sequence >= {{first:UInt64}}
ORDER BY sequence
"""
#: The newest checkpoint's tree: where the writer goes on from.
NEWEST_TREE_SQL = f"""
SELECT tree_size, note, subtrees FROM {CHECKPOINTS_TABLE}
ORDER BY tree_size DESC, time DESC LIMIT 1
"""
ANY_CHECKPOINT_SQL = f"SELECT count() FROM {CHECKPOINTS_TABLE}"
#: The rows of a range of inserts, with what groups them into leaves.
ROWS_SQL = f"""
SELECT toUnixTimestamp64Milli(ingested_at) AS _stamp, toYYYYMM(event_time) AS _partition,
       {", ".join(DIGEST_COLUMNS)}
FROM {EVENTS_TABLE}
WHERE ingested_at BETWEEN fromUnixTimestamp64Milli({{first:Int64}}, 'UTC')
                      AND fromUnixTimestamp64Milli({{last:Int64}}, 'UTC')
"""
#: Every insert stored: (stamp, month) and its rows.
STORED_INSERTS_SQL = f"""
SELECT toUnixTimestamp64Milli(ingested_at) AS stamp, toYYYYMM(event_time) AS partition,
       count() AS rows
FROM {EVENTS_TABLE}
WHERE ingested_at >= fromUnixTimestamp64Milli({{since:Int64}}, 'UTC')
GROUP BY stamp, partition
ORDER BY stamp, partition
"""
#: Most rows read back at once to seal or verify inserts.
READ_ROWS = 500_000


@dataclass(frozen=True)
class Sealed:
    """The rows one insert wrote to one month, summed up."""

    partition: int  # YYYYMM
    rows: int
    oldest_ns: int
    newest_ns: int
    digest: bytes


@dataclass(frozen=True)
class Leaf:
    """One leaf of the tree: an insert's rows in one month."""

    sequence: int
    stamp_ms: int
    partition: int
    rows: int
    oldest_ns: int
    newest_ns: int
    recovered: bool
    digest: bytes

    def to_bytes(self) -> bytes:
        """The leaf's data as the tree hashes it (docs/tamper-evidence.md)."""
        return _LEAF.pack(
            _LEAF_VERSION,
            self.sequence,
            self.stamp_ms,
            self.partition,
            self.rows,
            self.oldest_ns,
            self.newest_ns,
            self.recovered,
            self.digest,
        )

    def hash(self) -> bytes:
        return merkle.leaf_hash(self.to_bytes())


def seal_rows(table: pa.Table) -> list[Sealed]:
    """The rows of one insert, a ``Sealed`` for each month of event time, months in order."""
    times = table.column("event_time")
    months = pc.add(pc.multiply(pc.year(times), 100), pc.month(times))
    found = sorted(pc.unique(months).to_pylist())
    sealed = []
    for month in found:
        rows = table if len(found) == 1 else table.filter(pc.equal(months, month))
        low, high = pc.min_max(rows.column("event_time").cast(pa.int64())).values()
        sealed.append(Sealed(month, rows.num_rows, low.as_py(), high.as_py(), rows_digest(rows)))
    return sealed


@dataclass(frozen=True)
class TreeHead:
    """The tree as a checkpoint signs it."""

    size: int
    root: bytes
    subtrees: bytes  # CompactTree.to_bytes(): stored beside the checkpoint (as hex)
    events: int  # rows appended since the ledger was loaded (to count events between checkpoints)


class Ledger:
    """The leaves the writer appends and the tree over them. The writer's thread appends;
    any thread may take the tree head."""

    def __init__(self, store: Store, journal: Path) -> None:
        self._store = store
        self._journal = journal
        self._tree = merkle.CompactTree()
        self._events = 0
        self._lock = threading.Lock()
        self.loaded = False
        #: The stamp of the newest leaf (inserts after it are stamped later).
        self.last_stamp: int | None = None

    # -- the writer's side (one thread) ------------------------------------------------------

    def load(self) -> None:
        """Goes on from the newest checkpoint and the leaves after it. A store with events
        and neither leaves nor checkpoints (written before tamper evidence) is sealed whole
        first, every leaf marked recovered."""
        tree = merkle.CompactTree()
        newest = self._store.query(NEWEST_TREE_SQL).result_rows
        if newest:
            tree = _resumed(*newest[0]) or tree
        with self._lock:
            self._tree = tree
        self._catch_up()
        if self._tree.size == 0 and not self._store.query(ANY_CHECKPOINT_SQL).result_rows[0][0]:
            self._seal_history()
        self.loaded = True
        log.info("ledger loaded: %d inserts sealed", self._tree.size)

    def begin(self, stamp: int) -> None:
        """Notes the insert about to run; raises OSError when the note cannot be written."""
        temporary = self._journal.with_suffix(".tmp")
        temporary.write_text(str(stamp), encoding="ascii")
        temporary.replace(self._journal)

    def pending(self) -> int | None:
        """The stamp of an insert that began and was not sealed, if any."""
        try:
            return int(self._journal.read_text(encoding="ascii"))
        except (FileNotFoundError, ValueError):
            return None

    def end(self) -> None:
        self._journal.unlink(missing_ok=True)

    def append(self, stamp: int, sealed: list[Sealed], *, recovered: bool = False) -> list[Leaf]:
        """Writes the leaves of one committed insert; raises StoreUnavailable (then nothing
        changed here, and the insert must be sealed again from the store)."""
        with self._lock:
            size = self._tree.size
        leaves = [
            Leaf(
                size + i,
                stamp,
                it.partition,
                it.rows,
                it.oldest_ns,
                it.newest_ns,
                recovered,
                it.digest,
            )
            for i, it in enumerate(sealed)
        ]
        if leaves:
            self._store.insert_arrow(LEDGER_TABLE, _leaf_table(leaves))
            self._add(leaves)
        self.end()
        return leaves

    def seal_from_store(self, stamp: int) -> list[Leaf]:
        """Seals an insert whose leaves may be missing (it failed, or the service died in it)
        from the rows the store holds under its stamp; leaves marked recovered."""
        self._catch_up()  # its leaves may have been written after all
        with self._lock:
            known = self.last_stamp
        if known is not None and known >= stamp:
            self.end()
            return []
        sealed = [s for _, s in sorted(_sealed_groups(self._store, stamp, stamp))]
        leaves = self.append(stamp, sealed, recovered=True)
        if leaves:
            log.warning(
                "sealed an unfinished insert (stamp %d) from the %d rows the store holds",
                stamp,
                sum(leaf.rows for leaf in leaves),
            )
        return leaves

    def _seal_history(self) -> None:
        stored = self._store.query(STORED_INSERTS_SQL, {"since": 0}).result_rows
        if not stored:
            return
        log.warning(
            "sealing %d inserts stored before tamper evidence was on (marked recovered)",
            len({stamp for stamp, _, _ in stored}),
        )
        groups: dict[int, list[tuple[int, Sealed]]] = {}
        for first, last in _ranges(stored):
            for (stamp, partition), sealed in _sealed_groups(self._store, first, last):
                groups.setdefault(stamp, []).append((partition, sealed))
        for stamp in sorted(groups):
            self.append(stamp, [s for _, s in sorted(groups[stamp])], recovered=True)

    def _catch_up(self) -> None:
        """Adds to the tree the leaves the table holds beyond it."""
        with self._lock:
            size = self._tree.size
        leaves = read_leaves(self._store, size)
        expected = size
        for leaf in leaves:
            if leaf.sequence != expected:
                log.error(
                    "the ledger holds leaf %d where %d was expected: it was changed; "
                    "run `tokenotel verify`",
                    leaf.sequence,
                    expected,
                )
                break
            expected += 1
        self._add(leaves[: expected - size], count_events=False)

    def _add(self, leaves: list[Leaf], *, count_events: bool = True) -> None:
        with self._lock:
            for leaf in leaves:
                self._tree.append(leaf.hash())
                self.last_stamp = leaf.stamp_ms
                if count_events:
                    self._events += leaf.rows

    # -- any thread --------------------------------------------------------------------------

    def head(self) -> TreeHead:
        with self._lock:
            tree = self._tree.copy()
            events = self._events
        return TreeHead(tree.size, tree.root(), tree.to_bytes(), events)


def read_leaves(store: Store, first: int = 0) -> list[Leaf]:
    """The ledger's leaves from sequence ``first`` on, in order."""
    table = store.query_arrow(LEAVES_SQL, {"first": first})
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [
        Leaf(int(s), int(t), int(p), int(r), int(o), int(n), bool(rec), _raw(d))
        for s, t, p, r, o, n, rec, d in zip(*columns, strict=True)
    ]


def stored_groups(
    store: Store, first_stamp: int, last_stamp: int
) -> Iterator[tuple[tuple[int, int], pa.Table]]:
    """The rows stored under stamps ``first_stamp``..``last_stamp``, grouped by (stamp,
    month): what each leaf of those inserts seals."""
    table = store.query_arrow(ROWS_SQL, {"first": first_stamp, "last": last_stamp})
    if not table.num_rows:
        return
    stamps = table.column("_stamp").to_numpy()
    partitions = table.column("_partition").to_numpy()
    keys = stamps.astype(np.int64) * 1_000_000 + partitions.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    table = table.take(pa.array(order))
    bounds = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
    for start, end in itertools.pairwise(bounds):
        key = int(keys[start])
        yield (key // 1_000_000, key % 1_000_000), table.slice(start, end - start)


def _sealed_groups(
    store: Store, first_stamp: int, last_stamp: int
) -> Iterator[tuple[tuple[int, int], Sealed]]:
    for key, rows in stored_groups(store, first_stamp, last_stamp):
        (sealed,) = seal_rows(rows)
        yield key, sealed


def _ranges(stored: Sequence[Sequence[Any]]) -> Iterator[tuple[int, int]]:
    """Stamp ranges of at most about READ_ROWS rows each, from (stamp, month, rows) in order."""
    first: int | None = None
    last = count = 0
    for stamp, _, rows in stored:
        if first is None:
            first = stamp
        elif count + rows > READ_ROWS and stamp != last:
            yield first, last
            first, count = stamp, 0
        count += rows
        last = stamp
    if first is not None:
        yield first, last


def _resumed(size: int, note: str, subtrees: str) -> merkle.CompactTree | None:
    """The tree a checkpoint kept, when its subtrees make the root it signed; else None (then
    the ledger is read from its first leaf)."""
    try:
        tree = merkle.CompactTree.from_bytes(size, bytes.fromhex(subtrees))
        signed = base64.b64decode(note.split("\n")[2], validate=True)
    except (ValueError, IndexError, binascii.Error):
        tree, signed = None, b""
    if tree is None or tree.root() != signed:
        log.warning("the newest checkpoint's tree does not make its root: reading every leaf")
        return None
    return tree


def _leaf_table(leaves: list[Leaf]) -> pa.Table:
    def column(name: str) -> list[object]:
        return [getattr(leaf, name) for leaf in leaves]

    arrays = [
        column("sequence"),
        column("stamp_ms"),
        column("partition"),
        column("rows"),
        column("oldest_ns"),
        column("newest_ns"),
        column("recovered"),
        column("digest"),
    ]
    return pa.table(
        [pa.array(values).cast(f.type) for values, f in zip(arrays, _LEDGER_SCHEMA, strict=True)],
        schema=_LEDGER_SCHEMA,
    )


def _raw(value: bytes | str) -> bytes:
    """A String or FixedString column's bytes, whichever way the driver hands them."""
    return value if isinstance(value, bytes) else value.encode("latin-1")
