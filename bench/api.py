"""API benchmark: the query API and the ClickHouse interface of `tokenotel serve` while it ingests.

The query benchmark's 10 million generated events (bench/query.py, tokenotel's layout only) are
loaded into an embedded store and sealed in its ledger (as a service that ingested them would
have), and `tokenotel serve` runs over it as its own process, with the query API and the
ClickHouse HTTP interface on. Two phases:

1. Reads while ingest goes on. A sender process sends OTLP/gRPC requests of 1,000 events paced
   to 20,000 events/s (each record's ``token.request.id`` names its request), and a tail
   process follows them through TailEvents. Meanwhile this process times SearchEvents for one
   token (a different generated token each call) and ListTokens pages of 1,000 tokens. Printed:
   the ingest rate achieved, search and list latencies, and the delay from each Export answer
   until the tail has all of its events; then, with ingest stopped, the same reads again with
   the server's CPU a call.
2. Ingest with and without a dashboard. The highest ingest rate (as bench/ingest.py measures
   it: as fast as it goes, 10 requests in flight) with no query load, then while viewers
   refresh every shipped Grafana dashboard through the ClickHouse HTTP interface with
   clickhouse-connect (all panel and variable queries of a dashboard at once, then a pause
   until the next refresh; the alert rules at their interval), then with no load again. The
   rate under load is compared with the mean of the two quiet ones.

The last line is machine-readable: ``search_p50_ms=<n> search_p99_ms=<n> tokens_p50_ms=<n>
tail_p99_ms=<n> ingest_kept_pct=<n>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import grpc
import psutil
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from ingest import EVENTS, EXPORT, count_events, cpu_seconds, free_port, template, wait_ready
from query import GENERATED, INSERT_OURS, OUR_TABLES
from tokenotel.v1 import audit_pb2, audit_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
RECORDS_A_REQUEST = 1_000
#: A record's token.request.id is ``<request number>-<its place>``, the number this wide: a
#: prebuilt body becomes the next request by rewriting those digits in place.
NUMBER_WIDTH = 12
#: The tail's filter: every event name the sender sends.
TAIL_EVENTS = sorted(set(EVENTS))
#: A dashboard's queries in flight at once.
PANELS_AT_ONCE = 6
#: The viewers' name for the alert rules, evaluated as one more dashboard.
ALERTS = "alert rules"
console = Console(stderr=True)


# -- the sender -------------------------------------------------------------------------------


class Requests:
    """Request bodies of RECORDS_A_REQUEST token events (bench/ingest.py's), each record's
    token.request.id naming its request: every request new events, and a reader of the events
    can tell which request each came in."""

    def __init__(self) -> None:
        request = template(RECORDS_A_REQUEST)
        for place, record in enumerate(request.resource_logs[0].scope_logs[0].log_records):
            for attribute in record.attributes:
                if attribute.key == "token.request.id":
                    attribute.value.string_value = f"{'0' * NUMBER_WIDTH}-{place:04d}"
        self._body = bytearray(request.SerializeToString())
        pattern = rb"0{%d}-\d{4}" % NUMBER_WIDTH
        self._at = [m.start() for m in re.finditer(pattern, self._body)]
        if len(self._at) != RECORDS_A_REQUEST:
            raise RuntimeError(f"found {len(self._at)} request ids in the template")

    def body(self, number: int) -> bytes:
        digits = str(number).zfill(NUMBER_WIDTH).encode()
        for at in self._at:
            self._body[at : at + NUMBER_WIDTH] = digits
        return bytes(self._body)


def request_number(request_id: str) -> int:
    return int(request_id[:NUMBER_WIDTH])


@dataclass
class Sent:
    """What a sender did: each answered request (its number, when it was sent and when its
    answer came, on the system's monotonic clock), the failures, and its own cost."""

    answered: list[tuple[int, float, float]]
    failures: list[str]
    elapsed_s: float
    behind_s: float  # paced: the most a request was sent after its time
    cpu_s: float

    @property
    def events(self) -> int:
        return len(self.answered) * RECORDS_A_REQUEST

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s

    def export_ms(self, q: float) -> float:
        return percentile([answer - sent for _, sent, answer in self.answered], q) * 1000


def send(
    target: str,
    first: int,
    rate: float | None,
    concurrency: int,
    stop: Event,
    out: Queue[Sent],
) -> None:
    """Sends requests numbered from ``first`` until ``stop``: paced to ``rate`` events/s, or as
    fast as they are answered (None), with at most ``concurrency`` in flight. Futures from one
    thread, as bench/ingest.py sends: the CPU the client saves is the server's."""
    requests = Requests()
    channel = grpc.insecure_channel(target)
    export = channel.unary_unary(
        EXPORT, request_serializer=None, response_deserializer=ExportLogsServiceResponse.FromString
    )
    slots = threading.Semaphore(concurrency)
    answered: list[tuple[int, float, float]] = []
    failures: list[str] = []

    def done(number: int, sent_at: float, future: grpc.Future) -> None:
        answered_at = time.monotonic()
        try:
            response = future.result()
            if response.HasField("partial_success"):
                failures.append(str(response.partial_success).strip())
            else:
                answered.append((number, sent_at, answered_at))
        except grpc.RpcError as e:
            failures.append(f"{e.code().name}: {e.details()}")
        slots.release()

    started = time.monotonic()
    sent, behind = 0, 0.0
    while not stop.is_set():
        due = started + sent * RECORDS_A_REQUEST / rate if rate else started
        if (wait := due - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))
            continue
        body = requests.body(first + sent)
        slots.acquire()
        sent_at = time.monotonic()
        behind = max(behind, sent_at - due) if rate else 0.0
        future = export.future(body, timeout=60)
        future.add_done_callback(partial(done, first + sent, sent_at))
        sent += 1
    for _ in range(concurrency):  # every answer is in
        slots.acquire()
    elapsed = time.monotonic() - started
    channel.close()
    cpu = psutil.Process().cpu_times()
    out.put(Sent(answered, failures, elapsed, behind, cpu.user + cpu.system))


# -- the tail -----------------------------------------------------------------------------------


@dataclass
class Followed:
    """When the tail had the last event of each request (by number), and what it read."""

    whole: dict[int, float]
    events: int
    errors: list[str]
    cpu_s: float


def follow(target: str, ready: Event, stop: Event, completed: Any, out: Queue[Followed]) -> None:
    """Follows TailEvents from now with a filter every sent event matches, until ``stop``."""
    channel = grpc.insecure_channel(target)
    tail = audit_pb2_grpc.TokenAuditStub(channel).TailEvents(
        audit_pb2.TailEventsRequest(filter=audit_pb2.EventFilter(event_names=TAIL_EVENTS))
    )
    seen: dict[int, int] = {}
    whole: dict[int, float] = {}
    errors: list[str] = []

    def read() -> None:
        try:
            for message in tail:
                at = time.monotonic()
                for event in message.events:
                    number = request_number(event.request_id)
                    seen[number] = seen.get(number, 0) + 1
                    if seen[number] == RECORDS_A_REQUEST:
                        whole[number] = at
                        completed.value += 1
                ready.set()  # the first message carries only the cursor: subscribed
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                errors.append(f"{e.code().name}: {e.details()}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stop.wait()
    tail.cancel()
    reader.join(30)
    channel.close()
    cpu = psutil.Process().cpu_times()
    out.put(Followed(whole, sum(seen.values()), errors, cpu.user + cpu.system))


# -- the dashboards -----------------------------------------------------------------------------


@dataclass
class Dashboards:
    """What the viewers ran: each query (origin, started, seconds, error or ''), each refresh
    (dashboard, started, seconds), the refreshes that started late (the one before took longer
    than the refresh interval), the queries in one refresh of each dashboard, the alert rules'
    interval, and the client's CPU."""

    queries: list[tuple[str, float, float, str]]
    refreshes: list[tuple[str, float, float]]
    late: int
    per_dashboard: dict[str, int]
    alert_every_s: float
    cpu_s: float


def view_dashboards(
    port: int, password: str, viewers: int, refresh_s: float, ready: Event, stop: Event,
    out: Queue[Dashboards],
) -> None:  # fmt: skip
    """``viewers`` viewers of every shipped dashboard through the ClickHouse HTTP interface,
    each dashboard refreshed every ``refresh_s`` (the viewers' dashboards staggered evenly over
    the interval), and the alert rules evaluated at their group's interval, until ``stop``. The
    queries are those the Grafana tests send: tests/api/clickhouse_endpoint.py collects them
    with the dashboards' default variables and expands their macros for "now"."""
    sys.path[:0] = [str(REPO / "tests" / d) for d in ("", "api", "grafana")]
    import clickhouse_connect
    import grafana_files
    from clickhouse_connect.driver.httputil import get_pool_manager
    from clickhouse_endpoint import grafana_queries

    boards = list(grafana_files.dashboards())
    groups = grafana_files.load_yaml(grafana_files.RULES_FILE)["groups"]
    alert_every_s = min(grafana_files.parse_duration(g["interval"]).total_seconds() for g in groups)

    def queries_of(board: str) -> list[tuple[str, str]]:
        """A dashboard's queries (ALERTS: the alert rules'), for now."""
        now = dt.datetime.now(dt.UTC)
        queries = grafana_queries(now)
        if board == ALERTS:
            return [(o, sql) for o, sql in queries if o.split(":", 1)[0] not in boards]
        return [(o, sql) for o, sql in queries if o.split(":", 1)[0] == board]

    ran: list[tuple[str, float, float, str]] = []
    refreshes: list[tuple[str, float, float]] = []
    late = [0]

    def run(client: Any, origin: str, sql: str) -> None:
        if stop.is_set():  # the rest of a refresh that was under way
            return
        started = time.monotonic()
        error = ""
        try:
            client.query(sql)
        except Exception as e:  # refused or failed: counted, and the dashboard goes on
            error = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        ran.append((origin, started, time.monotonic() - started, error))

    def refresh(client: Any, board: str, offset_s: float, every_s: float, t0: float) -> None:
        # A dashboard's panels are queried at once, six at a time: what a browser sends to one
        # server over HTTP/1.1 (Grafana then asks the data source for each).
        pool = ThreadPoolExecutor(PANELS_AT_ONCE)
        next_at = t0 + offset_s
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            started = time.monotonic()
            list(pool.map(lambda query: run(client, *query), queries_of(board)))
            refreshes.append((board, started, time.monotonic() - started))
            next_at += every_s
            if next_at < time.monotonic():
                late[0] += 1
                next_at = time.monotonic()
        pool.shutdown()

    def client() -> Any:
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=port, username="grafana", password=password,
            database="tokenotel", autogenerate_session_id=False, send_receive_timeout=120,
            pool_mgr=get_pool_manager(maxsize=PANELS_AT_ONCE),
        )  # fmt: skip

    loops = [
        (client(), board, (viewer * len(boards) + i) * refresh_s / (viewers * len(boards)))
        for viewer in range(viewers)
        for i, board in enumerate(boards)
    ]
    alerts = client()
    ready.set()
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=refresh, args=(c, board, offset, refresh_s, t0))
        for c, board, offset in loops
    ]
    threads.append(threading.Thread(target=refresh, args=(alerts, ALERTS, 0.0, alert_every_s, t0)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = psutil.Process().cpu_times()
    per_dashboard = {board: len(queries_of(board)) for board in [*boards, ALERTS]}
    out.put(
        Dashboards(ran, refreshes, late[0], per_dashboard, alert_every_s, cpu.user + cpu.system)
    )


# -- the store ----------------------------------------------------------------------------------

#: The generated month as a backfill import stores it: an insert an hour, each stamped by its
#: own ingested_at. (With a stamp an event, as bench/query.py loads them, the service would
#: seal ten million one-event inserts on its first start: docs/tamper-evidence.md.)
_EACH_EVENT = "toDateTime64(event_time + INTERVAL 1 SECOND, 3, 'UTC')"
_EACH_HOUR = "toDateTime64(toStartOfHour(event_time) + INTERVAL 1 HOUR, 3, 'UTC')"
if _EACH_EVENT not in INSERT_OURS:
    raise RuntimeError("bench/query.py no longer stamps its events as bench/api.py expects")
HISTORY = INSERT_OURS.replace(_EACH_EVENT, _EACH_HOUR)


def prepare(data_dir: Path, rows: int, sample: int, out: Queue[tuple[int, list[str]]]) -> None:
    """Generates ``rows`` events into the store in ``data_dir`` unless it holds some already;
    answers how many it holds and ``sample`` of its tokens. In a process of its own: the
    server opens the store next, and one process holds a data directory at a time."""
    from tokenotel.config import load_settings
    from tokenotel.store.client import EVENTS_TABLE, Store
    from tokenotel.store.ledger import JOURNAL_FILE, Ledger

    store = Store(load_settings(data_dir=data_dir).store_options)
    try:
        store.connect()
        if not store.query(f"SELECT count() FROM {EVENTS_TABLE}").result_rows[0][0]:
            steps = [  # only the generator takes parameters (the other uses % for modulo)
                ("generating events", GENERATED, {"now": int(time.time()), "rows": rows}),
                ("loading tokenotel layout (with its rollups)", HISTORY, None),
            ]
            for label, sql, parameters in steps:
                start = time.perf_counter()
                with console.status(f"{label} ({rows:,} rows)…"):
                    store.command(sql, parameters)
                console.print(f"{label}: {time.perf_counter() - start:.1f} s")
            store.command("DROP TABLE bench_events")
            start = time.perf_counter()
            with console.status("merging parts…"):  # as a month of ingest leaves them
                for table in OUR_TABLES:
                    store.command(f"OPTIMIZE TABLE {table} FINAL")
                store.command("SYSTEM REFRESH VIEW top_tokens_24h_mv")
                store.command("SYSTEM WAIT VIEW top_tokens_24h_mv")
            console.print(f"merging parts: {time.perf_counter() - start:.1f} s")
            # As a service that ingested them would have: the history sealed in the ledger.
            # (Else the service seals it on its first start, a core for a minute, while it is
            # being measured.)
            start = time.perf_counter()
            sealing = Ledger(store, data_dir / JOURNAL_FILE)
            with console.status("sealing the history in the ledger…"):
                sealing.load()
                sealing.close()
            console.print(f"sealing the history: {time.perf_counter() - start:.1f} s")
        held = store.query(f"SELECT count() FROM {EVENTS_TABLE}").result_rows[0][0]
        tokens = store.query(
            "SELECT token_key FROM token_inventory_state GROUP BY token_key "
            "ORDER BY cityHash64(token_key) LIMIT {sample:UInt64}",
            {"sample": sample},
        ).result_rows
    finally:
        store.close()
    out.put((held, [t[0] for t in tokens]))


# -- measuring ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0.5, 0.99) of ``values``, nearest rank; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Child:
    """A process of the benchmark's own, and the queue for its one result."""

    def __init__(self, context: SpawnContext, target: Callable[..., None], *args: Any) -> None:
        self.name = target.__name__
        self._queue = context.Queue()
        self._process = context.Process(target=target, args=(*args, self._queue), daemon=True)
        self._process.start()

    def wait(self, event: Event, timeout_s: float) -> None:
        """Until the process sets ``event``; exits if it dies or takes longer."""
        deadline = time.monotonic() + timeout_s
        while not event.wait(1):
            self._alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start in {timeout_s:.0f} s")

    def result(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                answer = self._queue.get(timeout=1)
            except queue.Empty:
                self._alive()
                continue
            self._process.join(30)
            return answer
        raise SystemExit(f"{self.name} gave no result in {timeout_s:.0f} s")

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)

    def _alive(self) -> None:
        if not self._process.is_alive():
            raise SystemExit(f"{self.name} died (exit code {self._process.exitcode})")


class Children:
    """The benchmark's own processes, spawned: none inherits this one's gRPC state."""

    def __init__(self) -> None:
        self.context: SpawnContext = multiprocessing.get_context("spawn")
        self._started: list[Child] = []

    def start(self, target: Callable[..., None], *args: Any) -> Child:
        """Runs ``target(*args, queue)``, which puts its result on the queue."""
        child = Child(self.context, target, *args)
        self._started.append(child)
        return child

    def stop_all(self) -> None:
        for child in self._started:
            child.stop()


class LoadAverage:
    """The 1-minute load average, sampled every 5 s under the name of the phase running."""

    def __init__(self) -> None:
        self.before = os.getloadavg()[0]
        self.phase = "setup"
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(5):
            self.samples.setdefault(self.phase, []).append(os.getloadavg()[0])

    def text(self, phase: str) -> str:
        values = self.samples.get(phase, [])
        return f"{min(values):.2f}-{max(values):.2f}" if values else "-"

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Reads:
    """Phase 1: latencies while ingest and the tail run; and, once they have stopped, the
    latencies and the server's CPU a call with no ingest."""

    sent: Sent
    followed: Followed
    ingest_cores: float  # the server's CPU for ingest and tail, before the reads start
    search_ms: list[float]
    search_empty: int  # tokens whose first page held no event
    tokens_ms: list[float]
    tail_delays_s: list[float]
    tail_missing: int  # requests the tail did not have whole
    quiet_search_ms: list[float]
    quiet_search_cpu_s: float
    quiet_tokens_ms: list[float]
    quiet_tokens_cpu_s: float


@dataclass
class Window:
    """One ingest measurement of phase 2."""

    name: str
    sent: Sent
    server_cores: float
    started: float
    ended: float


class Reader:
    """Times query API calls, and the server's CPU while they run."""

    def __init__(self, target: str, server_pid: int) -> None:
        self._channel = grpc.insecure_channel(target)
        self._audit = audit_pb2_grpc.TokenAuditStub(self._channel)
        self._server_pid = server_pid
        self.cpu_s = 0.0  # the server's, during the last searches or pages

    def searches(self, tokens: list[str]) -> tuple[list[float], int]:
        """SearchEvents for each token in turn (the first page, 100 events): the latencies
        (ms), and how many found nothing."""
        times, empty = [], 0
        cpu = cpu_seconds(self._server_pid)
        for token in tokens:
            request = audit_pb2.SearchEventsRequest(filter=audit_pb2.EventFilter(tokens=[token]))
            start = time.perf_counter()
            answer = self._audit.SearchEvents(request, timeout=60)
            times.append((time.perf_counter() - start) * 1000)
            empty += not answer.events
        self.cpu_s = cpu_seconds(self._server_pid) - cpu
        return times, empty

    def token_pages(self, pages: int) -> list[float]:
        """ListTokens, ``pages`` pages of 1,000 in turn from the first: the latencies (ms)."""
        times, page_token = [], ""
        cpu = cpu_seconds(self._server_pid)
        for _ in range(pages):
            request = audit_pb2.ListTokensRequest(page_size=1000, page_token=page_token)
            start = time.perf_counter()
            page = self._audit.ListTokens(request, timeout=60)
            times.append((time.perf_counter() - start) * 1000)
            if len(page.tokens) < 1000 and page.next_page_token:
                raise SystemExit(f"a ListTokens page held {len(page.tokens)} tokens, not 1,000")
            page_token = page.next_page_token
        self.cpu_s = cpu_seconds(self._server_pid) - cpu
        return times

    def close(self) -> None:
        self._channel.close()


def measure_reads(
    children: Children, server_pid: int, grpc_target: str, api_target: str, tokens: list[str],
    args: argparse.Namespace,
) -> Reads:  # fmt: skip
    context = children.context
    ready, tail_stop, send_stop = context.Event(), context.Event(), context.Event()
    completed = context.Value("q", 0, lock=False)
    tail = children.start(follow, api_target, ready, tail_stop, completed)
    tail.wait(ready, 60)
    sender = children.start(send, grpc_target, 0, args.rate, 10, send_stop)
    started = time.monotonic()
    reader = Reader(api_target, server_pid)
    warm_up, loaded = tokens[:3], tokens[3 : 3 + args.searches]
    quiet = tokens[3 + args.searches :]
    reader.searches(warm_up)  # the channel, and the server's reading threads
    reader.token_pages(1)
    with console.status(f"ingest and tail alone for {args.warm_up_s:.0f} s…"):
        cpu = cpu_seconds(server_pid)
        time.sleep(args.warm_up_s)
        ingest_cores = (cpu_seconds(server_pid) - cpu) / args.warm_up_s
    with console.status(f"SearchEvents x {len(loaded)}…"):
        search_ms, empty = reader.searches(loaded)
    with console.status(f"ListTokens x {args.token_pages} pages of 1,000…"):
        tokens_ms = reader.token_pages(args.token_pages)

    with console.status("ingest and tail go on…"):
        time.sleep(max(0.0, started + args.load_s - time.monotonic()))
        send_stop.set()
        sent: Sent = sender.result(120)
        deadline = time.monotonic() + 120  # the tail catches up with the last requests
        while completed.value < len(sent.answered) and time.monotonic() < deadline:
            time.sleep(0.1)
        tail_stop.set()
        followed: Followed = tail.result(60)
    delays = [followed.whole[n] - at for n, _, at in sent.answered if n in followed.whole]

    with console.status("the same reads with no ingest…"):
        quiet_search_ms, _ = reader.searches(quiet)
        quiet_search_cpu_s = reader.cpu_s / len(quiet)
        quiet_pages = max(1, args.token_pages // 10)
        quiet_tokens_ms = reader.token_pages(quiet_pages)
        quiet_tokens_cpu_s = reader.cpu_s / quiet_pages
    reader.close()
    return Reads(
        sent, followed, ingest_cores, search_ms, empty, tokens_ms, delays,
        len(sent.answered) - len(delays), quiet_search_ms, quiet_search_cpu_s, quiet_tokens_ms,
        quiet_tokens_cpu_s,
    )  # fmt: skip


def measure_ingest(
    children: Children, server_pid: int, grpc_target: str, first: int, seconds: float, name: str
) -> Window:
    """Ingest as fast as it goes with 10 requests in flight, for ``seconds``."""
    stop = children.context.Event()
    sender = children.start(send, grpc_target, first, None, 10, stop)
    cpu, started = cpu_seconds(server_pid), time.monotonic()
    with console.status(f"{name}: ingest as fast as it goes for {seconds:.0f} s…"):
        time.sleep(seconds)
        stop.set()
        sent: Sent = sender.result(120)
    ended = time.monotonic()
    cores = (cpu_seconds(server_pid) - cpu) / (ended - started)
    return Window(name, sent, cores, started, ended)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000, help="events generated")
    parser.add_argument("--rate", type=float, default=20_000, help="phase 1 ingest, events/s")
    parser.add_argument("--searches", type=int, default=300, help="SearchEvents calls")
    parser.add_argument("--token-pages", type=int, default=50, help="ListTokens calls")
    parser.add_argument(
        "--quiet-searches", type=int, default=50, help="SearchEvents calls with no ingest"
    )
    parser.add_argument("--warm-up-s", type=float, default=10, help="phase 1 ingest alone")
    parser.add_argument("--load-s", type=float, default=60, help="phase 1 ingest, at least")
    parser.add_argument("--window-s", type=float, default=30, help="each phase 2 measurement")
    parser.add_argument("--viewers", type=int, default=1, help="viewers of every dashboard")
    parser.add_argument("--refresh-s", type=float, default=30, help="dashboard refresh interval")
    parser.add_argument("--data-dir", type=Path, help="store to use (generated when empty); kept")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    loads = LoadAverage()
    work = Path(tempfile.mkdtemp(prefix="tokenotel-bench-api-"))
    data_dir = args.data_dir or work / "data"
    children = Children()
    server: subprocess.Popen[bytes] | None = None
    try:
        sample = 3 + args.searches + args.quiet_searches
        preparing = children.start(prepare, data_dir, args.rows, sample)
        held, tokens = preparing.result(3 * 3600)
        password = secrets.token_urlsafe(16)
        password_file = work / "grafana.password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        grpc_port, http_port, api_port, clickhouse_port = (free_port() for _ in range(4))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENOTEL_", "OTEL_"))}
        log_path = work / "serve.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "tokenotel", "serve", "--data-dir", str(data_dir),
             "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}",
             "--api-listen", f"127.0.0.1:{api_port}",
             "--clickhouse-listen", f"127.0.0.1:{clickhouse_port}",
             "--clickhouse-password-file", str(password_file)],
            stdout=subprocess.DEVNULL, stderr=log_path.open("w"), env=env,
        )  # fmt: skip
        with console.status("starting tokenotel serve…"):
            serve = f"tokenotel serve (see {log_path})"
            wait_ready(f"http://127.0.0.1:{http_port}/readyz", serve, 120)
            wait_ready(f"http://127.0.0.1:{clickhouse_port}/ping", serve, 120)
        grpc_target, api_target = f"127.0.0.1:{grpc_port}", f"127.0.0.1:{api_port}"

        loads.phase = "reads"
        console.print(f"phase 1: reads while {args.rate:,.0f} events/s are ingested")
        reads = measure_reads(children, server.pid, grpc_target, api_target, tokens, args)

        loads.phase = "ingest"
        console.print("phase 2: ingest with and without a dashboard load")
        quiet = measure_ingest(
            children, server.pid, grpc_target, 10**8, args.window_s, name="no query load"
        )
        context = children.context
        ready, stop = context.Event(), context.Event()
        viewers = children.start(
            view_dashboards, clickhouse_port, password, args.viewers, args.refresh_s, ready, stop
        )
        viewers.wait(ready, 120)
        with console.status("dashboards warming up (one refresh)…"):
            time.sleep(args.refresh_s)
        loaded = measure_ingest(
            children, server.pid, grpc_target, 2 * 10**8, args.window_s, name="dashboard load"
        )
        stop.set()
        dashboards: Dashboards = viewers.result(300)
        quiet_again = measure_ingest(
            children, server.pid, grpc_target, 3 * 10**8, args.window_s, name="no query load"
        )
        loads.phase = "done"
    finally:
        children.stop_all()
        if server is not None:
            server.terminate()
            server.wait(120)
    loads.stop()

    stored = count_events(data_dir)
    windows = [quiet, loaded, quiet_again]
    expected = held + reads.sent.events + sum(w.sent.events for w in windows)
    report(args, held, stored, expected, reads, windows, dashboards, loads)
    if not (args.keep or args.data_dir):
        shutil.rmtree(work, ignore_errors=True)
    else:
        console.print(f"kept: {data_dir} (service log: {log_path})")

    failures = reads.sent.failures + [f for w in windows for f in w.sent.failures]
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, the first: {failures[0]}")
    if stored != expected:
        raise SystemExit(f"stored {stored:,} events but expected {expected:,}")
    if reads.tail_missing or reads.followed.errors:
        raise SystemExit(
            f"the tail missed events of {reads.tail_missing} requests "
            f"({'; '.join(reads.followed.errors) or 'no error'})"
        )


