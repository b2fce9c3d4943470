"""Ingest benchmark: OTLP/gRPC requests of 1,000 token events into `tokenotel serve`.

The server runs as its own process with the embedded store; this process is the client. It
prints sustained events/s, Export latency percentiles, the server's peak RSS and the CPU it
used per event (both with its mapping workers); the last line is machine-readable:
``events_per_s=<n> p99_ms=<n> peak_rss_mb=<n>``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import psutil
import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
EVENTS = ["token.used"] * 14 + ["token.auth_failed", "token.created", "token.refreshed"]
console = Console(stderr=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kv(key: str, value: str | int | list[str]) -> KeyValue:
    if isinstance(value, list):
        any_value = AnyValue(
            array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value])
        )
    elif isinstance(value, int):
        any_value = AnyValue(int_value=value)
    else:
        any_value = AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def template(records: int) -> ExportLogsServiceRequest:
    """One request of realistic token events: ~14 attributes each, a few hundred tokens."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(
        [_kv("service.name", "api-gateway"), _kv("deployment.environment.name", "prod")]
    )
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "gateway.auth"
    for i in range(records):
        event = EVENTS[i % len(EVENTS)]
        record = LogRecord(event_name=event, severity_number=9, severity_text="INFO")
        record.attributes.extend(
            [
                _kv("token.id", f"tok_{(i * 7919) % 400:05d}"),
                _kv("token.type", "pat" if i % 3 else "api_key"),
                _kv("user.id", f"user{(i * 31) % 150}"),
                _kv("client.address", f"10.{i % 7}.{(i * 13) % 250}.{(i * 17) % 250}"),
                _kv("user_agent.original", "octokit.js/21.1.1 Node.js/20"),
                _kv("http.request.method", "GET"),
                _kv("http.route", "/repos/{owner}/{repo}"),
                _kv("url.path", f"/repos/acme/project-{i % 40}"),
                _kv("http.response.status_code", 401 if event == "token.auth_failed" else 200),
                _kv("token.scopes", ["repo", "read:org"]),
                _kv("token.request.id", f"req-{i:08x}"),
                _kv("token.source", "gateway"),
                _kv("region", "eu-west-1"),
            ]
        )
        scope_logs.log_records.append(record)
    return request


def server_tree(pid: int) -> list[psutil.Process]:
    """The server and its mapping workers."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def watch_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    """Peak resident memory of the server and its mapping workers together."""
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in server_tree(pid)))
        except psutil.Error:
            return
        stop.wait(0.05)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the server and its mapping workers have used so far."""
    return sum(t.user + t.system for t in (p.cpu_times() for p in server_tree(pid)))


