"""Two tokenotel replicas behind loadbalancing.yaml: every event of a token lands on the same
replica, and both replicas receive traffic."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from otelcol import CollectorProcess, wait_until

from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import RECENT_NS
from processes import ServeProcess, query_json

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

TOKENS = [f"tok_lb_{i:02d}" for i in range(20)]
ROUNDS = 4  # events per token, sent in separate rounds (separate collector batches)
SERVICES = ["api", "worker"]  # two senders (resources) for the same tokens
EXPORTER = "load_balancing/tokenotel"
DELIVERY_TIMEOUT_S = 90
#: Longer than the collector's batch timeout (200 ms): each round is a batch of its own.
ROUND_PAUSE_S = 0.3


def test_each_token_sticks_to_one_replica_and_both_replicas_get_traffic(
    serve_factory: Callable[..., ServeProcess],
    collector_factory: Callable[..., CollectorProcess],
) -> None:
    replicas = [serve_factory(), serve_factory()]
    collector = collector_factory(
        "loadbalancing.yaml",
        metrics=True,
        TOKENOTEL_REPLICAS=",".join(r.grpc_target for r in replicas),
    )
    exporters = [
        CheckedExporter(GrpcLogExporter(endpoint=collector.grpc_target, insecure=True, timeout=30))
        for _ in SERVICES
    ]
    providers = [
        logger_provider(exporter, {"service.name": service})
        for exporter, service in zip(exporters, SERVICES, strict=True)
    ]
    loggers = [provider.get_logger("lb.test") for provider in providers]
    expected: dict[str, str] = {}  # request id -> token id
    for n in range(ROUNDS):
        for t, token in enumerate(TOKENS):
            logger = loggers[(n + t) % len(loggers)]
            request_id = f"req-{token}-{n}"
            logger.emit(
                event_name="token.used" if n else "token.created",
                timestamp=RECENT_NS + (n * len(TOKENS) + t) * 1_000_000,
                attributes={"token.id": token, "token.request.id": request_id},
            )
            expected[request_id] = token
        time.sleep(ROUND_PAUSE_S)
    for provider in providers:
        provider.shutdown()
    results = [result for exporter in exporters for result in exporter.results]
    assert results == [LogRecordExportResult.SUCCESS] * len(expected)

    wait_until(
        lambda: (
            collector.metric("otelcol_exporter_sent_log_records", exporter=EXPORTER)
            >= len(expected)
        ),
        DELIVERY_TIMEOUT_S,
        f"{len(expected)} events delivered to the replicas:\n{collector.output()}",
    )
    assert collector.stop() == 0, collector.output()
    for replica in replicas:
        assert replica.stop() == 0, replica.output()

    replica_of: dict[str, set[int]] = defaultdict(set)  # token -> replicas that got it
    received: list[str] = []
    per_replica: list[set[str]] = []
    for index, replica in enumerate(replicas):
        events = query_json(replica.data_dir, "--limit", "10000")
        for event in events:
            assert expected[event["request_id"]] == event["token_id"]
            replica_of[event["token_id"]].add(index)
            received.append(event["request_id"])
        per_replica.append({e["token_id"] for e in events})

    # Every event arrived once, on one replica or the other.
    assert sorted(received) == sorted(expected)
    # All events of a token are on the same replica ...
    assert {token: len(r) for token, r in replica_of.items()} == dict.fromkeys(TOKENS, 1)
    # ... and each replica holds the whole history of its tokens.
    assert per_replica[0].isdisjoint(per_replica[1])
    assert per_replica[0] | per_replica[1] == set(TOKENS)
    # Both replicas receive traffic.
    assert per_replica[0] and per_replica[1], per_replica