def report(
    args: argparse.Namespace, held: int, stored: int, expected: int, reads: Reads,
    windows: list[Window], board: Dashboards, loads: LoadAverage,
) -> None:  # fmt: skip
    quiet, loaded, quiet_again = windows
    quiet_rate = (quiet.sent.events_per_s + quiet_again.sent.events_per_s) / 2
    kept_pct = loaded.sent.events_per_s / quiet_rate * 100
    search_p50, search_p99 = percentile(reads.search_ms, 0.5), percentile(reads.search_ms, 0.99)
    tokens_p50 = percentile(reads.tokens_ms, 0.5)
    tail_p99_ms = percentile(reads.tail_delays_s, 0.99) * 1000
    # Queries that ran during the window (a query waits its turn: many began before it).
    in_window = [q for q in board.queries if q[1] < loaded.ended and q[1] + q[2] > loaded.started]
    query_s = [q[2] for q in in_window]
    errors = [q[3] for q in in_window if q[3]]
    refresh_s = [r[2] for r in board.refreshes if loaded.started <= r[1] < loaded.ended]
    boards = [name for name in board.per_dashboard if name != ALERTS]
    per_refresh = sum(board.per_dashboard[name] for name in boards)

    def ms(values: list[float], scale: float = 1.0) -> str:
        return " / ".join(f"{percentile(values, q) * scale:,.1f}" for q in (0.5, 0.99, 1.0))

    table = Table(title=f"tokenotel API benchmark (embedded store, {os.cpu_count()} cores)")
    for name in ("figure", "value", "target"):
        table.add_column(name)
    rows = [
        ("events in the store at start / at the end", f"{held:,} / {stored:,}", ""),
        ("phase 1: ingest paced to", f"{args.rate:,.0f} events/s, requests of 1,000", ""),
        ("  achieved", f"{reads.sent.events_per_s:,.0f} events/s", ""),
        ("  most behind schedule", f"{reads.sent.behind_s * 1000:,.0f} ms", ""),
        ("  Export p50 / p99", f"{reads.sent.export_ms(0.5):,.0f} / "
         f"{reads.sent.export_ms(0.99):,.0f} ms", ""),
        ("  server CPU for ingest and tail", f"{reads.ingest_cores:.2f} cores", ""),
        (f"SearchEvents, one token ({len(reads.search_ms)} tokens, page 100), p50 / p99 / max",
         f"{ms(reads.search_ms)} ms", "p50 ≤ 20, p99 ≤ 100"),
        ("  tokens with no events", f"{reads.search_empty}", ""),
        (f"ListTokens, {len(reads.tokens_ms)} pages of 1,000, p50 / p99 / max",
         f"{ms(reads.tokens_ms)} ms", "p50 ≤ 50"),
        (f"TailEvents delay after the Export answer ({len(reads.tail_delays_s)} requests), "
         "p50 / p99 / max", f"{ms(reads.tail_delays_s, 1000)} ms", "p99 ≤ 1,000"),
        ("  events the tail read", f"{reads.followed.events:,}", ""),
        (f"with no ingest: SearchEvents ({len(reads.quiet_search_ms)}), p50 / p99 / max",
         f"{ms(reads.quiet_search_ms)} ms", ""),
        ("  server CPU a call", f"{reads.quiet_search_cpu_s * 1000:,.1f} ms", ""),
        (f"  ListTokens ({len(reads.quiet_tokens_ms)} pages), p50 / p99 / max",
         f"{ms(reads.quiet_tokens_ms)} ms", ""),
        ("  server CPU a call", f"{reads.quiet_tokens_cpu_s * 1000:,.1f} ms", ""),
        ("phase 2: ingest, no query load (before / after)",
         f"{quiet.sent.events_per_s:,.0f} / {quiet_again.sent.events_per_s:,.0f} events/s", ""),
        ("  with the dashboard load", f"{loaded.sent.events_per_s:,.0f} events/s", ""),
        ("  kept under load (of the mean without)", f"{kept_pct:.1f} %", "≥ 85 %"),
        ("  Export p99 without / with load",
         f"{quiet.sent.export_ms(0.99):,.0f} / {loaded.sent.export_ms(0.99):,.0f} ms", ""),
        ("  server CPU without / with load",
         f"{quiet.server_cores:.2f} / {loaded.server_cores:.2f} cores", ""),
        ("dashboard load", f"{args.viewers} viewers x {len(boards)} dashboards "
         f"({per_refresh} panel and variable queries), each refreshed every "
         f"{args.refresh_s:.0f} s, staggered; {board.per_dashboard[ALERTS]} alert queries every "
         f"{board.alert_every_s:.0f} s", ""),
        ("  queries running in the window", f"{len(in_window):,}, {len(errors)} failed"
         f"{': ' + errors[0] if errors else ''}", ""),
        ("  query p50 / p99 / max", f"{ms(query_s, 1000)} ms", ""),
        ("  refresh (all panels) p50 / max",
         f"{percentile(refresh_s, 0.5):.2f} / {percentile(refresh_s, 1.0):.2f} s; "
         f"{board.late} late", ""),
        ("client CPU: sender (phase 1) / tail / viewers",
         f"{reads.sent.cpu_s:.0f} / {reads.followed.cpu_s:.0f} / {board.cpu_s:.0f} s", ""),
        ("load average (1 min): before / phase 1 / phase 2",
         f"{loads.before:.2f} / {loads.text('reads')} / {loads.text('ingest')}", ""),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    slowest = Table(title="the slowest dashboard queries under load (as the client saw them)")
    for name in ("query", "runs", "p50 ms", "max ms"):
        slowest.add_column(name, justify="left" if name == "query" else "right")
    by_origin: dict[str, list[float]] = {}
    for origin, _, seconds, _ in in_window:
        by_origin.setdefault(origin, []).append(seconds * 1000)
    for origin, times in sorted(by_origin.items(), key=lambda o: -percentile(o[1], 0.5))[:8]:
        p50 = percentile(times, 0.5)
        slowest.add_row(origin, str(len(times)), f"{p50:,.0f}", f"{max(times):,.0f}")
    Console().print(slowest)
    if stored != expected:
        console.print(f"[red]stored {stored:,} events, expected {expected:,}[/red]")
    print(
        f"search_p50_ms={search_p50:.1f} search_p99_ms={search_p99:.1f} "
        f"tokens_p50_ms={tokens_p50:.1f} tail_p99_ms={tail_p99_ms:.0f} "
        f"ingest_kept_pct={kept_pct:.1f}"
    )


if __name__ == "__main__":
    main()