def wait_ready(url: str, what: str, timeout_s: float = 60) -> None:
    """Until ``url`` answers (a readiness endpoint); exits naming ``what`` if it does not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="requests in flight (the collector's exporter sends with 10 consumers by default)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--tamper-evidence",
        choices=("on", "off"),
        default="on",
        help="seal inserts and sign checkpoints (the default), or not: to measure its cost",
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="tokenotel-bench-"))
    grpc_port, http_port = free_port(), free_port()
    log_path = data_dir.parent / f"{data_dir.name}.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenotel",
            "serve",
            "--data-dir",
            str(data_dir / "data"),
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
            "--api-listen",
            f"127.0.0.1:{free_port()}",
            "--log-level",
            "info",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("w"),
        env=os.environ | {"TOKENOTEL_TAMPER_EVIDENCE": str(args.tamper_evidence == "on")},
    )
    try:
        wait_ready(f"http://127.0.0.1:{http_port}/readyz", f"the server (see {log_path})", 30)

        requests = args.events // args.batch
        base = template(args.batch)
        base_ns = time.time_ns() - 3_600_000_000_000
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        export = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportLogsServiceResponse.FromString,
        )

        def payload(n: int) -> bytes:
            records = base.resource_logs[0].scope_logs[0].log_records
            start = base_ns + n * args.batch * 1000
            for i, record in enumerate(records):  # distinct events: distinct times
                record.time_unix_nano = start + i * 1000
            return base.SerializeToString()

        with Progress(
            TextColumn("building requests"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:  # ahead of time: the client's CPU is not
            task = progress.add_task("build", total=requests)  # what is being measured
            payloads = []
            for n in range(requests):
                payloads.append(payload(n))
                progress.advance(task)
        latencies: list[float] = []
        peak = [0]
        stop = threading.Event()
        threading.Thread(target=watch_rss, args=(server.pid, peak, stop), daemon=True).start()

        failures: list[BaseException] = []
        in_flight = threading.Semaphore(args.concurrency)

        def send(n: int, progress: Progress, task: TaskID) -> None:
            """Keeps ``concurrency`` requests in flight from one thread: gRPC futures cost
            the client far less CPU than a thread per request, and the CPU it saves is the
            server's (both share the machine)."""
            in_flight.acquire()
            sent_at = time.perf_counter()

            def done(future: grpc.Future) -> None:
                latencies.append(time.perf_counter() - sent_at)
                try:
                    if future.result().HasField("partial_success"):
                        failures.append(RuntimeError(str(future.result().partial_success)))
                except grpc.RpcError as e:
                    failures.append(e)
                in_flight.release()
                progress.advance(task)

            export.future(payloads[n], timeout=60).add_done_callback(done)

        with Progress(
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("export", total=requests)
            cpu_before = cpu_seconds(server.pid)
            started = time.perf_counter()
            for n in range(requests):
                send(n, progress, task)
            for _ in range(args.concurrency):  # every answer is in
                in_flight.acquire()
            elapsed = time.perf_counter() - started
            server_cpu = cpu_seconds(server.pid) - cpu_before
        if failures:
            raise SystemExit(f"{len(failures)} requests failed, the first: {failures[0]}")
        stop.set()
        channel.close()
    finally:
        server.terminate()
        server.wait(60)

    summary = [ln for ln in log_path.read_text().splitlines() if "tokenotel stopped" in ln]
    if summary:
        console.print("server: " + summary[-1].split(": ", 1)[-1])
    limit = store_limit(data_dir / "data", data_dir / "store-limit")
    stored = limit.rows  # (every stored row, read back)
    sent = requests * args.batch
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    events_per_s = sent / elapsed
    rss_mb = peak[0] / 2**20

    table = Table(title="tokenotel ingest benchmark (OTLP/gRPC, embedded ClickHouse)")
    for name in ("figure", "value"):
        table.add_column(name)
    for name, value in [
        ("events sent", f"{sent:,}"),
        ("events stored", f"{stored:,}"),
        ("records per request", f"{args.batch:,}"),
        ("requests in flight", str(args.concurrency)),
        ("tamper evidence", args.tamper_evidence),
        ("elapsed", f"{elapsed:.1f} s"),
        ("sustained events/s", f"{events_per_s:,.0f}"),
        ("Export p50", f"{p50:.1f} ms"),
        ("Export p99", f"{p99:.1f} ms"),
        ("server peak RSS (with workers)", f"{rss_mb:,.0f} MB"),
        ("server CPU per event (with workers)", f"{server_cpu / sent * 1e6:.1f} µs"),
        ("store's limit: the stored rows inserted again", f"{limit.inserts:,} inserts"),
        (
            "  by one process, as the service's inserts",
            f"{limit.rows / limit.inserts:,.0f} rows each",
        ),
        ("  events/s", f"{limit.events_per_s:,.0f}"),
        ("  CPU per event (the process)", f"{limit.cpu_s / limit.rows * 1e6:.1f} µs"),
        ("pipeline / store's limit", f"{events_per_s / limit.events_per_s:.1%}"),
        ("cpu cores", str(os.cpu_count())),
    ]:
        table.add_row(name, value)
    Console().print(table)
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    if stored != sent:
        raise SystemExit(f"stored {stored} events but sent {sent}")
    print(
        f"events_per_s={events_per_s:.0f} p99_ms={p99:.1f} peak_rss_mb={rss_mb:.0f} "
        f"store_limit_events_per_s={limit.events_per_s:.0f} "
        f"ratio={events_per_s / limit.events_per_s:.3f}"
    )


@dataclass
class StoreLimit:
    rows: int
    inserts: int
    seconds: float  # the inserts' wall time
    cpu_s: float  # this process's CPU time over them (ClickHouse's threads included)

    @property
    def events_per_s(self) -> float:
        return self.rows / self.seconds


def store_limit(served: Path, fresh: Path) -> StoreLimit:
    """The store's own speed on the same events, already mapped: the rows the service stored
    in ``served`` (a stopped data directory), inserted again into a new data directory
    ``fresh`` one stored insert at a time (rows sharing an ``ingested_at`` stamp: the
    service's batch sizes, in its order), the analytics rollups fed as the service feeds them,
    by this process alone."""
    from tokenotel.config import load_settings
    from tokenotel.model import COLUMNS, Filled
    from tokenotel.store.client import EVENTS_TABLE, FED_LATER, Store
    from tokenotel.store.migrate import FEED_TABLE
    from tokenotel.store.writer import feed_due

    # What an insert carries: the mapping's columns and the writer's (docs/schema.md).
    columns = [c.name for c in COLUMNS if c.filled is not Filled.STORE]
    source = Store(load_settings(data_dir=served).store_options)
    try:
        rows = source.query_arrow(
            f"SELECT {', '.join(columns)} FROM {EVENTS_TABLE} ORDER BY ingested_at, event_time"
        )
    finally:
        source.close()
    stamps = rows.column("ingested_at").cast(pa.int64()).to_numpy()
    edges = [0, *(np.flatnonzero(stamps[1:] != stamps[:-1]) + 1).tolist(), len(stamps)]
    batches = [rows.slice(a, b - a) for a, b in itertools.pairwise(edges)]
    settings = load_settings(data_dir=fresh)
    target = Store(settings.store_options)
    try:
        target.connect()  # the schema: the events table and its rollups
        with Progress(
            TextColumn("the store's limit"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("insert", total=len(batches))
            cpu_before, started = time.process_time(), time.perf_counter()
            unfed: list[pa.Table] = []
            unfed_since = 0.0
            delay_s = settings.rollup_delay_ms / 1000
            for batch in batches:
                # As the service does: the analytics rollups fed after commit (docs/schema.md).
                target.insert_arrow(EVENTS_TABLE, batch, FED_LATER)
                if not unfed:
                    unfed_since = time.monotonic()
                unfed.append(batch)
                rows_unfed = sum(t.num_rows for t in unfed)
                if feed_due(rows_unfed, unfed_since, settings.batch_max_rows, delay_s):
                    target.insert_arrow(FEED_TABLE, pa.concat_tables(unfed))
                    unfed = []
                progress.advance(task)
            if unfed:
                target.insert_arrow(FEED_TABLE, pa.concat_tables(unfed))
            seconds = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_before
    finally:
        target.close()
    return StoreLimit(rows.num_rows, len(batches), seconds, cpu_s)


def count_events(data_dir: Path) -> int:
    """Events in the embedded store of a stopped service's data directory."""
    from tokenotel.config import load_settings
    from tokenotel.store.client import EVENTS_TABLE, Store

    store = Store(load_settings(data_dir=data_dir).store_options)
    try:
        return store.query(f"SELECT count() FROM {EVENTS_TABLE}").result_rows[0][0]
    finally:
        store.close()


if __name__ == "__main__":
    main()
