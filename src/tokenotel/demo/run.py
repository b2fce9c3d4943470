"""``tokenotel demo``: the service in-process, real SDK traffic, then what a person looks at."""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tokenotel.config import load_settings
from tokenotel.demo.traffic import ATTACKER_IP, build_scenario, send
from tokenotel.errors import PermanentError
from tokenotel.query.output import Format, write_summary
from tokenotel.query.summary import Summary, summarise
from tokenotel.report.model import Policy
from tokenotel.report.render import ReportFormat
from tokenotel.service import running_in_thread
from tokenotel.store.client import EVENTS_TABLE

console = Console()
console.width = max(console.width, 120)


def send_demo(endpoint: str, total: int) -> int:
    """Sends the demo's traffic to a running service's OTLP/gRPC ``endpoint``; returns how many
    events it sent."""
    scenario = build_scenario(total, time.time_ns())
    with _progress() as progress:
        task = progress.add_task("send", total=len(scenario.emits))
        send(scenario.emits, endpoint, lambda n: progress.advance(task, n))
    console.print(f"[green]✓[/green] {len(scenario.emits)} events sent to {endpoint}")
    return len(scenario.emits)


def _progress() -> Progress:
    return Progress(
        TextColumn("sending token events"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


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
        api_listen="127.0.0.1:0",
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
        with _progress() as progress:
            task = progress.add_task("send", total=len(scenario.emits))
            send(scenario.emits, endpoint, lambda n: progress.advance(task, n))
        stored = pipeline.store.query(f"SELECT count() FROM {EVENTS_TABLE}").result_rows[0][0]
        console.print(
            f"[green]✓[/green] {len(scenario.emits)} events sent, {stored} stored, "
            f"{pipeline.stats.records_rejected} rejected, every secret fingerprinted\n"
        )
        summary = summarise(pipeline.store)
        # The compliance report of the demo's two days, as `tokenotel report` writes it.
        until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        report = data_dir / "report.html"
        report.write_bytes(
            service.reports.report(until - timedelta(days=2), until, Policy(), ReportFormat.HTML)
        )
    _print_summary(summary, data_dir, report)


def _print_summary(summary: Summary, data_dir: Path, report: Path) -> None:
    write_summary(summary, Format.TABLE, sys.stdout)
    console.print(
        f"[green]✓[/green] the compliance report of the last two days: "
        f"{report} (open it in a browser)\n"
    )

    burst_token = summary.failure_bursts[0]["token"] if summary.failure_bursts else "billing_ci"
    command = _command_name()
    query = f"{command} query --data-dir {data_dir}"
    commands = [
        f"{query} --token {burst_token} --outcome failure",
        f"{query} --ip {ATTACKER_IP.rsplit('.', 1)[0]}.0/24",
        f"{query} --event token.revoked --event token.auth_failed --since 24h",
        f"{query} --principal alice --format json",
        f"echo -n '<a token you hold>' | {command} fingerprint --data-dir {data_dir}",
        f"{command} verify --report {report} --data-dir {data_dir}",
        f"{command} report --data-dir {data_dir} --since 7d --format csv -o report.csv",
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
