"""The nine sections of the compliance report, each computed from the trail with SQL a
ClickHouse user can read (docs/report.md lists what each figure counts)."""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
import string
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tokenotel.model import DEAD_STATUSES
from tokenotel.query.readable import IP_TEXT_SQL
from tokenotel.report.model import Chart, Policy, Rows, Section, Table, Value
from tokenotel.store.client import ALERTS_TABLE, EVENTS_TABLE, SERVICE_MINUTES_TABLE, Store

NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS

#: What each section is evidence for (docs/report.md, "Requirements").
EVIDENCE = {
    "scope": ["PCI DSS 10.2.1", "PCI DSS 10.7.2", "SOC 2 CC7.2", "ISO 27001 A.8.15"],
    "inventory": ["PCI DSS 8.2.1", "PCI DSS 8.6.1", "SOC 2 CC6.1", "SOC 2 CC6.2"],
    "rotation": ["PCI DSS 8.3.9", "PCI DSS 8.6.3", "SOC 2 CC6.1"],
    "dormant": ["PCI DSS 8.2.6", "SOC 2 CC6.2"],
    "revocation": ["PCI DSS 8.2.5", "PCI DSS 8.3.10", "SOC 2 CC6.2", "SOC 2 CC6.3"],
    "privileged": ["PCI DSS 8.2.4", "PCI DSS 8.6.1", "SOC 2 CC6.3"],
    "failures": ["PCI DSS 10.2.1.4", "PCI DSS 10.4.1", "SOC 2 CC7.2", "ISO 27001 A.8.15"],
    "integrity": ["PCI DSS 10.3.2", "PCI DSS 10.3.4", "SOC 2 CC7.2", "ISO 27001 A.8.15"],
    "retention": ["PCI DSS 10.5.1", "ISO 27001 A.8.15"],
}

#: Every section reads the events of the period: [since, until), in ns.
PERIOD = (
    "event_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') "
    "AND event_time < fromUnixTimestamp64Nano({until:Int64}, 'UTC')"
)
BEFORE_END = "event_time < fromUnixTimestamp64Nano({until:Int64}, 'UTC')"

# -- 1. scope ---------------------------------------------------------------------------------

#: Each source's events of each day: how many, from which services, the first and the last
#: (one read gives both the sources table and the events per day).
SOURCE_DAYS_SQL = f"""
SELECT toString(toDate(event_time)) AS day, source, count(),
       groupUniqArray(toString(service_name)),
       toUnixTimestamp64Nano(min(event_time)), toUnixTimestamp64Nano(max(event_time))
FROM {EVENTS_TABLE} WHERE {PERIOD}
GROUP BY day, source ORDER BY day, source
"""
#: The silences of the sources that usually report: two events of a source in a row, at least
#: {gap_ns} apart. Such events are the last of one time bucket and the first of the next bucket
#: that has any, when a bucket is no longer than the gap; buckets of an hour (or less, dividing
#: it) also count the hours a source reported in.
SOURCE_GAPS_SQL = f"""
SELECT source, toUnixTimestamp64Nano(before), toUnixTimestamp64Nano(first)
FROM (
    SELECT source, first,
           lagInFrame(last, 1, first) OVER (PARTITION BY source ORDER BY first
                                            ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS before,
           uniqExact(toStartOfHour(first)) OVER (PARTITION BY source) AS hours
    FROM (SELECT source, min(event_time) AS first, max(event_time) AS last
          FROM {EVENTS_TABLE} WHERE {PERIOD}
          GROUP BY source,
                   toStartOfInterval(event_time, toIntervalNanosecond({{bucket_ns:UInt64}}))))
WHERE hours >= {{usual_hours:Float64}}
  AND toUnixTimestamp64Nano(first) - toUnixTimestamp64Nano(before) >= {{gap_ns:Int64}}
ORDER BY source, first
"""
#: The minutes in which the service committed inserts (ingested_at): when it was storing.
INSERT_MINUTES_SQL = f"""
SELECT DISTINCT toUnixTimestamp(toStartOfMinute(ingested_at))
FROM {EVENTS_TABLE}
WHERE ingested_at >= fromUnixTimestamp64Nano({{since:Int64}}, 'UTC')
  AND ingested_at < fromUnixTimestamp64Nano({{until:Int64}}, 'UTC')
ORDER BY 1
"""

#: The minutes of the period in which the service, running, failed at something (its own
#: counters, written a minute at a time: docs/schema.md).
SERVICE_FAILING_SQL = f"""
SELECT toUnixTimestamp(minute) AS at, sum(records_rejected), sum(inserts_failed),
       sum(requests_refused), sum(worker_restarts)
FROM {SERVICE_MINUTES_TABLE}
WHERE minute >= fromUnixTimestamp64Nano({{since:Int64}}, 'UTC')
  AND minute < fromUnixTimestamp64Nano({{until:Int64}}, 'UTC')
GROUP BY at
HAVING sum(records_rejected) + sum(inserts_failed) + sum(requests_refused)
       + sum(worker_restarts) > 0
ORDER BY at
"""
#: How many minutes of the period have the service's counters.
SERVICE_MINUTES_SQL = f"""
SELECT uniqExact(minute) FROM {SERVICE_MINUTES_TABLE}
WHERE minute >= fromUnixTimestamp64Nano({{since:Int64}}, 'UTC')
  AND minute < fromUnixTimestamp64Nano({{until:Int64}}, 'UTC')
"""

