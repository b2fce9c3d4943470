"""Search results as a rich table, JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from tokenotel.model import DEAD_STATUSES


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def write_events(events: list[dict[str, Any]], fmt: Format, out: TextIO = sys.stdout) -> None:
    if fmt is Format.JSON:
        for event in events:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
    elif fmt is Format.CSV:
        _write_csv(events, out)
    else:
        _write_table(events, out)


def _write_csv(events: list[dict[str, Any]], out: TextIO) -> None:
    if not events:
        return
    writer = csv.DictWriter(out, fieldnames=list(events[0]))
    writer.writeheader()
    for event in events:
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
                for k, v in event.items()
            }
        )


def short_fingerprint(fingerprint: str) -> str:
    """``hmac-sha256:<key id>:<hex>`` shortened for a table cell."""
    return fingerprint.rsplit(":", 1)[-1][:12] + "…" if fingerprint else ""


def _write_table(events: list[dict[str, Any]], out: TextIO) -> None:
    # A terminal decides its own width; a pipe or file gets lines long enough not to fold.
    console = Console(file=out, width=None if out.isatty() else 240)
    if not events:
        console.print("[yellow]no events match[/yellow]")
        return
    table = Table(show_lines=False, header_style="bold")
    table.add_column("time", no_wrap=True)
    for name in (
        "event",
        "outcome",
        "token status",
        "token",
        "principal",
        "client ip",
        "scopes",
        "detail",
    ):
        table.add_column(name, overflow="fold")
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
    console.print(table)
    console.print(f"{len(events)} event{'s' if len(events) != 1 else ''}")


def _status(status: str) -> str:
    return f"[bold red]{status}[/bold red]" if status in DEAD_STATUSES else status
