"""Detection benchmark: `tokenotel serve` ingesting OTLP/gRPC with the detection rules off and
with every shipped rule on, alerts POSTed to a webhook here.

The load is bench/ingest.py's (requests of 1,000 token events, at most 10 in flight), offered
at ``--rate`` events/s (40,000: the load the figures are asked at) and then as fast as the
service takes it. Beside it a probe sends a request of one ``token.leak_detected`` event every
quarter of a second, each for a token of its own: with the rules on, ``reuse-or-leak-detected``
raises an alert naming it, and the time from the Export answer to the webhook's receipt of that
alert is its latency. A shared machine's speed drifts between runs, so each rules-on run is set
against the rules-off run beside it (the same round and load), over several rounds that take
turns in which runs first; every run's data directory is kept until the end.

Prints the throughputs, each round's ratio and the latency percentiles; the last line is
machine-readable: ``alert_p99_ms=<p99 over every probe at the paced load>
ingest_kept_pct=<median ratio at the paced load>``.
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import EXPORT, _kv, cpu_seconds, free_port, template, wait_ready

console = Console(stderr=True)
PROBE_EVERY_S = 0.25


class Alerts:
    """What the webhook received: when each probe token's alert arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.messages = 0
        self.lock = threading.Lock()

    def serve(self) -> tuple[ThreadingHTTPServer, int]:
        alerts = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                now = time.perf_counter()
                with alerts.lock:
                    alerts.messages += 1
                    for alert in json.loads(body)["alerts"]:
                        token = alert["labels"].get("token", "")
                        if token.startswith("probe-"):
                            alerts.arrived.setdefault(token, now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, server.server_address[1]


def probe_request(n: int) -> bytes:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    record = LogRecord(event_name="token.leak_detected", time_unix_nano=time.time_ns())
    record.attributes.extend([_kv("token.id", f"probe-{n}"), _kv("log.record.uid", f"probe-{n}")])
    scope_logs.log_records.append(record)
    return request.SerializeToString()


@dataclass
class Run:
    events_per_s: float
    cpu_us: float  # the server's, mapping workers' and rules process's CPU per event
    latencies: list[float]  # ms from each probe's Export answer to its alert at the webhook
    messages: int
    skipped: int  # inserts the rules let go, being too far behind


def run(
    workdir: Path, detection: bool, events: int, batch: int, concurrency: int, rate: float = 0
) -> Run:
    """One service over a data directory in ``workdir``, one load (``rate`` events/s offered;
    0: as fast as it takes them): throughput, CPU, and (rules on) each probe's alert latency.
    The directory is left for the caller to delete: files deleted in the minutes before slow
    the next run's inserts (see the README), and each run would slow the one after it."""
    alerts = Alerts()
    webhook, webhook_port = alerts.serve()  # (bound first: the ports below stay free)
    grpc_port, http_port = free_port(), free_port()
    log_path = workdir / "serve.log"
    flags = (
        ["--detection", "--alert-webhook-urls", f"http://127.0.0.1:{webhook_port}/alerts"]
        if detection
        else ["--no-detection"]
    )
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tokenotel", "serve",
            "--data-dir", str(workdir / "data"),
            "--grpc-listen", f"127.0.0.1:{grpc_port}",
            "--http-listen", f"127.0.0.1:{http_port}",
            "--api-listen", f"127.0.0.1:{free_port()}",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("w"),
    )  # fmt: skip
    answered: dict[str, float] = {}
    try:
        wait_ready(f"http://127.0.0.1:{http_port}/readyz", f"the server (see {log_path})", 60)
        base = template(batch)
        base_ns = time.time_ns() - 3_600_000_000_000
        payloads = []
        for n in range(events // batch):
            for i, record in enumerate(base.resource_logs[0].scope_logs[0].log_records):
                record.time_unix_nano = base_ns + (n * batch + i) * 1000
            payloads.append(base.SerializeToString())
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        export = channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        done = threading.Event()

        def probe() -> None:
            n = 0
            while not done.wait(PROBE_EVERY_S):
                export(probe_request(n), timeout=60)
                answered[f"probe-{n}"] = time.perf_counter()
                n += 1

        prober = threading.Thread(target=probe, daemon=True)
        in_flight = threading.Semaphore(concurrency)
        failures: list[BaseException] = []

        def finished(future: grpc.Future) -> None:
            try:
                future.result()
            except grpc.RpcError as e:
                failures.append(e)
            in_flight.release()

        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        prober.start()  # (with the rules off too: the same load)
        for n, body in enumerate(payloads):
            if rate:  # (behind time, it sends at once: what it sustains is then lower)
                time.sleep(max(0.0, started + n * batch / rate - time.perf_counter()))
            in_flight.acquire()
            export.future(body, timeout=60).add_done_callback(finished)
        for _ in range(concurrency):
            in_flight.acquire()
        elapsed = time.perf_counter() - started
        done.set()
        prober.join()
        if detection:
            deadline = time.monotonic() + 10
            while set(answered) - set(alerts.arrived) and time.monotonic() < deadline:
                time.sleep(0.05)
        cpu = cpu_seconds(server.pid) - cpu_before
        channel.close()
        if failures:
            raise SystemExit(f"{len(failures)} requests failed, the first: {failures[0]}")
    finally:
        server.terminate()
        server.wait(60)
        webhook.shutdown()
    latencies = sorted(
        max(0.0, alerts.arrived[token] - at) * 1000
        for token, at in answered.items()
        if token in alerts.arrived
    )
    missing = len(answered) - len(latencies) if detection else 0
    log_text = log_path.read_text()
    if missing:
        raise SystemExit(f"{missing} of {len(answered)} probe alerts never reached the webhook")
    return Run(
        events_per_s=len(payloads) * batch / elapsed,
        cpu_us=cpu / (len(payloads) * batch) * 1e6,
        latencies=latencies,
        messages=alerts.messages,
        skipped=log_text.count("oldest waiting insert was not evaluated"),
    )


def _range(values: list[float], form: str) -> str:
    low, high = min(values), max(values)
    return format(low, form) if low == high else f"{low:{form}} to {high:{form}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=600_000, help="events in each run")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rate", type=float, default=40_000, help="events/s offered")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of runs with the rules off then on"
    )
    args = parser.parse_args()
    runs: dict[tuple[str, bool], list[Run]] = {}
    loads = [("paced", args.rate), ("unpaced", 0.0)]
    workdir = Path(tempfile.mkdtemp(prefix="tokenotel-bench-detect-"))
    try:
        for n in range(args.rounds):
            for load, rate in loads:
                # (off first in one round, on first in the next: neither always runs second)
                for detection in (False, True) if n % 2 == 0 else (True, False):
                    rules = "on" if detection else "off"
                    console.print(f"round {n + 1} of {args.rounds}, {load}, rules {rules} …")
                    done = run(
                        Path(tempfile.mkdtemp(dir=workdir)),
                        detection,
                        args.events,
                        args.batch,
                        args.concurrency,
                        rate,
                    )
                    runs.setdefault((load, detection), []).append(done)
                    console.print(f"  {done.events_per_s:,.0f} events/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Each rules-on run against the rules-off run of the same round and load.
    kept = {
        load: [
            on.events_per_s / off.events_per_s * 100
            for off, on in zip(runs[load, False], runs[load, True], strict=True)
        ]
        for load, _ in loads
    }
    latencies = sorted(ms for on in runs["paced", True] for ms in on.latencies)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    table = Table(title="tokenotel detection benchmark (OTLP/gRPC, embedded ClickHouse)")
    for name in ("figure", "rules off", "rules on"):
        table.add_column(name)
    table.add_row("runs of events, each load", f"{args.rounds} of {args.events:,}", "")
    for load, rate in loads:
        offered = f"{rate:,.0f} events/s offered" if rate else "as fast as taken"
        table.add_row(f"{load} ({offered})", "", "")
        table.add_row(
            "  sustained events/s",
            _range([r.events_per_s for r in runs[load, False]], ",.0f"),
            _range([r.events_per_s for r in runs[load, True]], ",.0f"),
        )
        table.add_row(
            "  server CPU per event (µs)",
            _range([r.cpu_us for r in runs[load, False]], ".1f"),
            _range([r.cpu_us for r in runs[load, True]], ".1f"),
        )
        table.add_row("  ingest kept, each round", "", ", ".join(f"{k:.1f}%" for k in kept[load]))
    table.add_row("probe alerts at the paced load", "", str(len(latencies)))
    table.add_row("  after the Export answer p50 / p99", "", f"{p50:.0f} / {p99:.0f} ms")
    ons = runs["paced", True] + runs["unpaced", True]
    table.add_row("webhook messages received", "", str(sum(on.messages for on in ons)))
    table.add_row("inserts not evaluated (rules behind)", "", str(sum(on.skipped for on in ons)))
    table.add_row("cpu cores", str(os.cpu_count()), "")
    Console().print(table)
    print(f"alert_p99_ms={p99:.0f} ingest_kept_pct={statistics.median(kept['paced']):.1f}")


if __name__ == "__main__":
    main()