# -- 2-6. tokens at the end of the period -----------------------------------------------------

#: Every token's newest values up to the end of the period, as token_inventory computes them
#: for now (docs/schema.md): the value of the newest event that carries one (argMaxIf: a
#: tuple's max, as the view keeps it, costs twice the time over a quarter of events). An id
#: seen only in failed authentication is an attempt, not a token (section 7 counts it).
#: Two reads joined by token: the values any event may carry, over every event, and the
#: lifecycle, over the lifecycle events alone (a few in a hundred), each aggregate costing
#: ClickHouse a pass over the rows it is given. The newest scopes are kept as text, which
#: ClickHouse keeps in half the time of an array: joined by NUL, or when a scope is empty or
#: holds a NUL, NUL and then the array's text (read back exactly by the CAST); no scopes are
#: ''. Ordered by token, as the report lists them.
INVENTORY_SQL = f"""
SELECT token_key, type_now, name_now, owner,
       multiIf(scopes_text = '', [],
               startsWith(scopes_text, '\\0'), CAST(substring(scopes_text, 2), 'Array(String)'),
               splitByChar('\\0', scopes_text)),
       expires_ms, lifecycle, lifecycle_ns, created_ns, created_by, last_used_ns, rotated_in_ns,
       first_seen_ns
FROM (
    SELECT token_key,
           toString(argMaxIf(token_type, event_time, token_type != '')) AS type_now,
           argMaxIf(token_name, event_time, token_name != '') AS name_now,
           argMaxIf(principal_id, event_time, principal_id != '') AS owner,
           argMaxIf(if(arrayAll(s -> notEmpty(s) AND position(s, '\\0') = 0, scopes),
                       arrayStringConcat(scopes, '\\0'), concat('\\0', toString(scopes))),
                    event_time, notEmpty(scopes)) AS scopes_text,
           toUnixTimestamp64Milli(argMaxIf(expires_at, event_time, expires_at IS NOT NULL))
               AS expires_ms,
           toUnixTimestamp64Nano(maxIfOrNull(event_time,
                                             event_name = 'token.used' AND outcome = 'success'))
               AS last_used_ns,
           toUnixTimestamp64Nano(min(event_time)) AS first_seen_ns
    FROM {EVENTS_TABLE} WHERE {BEFORE_END}
    GROUP BY token_key
    HAVING countIf(event_name != 'token.auth_failed') > 0
) AS seen LEFT JOIN (
    WITH multiIf(event_name IN ('token.created', 'token.enabled'), 'active',
                 event_name = 'token.disabled', 'disabled',
                 event_name = 'token.revoked', 'revoked',
                 event_name = 'token.expired', 'expired', '') AS lifecycle_now
    SELECT token_key,
           argMaxIf(lifecycle_now, event_time, lifecycle_now != '') AS lifecycle,
           toUnixTimestamp64Nano(maxIfOrNull(event_time, lifecycle_now != '')) AS lifecycle_ns,
           toUnixTimestamp64Nano(minIfOrNull(event_time, event_name = 'token.created'))
               AS created_ns,
           if(countIf(event_name = 'token.created') > 0,
              argMinIf(actor_id, event_time, event_name = 'token.created'),
              argMaxIf(actor_id, event_time, event_name = 'token.rotated')) AS created_by,
           toUnixTimestamp64Nano(maxIfOrNull(event_time, event_name = 'token.rotated'))
               AS rotated_in_ns
    FROM {EVENTS_TABLE}
    WHERE {BEFORE_END}
      AND event_name IN ('token.created', 'token.enabled', 'token.disabled', 'token.revoked',
                         'token.expired', 'token.rotated')
    GROUP BY token_key
) AS changes USING token_key
ORDER BY token_key
"""
#: A rotation retires the previous id (as token_inventory_rotated_mv does for now).
ROTATED_AWAY_SQL = f"""
SELECT previous_token_id, toUnixTimestamp64Nano(max(event_time)),
       toUnixTimestamp64Nano(min(event_time))
FROM {EVENTS_TABLE}
WHERE {BEFORE_END} AND event_name = 'token.rotated' AND previous_token_id != ''
GROUP BY previous_token_id
"""
#: How long a list of token keys a statement takes as a parameter, URL-encoded: a ClickHouse
#: server reads parameters from the URL, which it caps (at 1 MiB by default).
MOST_KEY_BYTES = 512 * 1024
#: Changes of scope touching privilege: of a privileged token ({keys}), or adding or removing a
#: broad scope (matching the regular expression {broad}; none when it is empty); or, with
#: {every}, all changes of scope.
SCOPE_CHANGES_SQL = f"""
SELECT toUnixTimestamp64Nano(event_time), token_key, actor_id, event_name,
       CAST(scopes_added, 'Array(String)'), CAST(scopes_removed, 'Array(String)')
FROM {EVENTS_TABLE}
WHERE {PERIOD} AND (notEmpty(scopes_added) OR notEmpty(scopes_removed))
  AND ({{every:Bool}} OR token_key IN {{keys:Array(String)}}
       OR ({{broad:String}} != ''
           AND arrayExists(s -> match(s, {{broad:String}}),
                           arrayConcat(scopes_added, scopes_removed))))
ORDER BY event_time, token_key
"""

