"""The report is exact: on a generated quarter whose answers are known (scenario.py), every
figure and every table row of sections 1-7 and 9 equals a recount, in plain Python, from every
row of token_events (and token_alerts for the alerts), and the known cases read as they should.

The recount follows the definitions the report states in its titles, notes and docstrings;
where they leave a case open, the choice is written next to the code that makes it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pytest
import scenario
from scenario import DAY, HOUR, MS, SECOND, rfc3339

from inprocess import InProcessIngest, embedded_store
from tokenotel import pipeline
from tokenotel.detect import stream
from tokenotel.report import sections
from tokenotel.report.build import Integrity, build_report
from tokenotel.report.model import Policy, Report, Section, period_bounds

#: The ingest of the scenario: inserts at once, no sealing (section 8 is off here), and a
#: retention long enough that the quarter is never dropped, whenever the test runs.
SETTINGS: dict[str, Any] = {
    "batch_max_delay_ms": 0,
    "tamper_evidence": False,
    "retention_days": 20 * 365,
}

EVENTS_SQL = """
SELECT toUnixTimestamp64Nano(event_time), toString(event_name), toString(outcome),
       toString(token_status), toString(failure_reason), token_id, token_key,
       toString(token_type), token_name, previous_token_id, principal_id, actor_id,
       toString(client_ip), CAST(scopes, 'Array(String)'), CAST(scopes_added, 'Array(String)'),
       CAST(scopes_removed, 'Array(String)'), toUnixTimestamp64Milli(expires_at),
       toString(source), toString(service_name), toUnixTimestamp64Milli(ingested_at)
FROM token_events
"""
SERVICE_MINUTES_SQL = """
SELECT toUnixTimestamp(minute), records_rejected, inserts_failed, requests_refused,
       worker_restarts
FROM service_minutes
"""
ALERTS_SQL = """
SELECT toUnixTimestamp64Milli(raised_at), toString(rule), toString(severity), token_key,
       client_ip
FROM token_alerts
"""


class Event(NamedTuple):
    """One row of token_events, as plain Python."""

    time: int
    name: str
    outcome: str
    status: str
    failure: str
    token_id: str
    key: str
    type: str
    token_name: str
    previous: str
    owner: str
    actor: str
    ip: str  # as people write it; "" when the source gave none
    scopes: list[str]
    added: list[str]
    removed: list[str]
    expires_ms: int | None
    source: str
    service: str
    ingested_ms: int


class Alert(NamedTuple):
    raised_ms: int
    rule: str
    severity: str
    token: str
    ip: str


@dataclass
class Trail:
    report: Report
    events: list[Event]
    alerts: list[Alert]
    sent: int
    #: The same report with no token key sent to ClickHouse as a parameter (as when the keys
    #: of the privileged tokens are longer than MOST_KEY_BYTES).
    keys_kept: Report
    #: The service's counters as stored: (minute in s, rejected, failed, refused, restarts).
    service_minutes: list[tuple[int, ...]]


def _address(text: str) -> str:
    address = ipaddress.IPv6Address(text)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return "" if int(address) == 0 else address.compressed


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    """The quarter sent through the real pipeline a day at a time, its detection's clock at
    the end of each day (as a service running then would have raised the alerts), then the
    report and every stored row, read from the stopped store."""
    data_dir: Path = tmp_path_factory.mktemp("quarter") / "data"
    quarter = scenario.build()
    sends = scenario.requests(quarter)
    clock = [sends[0][0]]
    with pytest.MonkeyPatch.context() as patch:
        # Alerts are stored as soon as they are raised, so a drain is quick.
        patch.setattr(stream, "STORE_EVERY_S", 0.0)
        patch.setattr(
            pipeline, "StreamDetector", partial(stream.StreamDetector, clock=lambda: clock[0])
        )
        ingest = InProcessIngest(data_dir, **SETTINGS)
        try:
            detection = ingest.pipeline.detection
            assert detection is not None
            stored = 0
            for ends_ns, request in sends:
                clock[0] = ends_ns
                result = ingest.send(request)
                assert (result.rejected, result.errors, result.again) == (0, (), 0)
                stored += result.stored
                assert detection.drain(60)
        finally:
            ingest.close()
    store = embedded_store(data_dir, retention_days=SETTINGS["retention_days"])
    try:
        store.insert_arrow("service_minutes", service_minutes(scenario.SERVICE_MINUTES))
        since, until = period_bounds(scenario.PERIOD)

        def build() -> Report:
            return build_report(
                store, since, until, Policy(), trail="test", integrity=Integrity(None),
                retention_days=None,
            )  # fmt: skip

        report = build()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sections, "MOST_KEY_BYTES", 0)
            keys_kept = build()
        events = [
            Event(*row[:12], _address(row[12]), *row[13:])
            for row in store.query(EVENTS_SQL).result_rows
        ]
        alerts = [Alert(*row) for row in store.query(ALERTS_SQL).result_rows]
        minutes = [tuple(row) for row in store.query(SERVICE_MINUTES_SQL).result_rows]
    finally:
        store.close()
    assert stored == len(quarter.events)
    return Trail(report, events, alerts, len(quarter.events), keys_kept, minutes)


def service_minutes(rows: list[tuple[Any, ...]]) -> pa.Table:
    """The scenario's counter rows as the service writes them."""
    names = ["requests", "requests_refused", "records_stored", "records_ignored",
             "records_rejected", "inserts", "inserts_failed", "worker_restarts"]  # fmt: skip
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {
            "minute": pa.array([ns // SECOND for ns in columns[0]], pa.int64()).cast(
                pa.timestamp("s", "UTC")
            ),
            "instance": columns[1],
            **{n: pa.array(v, pa.uint64()) for n, v in zip(names, columns[2:], strict=True)},
        }
    )


