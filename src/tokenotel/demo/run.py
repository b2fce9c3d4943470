"""``tokenotel demo``: the service in-process, real SDK traffic, then what a person looks at."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokenotel.config import load_settings
from tokenotel.demo.traffic import ATTACKER_IP, build_scenario, send
from tokenotel.errors import PermanentError
from tokenotel.query.summary import Summary, summarise
from tokenotel.service import running_in_thread
from tokenotel.store.client import EVENTS_TABLE

console = Console()
console.width = max(console.width, 120)


def run_demo(data_dir: Path, total: int) -> None:
    if data_dir.exists():
        if not (data_dir / "fingerprint.key").exists():
            raise PermanentError(
                f"{data_dir} exists and is not a tokenotel demo directory; choose another "
                "--data-dir"
            )
        shutil.rmtree(data_dir)
    console.print(
        Panel.fit(
            "[bold]tokenotel demo[/bold]\nA day of API-token traffic from three services, sent "
            "through the OpenTelemetry SDK\n(OTLP/gRPC) into tokenotel with an embedded ClickHouse "
            "— with a brute-force attack,\na leaked token used after revocation and an expired "
            "token hidden in it.",
            border_style="cyan",
        )
    )
    settings = load_settings(
        data_dir=data_dir,
        grpc_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        log_level="warning",
        mapping_workers=0,  # a few thousand events: no worker processes needed
    )
    with running_in_thread(settings) as service:
        pipeline = service.pipeline
        scenario = build_scenario(total, time.time_ns())
        endpoint = f"127.0.0.1:{service.otlp_grpc.port}"
        console.print(
            f"service listening: OTLP/gRPC {endpoint}, OTLP/HTTP "
            f"127.0.0.1:{service.otlp_http.port}; data in {data_dir}/"
        )
        with Progress(
            TextColumn("sending token events"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("send", total=len(scenario.emits))
            send(scenario.emits, endpoint, lambda n: progress.advance(task, n))
        stored = pipeline.store.query(f"SELECT count() FROM {EVENTS_TABLE}").result_rows[0][0]
        console.print(
            f"[green]✓[/green] {len(scenario.emits)} events sent, {stored} stored, "
            f"{pipeline.stats.records_rejected} rejected, every secret fingerprinted\n"
        )
        _print_summary(summarise(pipeline.store), data_dir)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold")
    for column in columns:
        table.add_column(column)
    return table


def _print_summary(summary: Summary, data_dir: Path) -> None:
    by_type = _table("Events by type and outcome", "event", "outcome", "events")
    for row in summary.by_type:
        style = "red" if row["outcome"] == "failure" else ""
        by_type.add_row(
            row["event_name"],
            f"[{style}]{row['outcome']}[/]" if style else row["outcome"],
            str(row["events"]),
        )
    console.print(by_type)

    top = _table("Top tokens", "token", "owner", "uses", "failures", "client IPs")
    for row in summary.top_tokens:
        top.add_row(
            row["token"],
            row["principal"],
            str(row["uses"]),
            str(row["failures"]),
            str(row["client_ips"]),
        )
    console.print(top)

    bursts = _table(
        "Failure bursts (≥ 10 failures from one IP in 5 minutes)",
        "token",
        "client IP",
        "failures",
        "peak in 5 min",
        "from",
        "to",
        "reasons",
    )
    for row in summary.bursts:
        bursts.add_row(
            f"[red]{row['token']}[/red]",
            row["client_ip"],
            str(row["failures"]),
            str(row["peak_5m"]),
            row["first"][:19] + "Z",
            row["last"][:19] + "Z",
            row["reasons"],
        )
    console.print(bursts)

    revoked = _table(
        "Used after revocation", "token", "status", "used at", "client IP", "event", "outcome"
    )
    for row in summary.after_revocation:
        revoked.add_row(
            f"[red]{row['token']}[/red]",
            row["status"],
            row["used_at"][:19] + "Z",
            row["client_ip"],
            row["event_name"],
            row["outcome"],
        )
    console.print(revoked)

    expired = _table("Used after expiry", "token", "used at", "client IP", "event", "outcome")
    for row in summary.after_expiry:
        expired.add_row(
            row["token"],
            row["used_at"][:19] + "Z",
            row["client_ip"],
            row["event_name"],
            row["outcome"],
        )
    console.print(expired)

    burst_token = summary.bursts[0]["token"] if summary.bursts else "billing_ci"
    command = _command_name()
    query = f"{command} query --data-dir {data_dir}"
    commands = [
        f"{query} --token {burst_token} --outcome failure",
        f"{query} --ip {ATTACKER_IP.rsplit('.', 1)[0]}.0/24",
        f"{query} --event token.revoked --event token.auth_failed --since 24h",
        f"{query} --principal alice --format json",
        f"echo -n '<a token you hold>' | {command} fingerprint --data-dir {data_dir}",
    ]
    console.print(
        Panel(
            "[bold]Explore further[/bold] (the demo service has stopped; its data stays):\n"
            + "\n".join(f"  {c}" for c in commands),
            border_style="cyan",
        )
    )


def _command_name() -> str:
    """How to run tokenotel again from here: its name if on PATH, else the path it ran from."""
    if shutil.which("tokenotel") or not sys.argv[0].endswith("tokenotel"):
        return "tokenotel"
    return os.path.relpath(sys.argv[0])