# -- 5. revocation ----------------------------------------------------------------------------

OWNER_REMOVED = "token.owner_removed"
#: What starts each token's revocation clock: its first leak or reuse detected, or its owner's
#: removal, in the period.
TRIGGERED = (
    f"{PERIOD} AND event_name IN ('token.leak_detected', 'token.reuse_detected', '{OWNER_REMOVED}')"
)
TRIGGERS_SQL = f"""
SELECT token_key, toUnixTimestamp64Nano(min(event_time)), argMin(event_name, event_time)
FROM {EVENTS_TABLE}
WHERE {TRIGGERED}
GROUP BY token_key
"""
#: Lifecycle up to the end of the period of the tokens whose clock started: an ending (a
#: revoke, a disable, a rotation that retired it) or a beginning (a create, an enable).
LIFECYCLE_SQL = f"""
SELECT if(event_name = 'token.rotated', previous_token_id, token_key) AS key,
       toUnixTimestamp64Nano(event_time), event_name
FROM {EVENTS_TABLE}
WHERE {BEFORE_END}
  AND (event_name IN ('token.revoked', 'token.disabled', 'token.created', 'token.enabled')
       OR (event_name = 'token.rotated' AND previous_token_id != ''))
  AND key IN (SELECT token_key FROM {EVENTS_TABLE} WHERE {TRIGGERED})
ORDER BY event_time
"""
USED_DEAD_SQL = f"""
SELECT token_key, token_status, count(), toUnixTimestamp64Nano(min(event_time)),
       toUnixTimestamp64Nano(max(event_time)),
       uniqExactIf(client_ip, client_ip != toIPv6('::'))
FROM {EVENTS_TABLE}
WHERE {PERIOD} AND event_name = 'token.used' AND outcome = 'success'
  AND token_status IN {{dead:Array(String)}}
GROUP BY token_key, token_status
ORDER BY count() DESC, token_key, token_status
"""

# -- 7. failures and alerts -------------------------------------------------------------------

FAILURES_BY_REASON_SQL = f"""
SELECT event_name, failure_reason, count(), uniqExact(token_key),
       uniqExactIf(client_ip, client_ip != toIPv6('::'))
FROM {EVENTS_TABLE}
WHERE {PERIOD} AND event_name IN ('token.auth_failed', 'token.access_denied',
                                  'token.refresh_failed')
GROUP BY event_name, failure_reason
ORDER BY count() DESC, event_name, failure_reason
"""
FAILING_TOKENS_SQL = f"""
SELECT token_key, argMaxIf(principal_id, event_time, principal_id != ''), count(),
       uniqExactIf(client_ip, client_ip != toIPv6('::')),
       toUnixTimestamp64Nano(max(event_time))
FROM {EVENTS_TABLE}
WHERE {PERIOD} AND event_name = 'token.auth_failed'
GROUP BY token_key
ORDER BY count() DESC, token_key
"""
FAILING_IPS_SQL = f"""
SELECT {IP_TEXT_SQL.format("client_ip")}, count(), uniqExact(token_key),
       toUnixTimestamp64Nano(max(event_time))
FROM {EVENTS_TABLE}
WHERE {PERIOD} AND event_name = 'token.auth_failed' AND client_ip != toIPv6('::')
GROUP BY client_ip
ORDER BY count() DESC, client_ip
"""
ALERTS_SQL = f"""
SELECT rule, any(severity), count(), uniqExactIf(token_key, token_key != ''),
       uniqExactIf(client_ip, client_ip != ''),
       arrayStringConcat(arraySlice(arraySort(groupUniqArrayIf(token_key, token_key != '')),
                                    1, 10), ', '),
       arrayStringConcat(arraySlice(arraySort(groupUniqArrayIf(client_ip, client_ip != '')),
                                    1, 10), ', ')
FROM {ALERTS_TABLE}
WHERE raised_at >= fromUnixTimestamp64Nano({{since:Int64}}, 'UTC')
  AND raised_at < fromUnixTimestamp64Nano({{until:Int64}}, 'UTC')
GROUP BY rule
ORDER BY count() DESC, rule
"""

# -- 9. retention -----------------------------------------------------------------------------

OLDEST_SQL = f"SELECT toUnixTimestamp64Nano(min(event_time)), count() FROM {EVENTS_TABLE}"
MONTHS_SQL = f"""
SELECT toYYYYMM(event_time) AS month, count()
FROM {EVENTS_TABLE} GROUP BY month ORDER BY month
"""


#: The statuses of a token no longer usable (USED_DEAD_SQL's parameter).
_DEAD = {"dead": sorted(DEAD_STATUSES)}


def _read_key(sql: str, extra: dict[str, Any]) -> tuple[str, str]:
    return sql, repr(sorted(extra.items()))


