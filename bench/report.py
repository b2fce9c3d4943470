"""Report benchmark: the compliance report of one quarter (2026-Q3) over 10 million events.

Generates deterministic token events with bench/query.py's generator (>= 200,000 tokens,
>= 50,000 client IPs, its mix of event types and outcomes), spread over the quarter, plus a
history before it (1 million events from 2026-01-01 by default) so the inventory "as of the
end" has tokens created, rotated and revoked earlier. On top of the generator's mix the
events get several sources and services (two sources fall silent for a few hours, and the
service stores nothing for three hours), expiry dates, rotations naming the id they retire,
leak and reuse detections, access denials, scope changes, uses after revocation or expiry,
and the quarter gets alerts in token_alerts: every section of the report does real work.

It then builds the report several times (``build_report``, the default policy), timing each
section, and renders it as HTML, JSON, CSV and (with Chromium) PDF. The last line is
``report_s=<median> max_s=<max> ...``: the build, without rendering.

Events generated with SQL have no ledger, so the integrity section (8) reads "tamper evidence
off" and costs nothing here. ``--with-ledger N`` adds a phase that loads N events through the
real ingest pipeline (tamper evidence on, as the service runs) into a second data directory,
signs a checkpoint, and times the integrity section and the whole report with the trusted key:
the verification's cost per million events.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from query import GENERATED  # noqa: E402
from tokenotel.config import load_settings  # noqa: E402
from tokenotel.errors import ConfigError  # noqa: E402
from tokenotel.report.build import SECTIONS, Integrity, build_report  # noqa: E402
from tokenotel.report.model import Policy, Report, period_bounds  # noqa: E402
from tokenotel.report.output import report_bytes  # noqa: E402
from tokenotel.report.pdf import find_chromium  # noqa: E402
from tokenotel.report.render import ReportFormat  # noqa: E402
from tokenotel.store.client import Store  # noqa: E402

console = Console(stderr=True)

PERIOD = "2026-Q3"
HISTORY_FROM = datetime(2026, 1, 1, tzinfo=UTC)
#: The retention the report states (the default setting).
RETENTION_DAYS = 400
#: Silences of a source (rows of it in these windows go to another source) and the stretch
#: in which the service stored nothing (those events are stored at its end, as a backlog).
SILENCES = [
    ("vault", "2026-08-14 02:00:00", "2026-08-14 07:30:00"),
    ("cloudtrail", "2026-09-03 10:00:00", "2026-09-03 13:00:00"),
]
OUTAGE = ("2026-09-20 01:00:00", "2026-09-20 04:00:00")

#: bench_events (the generator's rows) into token_events: the first {history} rows spread over
#: [history_start, quarter_start), the others over the quarter, in the generator's order (its
#: time grows with n); the generator's own event_time (its 30 days) is not used.
INSERT_EVENTS = """
INSERT INTO token_events (event_time, observed_delay_ns, event_name, outcome, failure_reason,
    token_fingerprint, token_id, token_type, token_name, previous_token_id, principal_id,
    actor_id, client_ip, user_agent, scopes, scopes_added, scopes_removed, expires_at,
    http_method, http_route, http_status, service_name, environment, source, token_status,
    ingested_at, event_id)
