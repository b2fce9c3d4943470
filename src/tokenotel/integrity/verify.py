"""``tokenotel verify``: the store checked against its ledger and the signed checkpoints, the
way ``aws cloudtrail validate-logs`` checks logs against digests.

What is checked (docs/tamper-evidence.md):

- every checkpoint, from the store and from the published directory: signed by a trusted
  key, its tree head equal to the tree of the ledger's first ``size`` leaves, and tree sizes
  never going back over time;
- every sealed insert (one leaf per month of events it wrote): the rows the store holds under
  its stamp and month, digested again, equal to the leaf; a leaf whose rows are all gone is
  sealed (dropped by retention) when its newest event is older than a signed retention;
- every group of rows under a stamp: some leaf seals it, or it is the insert in flight.

Each finding is a line; the checkpoints divide them into intervals; a summary counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from tokenotel.integrity.checkpoint import Checkpoint, format_time, stored_checkpoints
from tokenotel.integrity.publish import read_checkpoint_files
from tokenotel.integrity.signing import Note, VerifierKey
from tokenotel.store import merkle
from tokenotel.store.client import Store
from tokenotel.store.ledger import (
    STORED_INSERTS_SQL,
    Leaf,
    read_leaves,
    stamp_ranges,
    stored_groups,
)
from tokenotel.store.row_digest import rows_digest


@dataclass(frozen=True)
class Trust:
    """What a verification trusts: the public keys of the signing keys (a key rotated out
    stays, for the checkpoints it signed), and the directory checkpoints are published to."""

    keys: list[VerifierKey]
    checkpoint_dir: Path | None = None

    def published(self) -> list[tuple[str, str]]:
        """(file, note) of every checkpoint published to the directory."""
        if self.checkpoint_dir is None:
            return []
        return [(str(path), note) for path, note in read_checkpoint_files(self.checkpoint_dir)]


class Kind(StrEnum):
    """What a finding is about."""

    CHECKPOINT = "checkpoint"  # one checkpoint, closing an interval (or a run of quiet ones)
    INSERT = "insert"  # one leaf: an insert's rows of one month
    ROWS = "rows"  # rows under a stamp no leaf seals
    LEDGER = "ledger"  # the ledger itself
    PUBLISHED = "published"  # a published checkpoint, checked on this machine
    SERVICE = "service"  # a service's checkpoint, checked on this machine


class Status(StrEnum):
    VALID = "valid"
    INVALID = "INVALID"
    SEALED = "sealed"  # dropped by retention, as a signed retention allows
    UNCOVERED = "not yet covered"  # after the newest checkpoint


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, its status and why."""

    status: Status
    subject: str
    reason: str = ""
    kind: Kind = Kind.CHECKPOINT

    def __str__(self) -> str:
        return f"{self.subject}: {self.status}" + (f": {self.reason}" if self.reason else "")


@dataclass
class Summary:
    checkpoints: int = 0
    checkpoints_valid: int = 0
    inserts: int = 0
    inserts_valid: int = 0
    sealed_inserts: int = 0
    sealed_events: int = 0
    uncovered_events: int = 0
    invalid: int = 0  # findings that are INVALID

    @property
    def ok(self) -> bool:
        return self.invalid == 0

    def lines(self) -> list[str]:
        lines = [
            f"{self.checkpoints_valid}/{self.checkpoints} checkpoints valid",
            f"{self.inserts_valid}/{self.inserts} inserts valid",
        ]
        if self.sealed_inserts:
            lines.append(
                f"{self.sealed_inserts} inserts ({self.sealed_events:,} events) sealed: "
                "dropped by retention"
            )
        lines.append(
            f"{self.uncovered_events:,} events after the newest checkpoint, not yet covered"
        )
        return lines


@dataclass
class _Entry:
    """A checkpoint note, with every place it was found."""

    note: str
    sources: list[str] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    problem: str = ""


