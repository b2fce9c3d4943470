"""The ledger: every committed insert as leaves of an append-only Merkle tree.

Each insert the writer commits becomes one leaf per month of events it wrote (a month is a
partition of ``token_events``, and retention drops whole partitions' parts): its sequence
number (its index in the tree), its stamp (the ``ingested_at`` of all its rows), the month,
how many rows, their oldest and newest event time, and the digest of those rows
(``row_digest``). The tree over them is signed in checkpoints (``tokenotel.integrity``).

Sealing is off the write path: the writer hands each committed insert to the ledger's own
thread and answers its clients at once; that thread digests the rows and appends the leaves,
in commit order, several inserts in one write when they queue up. A few inserts wait at most
(``QUEUED``): past that the writer waits, so memory stays bounded.

Between an insert's commit and its leaves the service may die, or the ledger's own write may
fail: a small journal names every stamp begun and not yet sealed, and those stamps, and only
they, are sealed later from the rows the store holds under them (their leaves marked
``recovered``). Rows under any other stamp without a leaf are what ``tokenotel verify``
reports as inserted.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tokenotel.errors import StoreUnavailable
from tokenotel.store import merkle
from tokenotel.store.client import EVENTS_TABLE, Store
from tokenotel.store.row_digest import DIGEST_COLUMNS, rows_digest

log = logging.getLogger(__name__)
T = TypeVar("T")

LEDGER_TABLE = "ledger"
#: In the data directory: the stamps of inserts begun and not sealed yet, one a line.
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
  AND ({{until:Int64}} < 0 OR ingested_at <= fromUnixTimestamp64Milli({{until:Int64}}, 'UTC'))
GROUP BY stamp, partition
ORDER BY stamp, partition
"""
#: Most rows read back at once to seal or verify inserts.
READ_ROWS = 500_000
#: How often sealing the inserts of an older version reports how far it is.
PROGRESS_EVERY_S = 10.0
#: Committed inserts waiting to be sealed before the writer waits for the ledger.
QUEUED = 2
#: Leaves are written at most this often (each write costs a few ms of the store's CPU).
WRITE_EVERY_S = 1.0
_FLUSH = (-1, None)  # a queue item: write the leaves now
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


class _Skipped(Exception):
    """Sealing failed for a reason other than the store (a bug, logged)."""


def seal_rows(table: pa.Table) -> list[Sealed]:
    """The rows of one insert, a ``Sealed`` for each month of event time, months in order."""
    times = table.column("event_time")
    low, high = (value.as_py() for value in pc.min_max(times.cast(pa.int64())).values())
    if _month(low) == _month(high):  # nearly always: no month to find row by row
        return [Sealed(_month(low), table.num_rows, low, high, rows_digest(table))]
    months = pc.add(pc.multiply(pc.year(times), 100), pc.month(times))
    sealed = []
    for month in sorted(pc.unique(months).to_pylist()):
        rows = table.filter(pc.equal(months, month))
        low, high = pc.min_max(rows.column("event_time").cast(pa.int64())).values()
        sealed.append(Sealed(month, rows.num_rows, low.as_py(), high.as_py(), rows_digest(rows)))
    return sealed


def _month(ns: int) -> int:
    """YYYYMM of a time in ns since the epoch (UTC), as ClickHouse's toYYYYMM."""
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    return moment.year * 100 + moment.month


@dataclass(frozen=True)
class TreeHead:
    """The tree as a checkpoint signs it."""

    size: int
    root: bytes
    subtrees: bytes  # CompactTree.to_bytes(): stored beside the checkpoint (as hex)
    events: int  # rows appended since the ledger was loaded (to count events between checkpoints)