WITH
    n < {history:UInt64} AS before,
    fromUnixTimestamp64Nano(
        if(before,
           {history_start_ms:Int64} + intDiv(toInt64(n) * {history_span_ms:Int64},
                                             greatest({history:UInt64}, 1)),
           {quarter_start_ms:Int64} + intDiv(toInt64(n - {history:UInt64})
                                             * {quarter_span_ms:Int64}, {quarter:UInt64}))
        * 1000000 + toInt64(cityHash64(n, 3) % 1000000), 'UTC') AS at,
    multiIf(event_name = 'token.refreshed' AND cityHash64(n, 9) % 40 = 0,
                if(n % 2 = 0, 'token.leak_detected', 'token.reuse_detected'),
            event_name = 'token.auth_failed' AND failure_reason = 'insufficient_scope',
                'token.access_denied',
            event_name) AS name,
    cityHash64(token_id, 13) AS token_hash,
    -- A twentieth of the tokens are not used in the quarter (dormant): their events there
    -- belong to a token of their own.
    if(NOT before AND token_hash % 20 = 3, concat(token_id, '.2'), token_id) AS key_id,
    [30, 60, 90, 365, 0][1 + token_hash % 5] AS valid_days,
    if(token_hash % 50 = 0, ['admin', 'repo'],
       if(token_hash % 50 = 1, ['write:packages', 'read:org'], CAST(scopes, 'Array(String)')))
        AS token_scopes,
    multiIf(cityHash64(n, 10) % 10 < 5, 'gateway', cityHash64(n, 10) % 10 < 8, 'github',
            cityHash64(n, 10) % 10 < 9, 'vault', 'cloudtrail') AS usual_source,
    multiIf(usual_source = 'vault'
                AND at >= toDateTime64({vault_from:String}, 9, 'UTC')
                AND at < toDateTime64({vault_until:String}, 9, 'UTC'), 'gateway',
            usual_source = 'cloudtrail'
                AND at >= toDateTime64({cloudtrail_from:String}, 9, 'UTC')
                AND at < toDateTime64({cloudtrail_until:String}, 9, 'UTC'), 'gateway',
            usual_source) AS src,
    at >= toDateTime64({outage_from:String}, 9, 'UTC')
        AND at < toDateTime64({outage_until:String}, 9, 'UTC') AS in_outage,
    name IN ('token.created', 'token.revoked', 'token.rotated', 'token.updated',
             'token.disabled') AS by_admin
SELECT at,
    if(n % 10 < 7, 0, modulo(cityHash64(n, 4), 500000000)),
    name,
    outcome,
    failure_reason,
    token_fingerprint,
    key_id,
    token_type,
    if(name = 'token.created', concat(toString(token_type), '-', key_id), ''),
    if(name = 'token.rotated',
       if(cityHash64(n, 7) % 2 = 0, concat('tok_', toString(cityHash64(n, 7) % 250000)),
          concat('tok_retired_', toString(n))), ''),
    principal_id,
    if(by_admin, concat('admin', toString(cityHash64(n, 12) % 25)), ''),
    client_ip,
    user_agent,
    token_scopes,
    if(name = 'token.updated',
       [['admin'], ['repo'], ['read:org'], ['write:packages']][1 + cityHash64(n, 11) % 4],
       []),
    if(name = 'token.updated' AND cityHash64(n, 11) % 3 = 0, ['repo'], []),
    if(name = 'token.created' AND valid_days > 0,
       toNullable(toDateTime64(at + toIntervalDay(valid_days), 3, 'UTC')), NULL),
    http_method,
    http_route,
    multiIf(name = 'token.access_denied', 403, http_status),
    multiIf(src = 'vault', 'vault', src = 'cloudtrail', 'aws-iam', service_name),
    if(cityHash64(n, 14) % 20 = 0, 'staging', 'prod'),
    src,
    multiIf(name = 'token.revoked', 'revoked', name = 'token.expired', 'expired',
            name = 'token.disabled', 'disabled',
            name = 'token.used' AND outcome = 'success' AND cityHash64(n, 8) % 1000 = 0,
                ['revoked', 'expired', 'rotated'][1 + intDiv(cityHash64(n, 8), 1000) % 3],
            'active'),
    if(in_outage,
       toDateTime64({outage_until:String}, 3, 'UTC') + toIntervalMillisecond(n % 300000),
       toDateTime64(at + INTERVAL 1 SECOND, 3, 'UTC')),
    cityHash64(n, 5)
FROM bench_events
"""

#: Alerts of the quarter, as the detection rules write them.
INSERT_ALERTS = """
INSERT INTO token_alerts (raised_at, rule, severity, token_key, token_name, principal,
    client_ip, labels, event_count, first_event, last_event, quiet_until, description, link)
