"""Overload benchmark: twice the sustainable rate through the gateway for a minute.

`tokenotel serve` (embedded store) runs behind the collector gateway (collector-config/
gateway.yaml, built by `make collector`); this process offers token events to the gateway over
OTLP/gRPC. First it measures the sustainable rate: it fills the gateway's queue, stops, and
times how fast tokenotel takes the backlog from it. Then it offers twice that rate for 60 s,
stops, and waits until the gateway's queue is empty. It prints the rates, how often senders
were told to back off (by the gateway, and by tokenotel to the gateway), the peak RSS of
tokenotel (with its mapping workers) and of the collector, how long the backlog took to
drain, and checks that every event the gateway acknowledged is stored exactly once. The last
line is machine-readable: ``sustainable_events_per_s=<n> offered_events_per_s=<n>
peak_rss_mb=<n> drain_s=<n> stored_once=<bool>`` (one line).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import psutil
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from ingest import EXPORT, free_port, server_tree, template, wait_ready

REPO = Path(__file__).resolve().parents[1]
COLLECTOR = REPO / ".build" / "otelcol-tokenotel" / "otelcol-tokenotel"
EXPORTER = "otlp_grpc/tokenotel"
RECORDS_A_REQUEST = 1_000
#: A fixed-width request number in the resource: every request differs (each is new events),
#: and a prebuilt body becomes the next request by rewriting these digits in place.
COUNTER = "request.number"
COUNTER_WIDTH = 12
console = Console(stderr=True)


class Bodies:
    """Request bodies of RECORDS_A_REQUEST token events, each different from the last."""

    def __init__(self) -> None:
        request = template(RECORDS_A_REQUEST)
        attribute = request.resource_logs[0].resource.attributes.add()
        attribute.key = COUNTER
        attribute.value.string_value = "0" * COUNTER_WIDTH
        self._body = bytearray(request.SerializeToString())
        self._at = self._body.index(b"0" * COUNTER_WIDTH)
        self._next = 0
        self._lock = threading.Lock()

    def next(self) -> bytes:
        with self._lock:
            self._next += 1
            digits = str(self._next).zfill(COUNTER_WIDTH).encode()
            self._body[self._at : self._at + COUNTER_WIDTH] = digits
            return bytes(self._body)


class Offer:
    """Offers requests to the gateway at a rate (None: as fast as it takes them), with
    ``concurrency`` requests in flight; counts what it acknowledged and what it refused."""

    def __init__(self, target: str, bodies: Bodies, concurrency: int) -> None:
        self._channel = grpc.insecure_channel(target)
        self._export = self._channel.unary_unary(
            EXPORT,
            request_serializer=None,
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        self._bodies = bodies
        self._concurrency = concurrency
        self._slots = threading.Semaphore(concurrency)
        self.acknowledged = 0
        self.refused: dict[str, int] = {}
        self._lock = threading.Lock()

    def run(self, seconds: float, rate: float | None) -> None:
        started = time.perf_counter()
        sent = 0
        while (now := time.perf_counter()) - started < seconds:
            if rate is not None and sent * RECORDS_A_REQUEST > rate * (now - started):
                time.sleep(0.001)
                continue
            self._slots.acquire()
            sent += 1
            body = self._bodies.next()
            self._export.future(body, timeout=30).add_done_callback(self._done)

    def _done(self, future: grpc.Future) -> None:
        try:
            future.result()
            with self._lock:
                self.acknowledged += RECORDS_A_REQUEST
        except grpc.RpcError as e:  # told to back off (or timed out): counted, not resent
            with self._lock:
                name = e.code().name
                self.refused[name] = self.refused.get(name, 0) + 1
        self._slots.release()

    def wait(self) -> None:
        """Until every request sent has its answer."""
        for _ in range(self._concurrency):
            self._slots.acquire()
        for _ in range(self._concurrency):
            self._slots.release()

    def close(self) -> None:
        self._channel.close()


def metric(port: int, name: str) -> float:
    """Sum of a collector metric's series for the exporter to tokenotel."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        series = line.split("{", 1)[0]
        if series in (name, f"{name}_total") and f'exporter="{EXPORTER}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def watch(pids: dict[str, int], peaks: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        for name, pid in pids.items():
            try:
                rss = sum(p.memory_info().rss for p in server_tree(pid)) / 2**20
            except psutil.NoSuchProcess:
                continue
            peaks[name] = max(peaks.get(name, 0.0), rss)
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure-s", type=float, default=30, help="length of the first phase")
    parser.add_argument("--overload-s", type=float, default=60, help="length of the overload")
    parser.add_argument("--factor", type=float, default=2.0, help="offered / sustainable")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    args = parser.parse_args()
    if not COLLECTOR.is_file():
        raise SystemExit(f"{COLLECTOR} is missing: run `make collector` first")

    work = Path(tempfile.mkdtemp(prefix="tokenotel-overload-"))
    grpc_port, http_port = free_port(), free_port()
    gateway_port, health_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENOTEL_", "OTEL_"))}
    serve_log = (work / "serve.log").open("w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "tokenotel", "serve", "--data-dir", str(work / "data"),
         "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}",
         "--api-listen", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL, stderr=serve_log, env=env,
    )  # fmt: skip
    collector_env = env | {
        "TOKENOTEL_ENDPOINT": f"127.0.0.1:{grpc_port}",
        "GATEWAY_GRPC_ENDPOINT": f"127.0.0.1:{gateway_port}",
        "GATEWAY_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{health_port}",
        "COLLECTOR_STORAGE_DIR": str(work / "queue"),
        "COLLECTOR_METRICS_LEVEL": "basic",
        "COLLECTOR_METRICS_PORT": str(metrics_port),
    }
    collector = subprocess.Popen(
        [str(COLLECTOR), "--config", str(REPO / "collector-config" / "gateway.yaml")],
        stdout=subprocess.DEVNULL, stderr=(work / "collector.log").open("w"), env=collector_env,
    )  # fmt: skip
    peaks: dict[str, float] = {}
    stop = threading.Event()
    try:
        wait_ready(f"http://127.0.0.1:{http_port}/readyz", "tokenotel")
        wait_ready(f"http://127.0.0.1:{health_port}/", "the collector")
        pids = {"tokenotel": serve.pid, "collector": collector.pid}
        threading.Thread(target=watch, args=(pids, peaks, stop), daemon=True).start()
        bodies = Bodies()
        offer = Offer(f"127.0.0.1:{gateway_port}", bodies, args.concurrency)

        def sent() -> float:
            return metric(metrics_port, "otelcol_exporter_sent_log_records")

        def drained() -> bool:
            return (
                metric(metrics_port, "otelcol_exporter_queue_size") == 0
                and metric(metrics_port, "otelcol_exporter_in_flight_requests") == 0
                and sent() >= offer.acknowledged
            )

        # 1. Sustainable: a backlog, then how fast tokenotel takes it from the gateway's queue
        #    with nobody offering more (what the two sustain for as long as it lasts).
        console.print(f"filling the gateway's queue ({args.measure_s:.0f} s) ...")
        offer.run(args.measure_s, None)
        offer.wait()
        console.print("measuring how fast it drains ...")
        time.sleep(2)  # the last offered requests are in the queue
        sent_before, at_before = sent(), time.perf_counter()
        while not drained():
            time.sleep(0.5)
        sustainable = (sent() - sent_before) / (time.perf_counter() - at_before)

        # 2. Overload: twice that, for a minute.
        offered = args.factor * sustainable
        console.print(f"offering {offered:,.0f} events/s for {args.overload_s:.0f} s ...")
        acknowledged_before, overload_started = offer.acknowledged, time.perf_counter()
        offer.run(args.overload_s, offered)
        offer.wait()
        overload_s = time.perf_counter() - overload_started
        taken = (offer.acknowledged - acknowledged_before) / overload_s

        # 3. The backlog drains.
        drain_started = time.perf_counter()
        while not drained():
            time.sleep(0.5)
        drain_s = time.perf_counter() - drain_started
        offer.close()
        failed = metric(metrics_port, "otelcol_exporter_send_failed_log_records")
    finally:
        stop.set()
        collector.terminate()
        collector.wait(120)
        serve.terminate()
        serve.wait(120)
        serve_log.close()

    stop_line = next(
        ln for ln in (work / "serve.log").read_text().splitlines() if "tokenotel stopped" in ln
    )
    slowed = int(re.search(r"\((\d+) asked to slow down\)", stop_line)[1])  # type: ignore[index]
    sys.path.insert(0, str(REPO / "src"))
    from tokenotel.config import load_settings
    from tokenotel.store.client import EVENTS_TABLE, Store

    store = Store(load_settings(data_dir=work / "data").store_options)
    try:
        stored, distinct = store.query(
            f"SELECT count(), uniqExact(event_id) FROM {EVENTS_TABLE}"
        ).result_rows[0]
    finally:
        store.close()
    shutil.rmtree(work, ignore_errors=True)
    stored_once = stored == distinct == offer.acknowledged

    table = Table(title="tokenotel overload benchmark (through gateway.yaml, embedded store)")
    for name in ("figure", "value"):
        table.add_column(name)
    for name, value in [
        (
            "sustainable rate (tokenotel draining the gateway's queue)",
            f"{sustainable:,.0f} events/s",
        ),
        ("offered during the overload", f"{offered:,.0f} events/s for {overload_s:.0f} s"),
        ("taken by the gateway during the overload", f"{taken:,.0f} events/s"),
        ("acknowledged by the gateway (both phases)", f"{offer.acknowledged:,}"),
        (
            "senders told to back off by the gateway",
            ", ".join(f"{k} {v}" for k, v in offer.refused.items()) or "none",
        ),
        (
            "gateway told to slow down by tokenotel",
            f"{slowed} requests ({failed:,.0f} records failed, retried)",
        ),
        ("backlog drained after the overload in", f"{drain_s:.0f} s"),
        ("peak RSS tokenotel (with workers)", f"{peaks.get('tokenotel', 0):,.0f} MB"),
        ("peak RSS collector", f"{peaks.get('collector', 0):,.0f} MB"),
        ("stored / distinct / acknowledged", f"{stored:,} / {distinct:,} / {offer.acknowledged:,}"),
        ("cpu cores", str(os.cpu_count())),
    ]:
        table.add_row(name, value)
    Console().print(table)
    print(
        f"sustainable_events_per_s={sustainable:.0f} offered_events_per_s={offered:.0f} "
        f"peak_rss_mb={peaks.get('tokenotel', 0):.0f} drain_s={drain_s:.0f} "
        f"stored_once={str(stored_once).lower()}"
    )
    if not stored_once:
        raise SystemExit("not every acknowledged event is stored exactly once")


if __name__ == "__main__":
    main()