def text_ns(ns: int | None) -> str | None:
    """A time as an auditor reads it: RFC 3339 UTC to the second."""
    return None if ns is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // NS))


def text_ms(ms: int | None) -> str | None:
    return None if ms is None else text_ns(ms * 1_000_000)


@dataclass(slots=True)
class Token:
    """A token as it stood at the end of the period."""

    key: str
    type: str
    name: str
    owner: str
    scopes: list[str]
    expires_ms: int | None
    lifecycle: str
    lifecycle_ns: int | None
    created_ns: int | None
    created_by: str
    last_used_ns: int | None
    rotated_in_ns: int | None  # issued by a rotation (its token.rotated event)
    first_seen_ns: int
    rotated_away: bool = False
    status: str = ""  # at the end of the period (``settle``)
    issued_ns: int = 0  # when this secret came to be: created, else rotated in, else first seen

    def settle(self, until_ns: int) -> None:
        if self.lifecycle in ("revoked", "disabled", "rotated", "expired"):
            self.status = self.lifecycle
        elif self.expires_ms is not None and self.expires_ms * 1_000_000 <= until_ns:
            self.status = "expired"
        else:
            self.status = "active"
        for ns in (self.created_ns, self.rotated_in_ns, self.first_seen_ns):
            if ns is not None:
                self.issued_ns = ns
                break