WITH
    ['use-after-revocation-or-expiry', 'reuse-or-leak-detected', 'failure-burst',
     'token-spray', 'brute-force', 'new-ip-for-token', 'new-network-for-token',
     'dormant-token-used', 'call-rate-spike'][1 + cityHash64(number, 1) % 9] AS r,
    fromUnixTimestamp64Milli({quarter_start_ms:Int64}
        + intDiv(toInt64(number) * {quarter_span_ms:Int64}, {alerts:UInt64}), 'UTC') AS at,
    r IN ('token-spray', 'brute-force') AS by_address
SELECT at, r,
    if(r IN ('use-after-revocation-or-expiry', 'reuse-or-leak-detected', 'token-spray'),
       'critical', 'warning'),
    if(by_address, '', concat('tok_', toString(cityHash64(number, 2) % 250000))),
    '',
    if(by_address, '', concat('user', toString(cityHash64(number, 3) % 40000))),
    if(by_address OR r LIKE 'new-%',
       concat('10.', toString(cityHash64(number, 4) % 4), '.',
              toString(cityHash64(number, 5) % 256), '.', toString(cityHash64(number, 6) % 256)),
       ''),
    map('rule', r), 1 + cityHash64(number, 7) % 50,
    toDateTime64(at - INTERVAL 5 MINUTE, 9, 'UTC'), toDateTime64(at, 9, 'UTC'),
    toDateTime64(at + INTERVAL 1 HOUR, 9, 'UTC'), concat(r, ' (benchmark)'), ''
FROM numbers({alerts:UInt64})
"""

FACTS_SQL = """
SELECT count(), uniqExact(token_key), uniqExact(client_ip), uniqExact(source),
       uniqExact(service_name), countIf(event_time >= fromUnixTimestamp64Milli({since:Int64}))
