"""What the reading commands print: events, tokens, a timeline or a summary (and tokenotel's own
credentials), as rich tables, JSON (lines) or CSV."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from tokenotel.model import DEAD_STATUSES
from tokenotel.query.summary import Summary


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def write_events(events: list[dict[str, Any]], fmt: Format, out: TextIO = sys.stdout) -> None:
    _write_rows(events, fmt, out, _events_table, "event")


def write_tokens(tokens: list[dict[str, Any]], fmt: Format, out: TextIO = sys.stdout) -> None:
    _write_rows(tokens, fmt, out, _tokens_table, "token")


def write_credentials(
    credentials: list[dict[str, Any]], fmt: Format, out: TextIO = sys.stdout
) -> None:
    """tokenotel's own credentials (``tokenotel auth list``): never a secret or a hash."""
    _write_rows(credentials, fmt, out, _credentials_table, "credential")


def write_timeline(timeline: dict[str, Any], fmt: Format, out: TextIO = sys.stdout) -> None:
    """A JSON document, or tables; CSV is the events alone."""
    if fmt is Format.JSON:
        out.write(json.dumps(timeline, ensure_ascii=False) + "\n")
        return
    if fmt is Format.CSV:
        _write_csv(timeline["events"], out)
        return
    console = _console(out)
    console.print(_tokens_table([timeline["token"]], "Token"))
    lifecycle = _table("Lifecycle", "time", "event", "actor", "reason", "from id", "to id")
    for change in timeline["lifecycle"]:
        lifecycle.add_row(
            _second(change["time"]),
            change["event_name"],
            change["actor_id"],
            change["reason"],
            change["previous_token_id"],
            change["token_id"],
        )
    console.print(lifecycle)
    scopes = _table("Scopes over time", "since", "scopes")
    for scope_set in timeline["scopes"]:
        scopes.add_row(_second(scope_set["since"]), " ".join(scope_set["scopes"]))
    console.print(scopes)
    addresses = _table("Addresses", "client IP", "first seen", "last seen", "events", "failures")
    for address in timeline["addresses"]:
        addresses.add_row(
            address["client_ip"],
            _second(address["first_seen"]),
            _second(address["last_seen"]),
            str(address["events"]),
            str(address["failures"]),
        )
    console.print(addresses)
    console.print(_events_table(timeline["events"], "Events"))


def write_summary(summary: Summary, fmt: Format, out: TextIO = sys.stdout) -> None:
    """A JSON document, or tables (CSV is not a shape for six lists)."""
    if fmt is not Format.TABLE:
        out.write(json.dumps(dataclasses.asdict(summary), ensure_ascii=False) + "\n")
        return
    console = _console(out)
    by_event = _table("Events by type and outcome", "event", "outcome", "events")
    for row in summary.by_event:
        outcome = f"[red]{row['outcome']}[/]" if row["outcome"] == "failure" else row["outcome"]
        by_event.add_row(row["event_name"], outcome, str(row["events"]))
    console.print(by_event)
    top = _table("Top tokens", "token", "owner", "uses", "failures", "client IPs")
    for row in summary.top_tokens:
        top.add_row(
            row["token"],
            row["principal"],
            *(str(row[k]) for k in ("uses", "failures", "client_ips")),
        )
    console.print(top)
    failing = _table("Top failing addresses", "client IP", "failures", "tokens")
    for row in summary.top_failing_ips:
        failing.add_row(row["client_ip"], str(row["failures"]), str(row["tokens"]))
    console.print(failing)
    bursts = _table(
        "Failure bursts (≥ 10 failures from one IP in 5 minutes)",
        "token", "client IP", "failures", "peak in 5 min", "from", "to", "reasons",
    )  # fmt: skip
    for row in summary.failure_bursts:
        bursts.add_row(
            f"[red]{row['token']}[/red]",
            row["client_ip"],
            str(row["failures"]),
            str(row["peak_5m"]),
            _second(row["first"]),
            _second(row["last"]),
            row["reasons"],
        )
    console.print(bursts)
    for title, rows in (
        ("Used after revocation", summary.uses_after_revocation),
        ("Used after expiry", summary.uses_after_expiry),
    ):
        table = _table(title, "token", "status", "used at", "client IP", "event", "outcome")
        for row in rows:
            table.add_row(
                f"[red]{row['token']}[/red]",
                row["status"],
                _second(row["used_at"]),
                row["client_ip"],
                row["event_name"],
                row["outcome"],
            )
        console.print(table)