class Builder:
    """Computes the sections over one store and one period."""

    def __init__(self, store: Store, since: datetime, until: datetime, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self.since_ns = _ns(since)
        self.until_ns = _ns(until)
        self.params = {"since": self.since_ns, "until": self.until_ns}
        self._tokens: list[Token] | None = None
        self._active: list[Token] | None = None
        self._ahead: dict[tuple[str, str], Future[Sequence[Sequence[Any]]]] = {}
        self._reader: ThreadPoolExecutor | None = None

    def rows(self, sql: str, **extra: Any) -> Sequence[Sequence[Any]]:
        ahead = self._ahead.pop(_read_key(sql, extra), None)
        if ahead is not None:
            return ahead.result()
        return self._read(sql, extra)

    def _read(self, sql: str, extra: dict[str, Any]) -> Sequence[Sequence[Any]]:
        return self.store.query(sql, self.params | extra).result_rows

    def read_ahead(self) -> None:
        """Sends the reads that need only the period and the policy, in the order the sections
        ask for them, from a second thread: ClickHouse answers the next read (and the driver
        turns it into rows) while the sections work in Python on the last. ``close`` ends it."""
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="report-reads")
        for sql, extra in self._fixed_reads():
            self._ahead[_read_key(sql, extra)] = self._reader.submit(self._read, sql, extra)

    def _fixed_reads(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (SOURCE_DAYS_SQL, {}),
            (SOURCE_GAPS_SQL, self._gap_params()),
            (INSERT_MINUTES_SQL, {}),
            (SERVICE_FAILING_SQL, {}),
            (SERVICE_MINUTES_SQL, {}),
            (INVENTORY_SQL, {}),
            (ROTATED_AWAY_SQL, {}),
            (TRIGGERS_SQL, {}),
            (LIFECYCLE_SQL, {}),
            (USED_DEAD_SQL, _DEAD),
            (FAILURES_BY_REASON_SQL, {}),
            (FAILING_TOKENS_SQL, {}),
            (FAILING_IPS_SQL, {}),
            (ALERTS_SQL, {}),
            (OLDEST_SQL, {}),
            (MONTHS_SQL, {}),
        ]

    def close(self) -> None:
        """Drops the reads not asked for and ends the second thread, closing its connection."""
        if self._reader is None:
            return
        for ahead in self._ahead.values():
            ahead.cancel()
        self._ahead.clear()
        self._reader.submit(self.store.release_reader)
        self._reader.shutdown(wait=True)
        self._reader = None

    # -- the tokens at the end of the period --------------------------------------------------

    def tokens(self) -> list[Token]:
        if self._tokens is None:
            tokens = {}
            for row in self.rows(INVENTORY_SQL):  # its columns in Token's order
                tokens[row[0]] = Token(*row)
            for key, at_ns, first_ns in self.rows(ROTATED_AWAY_SQL):
                token = tokens.get(key)
                if token is None:
                    token = tokens[key] = Token(
                        key, "", "", "", [], None, "", None, None, "", None, None, first_ns
                    )
                # The newest of (time, status) wins, as in token_inventory.
                if (at_ns, "rotated") > (token.lifecycle_ns or 0, token.lifecycle):
                    token.lifecycle, token.lifecycle_ns = "rotated", at_ns
                token.rotated_away = True
            for token in tokens.values():
                token.settle(self.until_ns)
            self._tokens = sorted(tokens.values(), key=operator.attrgetter("key"))
        return self._tokens

    def active(self) -> list[Token]:
        if self._active is None:
            self._active = [t for t in self.tokens() if t.status == "active"]
        return self._active

    # -- the sections ---------------------------------------------------------------------

    def scope(self) -> Section:
        section = _section(1, "scope", "Scope: what the trail covers")
        source_days = self.rows(SOURCE_DAYS_SQL)
        per_day = [(day, source, n) for day, source, n, *_ in source_days]
        sources = _sources(source_days)
        gaps = self.source_gaps()
        down = self.service_gaps()
        failing = self.service_failing()
        ((recorded,),) = self.rows(SERVICE_MINUTES_SQL)
        section.figures = {
            "period_start": text_ns(self.since_ns),
            "period_end": text_ns(self.until_ns),
            "events": sum(r[2] for r in sources),
            "sources": len(sources),
            "services": len({s for r in sources for s in r[1].split(", ") if s}),
            "source_gaps": len(gaps),
            "service_gaps": len(down),
            "service_minutes_recorded": recorded,
            "service_failing": len(failing),
            "records_rejected": sum(f[2] for f in failing),
            "inserts_failed": sum(f[3] for f in failing),
            "requests_refused": sum(f[4] for f in failing),
            "worker_restarts": sum(f[5] for f in failing),
        }
        section.tables = [
            Table(
                "sources", "Sources and services seen",
                ["source", "services", "events", "first event", "last event"],
                [[s, services, n, text_ns(a), text_ns(b)] for s, services, n, a, b in sources],
            ),
            Table(
                "events_per_day", "Events per source per day",
                ["day", "source", "events"], [list(r) for r in per_day], shown=31,
            ),
            Table(
                "source_gaps",
                f"Silences of {_hours(self.policy.source_gap_hours)} or more from a source "
                "that usually reports",
                ["source", "silent from", "silent until", "hours"],
                [[s, text_ns(a), text_ns(b), round((b - a) / HOUR_NS, 2)] for s, a, b in gaps],
            ),
            Table(
                "service_gaps",
                f"Stretches of {_hours(self.policy.source_gap_hours)} or more in which the "
                "service stored nothing (down, stopped or failing)",
                ["from", "until", "hours"],
                [[text_ns(a), text_ns(b), round((b - a) / HOUR_NS, 2)] for a, b in down],
            ),
            Table(
                "service_failing",
                "Stretches in which the service, running, rejected records, failed to insert, "
                "asked senders to slow down or replaced a mapping worker (its own counters)",
                ["from", "until", "records rejected", "inserts failed", "requests refused",
                 "workers replaced"],
                [[text_ns(a), text_ns(b), *counts] for a, b, *counts in failing],
            ),
        ]  # fmt: skip
        days = sorted({r[0] for r in per_day})
        series: dict[str, list[int]] = {}
        for day, source, n in per_day:
            series.setdefault(source, [0] * len(days))[days.index(day)] = n
        section.chart = Chart("Events per day, by source", days, series)
        section.notes.append(
            "A source usually reports when it sent events in at least "
            f"{self.policy.usual_share:.0%} of the hours of the period. The service's stretches "
            "count insert times: a trail imported later reads as stored then. The service writes "
            f"its own counters a minute at a time ({SERVICE_MINUTES_TABLE}; "
            f"{recorded:,} minutes of the period have them): a stretch of failing minutes runs "
            "from the start of its first minute to the end of its last."
        )
        return section

    def service_failing(self) -> list[list[int]]:
        """[from, until, records rejected, inserts failed, requests refused, workers replaced]
        of each run of consecutive minutes in which the service failed at something."""
        found: list[list[int]] = []
        for at, *counts in self.rows(SERVICE_FAILING_SQL):
            begins = at * NS
            if found and found[-1][1] == begins:  # the minute after the stretch's last
                stretch = found[-1]
                stretch[1] = begins + 60 * NS
                stretch[2:] = [a + b for a, b in zip(stretch[2:], counts, strict=True)]
            else:
                found.append([begins, begins + 60 * NS, *counts])
        return found

    def source_gaps(self) -> list[tuple[str, int, int]]:
        """(source, last event before, first event after) of each silence of a source that
        usually reports, at least source_gap_hours long."""
        rows = self.rows(SOURCE_GAPS_SQL, **self._gap_params())
        return [(source, before, after) for source, before, after in rows]

    def _gap_params(self) -> dict[str, Any]:
        gap_ns = round(self.policy.source_gap_hours * HOUR_NS)
        hours = max(1, math.ceil((self.until_ns - self.since_ns) / HOUR_NS))
        bucket_ns = next(b for b in (HOUR_NS, 60 * NS, NS, 1_000_000, 1) if b <= max(gap_ns, 1))
        return {
            "gap_ns": gap_ns,
            "bucket_ns": bucket_ns,
            "usual_hours": self.policy.usual_share * hours,
        }

    def service_gaps(self) -> list[tuple[int, int]]:
        """Stretches of the period with no insert at all, at least source_gap_hours long (to
        the minute: inserts are counted by the minute they were stored in)."""
        gap_ns = round(self.policy.source_gap_hours * HOUR_NS)
        minutes = [row[0] * NS for row in self.rows(INSERT_MINUTES_SQL)]
        edges = [self.since_ns - 60 * NS, *minutes, self.until_ns]
        found = []
        for before, after in itertools.pairwise(edges):
            start = before + 60 * NS  # the end of the minute with the last insert
            if after - start >= gap_ns:
                found.append((start, after))
        return found

    def inventory(self) -> Section:
        section = _section(2, "inventory", "Token inventory at the end of the period")
        tokens = self.tokens()
        by_status: dict[str, list[Token]] = {
            status: [] for status in ("active", "disabled", "expired", "rotated", "revoked")
        }
        for token in tokens:
            by_status[token.status].append(token)
        section.figures = {"tokens": len(tokens)}
        for status in ("active", "expired", "revoked", "rotated", "disabled"):
            section.figures[status] = len(by_status[status])
        # By status (in by_status's order), then owner, then key (as tokens()).
        rows = []
        for listed in by_status.values():
            rows += sorted(listed, key=operator.attrgetter("owner"))
        section.tables = [
            Table(
                "inventory", "Every token the trail knows of, as it stood at the end",
                ["token", "name", "owner", "type", "scopes", "created", "expires",
                 "last used", "status"],
                Rows(rows, lambda t: [t.key, t.name, t.owner, t.type, " ".join(t.scopes),
                                      text_ns(t.issued_ns), text_ms(t.expires_ms),
                                      text_ns(t.last_used_ns), t.status]),
            )
        ]  # fmt: skip
        return section

    def rotation(self) -> Section:
        section = _section(3, "rotation", "Rotation age against the policy")
        days = self.policy.rotation_days
        limit_ns = days * DAY_NS
        found: list[tuple[Token, float, str]] = []  # token, age in days, findings
        counts: dict[str, int] = {
            "over_age": 0,
            "never_rotated": 0,
            "without_expiry": 0,
            "long_lived": 0,
        }
        for t in self.active():
            age_ns = self.until_ns - t.issued_ns
            findings = []
            if age_ns > limit_ns:
                findings.append("older than the policy")
                counts["over_age"] += 1
            if t.rotated_in_ns is None and not t.rotated_away:
                findings.append("never rotated")
                counts["never_rotated"] += 1
            if t.expires_ms is None:
                findings.append("no expiry")
                counts["without_expiry"] += 1
            elif t.expires_ms * 1_000_000 - t.issued_ns > limit_ns:
                findings.append("long-lived")
                counts["long_lived"] += 1
            if findings:
                found.append((t, round(age_ns / DAY_NS, 1), ", ".join(findings)))
        found.sort(key=lambda f: -f[1])  # then by token, as active()
        section.figures = {"active_tokens": len(self.active()), "rotation_days": days}
        section.figures.update(counts)
        section.tables = [
            Table(
                "rotation", "Active tokens with a finding, oldest first",
                ["token", "owner", "issued", "age (days)", "rotated in", "expires", "findings"],
                Rows(found, lambda f: [f[0].key, f[0].owner, text_ns(f[0].issued_ns), f[1],
                                       text_ns(f[0].rotated_in_ns), text_ms(f[0].expires_ms),
                                       f[2]]),
            )
        ]  # fmt: skip
        section.notes.append(
            f"Older than the policy: issued more than {days} days before the end of the period. "
            f"Long-lived: valid for more than {days} days. Never rotated: neither issued by a "
            "rotation nor retired by one."
        )
        return section

    def dormant(self) -> Section:
        section = _section(4, "dormant", "Dormant tokens still active")
        days = self.policy.dormant_days
        cutoff = self.until_ns - days * DAY_NS
        rows = []
        for t in self.active():
            last = t.last_used_ns
            if (last if last is not None else t.issued_ns) < cutoff:
                idle_ns = self.until_ns - (last if last is not None else t.issued_ns)
                rows.append(
                    [t.key, t.owner, text_ns(t.issued_ns), text_ns(last),
                     round(idle_ns / DAY_NS, 1)]
                )  # fmt: skip
        rows.sort(key=lambda r: -_number(r[4]))  # then by token, as active()
        section.figures = {"dormant": len(rows), "dormant_days": days}
        section.tables = [
            Table(
                "dormant", f"Active, and unused for more than {days} days (longest idle first)",
                ["token", "owner", "issued", "last used", "idle (days)"], rows,
            )
        ]  # fmt: skip
        return section

    def revocation(self) -> Section:
        section = _section(5, "revocation", "Revocation timeliness")
        sla_ns = round(self.policy.revocation_sla_hours * HOUR_NS)
        triggers = self.rows(TRIGGERS_SQL)
        lifecycle: dict[str, list[tuple[int, str]]] = defaultdict(list)
        if triggers:
            for key, at, name in self.rows(LIFECYCLE_SQL):
                lifecycle[key].append((at, name))
        rows = []
        removals = sum(what == OWNER_REMOVED for _, _, what in triggers)
        counts: dict[str, int] = {
            "detections": len(triggers) - removals,
            "owner_removals": removals,
            "within_sla": 0,
            "late": 0,
            "not_revoked": 0,
        }
        for key, detected, what in triggers:
            ended = next(
                ((at, n) for at, n in lifecycle[key] if at >= detected and n in _ENDINGS), None
            )
            before = [(at, n) for at, n in lifecycle[key] if at < detected]
            if before and before[-1][1] in _ENDINGS and ended is None:
                verdict, hours, at_ns, how = "already revoked", None, *before[-1]
                counts["within_sla"] += 1
            elif ended is None:
                waited = self.until_ns - detected
                verdict = "not revoked (overdue)" if waited > sla_ns else "not revoked"
                hours, at_ns, how = round(waited / HOUR_NS, 2), None, ""
                counts["not_revoked"] += 1
            else:
                at_ns, how = ended
                hours = round((at_ns - detected) / HOUR_NS, 2)
                late = at_ns - detected > sla_ns
                verdict = "late" if late else "within SLA"
                counts["late" if late else "within_sla"] += 1
            rows.append([key, what, text_ns(detected), text_ns(at_ns), how, hours, verdict])
        rows.sort(key=lambda r: (_VERDICT_ORDER[str(r[6])], -_number(r[5], 0), str(r[0])))
        used = self.rows(USED_DEAD_SQL, **_DEAD)
        section.figures.update(counts)
        section.figures |= {
            "sla_hours": self.policy.revocation_sla_hours,
            "tokens_used_after_revocation_or_expiry": len({r[0] for r in used}),
            "uses_after_revocation_or_expiry": sum(r[2] for r in used),
        }
        section.tables = [
            Table(
                "revocations",
                "From detection or the owner's removal to revocation (late and open first)",
                ["token", "started by", "started", "revoked", "how", "hours", "verdict"],
                rows,
            ),
            Table(
                "used_after_end", "Successful uses after revocation or expiry",
                ["token", "status at use", "uses", "first", "last", "addresses"],
                [[k, s, n, text_ns(a), text_ns(b), ips] for k, s, n, a, b, ips in used],
            ),
        ]  # fmt: skip
        section.notes.append(
            "The clock starts at a token's first token.leak_detected or token.reuse_detected "
            "event (the rule reuse-or-leak-detected alerts on them) or token.owner_removed "
            "event (its owner left, was deactivated or was removed) in the period; a revoke, a "
            "disable or a rotation that retires the token stops it."
        )
        return section

    def privileged(self) -> Section:
        section = _section(6, "privileged", "Privileged tokens")
        broad = self.policy.broad_scopes
        pattern = scope_pattern(broad)
        regex = re.compile(f"(?:{pattern})\\Z") if pattern else None
        matches = functools.lru_cache(maxsize=None)(  # scopes repeat
            lambda scope: regex is not None and regex.match(scope) is not None
        )
        broad_in = functools.lru_cache(maxsize=None)(  # so do sets of scopes
            lambda scopes: any(map(matches, scopes))
        )
        privileged = [t for t in self.tokens() if broad_in(tuple(t.scopes))]
        privileged.sort(key=lambda t: (t.status != "active", t.owner))  # then by key
        # The same expression in ClickHouse (RE2, where $ is the end of the text).
        broad_re2 = f"^(?:{pattern})$" if pattern else ""
        keys = sorted(t.key for t in privileged)
        if _sendable(keys):
            changes = self.rows(SCOPE_CHANGES_SQL, every=False, keys=keys, broad=broad_re2)
        else:  # every change read, and those touching privilege kept here
            held = set(keys)
            changes = [
                row for row in self.rows(SCOPE_CHANGES_SQL, every=True, keys=[], broad="")
                if row[1] in held or any(map(matches, row[4])) or any(map(matches, row[5]))
            ]  # fmt: skip
        section.figures = {
            "privileged": len(privileged),
            "privileged_active": sum(t.status == "active" for t in privileged),
            "scope_changes": len(changes),
        }
        section.tables = [
            Table(
                "privileged", "Tokens carrying a broad scope (active first)",
                ["token", "owner", "broad scopes", "created by", "issued", "status"],
                Rows(privileged, lambda t: [t.key, t.owner,
                                            " ".join(s for s in t.scopes if matches(s)),
                                            t.created_by, text_ns(t.issued_ns), t.status]),
            ),
            Table(
                "scope_changes", "Changes of scope touching privilege, in the period",
                ["time", "token", "actor", "event", "added", "removed"],
                Rows(changes, lambda c: [text_ns(c[0]), c[1], c[2], c[3], " ".join(c[4]),
                                         " ".join(c[5])]),
            ),
        ]  # fmt: skip
        section.notes.append("Broad scopes (policy): " + ", ".join(broad) + ".")
        return section

    def failures(self) -> Section:
        section = _section(7, "failures", "Failed authentication and alerts")
        reasons = self.rows(FAILURES_BY_REASON_SQL)
        tokens = self.rows(FAILING_TOKENS_SQL)
        ips = self.rows(FAILING_IPS_SQL)
        alerts = self.rows(ALERTS_SQL)
        section.figures = {
            "auth_failures": sum(r[2] for r in reasons if r[0] == "token.auth_failed"),
            "access_denied": sum(r[2] for r in reasons if r[0] == "token.access_denied"),
            "refresh_failures": sum(r[2] for r in reasons if r[0] == "token.refresh_failed"),
            "failing_tokens": len(tokens),
            "failing_addresses": len(ips),
            "alerts": sum(r[2] for r in alerts),
        }
        section.tables = [
            Table(
                "failures_by_reason", "Failures by kind and reason",
                ["event", "reason", "failures", "tokens", "addresses"], [list(r) for r in reasons],
            ),
            Table(
                "alerts_by_rule", "Alerts raised, by rule",
                ["rule", "severity", "alerts", "tokens", "addresses", "tokens (first 10)",
                 "addresses (first 10)"],
                [list(r) for r in alerts],
            ),
            Table(
                "failing_tokens", "Tokens that failed authentication (most failures first)",
                ["token", "principal", "failures", "addresses", "last failure"],
                Rows(tokens, lambda r: [r[0], r[1], r[2], r[3], text_ns(r[4])]), shown=20,
            ),
            Table(
                "failing_addresses", "Addresses that failed authentication",
                ["address", "failures", "tokens", "last failure"],
                Rows(ips, lambda r: [r[0], r[1], r[2], text_ns(r[3])]), shown=20,
            ),
        ]  # fmt: skip
        return section

    def retention(self, retention_days: int | None) -> Section:
        section = _section(9, "retention", "Retention")
        ((oldest, events),) = self.rows(OLDEST_SQL)
        months = self.rows(MONTHS_SQL)
        policy = self.policy
        kept = len(months)
        span_months = _months_between(oldest, self.until_ns) if events else 0
        section.figures = {
            "oldest_event": text_ns(oldest) if events else None,
            "events_kept": events,
            "months_available": kept,
            "retention_days": retention_days,
            "retention_setting_covers_months": (
                None if retention_days is None else round(retention_days / 30.44, 1)
            ),
            "policy_months": policy.retention_months,
            "policy_immediate_months": policy.immediate_months,
        }
        verdicts = []
        if retention_days is not None and retention_days < policy.retention_months * 30:
            verdicts.append(
                f"the retention setting ({retention_days} days) keeps less than the policy's "
                f"{policy.retention_months} months"
            )
        if span_months < policy.immediate_months:
            verdicts.append(
                f"the trail spans {span_months} months up to the end of the period, fewer "
                f"than the {policy.immediate_months} to keep searchable"
            )
        section.notes.append(
            "Every month kept is searchable at once (one store, no archive tier)."
            + (" Short of the policy: " + "; ".join(verdicts) + "." if verdicts else "")
        )
        section.tables = [
            Table(
                "months", "Events kept, by month",
                ["month", "events"], [[f"{m // 100}-{m % 100:02d}", n] for m, n in months],
                shown=24,
            )
        ]  # fmt: skip
        return section


