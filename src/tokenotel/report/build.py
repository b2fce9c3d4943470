"""Builds a compliance report from the trail: the nine sections over one period, the newest
checkpoint the integrity section relied on, and the verification of the period."""

from __future__ import annotations

import base64
import contextlib
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from tokenotel.integrity.checkpoint import Checkpoint, format_time, stored_checkpoints
from tokenotel.integrity.verify import Finding, Status, Trust, Verification
from tokenotel.report.model import Policy, Report, Section, Table, period_name
from tokenotel.report.sections import EVIDENCE, PERIOD, Builder
from tokenotel.store.client import EVENTS_TABLE, Store

log = logging.getLogger(__name__)

#: The sections, in order.
SECTIONS = list(EVIDENCE)
#: Told each section's number and key as it is computed (the CLI shows progress with it).
Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class Integrity:
    """How the integrity section checks the trail: the trusted keys and published checkpoints
    (None: tamper evidence is off), whether a service is writing, and the stamps a stopped
    service had not sealed yet."""

    trust: Trust | None
    live: bool = False
    pending_stamps: frozenset[int] = frozenset()


def build_report(
    store: Store,
    since: datetime,
    until: datetime,
    policy: Policy,
    *,
    trail: str,
    integrity: Integrity,
    retention_days: int | None,
    progress: Progress | None = None,
) -> Report:
    """The report over [since, until) of the trail in ``store``."""
    builder = Builder(store, since, until, policy)
    steps: list[tuple[str, Callable[[], Section]]] = [
        ("scope", builder.scope),
        ("inventory", builder.inventory),
        ("rotation", builder.rotation),
        ("dormant", builder.dormant),
        ("revocation", builder.revocation),
        ("privileged", builder.privileged),
        ("failures", builder.failures),
        ("integrity", lambda: integrity_section(store, builder, integrity)),
        ("retention", lambda: builder.retention(retention_days)),
    ]
    sections = []
    with collector_paused():
        builder.read_ahead()
        try:
            for number, (key, step) in enumerate(steps, 1):
                if progress is not None:
                    progress(number, key)
                sections.append(step())
        finally:
            builder.close()
    relied = sections[7].figures.get("newest_checkpoint")
    return Report(
        period=period_name(since, until),
        since=since,
        until=until,
        generated_at=datetime.now(UTC),
        trail=trail,
        policy=policy,
        checkpoint=str(relied) if relied else None,
        sections=sections,
    )


#: When the period's events were stored: the first and the last time (ms), and how many.
PERIOD_STORED_SQL = f"""
SELECT toUnixTimestamp64Milli(min(ingested_at)), toUnixTimestamp64Milli(max(ingested_at)), count()
FROM {EVENTS_TABLE}
WHERE {PERIOD}
"""


def integrity_section(store: Store, builder: Builder, integrity: Integrity) -> Section:
    section = Section(8, "integrity", "Log integrity", EVIDENCE["integrity"])
    trust = integrity.trust
    if trust is None:
        section.figures = {"tamper_evidence": "off", "newest_checkpoint": None}
        section.notes.append(
            "Tamper evidence is off for this trail: no ledger or signed checkpoints to check "
            "it against (docs/tamper-evidence.md)."
        )
        return section
    since_ms = builder.since_ns // 1_000_000
    until_ms = builder.until_ns // 1_000_000
    # The inserts that hold the period's events (stored in it, or later: late, imported),
    # not those of the months after it.
    ((first_ms, last_ms, events),) = builder.rows(PERIOD_STORED_SQL)
    stored_from, stored_to = (first_ms, last_ms) if events else (since_ms, until_ms)
    verification = Verification(
        store,
        trust.keys,
        trust.published(),
        since_ms=stored_from,
        until_ms=stored_to,
        live=integrity.live,
        pending_stamps=integrity.pending_stamps,
    )
    problems: list[Finding] = []
    for finding in verification.run():
        if finding.status is Status.INVALID:
            problems.append(finding)
    summary = verification.summary
    signed = []
    for note in stored_checkpoints(store, since_ms):
        try:
            checkpoint = Checkpoint.parse(note)
        except ValueError:
            continue  # the verification above reports it
        if checkpoint.signer(trust.keys) is not None:
            signed.append(checkpoint)
    in_period = [c for c in signed if c.time_ms < until_ms]
    # The newest checkpoint covers every insert sealed before it, the period's included.
    newest = max(signed, key=lambda c: (c.size, c.time_ms), default=None)
    section.figures = {
        "tamper_evidence": "on",
        "verified": "valid" if summary.ok else "INVALID",
        "checkpoints_in_period": len(in_period),
        "checkpoints_checked": summary.checkpoints,
        "checkpoints_valid": summary.checkpoints_valid,
        "inserts_checked": summary.inserts,
        "inserts_valid": summary.inserts_valid,
        "sealed_inserts": summary.sealed_inserts,
        "events_not_yet_covered": summary.uncovered_events,
        "invalid_findings": summary.invalid,
        "newest_checkpoint": _describe(newest) if newest else None,
    }
    section.tables = [
        Table(
            "invalid",
            "What the verification found INVALID",
            ["status", "subject", "reason"],
            [[str(f.status), f.subject, f.reason] for f in problems],
        )
    ]
    section.notes.append(
        f"Verified: the inserts that hold the period's events (stored from "
        f"{format_time(stored_from)} to {format_time(stored_to)}) digested again, and every "
        "checkpoint made since the first of them, signed by a trusted key and consistent with "
        "the ledger; " + "; ".join(summary.lines()) + "."
    )
    if newest is None:
        section.notes.append("No signed checkpoint yet: nothing in the period is covered by one.")
    return section


def _describe(checkpoint: Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root).decode()
    at = format_time(checkpoint.time_ms)
    return f"{checkpoint.origin} size {checkpoint.size} root {root} at {at}"


_paused = 0  # builds running
_resume = False  # whether the collector was on when the first of them began
_pausing = threading.Lock()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a report builds (it is back on when the
    last build running ends). A build holds a few million rows, tokens and table cells at
    once, and each full collection walks them all again: over a quarter of 10 million
    events, a third of the build (docs/report.md, "Cost"). Reference counting still frees
    what the build drops; only garbage in cycles waits until the collector is back."""
    global _paused, _resume
    with _pausing:
        _paused += 1
        if _paused == 1:
            _resume = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _pausing:
            _paused -= 1
            if _paused == 0 and _resume:
                # What the build made goes to the oldest generation (freeze, then unfreeze):
                # else the first collection after it walks all of it at once, a second or two
                # spent on objects that are mostly freed as soon as the report is written.
                gc.freeze()
                gc.unfreeze()
                gc.enable()
