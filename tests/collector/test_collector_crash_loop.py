"""Crash loop: while gateway.yaml feeds it without a pause, tokenotel is killed with SIGKILL
twenty times (half of them in the middle of an insert) and started again, a mapping worker is
killed in the middle of a request, and the collector itself is killed; every event sent is
stored exactly once, and every rollup equals a recount from the events.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
import pytest
from otelcol import CollectorProcess, wait_until

from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import ServeProcess, kill_serve, query_json, stored_row_count
from rollups import rollup_differences_in
from tokenotel.pipeline import JOURNAL_FILE

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

KILLS = 20
RECORDS_A_REQUEST = 50
#: Between the feeder's requests: about 2,500 events a second, a steady stream the service
#: keeps up with between kills (a faster one only makes the queue the test waits for longer).
PACE_S = 0.02
EXPORTER = "otlp_grpc/tokenotel"
#: Longest a step may take (a start, the queue draining at the end).
STEP_TIMEOUT_S = 120
EVENTS = ("token.used", "token.used", "token.used", "token.auth_failed", "token.refreshed")


def request_id(sequence: int) -> str:
    return f"req-{sequence:07d}"


class Feeder(threading.Thread):
    """Sends numbered token events to the gateway without a pause, a request of
    RECORDS_A_REQUEST every PACE_S; a request that fails (the collector is down) is sent again
    until it is answered. ``pause`` holds it between requests."""

    def __init__(self, target: str) -> None:
        super().__init__(name="feeder", daemon=True)
        self.target = target
        self.sent = 0  # events the gateway acknowledged
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.paused = threading.Event()
        self.error: BaseException | None = None

    def request(self) -> bytes:
        records = []
        for sequence in range(self.sent, self.sent + RECORDS_A_REQUEST):
            token = f"tok_{sequence % 37}"
            name = EVENTS[sequence % len(EVENTS)]
            records.append(
                log_record(
                    name,
                    {
                        "token.id": token,
                        "token.request.id": request_id(sequence),
                        "user.id": f"user{sequence % 11}",
                        "client.address": f"198.51.100.{sequence % 53}",
                        "token.scopes": ["repo", f"scope{sequence % 3}"],
                    },
                    # One event a millisecond over a few hours: several months never.
                    time_unix_nano=RECENT_NS + sequence * 1_000_000,
                )
            )
        return export_request(*records, resource={"service.name": "api"}).SerializeToString()

    def run(self) -> None:
        try:
            with grpc.insecure_channel(self.target) as channel:
                body = self.request()
                while not self.stop.is_set():
                    if self.pause.is_set():
                        self.paused.set()
                        time.sleep(0.05)
                        continue
                    self.paused.clear()
                    try:
                        grpc_export(channel, body)
                    except grpc.RpcError:
                        time.sleep(0.2)  # the collector is down: the same request again
                        continue
                    self.sent += RECORDS_A_REQUEST
                    body = self.request()
                    time.sleep(PACE_S)
        except BaseException as e:  # reported by the test
            self.error = e


def wait_for_insert(journal: Path) -> None:
    """Until an insert is in progress (its journal file exists): events flow again after a
    restart (the collector retries with a growing pause). Polled every millisecond: an
    insert lasts some tens of them."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not journal.exists():
        assert time.monotonic() < deadline, "no insert after a restart"
        time.sleep(0.001)


def test_every_event_is_stored_once_through_twenty_kills(
    serve_factory: Callable[..., ServeProcess],
    collector_factory: Callable[..., CollectorProcess],
) -> None:
    seed = time.time_ns()
    print(f"crash loop seed {seed}")
    rng = random.Random(seed)
    serve = serve_factory()
    ports = serve.ports
    journal = serve.data_dir / JOURNAL_FILE
    collector = collector_factory(
        "gateway.yaml", metrics=True, TOKENOTEL_ENDPOINT=serve.grpc_target
    )
    storage = Path(collector.env["COLLECTOR_STORAGE_DIR"])
    feeder = Feeder(collector.grpc_target)
    feeder.start()
    try:
        for kill in range(KILLS):
            wait_for_insert(journal)
            if kill % 2 == 0:  # at a random moment; else in the middle of this insert
                time.sleep(rng.uniform(0, 1.5))
            kill_serve(serve)
            time.sleep(rng.uniform(0, 0.5))
            serve = serve_factory(data_dir=serve.data_dir, ports=ports)
            if kill == KILLS // 2:
                # A mapping worker dies in the middle of a request: that request is answered
                # retryable and the collector sends it again.
                time.sleep(rng.uniform(0.3, 1.0))
                workers = psutil.Process(serve.proc.pid).children()
                rng.choice(workers).kill()
            if kill == KILLS // 4:
                # The collector dies with records on disk that tokenotel has not acknowledged.
                # (Between requests of the feeder: a kill between taking a request and
                # answering it makes the feeder send it again, and then the collector holds
                # it twice, which only ids given by the feeder itself would tell apart.)
                feeder.pause.set()
                assert feeder.paused.wait(STEP_TIMEOUT_S)
                collector.proc.kill()
                collector.proc.wait()
                collector = collector_factory(
                    "gateway.yaml",
                    storage_dir=storage,
                    metrics=True,
                    TOKENOTEL_ENDPOINT=serve.grpc_target,
                    GATEWAY_GRPC_ENDPOINT=collector.grpc_target,
                )
                feeder.pause.clear()
    finally:
        feeder.stop.set()
        feeder.join(STEP_TIMEOUT_S)
    assert feeder.error is None, repr(feeder.error)

    def drained() -> bool:
        return (
            collector.metric("otelcol_exporter_queue_size", exporter=EXPORTER) == 0
            and collector.metric("otelcol_exporter_in_flight_requests", exporter=EXPORTER) == 0
        )

    wait_until(drained, STEP_TIMEOUT_S, f"the queue to drain:\n{collector.output()}")
    time.sleep(0.5)  # a batch still forming in the queue's batcher shows as empty queue
    wait_until(drained, STEP_TIMEOUT_S, f"the queue to drain:\n{collector.output()}")
    assert collector.stop() == 0, collector.output()
    assert serve.stop() == 0, serve.output()

    settled = serve.output().count("an insert was interrupted")  # (one log for every start)
    print(f"{feeder.sent} events sent, {KILLS} kills, {settled} interrupted inserts settled")
    assert settled >= 1  # the kills did land inside inserts
    stored = query_json(serve.data_dir, "--limit", str(2 * feeder.sent))
    assert sorted(e["request_id"] for e in stored) == [request_id(i) for i in range(feeder.sent)]
    assert stored_row_count(serve.data_dir) == feeder.sent
    assert rollup_differences_in(serve.data_dir) == {}