@dataclass
class Verification:
    """Everything one verification reads, and what it found."""

    store: Store
    keys: list[VerifierKey]
    published: list[tuple[str, str]] = field(default_factory=list)  # (where, note)
    since_ms: int = 0
    #: The inserts stored after it are not read (-1: up to the newest).
    until_ms: int = -1
    #: A service is writing: rows newer than the newest leaf are still being sealed.
    live: bool = False
    #: The stamps the stopped service had not sealed yet (its journal): sealed at its next start.
    pending_stamps: frozenset[int] = frozenset()
    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    summary: Summary = field(default_factory=Summary)

    def run(self) -> Iterator[Finding]:
        """The findings, interval by interval; ``summary`` is complete once they are read."""
        leaves = read_leaves(self.store)
        entries = self._entries()
        roots = _roots(leaves, {e.checkpoint.size for e in entries if e.checkpoint})
        yield from self._ledger_findings(leaves)
        yield from self._malformed(entries)
        checkpoints = [e for e in entries if e.checkpoint is not None]
        for entry in checkpoints:
            self._check_checkpoint(entry, leaves, roots)
        yield from self._rollbacks(checkpoints)
        valid = [e.checkpoint for e in checkpoints if not e.problem and e.checkpoint]
        retention = min((c.retention_days for c in valid), default=None)
        stored = self._stored()
        checked = [leaf for leaf in leaves if self._within(leaf.stamp_ms)]
        digests = self._digests(checked, stored)
        pending = {
            leaf.sequence: self._leaf_finding(leaf, stored, digests, retention) for leaf in checked
        }
        covered = checked[0].sequence if checked else len(leaves)
        quiet: list[_Entry] = []
        for entry in checkpoints:
            cp = entry.checkpoint
            assert cp is not None
            end = cp.size if not entry.problem else covered
            if not entry.problem and end <= covered:
                quiet.append(entry)  # nothing sealed since the one before: a quiet interval
                continue
            yield from self._quiet(quiet)
            quiet = []
            yield from (pending.pop(seq) for seq in range(covered, end) if seq in pending)
            yield self._checkpoint_finding(entry, covered, end, leaves)
            covered = max(covered, end)
        yield from self._quiet(quiet)
        for seq in sorted(pending):  # after the newest checkpoint
            finding = pending[seq]
            self.summary.uncovered_events += leaves[seq].rows
            if finding.status is Status.VALID:
                finding = Finding(Status.UNCOVERED, finding.subject, kind=Kind.INSERT)
            yield finding
        yield from self._unsealed_rows(leaves, stored)

    # -- checkpoints -------------------------------------------------------------------------

    def _entries(self) -> list[_Entry]:
        by_note: dict[str, _Entry] = {}
        for where, note in [
            *(("store", n) for n in stored_checkpoints(self.store, self.since_ms)),
            *self.published,
        ]:
            entry = by_note.setdefault(note, _Entry(note))
            entry.sources.append(where)
        entries = []
        for entry in by_note.values():
            try:
                entry.checkpoint = Checkpoint.parse(entry.note)
            except ValueError as e:
                entry.problem = f"not a checkpoint ({e})"
            if entry.checkpoint is None or entry.checkpoint.time_ms >= self.since_ms:
                entries.append(entry)
        self.summary.checkpoints = len(entries)
        return sorted(
            entries,
            key=lambda e: (e.checkpoint.time_ms, e.checkpoint.size) if e.checkpoint else (0, 0),
        )

    def _malformed(self, entries: list[_Entry]) -> Iterator[Finding]:
        for entry in entries:
            if entry.checkpoint is None:
                self.summary.invalid += 1
                yield Finding(
                    Status.INVALID, f"checkpoint [{' and '.join(entry.sources)}]", entry.problem
                )

    def _check_checkpoint(self, entry: _Entry, leaves: list[Leaf], roots: dict[int, bytes]) -> None:
        """Notes in the entry what is wrong with its checkpoint, if anything."""
        cp = entry.checkpoint
        assert cp is not None
        signer = cp.signer(self.keys)
        if signer is None:
            entry.problem = _unsigned(cp, self.keys)
        elif cp.origin != signer.name:
            entry.problem = f"its origin {cp.origin} is not the log of key {signer.name}"
        elif cp.size > len(leaves):
            entry.problem = (
                f"it covers {cp.size} inserts and the store's ledger holds only {len(leaves)}: "
                "the newest inserts (or their leaves) were deleted"
            )
        elif roots.get(cp.size) != cp.root:
            entry.problem = (
                "its tree head does not match the ledger: inserts it covers were changed or "
                "removed, or the checkpoint was replaced"
            )
        if entry.problem:
            self.summary.invalid += 1
        else:
            self.summary.checkpoints_valid += 1

    def _rollbacks(self, entries: list[_Entry]) -> Iterator[Finding]:
        """A later checkpoint of a smaller tree: the log went back (the ledger was cut and
        the service signed again)."""
        biggest: Checkpoint | None = None
        for entry in entries:
            cp = entry.checkpoint
            if cp is None or entry.problem:
                continue
            if biggest is not None and cp.size < biggest.size:
                self.summary.invalid += 1
                yield Finding(
                    Status.INVALID,
                    _describe(cp),
                    f"the tree went back from {biggest.size} inserts "
                    f"({format_time(biggest.time_ms)}) to {cp.size}",
                )
            if biggest is None or cp.size > biggest.size:
                biggest = cp

    def _checkpoint_finding(
        self, entry: _Entry, start: int, end: int, leaves: list[Leaf]
    ) -> Finding:
        cp = entry.checkpoint
        assert cp is not None
        where = " and ".join(entry.sources)
        subject = f"{_describe(cp)} [{where}]"
        if entry.problem:
            return Finding(Status.INVALID, subject, entry.problem)
        events = sum(leaf.rows for leaf in leaves[start:end])
        return Finding(
            Status.VALID, subject, f"{_count(end - start, 'insert')}, {_count(events, 'event')}"
        )

    def _quiet(self, quiet: list[_Entry]) -> Iterator[Finding]:
        if not quiet:
            return
        first, last = quiet[0].checkpoint, quiet[-1].checkpoint
        assert first is not None and last is not None
        if len(quiet) == 1:
            yield Finding(Status.VALID, _describe(first), "no inserts since the one before")
            return
        yield Finding(
            Status.VALID,
            f"{len(quiet)} checkpoints {format_time(first.time_ms)} to "
            f"{format_time(last.time_ms)} (tree size {last.size})",
            "no inserts: a quiet interval",
        )

    # -- leaves and rows ---------------------------------------------------------------------

    def _ledger_findings(self, leaves: list[Leaf]) -> Iterator[Finding]:
        for position, leaf in enumerate(leaves):
            if leaf.sequence != position:
                self.summary.invalid += 1
                yield Finding(
                    Status.INVALID,
                    "ledger",
                    f"leaf {leaf.sequence} stands where leaf {position} should: leaves were "
                    "removed or added",
                    Kind.LEDGER,
                )
                return

    def _leaf_finding(
        self,
        leaf: Leaf,
        stored: dict[tuple[int, int], int],
        digests: dict[tuple[int, int], bytes],
        retention_days: int | None,
    ) -> Finding:
        key = (leaf.stamp_ms, leaf.partition)
        subject = _describe_leaf(leaf)
        count = stored.get(key, 0)
        self.summary.inserts += 1
        if count == 0:
            if retention_days is not None and _expired(leaf, retention_days, self.today):
                self.summary.sealed_inserts += 1
                self.summary.sealed_events += leaf.rows
                self.summary.inserts -= 1
                return Finding(
                    Status.SEALED,
                    subject,
                    f"dropped by retention ({retention_days} days, signed in the checkpoints)",
                    Kind.INSERT,
                )
            problem = f"its {leaf.rows:,} events are missing (deleted, or their month dropped)"
        elif count != leaf.rows:
            change = "deleted" if count < leaf.rows else "inserted"
            problem = (
                f"{count:,} events stored where {leaf.rows:,} were sealed: "
                f"{abs(leaf.rows - count):,} {change}"
            )
        elif digests.get(key) != leaf.digest:
            problem = "its events were changed: hash value doesn't match"
        else:
            self.summary.inserts_valid += 1
            return Finding(Status.VALID, subject, kind=Kind.INSERT)
        self.summary.invalid += 1
        return Finding(Status.INVALID, subject, problem, Kind.INSERT)

    def _within(self, stamp_ms: int) -> bool:
        return stamp_ms >= self.since_ms and (self.until_ms < 0 or stamp_ms <= self.until_ms)

    def _stored(self) -> dict[tuple[int, int], int]:
        """Rows stored per (stamp, month), from --since on (up to ``until_ms``)."""
        params = {"since": self.since_ms, "until": self.until_ms}
        rows = self.store.query(STORED_INSERTS_SQL, params).result_rows
        return {(int(stamp), int(month)): int(count) for stamp, month, count in rows}

    def _digests(
        self, leaves: list[Leaf], stored: dict[tuple[int, int], int]
    ) -> dict[tuple[int, int], bytes]:
        """The digest of the stored rows of each leaf whose row count is right, read a range
        of stamps at a time."""
        wanted = sorted(
            (leaf.stamp_ms, leaf.partition, leaf.rows)
            for leaf in leaves
            if stored.get((leaf.stamp_ms, leaf.partition)) == leaf.rows
        )
        keys = {(stamp, month) for stamp, month, _ in wanted}
        digests: dict[tuple[int, int], bytes] = {}
        for first, last in stamp_ranges(wanted):
            for key, table in stored_groups(self.store, first, last):
                if key in keys:
                    digests[key] = rows_digest(table)
        return digests

    def _unsealed_rows(
        self, leaves: list[Leaf], stored: dict[tuple[int, int], int]
    ) -> Iterator[Finding]:
        """Rows under a stamp and month that no leaf seals."""
        sealed = {(leaf.stamp_ms, leaf.partition) for leaf in leaves}
        newest_leaf = max((leaf.stamp_ms for leaf in leaves), default=0)
        for (stamp, month), count in sorted(stored.items()):
            if (stamp, month) in sealed:
                continue
            subject = f"{_count(count, 'event')} stored at {format_time(stamp)} in {_month(month)}"
            if stamp in self.pending_stamps:
                self.summary.uncovered_events += count
                yield Finding(
                    Status.UNCOVERED,
                    subject,
                    "an insert the service had not sealed when it stopped: sealed at its next "
                    "start",
                    Kind.ROWS,
                )
            elif self.live and stamp > newest_leaf:
                self.summary.uncovered_events += count
                yield Finding(
                    Status.UNCOVERED, subject, "committed as this verification ran", Kind.ROWS
                )
            else:
                self.summary.invalid += 1
                yield Finding(
                    Status.INVALID,
                    subject,
                    "no insert sealed them: the rows were inserted",
                    Kind.ROWS,
                )