FROM token_events
"""
#: What a data directory kept with --keep was generated with.
MARKER = "bench-report.json"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def open_store(data_dir: Path) -> Store:
    store = Store(load_settings(data_dir=data_dir).store_options)
    store.connect()
    return store


def generate(store: Store, quarter: int, history: int, alerts: int) -> None:
    """The events of the history and the quarter, and the quarter's alerts."""
    since, until = period_bounds(PERIOD)
    rows = history + quarter
    parameters: dict[str, Any] = {
        "history": history,
        "quarter": quarter,
        "history_start_ms": ms(HISTORY_FROM),
        "history_span_ms": ms(since) - ms(HISTORY_FROM),
        "quarter_start_ms": ms(since),
        "quarter_span_ms": ms(until) - ms(since),
        "outage_from": OUTAGE[0],
        "outage_until": OUTAGE[1],
        "alerts": alerts,
    }
    for source, first, last in SILENCES:
        parameters[f"{source}_from"], parameters[f"{source}_until"] = first, last
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("generating events", GENERATED, {"now": ms(until) // 1000, "rows": rows}),
        ("loading token_events (with its rollups)", INSERT_EVENTS, parameters),
        ("loading token_alerts", INSERT_ALERTS, parameters),
        ("merging parts", "OPTIMIZE TABLE token_events FINAL", {}),
    ]
    for label, sql, values in steps:
        start = time.perf_counter()
        with console.status(f"{label} ({rows:,} events)…"):
            store.command(sql, values or None)
        console.print(f"{label}: {time.perf_counter() - start:.1f} s")
    store.command("DROP TABLE bench_events")


def prepare(data_dir: Path, args: argparse.Namespace) -> Store:
    """The store in ``data_dir``, generated unless it holds what these options generate."""
    wanted = {"rows": args.rows, "history": args.history, "alerts": args.alerts}
    marker = data_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        console.print(f"reusing the events in {data_dir}")
        return open_store(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise SystemExit(f"{data_dir} holds other data: give an empty or new directory")
    store = open_store(data_dir)
    generate(store, args.rows, args.history, args.alerts)
    marker.write_text(json.dumps(wanted) + "\n")
    return store


def timed_report(
    store: Store, integrity: Integrity, trail: str, log: QueryLog | None = None
) -> tuple[Report, float, dict[str, float]]:
    """The report, the seconds it took, and the seconds of each section."""
    since, until = period_bounds(PERIOD)
    marks: list[tuple[str, float]] = []

    def progress(_: int, key: str) -> None:
        marks.append((key, time.perf_counter()))
        if log is not None:
            log.section = key

    start = time.perf_counter()
    report = build_report(
        store,
        since,
        until,
        Policy(),
        trail=trail,
        integrity=integrity,
        retention_days=RETENTION_DAYS,
        progress=progress,
    )
    end = time.perf_counter()
    ends = [at for _, at in marks[1:]] + [end]
    return report, end - start, {key: e - at for (key, at), e in zip(marks, ends, strict=True)}


def timed_formats(report: Report, formats: list[ReportFormat]) -> dict[str, tuple[float, int]]:
    """Seconds and bytes of each format (sealed, no signing key)."""
    out = {}
    for form in formats:
        start = time.perf_counter()
        content = report_bytes(report, form, None)
        out[form.value] = (time.perf_counter() - start, len(content))
    return out


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def found(report: Report) -> dict[str, str]:
    """What each section found: its main figures and the rows of its tables."""
    out = {}
    for section in report.sections:
        figures = {
            k: v for k, v in section.figures.items() if isinstance(v, int) and k != "rotation_days"
        }
        shown = ", ".join(f"{k} {v:,}" for k, v in list(figures.items())[:4])
        rows = sum(len(t.rows) for t in section.tables)
        out[section.key] = "; ".join(
            part
            for part in (
                shown,
                f"{rows:,} table rows" if rows else "",
                "tamper evidence " + str(section.figures.get("tamper_evidence"))
                if section.key == "integrity"
                else "",
            )
            if part
        )
    return out


# -- the queries the report sends ---------------------------------------------------------------


@dataclass
class Call:
    section: str
    statement: str
    clickhouse_s: float  # the query, until its answer is back (chDB, Native format)
    driver_s: float  # the answer read into Python rows by clickhouse-connect
    rows: int


#: The section of a read the report sent ahead of the sections, from its second thread.
AHEAD = "(read ahead)"


class QueryLog:
    """Times every query the report sends through ``store.query``: ClickHouse's part and the
    driver's, each named after the statement's constant in tokenotel.report.sections (or the
    module that holds it) and the section it was sent for, or AHEAD."""

    def __init__(self, store: Store) -> None:
        self.calls: list[Call] = []
        self.section = ""
        self._names = statement_names()
        self._query = store.query
        store.query = self._timed  # type: ignore[method-assign]

    def _timed(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = self._query(sql, *args, **kwargs)
        answered = time.perf_counter()
        rows = len(result.result_rows)  # kept by the result: the caller reads them again
        name = self._names.get(sql) or " ".join(sql.split())[:40]
        # A read sent ahead (build_report's second thread) belongs to no section's own time.
        section = self.section if threading.current_thread() is threading.main_thread() else AHEAD
        self.calls.append(
            Call(section, name, answered - start, time.perf_counter() - answered, rows)
        )
        return result


def statement_names() -> dict[str, str]:
    """SQL text -> the name of its constant, in the modules the report's queries come from."""
    from tokenotel.integrity import checkpoint
    from tokenotel.report import sections
    from tokenotel.store import ledger

    names = {}
    for module in (ledger, checkpoint, sections):
        for name, value in vars(module).items():
            if name.endswith("_SQL") and isinstance(value, str):
                names[value] = name.removesuffix("_SQL")
    return names


# -- the phase with a ledger (--with-ledger) ----------------------------------------------------


def ledger_phase(events: int, runs: int, out: Path) -> None:
    """Loads ``events`` through the real pipeline (tamper evidence on), signs a checkpoint and
    times the integrity section and the report; writes the figures to ``out`` as JSON. Runs
    in a process of its own: a process holds one embedded ClickHouse data path."""
    # After bench/, so that ingest is bench/ingest.py, not the package tests/ingest.
    sys.path.append(str(BENCH.parent / "tests"))
    from ingest import template
    from inprocess import InProcessIngest
    from tokenotel.integrity import verify
    from tokenotel.integrity.signing import load_signing_key
    from tokenotel.integrity.verify import Trust
    from tokenotel.report.build import integrity_section
    from tokenotel.report.sections import Builder

    since, until = period_bounds(PERIOD)
    batch, in_flight = 1000, 10
    requests = max(1, events // batch)
    data_dir = Path(tempfile.mkdtemp(prefix="tokenotel-bench-report-ledger-"))
    console.print(f"ledger phase: data directory {data_dir}")
    ingest = InProcessIngest(data_dir, detection=False)
    try:
        base = template(batch)
        records = base.resource_logs[0].scope_logs[0].log_records
        step_ns = (ms(until) - ms(since)) * 1_000_000 // requests
        start = time.perf_counter()
        with console.status(f"loading {requests * batch:,} events through the pipeline…"):
            for first in range(0, requests, in_flight):
                bodies = []
                for n in range(first, min(first + in_flight, requests)):
                    at = ms(since) * 1_000_000 + n * step_ns
                    for i, record in enumerate(records):
                        record.time_unix_nano = at + i * 1000
                    bodies.append(base.__class__.FromString(base.SerializeToString()))
                ingest.send_all(bodies)
            ingest.checkpoint()
        load_s = time.perf_counter() - start
        console.print(
            f"ledger phase: loaded and sealed {requests * batch:,} events in {load_s:.1f} s "
            f"({requests * batch / load_s:,.0f} events/s), checkpoint signed"
        )
        store = ingest.pipeline.store
        key = load_signing_key(data_dir / "signing.key", "", create=False)
        with_ledger = Integrity(Trust([key.verifier], None))
        leaves = store.query("SELECT count(), sum(rows) FROM ledger").result_rows[0]
        # Of the verification: reading the sealed rows back, and digesting them again.
        spent = {"read": 0.0, "digest": 0.0}
        store.query_arrow = timed(store.query_arrow, spent, "read")  # type: ignore[method-assign]
        verify.rows_digest = timed(verify.rows_digest, spent, "digest")
        section_s, report_s, off_s, read_s, digest_s = [], [], [], [], []
        figures: dict[str, Any] = {}
        for run in range(runs):
            builder = Builder(store, since, until, Policy())
            spent["read"] = spent["digest"] = 0.0
            t0 = time.perf_counter()
            section = integrity_section(store, builder, with_ledger)
            section_s.append(time.perf_counter() - t0)
            read_s.append(spent["read"])
            digest_s.append(spent["digest"])
            figures = dict(section.figures)
            _, took, _ = timed_report(store, with_ledger, str(data_dir))
            report_s.append(took)
            _, took_off, _ = timed_report(store, Integrity(None), str(data_dir))
            off_s.append(took_off)
            console.print(
                f"ledger phase run {run + 1}: integrity section {section_s[-1]:.2f} s, "
                f"report {took:.2f} s (without the ledger's check {took_off:.2f} s)"
            )
        result = {
            "events": requests * batch,
            "load_s": round(load_s, 1),
            "leaves": int(leaves[0]),
            "sealed_rows": int(leaves[1] or 0),
            "integrity_section_s": spread(section_s),
            "reading_rows_s": spread(read_s),
            "digesting_s": spread(digest_s),
            "report_s": spread(report_s),
            "report_without_check_s": spread(off_s),
            "figures": {k: v for k, v in figures.items() if k != "newest_checkpoint"},
        }
        out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        ingest.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def timed(function: Callable[..., Any], spent: dict[str, float], what: str) -> Any:
    """``function``, adding the seconds each call takes to ``spent[what]``."""

    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[what] += time.perf_counter() - start

    return call


def run_ledger_phase(events: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tokenotel-bench-report-") as scratch:
        out = Path(scratch, "ledger.json")
        subprocess.run(
            [sys.executable, __file__, "--ledger-phase", str(events), "--runs", str(runs),
             "--ledger-out", str(out)],
            check=True,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out.read_text())
        return result


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="events in the quarter")
    parser.add_argument(
        "--history", type=int, default=1_000_000, help="events before it (from 2026-01-01)"
    )
    parser.add_argument("--alerts", type=int, default=3000, help="alerts in the quarter")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/report.json"))
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="data directory to generate into and keep; reused when it holds the same events",
    )
    parser.add_argument(
        "--formats",
        default="html,json,csv,pdf",
        help="formats to render, comma-separated; '' for none (PDF needs headless Chromium)",
    )
    parser.add_argument(
        "--with-ledger",
        type=int,
        metavar="N",
        default=0,
        help="also load N events through the pipeline with tamper evidence and time section 8",
    )
    parser.add_argument("--ledger-phase", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ledger-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ledger_phase:
        ledger_phase(args.ledger_phase, args.runs, args.ledger_out)
        return

    formats = [ReportFormat(f.strip().lower()) for f in args.formats.split(",") if f.strip()]
    if ReportFormat.PDF in formats:
        try:
            find_chromium()
        except ConfigError as e:  # no browser
            console.print(f"no PDF: {e}")
            formats.remove(ReportFormat.PDF)
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="tokenotel-bench-report-"))
    console.print(f"data directory: {data_dir}")
    out = Console(width=max(132, Console().width))
    store = prepare(data_dir, args)
    try:
        since, _ = period_bounds(PERIOD)
        events, tokens, ips, sources, services, in_quarter = store.query(
            FACTS_SQL, {"since": ms(since)}
        ).result_rows[0]
        parts = store.query(
            "SELECT count() FROM system.parts WHERE active AND database = currentDatabase() "
            "AND table = 'token_events'"
        ).result_rows[0][0]
        console.print(
            f"{in_quarter:,} events in {PERIOD} and {events - in_quarter:,} before it; "
            f"{tokens:,} tokens, {ips:,} client IPs, {sources} sources, {services} services; "
            f"token_events in {parts} parts"
        )
        log = QueryLog(store)
        builds: list[float] = []
        per_section: dict[str, list[float]] = {key: [] for key in SECTIONS}
        sql_section: dict[str, list[float]] = {key: [] for key in SECTIONS}
        per_format: dict[str, list[float]] = {form.value: [] for form in formats}
        sizes: dict[str, int] = {}
        calls: list[list[Call]] = []
        report = None
        for run in range(args.runs):
            log.calls = []
            report, took, sections = timed_report(store, Integrity(None), str(data_dir), log)
            calls.append(log.calls)
            builds.append(took)
            for key, seconds in sections.items():
                per_section[key].append(seconds)
                sql_section[key].append(
                    sum(c.clickhouse_s + c.driver_s for c in log.calls if c.section == key)
                )
            rendered = timed_formats(report, formats)
            for form, (seconds, size) in rendered.items():
                per_format[form].append(seconds)
                sizes[form] = size
            console.print(
                f"run {run + 1}: report {took:.2f} s ("
                + ", ".join(f"{k} {v:.2f}" for k, v in sections.items())
                + "); "
                + ", ".join(f"{form} {s:.2f} s" for form, (s, _) in rendered.items())
            )
        assert report is not None
        what = found(report)

        table = Table(
            title=f"compliance report {PERIOD}: {in_quarter:,} events in the quarter "
            f"({events:,} in the trail), {tokens:,} tokens, {ips:,} client IPs, "
            f"{args.runs} runs"
        )
        for column in ("step", "median s", "min s", "max s", "of it SQL s", "what it found"):
            table.add_column(column, justify="left" if column[0] in "sw" else "right")

        def row(name: str, values: list[float], sql: str, note: str, bold: bool = False) -> None:
            s = spread(values)
            table.add_row(
                name,
                f"{s['median']:.2f}",
                f"{s['min']:.2f}",
                f"{s['max']:.2f}",
                sql,
                note,
                style="bold" if bold else None,
            )

        row(
            "whole report (build_report)",
            builds,
            f"{statistics.median(sum(s) for s in zip(*sql_section.values(), strict=True)):.2f}",
            f"{len(SECTIONS)} sections",
            bold=True,
        )
        for number, key in enumerate(SECTIONS, 1):
            sql = f"{statistics.median(sql_section[key]):.2f}"
            row(f"  {number}. {key}", per_section[key], sql, what.get(key, ""))
        for form in formats:
            row(f"render {form.value.upper()}", per_format[form.value], "", mib(sizes[form.value]))
        out.print(table)
        console.print(
            "Section 8 reads tamper evidence off: events generated with SQL have no ledger "
            "(--with-ledger N measures the verification)."
        )
        queries = query_table(calls)
        qtable = Table(
            title="the queries the report sent (median of the runs): ClickHouse's part, and "
            "the driver's reading the answer into Python rows"
        )
        for column in ("section", "statement", "ClickHouse s", "driver s", "rows"):
            qtable.add_column(column, justify="left" if column[0] == "s" else "right")
        for q in queries:
            qtable.add_row(
                q["section"],
                q["statement"],
                f"{q['clickhouse_s']:.3f}",
                f"{q['driver_s']:.3f}",
                f"{q['rows']:,}",
            )
        out.print(qtable)
    finally:
        store.close()
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)

    ledger: dict[str, Any] | None = None
    if args.with_ledger:
        ledger = run_ledger_phase(args.with_ledger, args.runs)
        per_million = ledger["integrity_section_s"]["median"] / (ledger["events"] / 1e6)
        ledger["integrity_s_per_million"] = round(per_million, 3)
        ltable = Table(
            title=f"integrity (section 8) with a ledger: {ledger['events']:,} events loaded "
            f"through the pipeline in {ledger['load_s']} s, {ledger['leaves']:,} leaves, "
            f"{args.runs} runs"
        )
        for column in ("step", "median s", "min s", "max s"):
            ltable.add_column(column, justify="left" if column == "step" else "right")
        for name, key in [
            ("integrity section (the verification)", "integrity_section_s"),
            ("  of it: reading the sealed rows back", "reading_rows_s"),
            ("  of it: digesting them again", "digesting_s"),
            ("whole report, tamper evidence checked", "report_s"),
            ("whole report, Integrity(None)", "report_without_check_s"),
        ]:
            s = ledger[key]
            ltable.add_row(name, f"{s['median']:.2f}", f"{s['min']:.2f}", f"{s['max']:.2f}")
        out.print(ltable)
        console.print(
            f"the verification: {per_million:.2f} s per million events sealed since the start "
            f"of the period; section 8 found {ledger['figures']}"
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "period": PERIOD,
                "events_in_period": in_quarter,
                "events": events,
                "tokens": tokens,
                "client_ips": ips,
                "runs": args.runs,
                "cpu_cores": os.cpu_count(),
                "report_s": spread(builds),
                "sections_s": {key: spread(v) for key, v in per_section.items()},
                "sections_sql_s": {key: spread(v) for key, v in sql_section.items()},
                "formats_s": {form: spread(v) for form, v in per_format.items()},
                "format_bytes": sizes,
                "queries": queries,
                "ledger": ledger,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"figures written to {args.out}")
    medians = {form: statistics.median(v) for form, v in per_format.items()}
    print(
        f"report_s={statistics.median(builds):.2f} max_s={max(builds):.2f} "
        + " ".join(f"{form}_s={s:.2f}" for form, s in medians.items())
        + (f" integrity_s_per_million={per_million:.2f}" if ledger else "")
    )


def query_table(runs: list[list[Call]]) -> list[dict[str, Any]]:
    """Each (section, statement) of the runs, by its median time, slowest first."""
    grouped: dict[tuple[str, str], list[list[Call]]] = {}
    for calls in runs:
        per_run: dict[tuple[str, str], list[Call]] = {}
        for call in calls:
            per_run.setdefault((call.section, call.statement), []).append(call)
        for key, found_calls in per_run.items():
            grouped.setdefault(key, []).append(found_calls)
    table = []
    for (section, statement), per_run_calls in grouped.items():
        table.append(
            {
                "section": section,
                "statement": statement,
                "calls": len(per_run_calls[0]),
                "clickhouse_s": round(
                    statistics.median(sum(c.clickhouse_s for c in cs) for cs in per_run_calls), 3
                ),
                "driver_s": round(
                    statistics.median(sum(c.driver_s for c in cs) for cs in per_run_calls), 3
                ),
                "rows": sum(c.rows for c in per_run_calls[-1]),
            }
        )
    return sorted(table, key=lambda q: -(q["clickhouse_s"] + q["driver_s"]))


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.0f} KiB"


if __name__ == "__main__":
    main()
