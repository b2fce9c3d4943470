"""The write path: coalesces concurrent requests into one insert and answers after the commit.

Each request hands its rows to ``write`` and waits. One flusher task takes everything pending
(bounded by rows and by a short delay), drops rows already committed (a retried request
re-sends the same event ids), marks each row with its token's status (``lifecycle``), inserts
once, then resolves every waiting request together.

An insert that failed may still have been committed (the store answered too late, or died
half way): before the next insert it is settled (``repair``): the ids of what it committed are
remembered, and with the embedded store its rollups are counted again.

With tamper evidence on, each insert is noted in the ledger before it runs and handed to it
once committed (or failed): the ledger seals it in a thread of its own (``ledger``).

With the embedded store, the analytics rollups are fed after commit (migration 0011): each
insert tells the view between token_events and the rollups' feed to pass nothing on, and the
writer inserts the committed rows into the feed itself, a second's worth (or ``max_rows``) at
a time, after their requests are answered. ClickHouse prepares a view again for every insert,
so five views cost an insert of 100,000 rows what they cost one of 5,000. A feed that failed,
or that a crash cut short, is settled like an insert: the rollup rows it may have touched are
counted again from the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tokenotel.errors import Overloaded, StoreUnavailable
from tokenotel.model import COLUMN_BY_NAME
from tokenotel.store.client import EVENTS_TABLE, FED_LATER, Store
from tokenotel.store.dedup import RecentIds
from tokenotel.store.ledger import Ledger
from tokenotel.store.lifecycle import TokenLifecycle
from tokenotel.store.migrate import FEED_TABLE
from tokenotel.store.repair import (
    FeedJournal,
    InsertJournal,
    InsertScope,
    recount_rollups,
    scope_since,
)

log = logging.getLogger(__name__)
_STAMP = COLUMN_BY_NAME["ingested_at"].arrow_type

KNOWN_TOKENS_SQL = """
SELECT token_key, lifecycle_status, toUnixTimestamp64Nano(lifecycle_at),
       toUnixTimestamp64Milli(expires_at)