def _roots(leaves: list[Leaf], sizes: set[int]) -> dict[int, bytes]:
    """The tree head at each of ``sizes`` (those the ledger reaches)."""
    roots = {0: merkle.EMPTY_ROOT} if 0 in sizes else {}
    tree = merkle.CompactTree()
    for leaf in leaves:
        tree.append(leaf.hash())
        if tree.size in sizes:
            roots[tree.size] = tree.root()
    return roots


def _expired(leaf: Leaf, retention_days: int, today: date) -> bool:
    """Whether retention may have dropped the leaf's rows: its part goes once its newest row
    is older than the retention (TTL toDate32(event_time) + retention days)."""
    newest = datetime.fromtimestamp(leaf.newest_ns / 1e9, UTC).date()
    return newest + timedelta(days=retention_days) <= today


def _unsigned(cp: Checkpoint, keys: list[VerifierKey]) -> str:
    signatures = Note.parse(cp.note).signatures
    known = {(k.name, k.id) for k in keys}
    if any((s.name, s.id) in known for s in signatures):
        return "its signature does not verify: the checkpoint was changed after it was signed"
    names = ", ".join(f"{s.name}+{s.id.hex()}" for s in signatures)
    return f"signed with another key ({names}), not a trusted one"


def _describe(cp: Checkpoint) -> str:
    final = ", final" if cp.final else ""
    return f"checkpoint {format_time(cp.time_ms)} (tree size {cp.size}{final})"


