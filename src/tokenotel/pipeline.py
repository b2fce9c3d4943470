"""The ingest pipeline: how an OTLP request becomes rows, and the one lifecycle of its stages.

    request bytes ─► mapping pool (decode, map, fingerprint) ─► batching writer ─► store
                                                                      │ (sealed inserts)
                                                        ledger ─► signed checkpoints ─► published

The servers (``service.py``), the demo and the tests all drive it through ``start``,
``export``, ``ready`` and ``stop``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from tokenotel.config import Settings
from tokenotel.detect.notify import OtlpNotifier, WebhookNotifier
from tokenotel.detect.rules import load_rules, shipped_rules
from tokenotel.detect.stream import Notifier, StreamDetector
from tokenotel.errors import ConfigError, Overloaded, StoreUnavailable
from tokenotel.ingest.consumer import BodyBudget, ExportResult, Resize, error_summary
from tokenotel.integrity.checkpointer import Checkpointer
from tokenotel.integrity.publish import (
    DirectoryPublisher,
    OtlpPublisher,
    Publisher,
    WebhookPublisher,
)
from tokenotel.integrity.signing import default_key_name, load_signing_key
from tokenotel.mapping.fingerprint import load_key, load_previous_keys
from tokenotel.mapping.mapper import EVENTS, NOT_TOKEN_EVENTS, RECORDS, REJECTED
from tokenotel.mapping.workers import MappedTable, MappingPool
from tokenotel.store import ledger
from tokenotel.store.client import Store
from tokenotel.store.repair import FeedJournal, InsertJournal
from tokenotel.store.writer import BatchWriter

log = logging.getLogger(__name__)

#: In the data directory: the insert in progress (see store/repair.py).
JOURNAL_FILE = "insert-in-progress.json"
#: Names the first insert that may not have reached the rollups fed after commit.
FEED_FILE = "rollups-unfed.json"
#: How often (at most) the service logs what came of each source's raw records, in seconds.
SOURCE_LOG_INTERVAL_S = 60.0


@dataclass
class IngestStats:
    requests: int = 0
    records_stored: int = 0
    records_ignored: int = 0
    records_rejected: int = 0
    records_already_stored: int = 0  # sent again: a retried request (docs/event-identity.md)
    requests_refused: int = 0  # overloaded: the client was asked to slow down


class SourceTallies:
    """What came of each source's raw records (``tokenotel.source``): token events, records
    that hold none, records rejected. Logged for each source when its first records come, then
    at most every ``interval_s`` (a warning when some were rejected, naming the first problem),
    and in total when the service stops: where to look when a source's events do not show up."""

    def __init__(self, interval_s: float = SOURCE_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.total: dict[str, list[int]] = {}
        self._since: dict[str, list[int]] = {}
        self._problem: dict[str, str] = {}
        self._logged_at: dict[str, float] = {}

    def add(self, sources: dict[str, list[int]], errors: list[str]) -> None:
        now = time.monotonic()
        for name, counts in sources.items():
            total = self.total.setdefault(name, [0, 0, 0, 0])
            since = self._since.setdefault(name, [0, 0, 0, 0])
            for i, count in enumerate(counts):
                total[i] += count
                since[i] += count
            if counts[REJECTED] and name not in self._problem and errors:
                self._problem[name] = errors[0]
            if now - self._logged_at.get(name, -self.interval_s) >= self.interval_s:
                self._log(name, now)

    def flush(self) -> None:
        now = time.monotonic()
        for name, since in self._since.items():
            if since[RECORDS]:
                self._log(name, now)

    def _log(self, name: str, now: float) -> None:
        since = self._since[name]
        problem = self._problem.pop(name, "")
        log.log(
            logging.WARNING if since[REJECTED] else logging.INFO,
            "source %s: %d records -> %d token events, %d without a token event, %d rejected%s",
            name,
            since[RECORDS],
            since[EVENTS],
            since[NOT_TOKEN_EVENTS],
            since[REJECTED],
            f" (first: {problem})" if problem else "",
        )
        self._since[name] = [0, 0, 0, 0]
        self._logged_at[name] = now


class Pipeline:
    """Mapping pool → batching writer → store, built from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.fingerprint = load_key(settings.fingerprint_key_file, settings.data_dir)
        #: Keys of before a rotation: only to find a secret's older fingerprints (docs/keys.md).
        self.previous_fingerprints = load_previous_keys(settings.previous_fingerprint_key_files)
        self.mapping = MappingPool(
            self.fingerprint,
            workers=settings.mapping_workers,
            retry_after_s=settings.retry_after_s,
            nice=settings.ingest_nice,
        )
        self.store = Store(settings.store_options)
        if settings.ingest_nice and settings.clickhouse_server is None:
            reniced = "the mapping workers, the detection rules" + (
                ", inserts and merges"
                if self.store.renices_threads
                else " (the store's inserts and merges keep the service's: this process may not "
                "raise a thread's priority again, which takes CAP_SYS_NICE outside a user "
                "namespace)"
            )
            log.info("ingest runs %d nice steps below the reads: %s", settings.ingest_nice, reniced)
        self.ledger: ledger.Ledger | None = None
        if settings.tamper_evidence:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.ledger = ledger.Ledger(
                self.store, settings.data_dir / ledger.JOURNAL_FILE, settings.retry_after_s
            )
        self.detection = _detection(settings, self.store)
        self.writer = BatchWriter(
            self.store,
            max_rows=settings.batch_max_rows,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            max_pending_rows=settings.max_pending_rows,
            dedup_window=settings.dedup_window,
            retry_after_s=settings.retry_after_s,
            # The embedded store dies with the service, maybe in the middle of an insert.
            journal=InsertJournal(settings.data_dir / JOURNAL_FILE)
            if settings.clickhouse_server is None
            else None,
            ledger=self.ledger,
            # The embedded store's rollups are fed after commit, in fewer inserts.
            feed=FeedJournal(settings.data_dir / FEED_FILE)
            if settings.clickhouse_server is None
            else None,
            feed_delay_s=settings.rollup_delay_ms / 1000,
        )
        if self.detection is not None:
            detection = self.detection
            self.writer.commit_observers.append(lambda batch, _: detection.committed(batch))
        self.checkpointer = _checkpointer(settings, self.ledger, self.store)
        self.stats = IngestStats()
        self.sources = SourceTallies()
        self.budget = BodyBudget(settings.max_pending_bytes, settings.retry_after_s)
        #: Called when every stage has stopped, before the store closes (the last words).
        self.before_close: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Starts every stage; the store may still be unreachable (requests are then answered
        retryable until it is back). A start that fails stops what it started."""
        try:
            # The mapping workers start (import their modules) while the store opens: each
            # takes a few tenths of a second, which an import of a few files waits for.
            started = await asyncio.gather(
                self._connect(), self.mapping.start(), return_exceptions=True
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            if self.detection is not None:
                self.detection.start()
            self.writer.start()
            if self.checkpointer is not None:
                self.checkpointer.start()
        except BaseException:
            await self._stop_stages()
            raise

    async def _connect(self) -> None:
        """Opens the store and settles what a previous run left (see BatchWriter.settle)."""
        try:
            await asyncio.to_thread(self.store.connect)
        except StoreUnavailable as e:
            log.warning("%s; starting anyway, clients will be asked to retry", e)
        else:
            await self.writer.settle()

    async def export(self, body: bytes, content_type: str) -> ExportResult:
        """One request: decode and map it (in a worker), store its token events, and report
        what was left out. Answers only once the rows are committed."""
        self.stats.requests += 1
        return await self._store(await self.mapping.map(body, content_type, time.time_ns()))

    async def export_lines(self, source: str, lines: list[bytes]) -> ExportResult:
        """Lines of a source's files (``tokenotel import``), stored as if each had come as the
        body of a log record with ``tokenotel.source`` (see ``export``; records are numbered by
        line in the problems)."""
        self.stats.requests += 1
        return await self._store(await self.mapping.map_lines(source, lines, time.time_ns()))

    def stop_waiting(self) -> None:
        """No more requests will come but those under way: each is stored as soon as it is
        mapped (the writer waits no longer for others to share its insert)."""
        self.writer.stop_waiting()

    async def _store(self, mapped: MappedTable) -> ExportResult:
        try:
            stored = await self.writer.write(mapped.table)  # new rows only
        except Overloaded:
            self.stats.requests_refused += 1
            raise
        again = mapped.table.num_rows - stored
        self.stats.records_stored += stored  # (after the await: requests interleave there)
        self.stats.records_already_stored += again
        self.stats.records_ignored += mapped.ignored
        self.stats.records_rejected += mapped.rejected
        if mapped.sources:
            self.sources.add(mapped.sources, mapped.errors)
        problems = list(mapped.errors)
        if again:
            # Not silent, and not an error: a retry is answered as its first attempt was. The
            # OTLP specification lets a server warn in partial_success with nothing rejected.
            log.info("%d token events of a request were stored before: taken for a retry", again)
            problems.insert(0, _already_stored(again))
        return ExportResult(
            mapped.rejected,
            error_summary(problems) if problems else "",
            stored=stored,
            again=again,
            ignored=mapped.ignored,
            errors=tuple(mapped.errors),
        )

    @property
    def requests_received(self) -> int:
        """Every request that came: those read, and those refused before they were read (the
        body budget full)."""
        return self.stats.requests + self.budget.refused

    @property
    def requests_refused(self) -> int:
        """Requests asked to slow down: before they were read, or by the writer."""
        return self.stats.requests_refused + self.budget.refused

    def hold(self, size: int) -> AbstractContextManager[Resize]:
        """Counts a request's ``size`` bytes while an edge reads and exports it; raises
        Overloaded when too many are held already (see BodyBudget)."""
        return self.budget.hold(size)

    async def ready(self) -> bool:
        """Ready while the store answers and the last write went through."""
        return self.writer.failing is None and await asyncio.to_thread(self.store.ready)

    async def stop(self) -> None:
        """Writes what is pending, then stops the mapping and closes the store."""
        await self._stop_stages()
        self.sources.flush()
        log.info(
            "tokenotel stopped: %d requests (%d asked to slow down), %d token events stored in %d "
            "inserts (%d into the rollups' feed), %d sent again (retries, not stored twice), "
            "%d other records ignored, %d rejected",
            self.requests_received,
            self.requests_refused,
            self.stats.records_stored,
            self.writer.stats.inserts,
            self.writer.stats.feeds,
            self.stats.records_already_stored,
            self.stats.records_ignored,
            self.stats.records_rejected,
        )

    async def _stop_stages(self) -> None:
        try:
            await self.writer.stop()
            if self.checkpointer is not None:  # after the last insert: the final checkpoint
                await self.checkpointer.stop()
            if self.detection is not None:  # the last inserts evaluated, their alerts sent
                await asyncio.to_thread(self.detection.stop)
        finally:
            for last_words in self.before_close:
                await asyncio.to_thread(last_words)
            self.mapping.close()
            self.store.close()


def _detection(settings: Settings, store: Store) -> StreamDetector | None:
    """The detection rules on every committed insert (docs/detection.md); None when off."""
    if not settings.detection:
        return None
    rules = shipped_rules()
    for path in settings.detection_rules_files:
        rules += load_rules(path)
    ids = [rule.id for rule in rules]
    repeated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
    if repeated:
        raise ConfigError(
            f"detection rule ids must be unique across the shipped rules and "
            f"detection_rules_files: {', '.join(repeated)} more than once"
        )
    notifiers: list[Notifier] = [
        WebhookNotifier(url, settings.grafana_url) for url in settings.alert_webhook_urls
    ]
    if settings.alert_otlp_endpoint is not None:
        notifiers.append(OtlpNotifier(settings.alert_otlp_endpoint))
    return StreamDetector(
        store,
        rules,
        settings.grafana_url,
        notifiers,
        separate_process=settings.mapping_workers > 0,  # (none: the service is one process)
        nice=settings.ingest_nice,
    )


def _checkpointer(
    settings: Settings, leaves: ledger.Ledger | None, store: Store
) -> Checkpointer | None:
    """Signs and publishes the ledger's tree (docs/tamper-evidence.md); None when off."""
    if leaves is None:
        return None
    if settings.cluster is not None:
        log.warning(
            "tamper evidence assumes one writer per database: with several tokenotel replicas "
            "writing to cluster %s, `tokenotel verify` reports their inserts as conflicting "
            "(see docs/tamper-evidence.md)",
            settings.cluster,
        )
    key = load_signing_key(settings.signing_key_path, default_key_name(settings.database))
    publishers: list[Publisher] = []
    if settings.checkpoint_dir is not None:
        publishers.append(DirectoryPublisher(settings.checkpoint_dir))
    if settings.checkpoint_webhook_url is not None:
        publishers.append(WebhookPublisher(settings.checkpoint_webhook_url))
    if settings.checkpoint_otlp_endpoint is not None:
        publishers.append(OtlpPublisher(settings.checkpoint_otlp_endpoint))
    return Checkpointer(
        leaves,
        store,
        key,
        publishers,
        every_events=settings.checkpoint_every_events,
        interval_s=settings.checkpoint_interval_s,
        retention_days=settings.retention_days,
    )


def _already_stored(count: int) -> str:
    return (
        f"{count} token event{'s' if count > 1 else ''} of this request "
        f"{'were' if count > 1 else 'was'} stored before (sent again: this same request, or "
        "the same log.record.uid) and not stored again"
    )