#: What ends a token's use: a revoke, a disable, a rotation that retired it.
_ENDINGS = frozenset({"token.revoked", "token.disabled", "token.rotated"})
#: Late and open first, then in time, then revoked before the detection.
_VERDICT_ORDER = {
    "late": 0,
    "not revoked (overdue)": 0,
    "not revoked": 1,
    "within SLA": 2,
    "already revoked": 3,
}


def _sources(source_days: Sequence[Sequence[Any]]) -> list[tuple[str, str, int, int, int]]:
    """(source, its services, events, first, last) of each source, in order, from its days."""
    found: dict[str, tuple[set[str], int, int, int]] = {}
    for _day, source, n, services, first, last in source_days:
        seen, total, earliest, latest = found.get(source, (set(), 0, first, last))
        found[source] = (seen.union(services), total + n, min(earliest, first), max(latest, last))
    return [
        (source, ", ".join(sorted(services)), n, first, last)
        for source, (services, n, first, last) in sorted(found.items())
    ]


def _section(number: int, key: str, title: str) -> Section:
    return Section(number, key, title, EVIDENCE[key])


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def _number(value: Value, missing: float = math.inf) -> float:
    return float(value) if isinstance(value, int | float) else missing


def _hours(hours: float) -> str:
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


def _sendable(keys: list[str]) -> bool:
    """Whether ``keys`` fit in a statement's parameters (MOST_KEY_BYTES; quoted, and a comma
    between)."""
    return sum(len(urllib.parse.quote(key, safe="")) + 9 for key in keys) <= MOST_KEY_BYTES


def scope_pattern(patterns: Iterable[str]) -> str:
    """A regular expression (the same in Python and RE2) for the scopes that are one of
    ``patterns``: in a pattern '*' matches any characters, but a pattern that is '*' alone is
    the scope '*' (a wildcard grant); case counts. Empty when there are no patterns."""
    return "|".join(
        _literal(p) if p == "*" else ".*".join(map(_literal, p.split("*"))) for p in patterns
    )


def _literal(text: str) -> str:
    """``text`` matched as it is: ASCII punctuation escaped, which both dialects read as the
    character itself (re.escape also escapes spaces, which RE2 refuses)."""
    return "".join("\\" + c if c in string.punctuation else c for c in text)


def _months_between(first_ns: int, last_ns: int) -> int:
    a = datetime.fromtimestamp(first_ns // NS, UTC).date()
    b = datetime.fromtimestamp(last_ns // NS, UTC).date()
    return (b.year - a.year) * 12 + b.month - a.month - (1 if b.day < a.day else 0)
