"""Outage: events keep flowing through gateway.yaml while tokenotel is killed (SIGKILL), the
collector is restarted on its persistent queue, and tokenotel comes back on the same data
directory and ports -- every event is stored exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from otelcol import CollectorProcess, wait_until

from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import RECENT_NS
from processes import ServeProcess, kill_serve, query_json, stored_row_count

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

EVENTS = 240
#: The sender emits one event (one OTLP request) about every PACE_S while it is not paused.
PACE_S = 0.01
#: Longest a step may take (a collector or serve start, the queue draining after the outage).
STEP_TIMEOUT_S = 120
EXPORTER = "otlp_grpc/tokenotel"
RESOURCE = {"service.name": "checkout-api", "deployment.environment.name": "prod"}


def request_id(i: int) -> str:
    return f"req-{i:05d}"


class Sender(threading.Thread):
    """Emits EVENTS numbered token events through the SDK (one OTLP/gRPC request each, retried
    by the SDK while the collector is away); before event ``i`` in ``gates`` it waits until the
    test opens that gate, so each phase of the outage sees traffic."""

    def __init__(self, target: str, gates: dict[int, threading.Event]) -> None:
        super().__init__(name="token-event-sender", daemon=True)
        # timeout: the SDK retries UNAVAILABLE (1, 2, 4 ... s) within it, which covers the
        # collector's restart.
        self.exporter = CheckedExporter(GrpcLogExporter(endpoint=target, insecure=True, timeout=60))
        self.gates = gates
        self.abort = threading.Event()
        self.emitted = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        provider = logger_provider(self.exporter, RESOURCE)
        try:
            logger = provider.get_logger("checkout.auth")
            for i in range(EVENTS):
                if self.abort.is_set():
                    return
                gate = self.gates.get(i)
                if gate is not None and not gate.wait(STEP_TIMEOUT_S):
                    raise TimeoutError(f"gate before event {i} was never opened")
                ns = RECENT_NS + i * 1_000_000
                logger.emit(
                    event_name="token.used",
                    timestamp=ns,
                    observed_timestamp=ns + 1_000,
                    attributes={
                        "token.id": f"tok_{i % 12}",
                        "token.request.id": request_id(i),
                        "client.address": f"198.51.100.{i % 200}",
                        "sequence": i,
                    },
                )
                self.emitted = i + 1
                time.sleep(PACE_S)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            provider.shutdown()


def test_every_event_arrives_exactly_once_across_tokenotel_and_collector_restarts(
    serve_factory: Callable[..., ServeProcess],
    collector_factory: Callable[..., CollectorProcess],
) -> None:
    serve = serve_factory()
    collector = collector_factory(
        "gateway.yaml", metrics=True, TOKENOTEL_ENDPOINT=serve.grpc_target
    )
    storage = Path(collector.env["COLLECTOR_STORAGE_DIR"])

    def sent(c: CollectorProcess) -> float:
        return c.metric("otelcol_exporter_sent_log_records", exporter=EXPORTER)

    gates = {EVENTS // 3: threading.Event(), 2 * EVENTS // 3: threading.Event()}
    sender = Sender(collector.grpc_target, gates)
    sender.start()
    try:
        # 1. Events flow all the way; tokenotel is killed in the middle of the stream.
        wait_until(
            lambda: sender.emitted >= EVENTS // 6 and sent(collector) > 0,
            STEP_TIMEOUT_S,
            "events to flow into tokenotel",
        )
        kill_serve(serve)
        gates[EVENTS // 3].set()

        # 2. The collector keeps taking events while tokenotel is down, then restarts.
        wait_until(lambda: sender.emitted >= EVENTS // 2, STEP_TIMEOUT_S, "events to the collector")
        sent_before_restart = sent(collector)
        assert collector.stop() == 0, collector.output()
        collector = collector_factory(
            "gateway.yaml",
            storage_dir=storage,
            metrics=True,
            TOKENOTEL_ENDPOINT=serve.grpc_target,
            GATEWAY_GRPC_ENDPOINT=collector.grpc_target,
        )
        gates[2 * EVENTS // 3].set()

        # 3. tokenotel comes back on the same data directory and ports while events still flow.
        wait_until(
            lambda: sender.emitted >= 5 * EVENTS // 6, STEP_TIMEOUT_S, "events after restart"
        )
        serve = serve_factory(data_dir=serve.data_dir, ports=serve.ports)
    except BaseException:
        sender.abort.set()
        raise
    finally:
        for gate in gates.values():
            gate.set()
        sender.join(STEP_TIMEOUT_S)
    assert not sender.is_alive()
    assert sender.error is None, repr(sender.error)
    # The SDK got every event into one collector or the other.
    assert sender.exporter.results == [LogRecordExportResult.SUCCESS] * EVENTS

    # 4. The restarted collector empties its queue into tokenotel.
    def drained() -> bool:
        return (
            collector.metric("otelcol_exporter_queue_size", exporter=EXPORTER) == 0
            and collector.metric("otelcol_exporter_in_flight_requests", exporter=EXPORTER) == 0
            and sent_before_restart + sent(collector) >= EVENTS
        )

    wait_until(drained, STEP_TIMEOUT_S, f"the queue to drain:\n{collector.output()}")
    # The batch processor may have held the sender's last records for up to its timeout
    # (200 ms) while the queue looked empty: the queue must still be empty after that.
    time.sleep(0.5)
    wait_until(drained, STEP_TIMEOUT_S, f"the queue to drain:\n{collector.output()}")
    assert collector.stop() == 0, collector.output()
    assert serve.stop() == 0, serve.output()

    stored = query_json(serve.data_dir, "--limit", str(10 * EVENTS))
    ids = Counter(e["request_id"] for e in stored)
    # Every event arrived, and nothing else did.
    assert sorted(ids) == [request_id(i) for i in range(EVENTS)]
    assert {e["attributes"]["sequence"] for e in stored} == {str(i) for i in range(EVENTS)}
    # What the outage is about: part of the events went through the persistent queue.
    assert sent_before_restart < EVENTS
    # ... and exactly once (query shows every stored row: the events table does not merge).
    duplicates = sorted(i for i, n in ids.items() if n > 1)
    assert duplicates == []
    assert len(stored) == stored_row_count(serve.data_dir) == EVENTS
