"""Detection benchmark: `tokenotel serve` ingesting OTLP/gRPC at full speed, once with the
detection rules off and once with every shipped rule on, alerts POSTed to a webhook here.

The load is bench/ingest.py's (requests of 1,000 token events, 10 in flight). In the run with
the rules on, a probe sends a request of one ``token.leak_detected`` event every quarter of a
second, each for a token of its own: the rule ``reuse-or-leak-detected`` raises an alert naming
it, and the time from the Export answer to the webhook's receipt of that alert is its latency.
Prints both throughputs, their ratio and the latency percentiles; the last line is
machine-readable: ``alert_p99_ms=<n> ingest_kept_pct=<n>``.
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


def run(detection: bool, events: int, batch: int, concurrency: int) -> dict[str, object]:
    """One service, one load: throughput, CPU, and (rules on) each probe's alert latency."""
    workdir = Path(tempfile.mkdtemp(prefix="tokenotel-bench-detect-"))
    grpc_port, http_port = free_port(), free_port()
    alerts = Alerts()
    webhook, webhook_port = alerts.serve()
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
        if detection:
            prober.start()
        for body in payloads:
            in_flight.acquire()
            export.future(body, timeout=60).add_done_callback(finished)
        for _ in range(concurrency):
            in_flight.acquire()
        elapsed = time.perf_counter() - started
        done.set()
        if detection:
            prober.join()
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
    missing = len(answered) - len(latencies)
    log_text = log_path.read_text()
    shutil.rmtree(workdir, ignore_errors=True)
    if missing:
        raise SystemExit(f"{missing} of {len(answered)} probe alerts never reached the webhook")
    return {
        "events_per_s": len(payloads) * batch / elapsed,
        "cpu_us": cpu / (len(payloads) * batch) * 1e6,
        "latencies": latencies,
        "messages": alerts.messages,
        "skipped": log_text.count("oldest waiting insert was not evaluated"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    console.print("rules off …")
    off = run(False, args.events, args.batch, args.concurrency)
    console.print(f"  {off['events_per_s']:,.0f} events/s; rules on …")
    on = run(True, args.events, args.batch, args.concurrency)
    latencies = on["latencies"]
    assert isinstance(latencies, list)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    kept = float(on["events_per_s"]) / float(off["events_per_s"]) * 100  # type: ignore[arg-type]
    table = Table(title="tokenotel detection benchmark (OTLP/gRPC, embedded ClickHouse)")
    for name in ("figure", "rules off", "rules on"):
        table.add_column(name)
    table.add_row("events sent", f"{args.events:,}", f"{args.events:,}")
    table.add_row("sustained events/s", f"{off['events_per_s']:,.0f}", f"{on['events_per_s']:,.0f}")
    table.add_row("server CPU per event", f"{off['cpu_us']:.1f} µs", f"{on['cpu_us']:.1f} µs")
    table.add_row("probe alerts (one every 0.25 s)", "", str(len(latencies)))
    table.add_row("alert after the Export answer p50 / p99", "", f"{p50:.0f} / {p99:.0f} ms")
    table.add_row("webhook messages received", "", str(on["messages"]))
    table.add_row("inserts not evaluated (rules behind)", "", str(on["skipped"]))
    table.add_row("ingest kept with the rules on", "", f"{kept:.1f}%")
    table.add_row("cpu cores", str(os.cpu_count()), "")
    Console().print(table)
    print(f"alert_p99_ms={p99:.0f} ingest_kept_pct={kept:.1f}")


if __name__ == "__main__":
    main()