# -- the recount ------------------------------------------------------------------------------

LIFECYCLE = {
    "token.created": "active",
    "token.enabled": "active",
    "token.disabled": "disabled",
    "token.revoked": "revoked",
    "token.expired": "expired",
}
ENDED = ("revoked", "disabled", "rotated", "expired")
#: Statuses in which a token must not be used any more (docs/schema.md, "Status at ingest":
#: a use of a revoked, rotated, disabled or expired token is a use after revocation or expiry).
DEAD = ("revoked", "rotated", "disabled", "expired")
FAILURES = ("token.auth_failed", "token.access_denied", "token.refresh_failed")
#: What starts a token's revocation clock (docs/report.md, section 5).
TRIGGERS = ("token.leak_detected", "token.reuse_detected", "token.owner_removed")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def text(ns: int | None) -> str | None:
    return rfc3339(ns)


def day_of(ns: int) -> str:
    return (EPOCH + timedelta(seconds=ns // SECOND)).strftime("%Y-%m-%d")


def newest(events: Iterable[Event], value: Any, default: Any) -> Any:
    """``value`` of the newest of ``events`` that has one (its value is not empty)."""
    found = [(e.time, value(e)) for e in events if value(e) not in ("", None, [])]
    return max(found, key=lambda pair: pair[0])[1] if found else default


@dataclass
class Token:
    key: str
    name: str
    owner: str
    type: str
    scopes: list[str]
    expires_ms: int | None
    status: str
    issued: int
    rotated_in: int | None
    rotated_away: bool
    last_used: int | None
    created_by: str


@dataclass
class Recount:
    events: list[Event]
    alerts: list[Alert]
    since: int
    until: int
    #: The service's counters: (minute in s, rejected, failed, refused, restarts).
    service_minutes: list[tuple[int, ...]] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)

    def period(self) -> list[Event]:
        return [e for e in self.events if self.since <= e.time < self.until]

    # 1. scope

    def scope(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        by_source: dict[str, list[Event]] = defaultdict(list)
        for e in self.period():
            by_source[e.source].append(e)
        sources = [
            [source, ", ".join(sorted({e.service for e in es})), len(es),
             text(min(e.time for e in es)), text(max(e.time for e in es))]
            for source, es in sorted(by_source.items())
        ]  # fmt: skip
        per_day = Counter((day_of(e.time), e.source) for e in self.period())
        gaps = self.source_gaps(by_source)
        down = self.service_gaps()
        failing, recorded = self.service_failing()
        figures = {
            "period_start": text(self.since),
            "period_end": text(self.until),
            "events": len(self.period()),
            "sources": len(by_source),
            "services": len({e.service for e in self.period() if e.service}),
            "source_gaps": len(gaps),
            "service_gaps": len(down),
            "service_minutes_recorded": recorded,
            "service_failing": len(failing),
            "records_rejected": sum(f[2] for f in failing),
            "inserts_failed": sum(f[3] for f in failing),
            "requests_refused": sum(f[4] for f in failing),
            "worker_restarts": sum(f[5] for f in failing),
        }
        return figures, {
            "sources": sources,
            "events_per_day": [[d, s, n] for (d, s), n in per_day.items()],
            "source_gaps": gaps,
            "service_gaps": down,
            "service_failing": failing,
        }

    def service_failing(self) -> tuple[list[list[Any]], int]:
        """Each run of minutes in a row (each instance's counters of a minute added up) in
        which the service rejected, failed, refused or replaced anything; and how many
        minutes of the period have counters."""
        by_minute: dict[int, list[int]] = {}
        for minute, *counts in self.service_minutes:
            if self.since <= minute * SECOND < self.until:
                total = by_minute.setdefault(minute, [0, 0, 0, 0])
                total[:] = [a + b for a, b in zip(total, counts, strict=True)]
        runs: list[list[int]] = []
        for minute in sorted(m for m, counts in by_minute.items() if any(counts)):
            if runs and runs[-1][1] == minute:
                runs[-1][1] = minute + 60
                runs[-1][2:] = [a + b for a, b in zip(runs[-1][2:], by_minute[minute], strict=True)]
            else:
                runs.append([minute, minute + 60, *by_minute[minute]])
        rows = [[text(a * SECOND), text(b * SECOND), *counts] for a, b, *counts in runs]
        return rows, len(by_minute)

    def source_gaps(self, by_source: dict[str, list[Event]]) -> list[list[Any]]:
        """Silences of source_gap_hours or more between two events of a source that sent
        events in at least usual_share of the period's hours."""
        gap = self.policy.source_gap_hours * HOUR
        hours = math.ceil((self.until - self.since) / HOUR)
        found = []
        for source, es in sorted(by_source.items()):
            times = sorted(e.time for e in es)
            if len({t // HOUR for t in times}) < self.policy.usual_share * hours:
                continue
            for a, b in pairwise(times):
                if b - a >= gap:
                    found.append([source, text(a), text(b), round((b - a) / HOUR, 2)])
        return found

    def service_gaps(self) -> list[list[Any]]:
        """Stretches of the period of source_gap_hours or more in which nothing was stored,
        counted by the minute of each insert (ingested_at). A period in which nothing was
        stored at all is one such stretch: it starts at the start of the period and ends at
        its end, as the first and last stretches of any period do."""
        gap = self.policy.source_gap_hours * HOUR
        minutes = sorted(
            {e.ingested_ms // 60_000 for e in self.events
             if self.since <= e.ingested_ms * MS < self.until}
        )  # fmt: skip
        found, start = [], self.since
        for minute in minutes:
            begins = minute * 60 * SECOND
            if begins - start >= gap:
                found.append((start, begins))
            start = begins + 60 * SECOND
        if self.until - start >= gap:
            found.append((start, self.until))
        return [[text(a), text(b), round((b - a) / HOUR, 2)] for a, b in found]

    # 2. the tokens as they stood at the end

    def tokens(self) -> dict[str, Token]:
        before_end = [e for e in self.events if e.time < self.until]
        by_key: dict[str, list[Event]] = defaultdict(list)
        for e in before_end:
            by_key[e.key].append(e)
        rotations = [e for e in before_end if e.name == "token.rotated" and e.previous]
        tokens = {}
        # An id seen only in failed authentication is an attempt, not a token (docs/report.md).
        known = {k for k, es in by_key.items() if any(e.name != "token.auth_failed" for e in es)}
        for key in sorted(known | {e.previous for e in rotations}):
            es = by_key.get(key, [])
            retired = [e for e in rotations if e.previous == key]
            # The newest lifecycle event sets the status; a rotation that retires the token
            # is one (the newest of them wins).
            changes = [(e.time, LIFECYCLE[e.name]) for e in es if e.name in LIFECYCLE]
            changes += [(e.time, "rotated") for e in retired]
            lifecycle = max(changes)[1] if changes else ""
            expires_ms = newest(es, lambda e: e.expires_ms, None)
            if lifecycle in ENDED:
                status = lifecycle
            elif expires_ms is not None and expires_ms * MS <= self.until:
                status = "expired"
            else:
                status = "active"
            created = sorted((e for e in es if e.name == "token.created"), key=lambda e: e.time)
            issuing = sorted((e for e in es if e.name == "token.rotated"), key=lambda e: e.time)
            uses = [e.time for e in es if e.name == "token.used" and e.outcome == "success"]
            first_seen = min([e.time for e in es] + [e.time for e in retired])
            # Issued: created, else issued by a rotation, else first seen. Created by: the
            # actor of its creation, else of the rotation that issued it, else unknown.
            if created:
                issued, created_by = created[0].time, created[0].actor
            elif issuing:
                issued, created_by = issuing[-1].time, issuing[-1].actor
            else:
                issued, created_by = first_seen, ""
            tokens[key] = Token(
                key=key,
                name=newest(es, lambda e: e.token_name, ""),
                owner=newest(es, lambda e: e.owner, ""),
                type=newest(es, lambda e: e.type, ""),
                scopes=newest(es, lambda e: e.scopes, []),
                expires_ms=expires_ms,
                status=status,
                issued=issued,
                rotated_in=issuing[-1].time if issuing else None,
                rotated_away=bool(retired),
                last_used=max(uses) if uses else None,
                created_by=created_by,
            )
        return tokens

    def active(self) -> list[Token]:
        return [t for t in self.tokens().values() if t.status == "active"]

    def inventory(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        tokens = self.tokens().values()
        statuses = Counter(t.status for t in tokens)
        figures = {"tokens": len(tokens)} | {
            s: statuses[s] for s in ("active", "expired", "revoked", "rotated", "disabled")
        }
        rows = [
            [t.key, t.name, t.owner, t.type, " ".join(t.scopes), text(t.issued),
             text(t.expires_ms and t.expires_ms * MS), text(t.last_used), t.status]
            for t in tokens
        ]  # fmt: skip
        return figures, {"inventory": rows}

    def rotation(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        days = self.policy.rotation_days
        counts = dict.fromkeys(("over_age", "never_rotated", "without_expiry", "long_lived"), 0)
        rows = []
        for t in self.active():
            age = self.until - t.issued
            findings = []
            if age > days * DAY:
                findings.append("older than the policy")
                counts["over_age"] += 1
            if t.rotated_in is None and not t.rotated_away:
                findings.append("never rotated")
                counts["never_rotated"] += 1
            if t.expires_ms is None:
                findings.append("no expiry")
                counts["without_expiry"] += 1
            elif t.expires_ms * MS - t.issued > days * DAY:
                findings.append("long-lived")
                counts["long_lived"] += 1
            if findings:
                rows.append(
                    [t.key, t.owner, text(t.issued), round(age / DAY, 1), text(t.rotated_in),
                     text(t.expires_ms and t.expires_ms * MS), ", ".join(findings)]
                )  # fmt: skip
        figures = {"active_tokens": len(self.active()), "rotation_days": days} | counts
        return figures, {"rotation": rows}

    def dormant(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        days = self.policy.dormant_days
        rows = []
        for t in self.active():
            idle_since = t.last_used if t.last_used is not None else t.issued
            if idle_since < self.until - days * DAY:
                rows.append(
                    [t.key, t.owner, text(t.issued), text(t.last_used),
                     round((self.until - idle_since) / DAY, 1)]
                )  # fmt: skip
        return {"dormant": len(rows), "dormant_days": days}, {"dormant": rows}

    # 5. revocation

    def revocation(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        sla = self.policy.revocation_sla_hours * HOUR
        first: dict[str, Event] = {}
        for e in sorted(self.period(), key=lambda e: e.time):
            if e.name in TRIGGERS:
                first.setdefault(e.key, e)
        before_end = sorted((e for e in self.events if e.time < self.until), key=lambda e: e.time)
        removals = sum(e.name == "token.owner_removed" for e in first.values())
        counts = {
            "detections": len(first) - removals,
            "owner_removals": removals,
            "within_sla": 0,
            "late": 0,
            "not_revoked": 0,
        }
        rows = []
        for key, detection in first.items():
            detected = detection.time
            # What ends a token: a revoke, a disable, or a rotation that retires it; a create
            # or an enable after an end makes it live again.
            endings = [
                e for e in before_end
                if (e.key == key and e.name in ("token.revoked", "token.disabled"))
                or (e.name == "token.rotated" and e.previous == key)
            ]  # fmt: skip
            reopened = [
                e.time for e in before_end
                if e.key == key and e.name in ("token.created", "token.enabled")
            ]  # fmt: skip
            after = [e for e in endings if e.time >= detected]
            ended_before = [e for e in endings if e.time < detected]
            # Already revoked: the newest end before the detection, not undone before it.
            already = ended_before[-1] if ended_before else None
            if already is not None and any(already.time < t <= detected for t in reopened):
                already = None
            if not after and already is not None:
                row = [already.time, already.name, None, "already revoked"]
                counts["within_sla"] += 1
            elif not after:
                waited = self.until - detected
                verdict = "not revoked (overdue)" if waited > sla else "not revoked"
                row = [None, "", round(waited / HOUR, 2), verdict]
                counts["not_revoked"] += 1
            else:
                end = after[0]
                late = end.time - detected > sla
                row = [end.time, end.name, round((end.time - detected) / HOUR, 2),
                       "late" if late else "within SLA"]  # fmt: skip
                counts["late" if late else "within_sla"] += 1
            rows.append([key, detection.name, text(detected), text(row[0]), *row[1:]])
        used: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for e in self.period():
            if e.name == "token.used" and e.outcome == "success" and e.status in DEAD:
                used[e.key, e.status].append(e)
        used_rows = [
            [key, status, len(es), text(min(e.time for e in es)), text(max(e.time for e in es)),
             len({e.ip for e in es if e.ip})]
            for (key, status), es in used.items()
        ]  # fmt: skip
        figures = counts | {
            "sla_hours": self.policy.revocation_sla_hours,
            "tokens_used_after_revocation_or_expiry": len({key for key, _ in used}),
            "uses_after_revocation_or_expiry": sum(len(es) for es in used.values()),
        }
        return figures, {"revocations": rows, "used_after_end": used_rows}

    # 6. privileged

    def broad(self, scope: str) -> bool:
        """A broad scope of the policy; '*' in a pattern matches any characters, but the
        pattern '*' alone is the scope '*' (all permissions), not every scope."""
        return any(
            scope == "*" if pattern == "*" else fnmatch.fnmatchcase(scope, pattern)
            for pattern in self.policy.broad_scopes
        )

    def privileged(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        tokens = [t for t in self.tokens().values() if any(map(self.broad, t.scopes))]
        keys = {t.key for t in tokens}
        changes = [
            e for e in sorted(self.period(), key=lambda e: (e.time, e.key))
            if (e.added or e.removed)
            and (e.key in keys or any(map(self.broad, e.added + e.removed)))
        ]  # fmt: skip
        figures = {
            "privileged": len(tokens),
            "privileged_active": sum(t.status == "active" for t in tokens),
            "scope_changes": len(changes),
        }
        return figures, {
            "privileged": [
                [t.key, t.owner, " ".join(filter(self.broad, t.scopes)), t.created_by,
                 text(t.issued), t.status]
                for t in tokens
            ],
            "scope_changes": [
                [text(e.time), e.key, e.actor, e.name, " ".join(e.added), " ".join(e.removed)]
                for e in changes
            ],
        }  # fmt: skip

    # 7. failures and alerts

    def failures(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        failed = [e for e in self.period() if e.name in FAILURES]
        by_reason: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for e in failed:
            by_reason[e.name, e.failure].append(e)
        auth = sorted((e for e in failed if e.name == "token.auth_failed"), key=lambda e: e.time)
        by_token: dict[str, list[Event]] = defaultdict(list)
        by_ip: dict[str, list[Event]] = defaultdict(list)
        for e in auth:
            by_token[e.key].append(e)
            if e.ip:
                by_ip[e.ip].append(e)
        raised = [
            a for a in self.alerts if self.since <= a.raised_ms * MS < self.until
        ]  # fmt: skip
        by_rule: dict[str, list[Alert]] = defaultdict(list)
        for a in raised:
            by_rule[a.rule].append(a)
        alert_rows = []
        for rule, alerts in by_rule.items():
            (severity,) = {a.severity for a in alerts}
            tokens = sorted({a.token for a in alerts if a.token})
            ips = sorted({a.ip for a in alerts if a.ip})
            alert_rows.append(
                [rule, severity, len(alerts), len(tokens), len(ips), ", ".join(tokens[:10]),
                 ", ".join(ips[:10])]
            )  # fmt: skip
        figures = {
            "auth_failures": len(auth),
            "access_denied": sum(e.name == "token.access_denied" for e in failed),
            "refresh_failures": sum(e.name == "token.refresh_failed" for e in failed),
            "failing_tokens": len(by_token),
            "failing_addresses": len(by_ip),
            "alerts": len(raised),
        }
        return figures, {
            "failures_by_reason": [
                [name, reason, len(es), len({e.key for e in es if e.key}),
                 len({e.ip for e in es if e.ip})]
                for (name, reason), es in by_reason.items()
            ],
            "alerts_by_rule": alert_rows,
            "failing_tokens": [
                [key, newest(es, lambda e: e.owner, ""), len(es), len({e.ip for e in es if e.ip}),
                 text(max(e.time for e in es))]
                for key, es in by_token.items()
            ],
            "failing_addresses": [
                [ip, len(es), len({e.key for e in es}), text(max(e.time for e in es))]
                for ip, es in by_ip.items()
            ],
        }  # fmt: skip

    # 9. retention

    def retention(self) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
        oldest = min(e.time for e in self.events)
        months = Counter((EPOCH + timedelta(seconds=e.time // SECOND)).strftime("%Y-%m")
                         for e in self.events)  # fmt: skip
        figures = {
            "oldest_event": text(oldest),
            "events_kept": len(self.events),
            "months_available": len(months),
            "retention_days": None,
            "retention_setting_covers_months": None,
            "policy_months": self.policy.retention_months,
            "policy_immediate_months": self.policy.immediate_months,
        }
        return figures, {"months": [[m, n] for m, n in months.items()]}


@pytest.fixture(scope="module")
def recount(trail: Trail) -> Recount:
    return Recount(
        trail.events, trail.alerts, scenario.SINCE, scenario.UNTIL, trail.service_minutes
    )


def unordered(rows: Iterable[Iterable[Any]]) -> list[tuple[Any, ...]]:
    return sorted((tuple(row) for row in rows), key=repr)


def assert_section(
    section: Section, expected: tuple[dict[str, Any], dict[str, list[list[Any]]]]
) -> None:
    """Every figure and every row of every table as the recount has it; on failure, each
    difference (report first, recount second)."""
    figures, tables = expected
    assert sorted(section.figures) == sorted(figures)
    assert sorted(t.name for t in section.tables) == sorted(tables)
    differences = [
        f"figure {key}: report {section.figures[key]!r}, recount {figures[key]!r}"
        for key in figures
        if section.figures[key] != figures[key]
    ]
    for name, rows in tables.items():
        got, want = Counter(unordered(section.table(name).rows)), Counter(unordered(rows))
        differences += [f"{name}: only in the report: {row}" for row in got - want]
        differences += [f"{name}: only in the recount: {row}" for row in want - got]
    assert not differences, "\n".join(differences)


def column(section: Section, table: str, name: str) -> list[Any]:
    t = section.table(table)
    i = t.columns.index(name)
    return [row[i] for row in t.rows]


def non_increasing(values: list[Any]) -> bool:
    numbers = [math.inf if v is None else v for v in values]
    return all(a >= b for a, b in pairwise(numbers))


OPEN_OR_LATE = ("late", "not revoked", "not revoked (overdue)")


def ordered_first(flags: list[bool]) -> bool:
    """The rows flagged come before the others."""
    return flags == sorted(flags, reverse=True)


def rows_by_token(section: Section, table: str) -> dict[str, list[Any]]:
    return {str(row[0]): list(row) for row in section.table(table).rows}


# -- every figure equals the recount ----------------------------------------------------------


def test_the_report_has_the_nine_sections_over_the_quarter(trail: Trail) -> None:
    report = trail.report
    assert [(s.number, s.key) for s in report.sections] == list(enumerate(
        ["scope", "inventory", "rotation", "dormant", "revocation", "privileged", "failures",
         "integrity", "retention"], 1))  # fmt: skip
    assert report.period == scenario.PERIOD
    assert len(trail.events) == trail.sent


def test_scope_equals_the_recount(trail: Trail, recount: Recount) -> None:
    section = trail.report.section("scope")
    assert_section(section, recount.scope())
    per_day = section.table("events_per_day").rows
    assert section.chart is not None
    assert section.chart.days == sorted({str(row[0]) for row in per_day})
    for day, source, n in per_day:
        assert section.chart.series[str(source)][section.chart.days.index(str(day))] == n
    assert sum(map(sum, section.chart.series.values())) == section.figures["events"]


def test_inventory_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("inventory"), recount.inventory())


def test_rotation_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("rotation"), recount.rotation())


def test_dormant_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("dormant"), recount.dormant())


def test_revocation_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("revocation"), recount.revocation())


def test_privileged_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("privileged"), recount.privileged())


def test_failures_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("failures"), recount.failures())


def test_each_table_is_in_the_order_its_title_gives(trail: Trail) -> None:
    report = trail.report

    def values(key: str, table: str, name: str) -> list[Any]:
        return column(report.section(key), table, name)

    def first(key: str, table: str, name: str, wanted: Any) -> list[bool]:
        return [value in wanted for value in values(key, table, name)]

    claims = {
        "rotation: oldest first": non_increasing(values("rotation", "rotation", "age (days)")),
        "dormant: longest idle first": non_increasing(values("dormant", "dormant", "idle (days)")),
        "revocations: late and open first": ordered_first(
            first("revocation", "revocations", "verdict", OPEN_OR_LATE)
        ),
        "privileged: active first": ordered_first(
            first("privileged", "privileged", "status", ("active",))
        ),
        "scope changes: in time order": values("privileged", "scope_changes", "time")
        == sorted(values("privileged", "scope_changes", "time")),
        "failures by reason: most first": non_increasing(
            values("failures", "failures_by_reason", "failures")
        ),
        "alerts: most first": non_increasing(values("failures", "alerts_by_rule", "alerts")),
        "failing tokens: most failures first": non_increasing(
            values("failures", "failing_tokens", "failures")
        ),
        "failing addresses: most failures first": non_increasing(
            values("failures", "failing_addresses", "failures")
        ),
        "events per day: by day": values("scope", "events_per_day", "day")
        == sorted(values("scope", "events_per_day", "day")),
        "months: by month": values("retention", "months", "month")
        == sorted(values("retention", "months", "month")),
    }
    assert [claim for claim, holds in claims.items() if not holds] == []


def test_integrity_is_off_without_trust(trail: Trail) -> None:
    section = trail.report.section("integrity")
    assert section.figures == {"tamper_evidence": "off", "newest_checkpoint": None}
    assert trail.report.checkpoint is None


def test_retention_equals_the_recount(trail: Trail, recount: Recount) -> None:
    assert_section(trail.report.section("retention"), recount.retention())


# -- the known cases --------------------------------------------------------------------------


def test_the_recount_gives_the_known_answers(recount: Recount) -> None:
    """The recount itself, held to the answers the scenario was built for."""

    def by_token(rows: list[list[Any]]) -> dict[str, list[Any]]:
        return {str(row[0]): row for row in rows}

    figures, scope = recount.scope()
    assert scope["source_gaps"] == scenario.SOURCE_GAPS
    assert scope["service_failing"] == scenario.SERVICE_FAILING
    assert figures["service_minutes_recorded"] == scenario.SERVICE_MINUTES_RECORDED
    assert [row[0] for row in scope["sources"]] == scenario.SOURCES
    statuses = {key: t.status for key, t in recount.tokens().items()}
    assert {key: statuses[key] for key in scenario.STATUS_AT_END} == scenario.STATUS_AT_END
    rotation = by_token(recount.rotation()[1]["rotation"])
    assert {key: rotation[key] for key in scenario.ROTATION_ROWS} == scenario.ROTATION_ROWS
    assert not set(scenario.NO_ROTATION_FINDING) & set(rotation)
    assert unordered(recount.dormant()[1]["dormant"]) == unordered(scenario.DORMANT_ROWS)
    figures, tables = recount.revocation()
    assert unordered(tables["revocations"]) == unordered(scenario.REVOCATION_ROWS)
    assert unordered(tables["used_after_end"]) == unordered(scenario.USED_AFTER_END_ROWS)
    assert {key: figures[key] for key in scenario.REVOCATION_FIGURES} == (
        scenario.REVOCATION_FIGURES
    )
    figures, tables = recount.privileged()
    privileged = by_token(tables["privileged"])
    assert {key: row[-1] == "active" for key, row in privileged.items()} == scenario.PRIVILEGED
    assert {key: privileged[key][3] for key in scenario.CREATED_BY} == scenario.CREATED_BY
    assert tables["scope_changes"] == scenario.SCOPE_CHANGES


def test_the_known_scope(trail: Trail) -> None:
    section = trail.report.section("scope")
    assert [row[0] for row in section.table("sources").rows] == scenario.SOURCES
    assert section.figures["sources"] == len(scenario.SOURCES)
    assert section.figures["services"] == len(scenario.SERVICE_NAMES)
    assert section.table("source_gaps").rows == scenario.SOURCE_GAPS
    assert section.figures["source_gaps"] == 1
    assert section.table("service_failing").rows == scenario.SERVICE_FAILING
    assert section.figures["service_minutes_recorded"] == scenario.SERVICE_MINUTES_RECORDED


def test_the_known_statuses_at_the_end(trail: Trail) -> None:
    inventory = trail.report.section("inventory").table("inventory")
    status = {row[0]: row[-1] for row in inventory.rows}
    assert {key: status.get(key) for key in scenario.STATUS_AT_END} == scenario.STATUS_AT_END
    # The spray's guessed ids are attempts (section 7), not tokens.
    assert not [key for key in status if key.startswith("tok-guess-")]
    failing = trail.report.section("failures").table("failing_tokens").rows
    assert sum(str(row[0]).startswith("tok-guess-") for row in failing) == scenario.SPRAY_TOKENS
    scopes = {row[0]: row[4] for row in inventory.rows}
    assert scopes["tok-leak-open"] == " ".join(scenario.LEAK_OPEN_SCOPES)


def test_the_known_rotation_cases(trail: Trail) -> None:
    rows = rows_by_token(trail.report.section("rotation"), "rotation")
    assert {key: rows.get(key) for key in scenario.ROTATION_ROWS} == scenario.ROTATION_ROWS
    assert not set(scenario.NO_ROTATION_FINDING) & set(rows)


def test_the_known_dormant_tokens(trail: Trail) -> None:
    section = trail.report.section("dormant")
    assert section.table("dormant").rows == scenario.DORMANT_ROWS
    assert section.figures["dormant"] == len(scenario.DORMANT_ROWS)


def test_the_known_revocations(trail: Trail) -> None:
    section = trail.report.section("revocation")
    assert unordered(section.table("revocations").rows) == unordered(scenario.REVOCATION_ROWS)
    figures = {key: section.figures[key] for key in scenario.REVOCATION_FIGURES}
    assert figures == scenario.REVOCATION_FIGURES
    late = rows_by_token(section, "revocations")["tok-leaked"]
    assert (late[5], late[6]) == (30.0, "late")


def test_the_known_uses_after_revocation_or_expiry(trail: Trail) -> None:
    section = trail.report.section("revocation")
    rows = section.table("used_after_end").rows
    assert unordered(rows) == unordered(scenario.USED_AFTER_END_ROWS)
    assert section.figures["tokens_used_after_revocation_or_expiry"] == 4
    assert section.figures["uses_after_revocation_or_expiry"] == 7


def test_the_known_privileged_tokens(trail: Trail) -> None:
    section = trail.report.section("privileged")
    rows = rows_by_token(section, "privileged")
    assert {key: row[-1] == "active" for key, row in rows.items()} == scenario.PRIVILEGED
    assert section.figures["privileged"] == len(scenario.PRIVILEGED)
    assert section.figures["privileged_active"] == sum(scenario.PRIVILEGED.values())


def test_who_created_the_known_privileged_tokens(trail: Trail) -> None:
    rows = rows_by_token(trail.report.section("privileged"), "privileged")
    assert {key: rows[key][3] for key in scenario.CREATED_BY} == scenario.CREATED_BY


def test_the_known_scope_changes(trail: Trail) -> None:
    section = trail.report.section("privileged")
    assert section.table("scope_changes").rows == scenario.SCOPE_CHANGES
    assert section.figures["scope_changes"] == len(scenario.SCOPE_CHANGES)


def test_the_known_failures_and_alerts(trail: Trail) -> None:
    section = trail.report.section("failures")
    addresses = {row[0]: row for row in section.table("failing_addresses").rows}
    spray = addresses[scenario.SPRAY_IP]
    assert spray[1:3] == [scenario.SPRAY_TOKENS, scenario.SPRAY_TOKENS]
    assert scenario.BRUTE_IP in addresses  # an IPv6 address, as people write it
    tokens = rows_by_token(section, "failing_tokens")
    burst_last = scenario.at("2026-09-08T03:00") + (scenario.BURST_FAILURES - 1) * 20 * SECOND
    assert tokens[scenario.BURST_TOKEN] == [
        scenario.BURST_TOKEN,
        "svc-search",
        scenario.BURST_FAILURES,
        1,
        rfc3339(burst_last),
    ]
    # The brute force, and a vault failure without an address or an owner after it.
    assert tokens[scenario.BRUTE_TOKEN] == [
        scenario.BRUTE_TOKEN, "alice", scenario.BRUTE_FAILURES + 1, 1,
        rfc3339(scenario.at("2026-09-21T03:00")),
    ]  # fmt: skip
    alerts = rows_by_token(section, "alerts_by_rule")
    assert alerts["token-spray"][2:5] == [1, 0, 1]
    assert alerts["token-spray"][6] == scenario.SPRAY_IP
    assert alerts["brute-force"][2:5] == [1, 0, 1]
    assert alerts["brute-force"][6] == scenario.BRUTE_IP
    assert scenario.BURST_TOKEN in str(alerts["failure-burst"][5])
    detected = [row[0] for row in scenario.REVOCATION_ROWS if row[1] != "token.owner_removed"]
    assert alerts["reuse-or-leak-detected"][2:6] == [
        len(detected),
        len(detected),
        0,
        ", ".join(sorted(detected)),
    ]


def test_the_known_retention(trail: Trail) -> None:
    section = trail.report.section("retention")
    assert section.figures["oldest_event"] == rfc3339(scenario.DORMANT_CREATED)
    assert section.figures["events_kept"] == trail.sent
    assert [row[0] for row in section.table("months").rows] == [
        f"2026-{m:02d}" for m in range(3, 11)
    ]


def test_the_same_sections_when_no_token_key_is_sent_as_a_parameter(trail: Trail) -> None:
    """With more keys than a server takes in its URL, the privileged and revocation sections
    read every change of scope and every lifecycle event, and keep the ones they need."""
    for key in ("revocation", "privileged"):
        assert trail.keys_kept.section(key) == trail.report.section(key)
    assert trail.report.section("privileged").table("scope_changes").rows
    assert trail.report.section("revocation").table("revocations").rows