FROM token_inventory
WHERE lifecycle_status != '' OR expires_at IS NOT NULL
"""
#: Ids of the events one insert committed (its stamp names it).
INSERT_IDS_SQL = f"""
SELECT event_id FROM {EVENTS_TABLE}
WHERE ingested_at = fromUnixTimestamp64Milli({{stamp:Int64}}, 'UTC') AND event_id != 0
"""
#: Ids of the events committed lately (each row keeps its id for a day, see migration 0004).
RECENT_IDS_SQL = f"""
SELECT event_id FROM {EVENTS_TABLE}
WHERE ingested_at >= now64(3) - INTERVAL 1 HOUR AND event_id != 0
ORDER BY ingested_at DESC
LIMIT {{limit:UInt64}}
"""


@dataclass
class _Pending:
    table: pa.Table
    done: asyncio.Future[int]


@dataclass
class WriterStats:
    inserts: int = 0
    rows_written: int = 0
    duplicates_dropped: int = 0
    failed_inserts: int = 0
    feeds: int = 0  # inserts into the rollups' feed


def feed_due(rows: int, since: float | None, max_rows: int, delay_s: float) -> bool:
    """Whether the ``rows`` committed and not yet fed go to the rollups now: ``max_rows`` of
    them wait, or the first, committed at ``since`` (``time.monotonic()``), has waited
    ``delay_s``."""
    return since is not None and (rows >= max_rows or time.monotonic() - since >= delay_s)


class BatchWriter:
    """Group commit into the events table, with a window of recently committed event ids."""

    def __init__(
        self,
        store: Store,
        *,
        max_rows: int,
        max_delay_s: float,
        max_pending_rows: int,
        dedup_window: int,
        retry_after_s: float,
        journal: InsertJournal | None,
        ledger: Ledger | None = None,
        feed: FeedJournal | None = None,
        feed_delay_s: float = 1.0,
    ) -> None:
        """``journal``: where each insert is noted before it starts, so that one a crash
        interrupted is settled at the next start (the embedded store, which dies with the
        service); None for a server, which finishes or fails an insert on its own.
        ``ledger``: where committed inserts are sealed (None: tamper evidence is off).
        ``feed``: where the inserts not yet fed to the rollups are noted, when the writer feeds
        them itself (the embedded store, with ``journal``), at most ``feed_delay_s`` after
        their commit; None: each insert reaches the rollups through the views."""
        self._store = store
        self._journal = journal
        self._feed = feed
        self._feed_delay_s = feed_delay_s
        self._insert_settings = FED_LATER if self._feed is not None else None
        #: Committed and not yet fed to the rollups, with the time the first was committed.
        self._unfed: list[pa.Table] = []
        self._unfed_rows = 0
        self._unfed_since: float | None = None
        #: Held around the work done in a thread (inserts, feeds): one at a time.
        self._working = asyncio.Lock()
        self.ledger = ledger
        #: Inserts that failed and may have been committed all the same: (stamp, scope).
        self._unsettled: list[tuple[int, InsertScope | None]] = []
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._max_pending_rows = max_pending_rows
        self._retry_after_s = retry_after_s
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._arrived = asyncio.Event()
        self._recent = RecentIds(dedup_window)
        self._primed = False
        self._last_stamp = 0
        self.lifecycle = TokenLifecycle()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats = WriterStats()
        #: Why the last write failed; None once a write succeeds again.
        self.failing: str | None = None
        #: The stamp of the insert running now: every insert before it is settled.
        self.in_progress_stamp: int | None = None
        self._commits = asyncio.Condition()
        #: Told each committed insert's rows (as inserted) and the seconds it took, after the
        #: commit and before its requests are answered; none may block (detection queues the
        #: rows, the service's telemetry records the figures).
        self.commit_observers: list[Callable[[pa.Table, float], None]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tokenotel-writer")

    async def stop(self) -> None:
        """Flushes what is pending, then stops."""
        if self._task is None:
            return
        self._stopping = True
        self._arrived.set()
        await self._task
        self._task = None
        if self.ledger is not None:  # every committed insert sealed before the last checkpoint
            await asyncio.to_thread(self.ledger.close)

    def stop_waiting(self) -> None:
        """From now on what comes is inserted at once, without waiting for more to join it:
        more will not come (an import that has sent its last request)."""
        self._max_delay_s = 0.0
        self._arrived.set()

    async def write(self, table: pa.Table) -> int:
        """Returns once the rows of ``table`` are committed (how many were new).

        Raises StoreUnavailable when the store cannot take them now.
        """
        rows = table.num_rows
        if not rows:
            return 0
        if self._pending_rows + rows > self._max_pending_rows:
            raise Overloaded(
                "the store is falling behind: too many rows waiting to be written; "
                "send again later",
                self._retry_after_s,
            )
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(table, done))
        self._pending_rows += rows
        self._arrived.set()
        return await done

    async def settle(self) -> None:
        """Before the first insert, when the store answers: an insert a crash interrupted is
        settled and the ledger read, so both are done at start. Otherwise the first insert
        tries again."""
        try:
            await asyncio.to_thread(self._prime)
        except StoreUnavailable as e:
            log.info("the store is not ready yet (%s): settling at the first insert", e)
        except Exception:  # a bug: the first insert tries again, and fails its requests
            log.exception("settling the store at start failed")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not (self._stopping and not self._pending):
            if self._unfed_since is not None:  # nothing comes: the rollups are fed on time
                due = self._unfed_since + self._feed_delay_s - time.monotonic()
                try:
                    await asyncio.wait_for(self._arrived.wait(), max(due, 0.0))
                except TimeoutError:
                    await self.feed_rollups()
                    continue
            else:
                await self._arrived.wait()
            started = loop.time()
            while (
                not self._stopping
                and self._pending_rows < self._max_rows
                and (wait := started + self._max_delay_s - loop.time()) > 0
            ):
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except TimeoutError:
                    break
            await self._flush()
            if not self._pending and not self._stopping:
                self._arrived.clear()
        await self.feed_rollups()

    async def _flush(self) -> None:
        taken: list[_Pending] = []
        count = 0
        while self._pending and (
            not taken or count + self._pending[0].table.num_rows <= self._max_rows
        ):
            item = self._pending.pop(0)
            taken.append(item)
            count += item.table.num_rows
        self._pending_rows -= count
        if not taken:
            return
        try:
            async with self._working:
                written = await asyncio.to_thread(self._insert, [p.table for p in taken])
        except Exception as e:
            self.failing = str(e)
            self.stats.failed_inserts += 1
            if isinstance(e, StoreUnavailable):  # (it carries the delay clients should wait)
                log.warning("write of %d rows failed, clients will retry: %s", count, e)
            else:  # a bug: the requests fail, the writer goes on
                log.exception("write of %d rows failed unexpectedly", count)
            for item in taken:
                if not item.done.done():
                    item.done.set_exception(e)
            return
        self.failing = None
        for item, new in zip(taken, written, strict=True):
            if not item.done.done():
                item.done.set_result(new)
        async with self._commits:
            self._commits.notify_all()
        if self._feed_due():  # after the answers: a feed delays the next insert, not these
            await self.feed_rollups()

    async def feed_rollups(self) -> None:
        """Feeds the rollups what is committed and not fed yet, now (the writer does on its own
        within ``feed_delay_s``)."""
        if self._unfed:
            async with self._working:
                await asyncio.to_thread(self._feed_now)

    @property
    def pending_rows(self) -> int:
        """Rows handed to ``write`` and not yet committed."""
        return self._pending_rows

    def committed_up_to(self) -> int | None:
        """A stamp such that every insert stamped up to it is committed and no later insert
        will be stamped before it: the one before the insert running now. None when nothing
        runs (then the newest stamp in the store is one)."""
        running = self.in_progress_stamp
        return None if running is None else running - 1

    async def wait_for_commit(self, timeout_s: float) -> None:
        """Until the next insert is committed, or ``timeout_s`` has passed."""
        async with self._commits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commits.wait(), timeout_s)

    def _insert(self, tables: list[pa.Table]) -> list[int]:
        """Runs in a worker thread: drop known event ids, insert once; new rows per table."""
        self._prime()
        self._settle()
        ids = np.concatenate([table.column("event_id").to_numpy() for table in tables])
        new = np.zeros(len(ids), dtype=bool)
        new[np.unique(ids, return_index=True)[1]] = True  # the first of each id in this insert
        new &= ~self._recent.contains(ids)
        kept: list[pa.Table] = []
        written: list[int] = []
        start = 0
        for table in tables:
            mask = new[start : start + table.num_rows]
            start += table.num_rows
            new_rows = int(mask.sum())
            written.append(new_rows)
            if new_rows:
                kept.append(table if new_rows == table.num_rows else table.filter(pa.array(mask)))
        rows = sum(written)
        if kept:
            batch = pa.concat_tables(kept)
            stamp = self._next_stamp()
            # The ids go in with their events, in the same part: both are committed, or neither.
            batch = batch.append_column("token_status", self.lifecycle.annotate(batch))
            batch = batch.append_column(
                "ingested_at", pa.repeat(pa.scalar(stamp, _STAMP), batch.num_rows)
            )
            scope = InsertScope.of(batch) if self._journal is not None else None
            try:
                if self._journal is not None and scope is not None:
                    self._journal.begin(stamp, scope)
                if self._feed is not None:
                    self._feed.begin(stamp)
                if self.ledger is not None:
                    self.ledger.begin(stamp)
            except OSError as e:  # the disk is full, most likely: so is the store's
                raise StoreUnavailable(
                    f"cannot note the insert in the data directory: {e.strerror}",
                    self._retry_after_s,
                ) from e
            self.in_progress_stamp = stamp
            started = time.perf_counter()
            try:
                self._store.insert_arrow(EVENTS_TABLE, batch, self._insert_settings)
            except StoreUnavailable:
                self._unsettled.append((stamp, scope))
                if self.ledger is not None:
                    self.ledger.failed(stamp)
                raise
            finally:
                self.in_progress_stamp = None
            if self._journal is not None:
                self._journal.end()
            if self._feed is not None:
                self._unfed.append(batch)
                self._unfed_rows += batch.num_rows
                if self._unfed_since is None:
                    self._unfed_since = time.monotonic()
            if self.ledger is not None:
                self.ledger.committed(stamp, batch)
            seconds = time.perf_counter() - started
            for observer in self.commit_observers:
                observer(batch, seconds)
            # Committed: from here on a retry of these rows is a duplicate.
            self._recent.add(batch["event_id"].to_numpy())
            self.stats.inserts += 1  # (a batch of duplicates only is no insert)
        self.stats.rows_written += rows
        self.stats.duplicates_dropped += sum(t.num_rows for t in tables) - rows
        return written

    def _feed_due(self) -> bool:
        return feed_due(self._unfed_rows, self._unfed_since, self._max_rows, self._feed_delay_s)

    def _feed_now(self) -> None:
        """Runs in a worker thread: what is committed and not yet fed goes to the rollups in one
        insert. One that fails may have reached some of them: its rollup rows are counted
        again from the events before the next insert (``_settle``)."""
        if not self._unfed:
            return
        table = pa.concat_tables(self._unfed)
        first_stamp = int(table["ingested_at"][0].cast(pa.int64()).as_py())
        self._unfed, self._unfed_rows, self._unfed_since = [], 0, None
        try:
            self._store.insert_arrow(FEED_TABLE, table)
        except Exception as e:
            if isinstance(e, StoreUnavailable):
                log.warning(
                    "feeding %d events to the rollups failed, they will be counted again: %s",
                    table.num_rows,
                    e,
                )
            else:  # a bug: the rollups are counted again all the same
                log.exception("feeding %d events to the rollups failed", table.num_rows)
            self._unsettled.append((first_stamp, InsertScope.of(table)))
            return
        self.stats.feeds += 1
        if not self._unsettled and self._feed is not None:
            self._feed.end()

    def _next_stamp(self) -> int:
        """A distinct ingested_at (ms) for each insert, so it names the insert."""
        self._last_stamp = max(time.time_ns() // 1_000_000, self._last_stamp + 1)
        return self._last_stamp

    def _prime(self) -> None:
        """Once the store answers: the ids committed lately (a retry may be on its way after
        a restart) and the lifecycle of every token known."""
        if self._primed:
            return
        pending = self._journal.pending() if self._journal is not None else None
        if pending is not None and pending not in self._unsettled:
            log.warning(
                "an insert was interrupted (the service stopped in it, stamp %d): settling it",
                pending[0],
            )
            self._unsettled.append(pending)
        unfed = self._feed.pending() if self._feed is not None else None
        if unfed is not None:
            log.warning(
                "the service stopped before the inserts from stamp %d reached the rollups: "
                "counting them again",
                unfed,
            )
            self._unsettled.append((unfed, scope_since(self._store, unfed)))
        if self.ledger is not None:
            if not self.ledger.loaded:
                self.ledger.load()
            self._last_stamp = max(self._last_stamp, self.ledger.newest_stamp())
        self._settle()
        if self._recent.window:
            result = self._store.query(RECENT_IDS_SQL, {"limit": self._recent.window})
            self._recent.add(np.array([row[0] for row in result.result_rows], dtype=np.uint64))
        self.lifecycle.load(self._store.query(KNOWN_TOKENS_SQL).result_rows)
        self._primed = True

    def _settle(self) -> None:
        """Inserts that failed may have been committed all the same, in whole or in part:
        what they committed is remembered (a retry of it is a duplicate), and with the
        embedded store every rollup row they may have touched is counted again (what is
        committed and not yet fed is fed first: the recount counts it)."""
        if self._unsettled and self._unfed:
            self._feed_now()
        while self._unsettled:
            stamp, scope = self._unsettled[0]
            result = self._store.query(INSERT_IDS_SQL, {"stamp": stamp})
            self._recent.add(np.array([row[0] for row in result.result_rows], dtype=np.uint64))
            if self._journal is not None and scope is not None:
                recount_rollups(self._store, scope)
                self._journal.end()
                log.info(
                    "settled an unfinished insert (stamp %d): %d of its events were stored; "
                    "rollups counted again for months %s and %d tokens",
                    stamp,
                    len(result.result_rows),
                    ", ".join(map(str, scope.months)),
                    len(scope.token_keys),
                )
            self._unsettled.pop(0)
        if self._feed is not None and not self._unfed:
            self._feed.end()