def _describe_leaf(leaf: Leaf) -> str:
    recovered = ", recovered" if leaf.recovered else ""
    return (
        f"insert {leaf.sequence} ({_count(leaf.rows, 'event')} at {format_time(leaf.stamp_ms)} in "
        f"{_month(leaf.partition)}{recovered})"
    )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _month(partition: int) -> str:
    return f"{partition // 100:04d}-{partition % 100:02d}"


def compare_published(
    service_notes: list[str],
    published: list[tuple[str, str]],
    keys: list[VerifierKey],
    prove: Callable[[int, int], list[bytes]],
) -> Iterator[Finding]:
    """On this machine, with its own keys and its own copies of published checkpoints: the
    service's checkpoints are signed by a trusted key, and the tree of each published
    checkpoint is a prefix of the service's newest (an RFC 9162 consistency proof)."""
    newest: Checkpoint | None = None
    for note in service_notes:
        cp = Checkpoint.parse(note)
        if cp.signer(keys) is None:
            yield Finding(
                Status.INVALID, f"{_describe(cp)} [service]", _unsigned(cp, keys), Kind.SERVICE
            )
        elif newest is None or (cp.size, cp.time_ms) >= (newest.size, newest.time_ms):
            newest = cp
    for where, note in published:
        subject = f"published checkpoint [{where}]"
        try:
            cp = Checkpoint.parse(note)
        except ValueError as e:
            yield Finding(Status.INVALID, subject, f"not a checkpoint ({e})", Kind.PUBLISHED)
            continue
        subject = f"{_describe(cp)} [{where}]"
        if cp.signer(keys) is None:
            yield Finding(Status.INVALID, subject, _unsigned(cp, keys), Kind.PUBLISHED)
        elif newest is None:
            yield Finding(
                Status.INVALID,
                subject,
                "the service shows no checkpoint signed by a trusted key",
                Kind.PUBLISHED,
            )
        elif cp.size > newest.size:
            yield Finding(
                Status.INVALID,
                subject,
                f"it covers {cp.size} inserts and the service's newest checkpoint only "
                f"{newest.size}: the newest inserts were deleted",
                Kind.PUBLISHED,
            )
        elif _consistent(cp, newest, prove):
            yield Finding(
                Status.VALID,
                subject,
                f"a prefix of the service's tree of {newest.size} inserts",
                Kind.PUBLISHED,
            )
        else:
            yield Finding(
                Status.INVALID,
                subject,
                f"not a prefix of the service's tree of {newest.size} inserts: the history it "
                "covers was rewritten",
                Kind.PUBLISHED,
            )


def _consistent(old: Checkpoint, new: Checkpoint, prove: Callable[[int, int], list[bytes]]) -> bool:
    if old.size == 0:
        return old.root == merkle.EMPTY_ROOT
    if old.size == new.size:
        return old.root == new.root
    proof = prove(old.size, new.size)
    return merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)


def prove_consistency(store: Store, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) over the ledger's leaves; raises ValueError when the sizes
    do not fit the ledger."""
    leaves = read_leaves(store)
    if not 0 < old_size <= new_size <= len(leaves):
        raise ValueError(
            f"sizes must be 0 < old <= new <= {len(leaves)} (the ledger's size): "
            f"{old_size}, {new_size}"
        )
    return merkle.consistency_proof(old_size, [leaf.hash() for leaf in leaves[:new_size]])