def write_alerts(alerts: list[dict[str, Any]], fmt: Format, out: TextIO = sys.stdout) -> None:
    """Detections (``tokenotel detect``), oldest first."""
    _write_rows(alerts, fmt, out, _alerts_table, "alert")


def short_fingerprint(fingerprint: str) -> str:
    """``hmac-sha256:<key id>:<hex>`` shortened for a table cell."""
    return fingerprint.rsplit(":", 1)[-1][:12] + "…" if fingerprint else ""


def _write_rows(
    rows: list[dict[str, Any]],
    fmt: Format,
    out: TextIO,
    table: Any,
    noun: str,
) -> None:
    if fmt is Format.JSON:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt is Format.CSV:
        _write_csv(rows, out)
    else:
        console = _console(out)
        if not rows:
            console.print(f"[yellow]no {noun}s match[/yellow]")
            return
        console.print(table(rows, None))
        console.print(f"{len(rows)} {noun}{'s' if len(rows) != 1 else ''}")


def _write_csv(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        return
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                for k, v in row.items()
            }
        )


def _console(out: TextIO) -> Console:
    # A terminal decides its own width; a pipe or file gets lines long enough not to fold.
    return Console(file=out, width=None if out.isatty() else 240)


def _table(title: str | None, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _events_table(events: Iterable[dict[str, Any]], title: str | None) -> Table:
    table = _table(
        title, "time", "event", "outcome", "token status", "token", "principal", "client ip",
        "scopes", "detail",
    )  # fmt: skip
    for e in events:
        outcome_style = {"failure": "red", "success": "green"}.get(e["outcome"], "yellow")
        table.add_row(
            e["time"][:23] + "Z",
            e["event_name"],
            f"[{outcome_style}]{e['outcome']}[/{outcome_style}]",
            _status(e["token_status"]),
            e["token_id"] or short_fingerprint(e["token_fingerprint"]),
            e["principal_id"],
            e["client_ip"],
            " ".join(e["scopes"]),
            e["failure_reason"] or e["reason"],
        )
    return table


def _tokens_table(tokens: Iterable[dict[str, Any]], title: str | None) -> Table:
    table = _table(
        title, "token", "status", "owner", "type", "scopes", "created", "expires", "last used",
        "last IP", "uses", "failures",
    )  # fmt: skip
    for t in tokens:
        table.add_row(
            t["token_id"] or short_fingerprint(t["token_key"]),
            _status(t["status"]),
            t["owner"],
            t["token_type"],
            " ".join(t["scopes"]),
            _second(t["created_at"]),
            _second(t["expires_at"]),
            _second(t["last_used_at"]),
            t["last_ip"],
            str(t["use_count"]),
            str(t["failure_count"]),
        )
    return table


def _alerts_table(alerts: Iterable[dict[str, Any]], title: str | None) -> Table:
    table = _table(title, "first", "last", "rule", "severity", "token", "ip", "count")
    for a in alerts:
        style = {"critical": "bold red", "warning": "yellow"}.get(a["severity"], "")
        token = a.get("token", "")
        table.add_row(
            _second(a["first"]),
            _second(a["last"]),
            a["rule"],
            f"[{style}]{a['severity']}[/{style}]" if style else a["severity"],
            short_fingerprint(token) if token.startswith("hmac-") else token,
            a.get("ip", ""),
            str(a["count"]),
        )
    return table


def _credentials_table(credentials: Iterable[dict[str, Any]], title: str | None) -> Table:
    table = _table(title, "id", "name", "role", "created", "by", "revoked", "by")
    for c in credentials:
        revoked = c["revoked"]
        table.add_row(
            c["id"],
            c["name"],
            c["role"],
            _second(c["created"]),
            c["created_by"],
            f"[bold red]{_second(revoked)}[/bold red]" if revoked else "",
            c["revoked_by"],
        )
    return table


def _second(time: str | None) -> str:
    """An RFC 3339 time to the second, for a table cell."""
    return time[:19] + "Z" if time else ""


def _status(status: str) -> str:
    return f"[bold red]{status}[/bold red]" if status in DEAD_STATUSES else status