class Ledger:
    """The leaves of committed inserts and the tree over them. The writer notes each insert
    (``begin``) and hands it over once committed (``committed``) or failed (``failed``); the
    ledger's thread seals them in that order. Any thread may take the tree head."""

    def __init__(self, store: Store, journal: Path, retry_after_s: float = 1.0) -> None:
        self._store = store
        self._journal = journal
        self._retry_after_s = retry_after_s
        self._tree = merkle.CompactTree()
        self._events = 0
        self._lock = threading.Lock()
        self._sealed_now = threading.Condition(self._lock)
        #: Stamps begun and not sealed yet, oldest first (what the journal holds).
        self._pending: list[int] = []
        self._queue: queue.Queue[tuple[int, pa.Table | None] | None] = queue.Queue()
        self._room = threading.Semaphore(QUEUED)  # for committed inserts' rows, not failures
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.loaded = False
        #: The stamp of the newest leaf (inserts after it are stamped later).
        self.last_stamp: int | None = None

    # -- the writer's side -------------------------------------------------------------------

    def load(self) -> None:
        """Goes on from the newest checkpoint and the leaves after it, and starts sealing:
        first the stamps the journal names (the service stopped before sealing them). A store
        with events and neither leaves nor checkpoints (written before tamper evidence) is
        sealed whole first, every leaf marked recovered."""
        tree = merkle.CompactTree()
        newest = self._store.query(NEWEST_TREE_SQL).result_rows
        if newest:
            tree = _resumed(*newest[0]) or tree
        with self._lock:
            self._tree = tree
        self._catch_up()
        if self._tree.size == 0 and not self._store.query(ANY_CHECKPOINT_SQL).result_rows[0][0]:
            self._seal_history()
        unsealed = self._read_journal()
        if unsealed:
            log.warning(
                "the service stopped before sealing %d inserts: sealing them from the store",
                len(unsealed),
            )
        self._pending = unsealed
        self._thread = threading.Thread(target=self._seal_all, name="tokenotel-seal", daemon=True)
        self._thread.start()
        for stamp in unsealed:
            self._queue.put((stamp, None))
        self.loaded = True
        log.info("ledger loaded: %d inserts sealed", self._tree.size)

    def newest_stamp(self) -> int:
        """No insert may be stamped at or before this: the newest leaf's or unsealed stamp."""
        with self._lock:
            return max([self.last_stamp or 0, *self._pending])

    def begin(self, stamp: int) -> None:
        """Notes the insert about to run; raises OSError when the note cannot be written."""
        with self._lock:
            self._pending.append(stamp)
            self._write_journal()

    def committed(self, stamp: int, batch: pa.Table) -> None:
        """Hands over a committed insert's rows (as inserted) to be sealed; waits while
        QUEUED inserts' rows wait already."""
        self._room.acquire()
        self._queue.put((stamp, batch))

    def failed(self, stamp: int) -> None:
        """An insert failed, and may have been committed all the same: sealed from the store
        (once it answers) with whatever it holds under the stamp."""
        self._queue.put((stamp, None))

    def wait_sealed(self, timeout_s: float) -> bool:
        """Writes the leaves of what was handed over, and waits until every insert begun so
        far is sealed (or ``timeout_s`` passed)."""
        self._queue.put(_FLUSH)
        with self._sealed_now:
            return self._sealed_now.wait_for(lambda: not self._pending, timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Seals what was handed over, then stops. What cannot be sealed in time (the store
        is down) stays in the journal, for the next start."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._closing.set()
        self._thread.join()
        self._thread = None

    # -- the ledger's thread -----------------------------------------------------------------

    def _seal_all(self) -> None:
        """Digests each insert as it comes, and writes the leaves of those sealed so far every
        WRITE_EVERY_S, when asked (``wait_sealed``) and when closing."""
        unwritten: list[tuple[int, list[Sealed], bool]] = []
        last_write = time.monotonic()
        while True:
            wait = max(0.0, last_write + WRITE_EVERY_S - time.monotonic()) if unwritten else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _FLUSH
            if item is not None and item is not _FLUSH:
                stamp, batch = item
                try:
                    sealed = self._retrying(partial(self._sealed, stamp, batch))
                except _Skipped:
                    continue
                finally:
                    if batch is not None:
                        self._room.release()  # its rows may go: only the digests are kept
                if sealed is None:
                    return  # closing while the store is down: the journal keeps the rest
                unwritten.append(sealed)
                if time.monotonic() - last_write < WRITE_EVERY_S:
                    continue
            if unwritten or item is _FLUSH:
                try:
                    if self._retrying(partial(self._append, unwritten)) is None:
                        return
                    done = {stamp for stamp, _, _ in unwritten}
                except _Skipped:
                    done = set()
                with self._lock:
                    self._pending = [stamp for stamp in self._pending if stamp not in done]
                    self._write_journal()
                    self._sealed_now.notify_all()
                unwritten, last_write = [], time.monotonic()
            if item is None:
                return

    def _retrying(self, step: Callable[[], T]) -> T | None:
        """``step``, again while the store fails; None when closing before it answers. A bug
        is logged and raises _Skipped: what it was sealing stays in the journal, for the next
        start."""
        warned = False
        while True:
            try:
                return step()
            except StoreUnavailable as e:
                if self._closing.is_set():
                    return None
                if not warned:
                    log.warning("cannot seal inserts yet, trying again: %s", e)
                    warned = True
                time.sleep(self._retry_after_s)
            except Exception:
                log.exception("sealing inserts failed: they are sealed at the next start")
                raise _Skipped from None

    def _sealed(self, stamp: int, batch: pa.Table | None) -> tuple[int, list[Sealed], bool]:
        """(stamp, what it wrote per month, recovered): from its rows as inserted, or from
        what the store holds under its stamp."""
        if batch is not None:
            return stamp, seal_rows(batch), False
        self._catch_up()  # its leaves may have been written before the service stopped
        with self._lock:
            if self.last_stamp is not None and self.last_stamp >= stamp:
                return stamp, [], True
        found = [s for _, s in sorted(_sealed_groups(self._store, stamp, stamp))]
        if found:
            log.warning(
                "sealed an unfinished insert (stamp %d) from the %d rows the store holds",
                stamp,
                sum(s.rows for s in found),
            )
        return stamp, found, True

    def _append(self, inserts: list[tuple[int, list[Sealed], bool]]) -> list[Leaf]:
        """Writes the leaves of committed inserts, in order, in one insert; raises
        StoreUnavailable (then nothing changed here)."""
        with self._lock:
            size = self._tree.size
        leaves: list[Leaf] = []
        for stamp, sealed, recovered in inserts:
            for it in sealed:
                leaves.append(
                    Leaf(
                        size + len(leaves),
                        stamp,
                        it.partition,
                        it.rows,
                        it.oldest_ns,
                        it.newest_ns,
                        recovered,
                        it.digest,
                    )
                )
        if leaves:
            self._store.insert_arrow(LEDGER_TABLE, _leaf_table(leaves))
            self._add(leaves)
        return leaves

    def _read_journal(self) -> list[int]:
        return unsealed_stamps(self._journal)

    def _write_journal(self) -> None:
        """The pending stamps, whole or not at all (the caller holds the lock)."""
        if not self._pending:
            self._journal.unlink(missing_ok=True)
            return
        temporary = self._journal.with_suffix(".tmp")
        temporary.write_text("".join(f"{stamp}\n" for stamp in self._pending), encoding="ascii")
        temporary.replace(self._journal)

    def _seal_history(self) -> None:
        stored = self._store.query(STORED_INSERTS_SQL, {"since": 0, "until": -1}).result_rows
        if not stored:
            return
        inserts = len({stamp for stamp, _, _ in stored})
        log.warning(
            "sealing %d inserts stored before tamper evidence was on (marked recovered); the "
            "listeners open once they are sealed (docs/tamper-evidence.md)",
            inserts,
        )
        groups: dict[int, list[tuple[int, Sealed]]] = {}
        reported = time.monotonic()
        for first, last in stamp_ranges(stored):
            for (stamp, partition), sealed in _sealed_groups(self._store, first, last):
                groups.setdefault(stamp, []).append((partition, sealed))
            if time.monotonic() - reported >= PROGRESS_EVERY_S:
                log.info("sealed %d of %d inserts stored before", len(groups), inserts)
                reported = time.monotonic()
        self._append(
            [(stamp, [s for _, s in sorted(groups[stamp])], True) for stamp in sorted(groups)]
        )

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


def unsealed_stamps(journal: Path) -> list[int]:
    """The stamps a ledger journal names: inserts begun and not sealed."""
    try:
        text = journal.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


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


def stamp_ranges(stored: Sequence[Sequence[Any]]) -> Iterator[tuple[int, int]]:
    """Stamp ranges of at most about READ_ROWS rows each (one stamp's months in one range),
    from (stamp, month, rows) in stamp order."""
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
