"""OTel SDK → collector (gateway.yaml) → ``tokenotel serve`` → store, checked field by field.

Applications send everything they log to the gateway; only token events may reach tokenotel,
and each must arrive exactly as tokenotel would have stored it had the SDK sent it directly.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from otelcol import serve_behind_collector, wait_until

from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import RECENT_NS, rfc3339_ms, rfc3339_ns
from processes import EMPTY_EVENT, query_json, run_cli

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

T0 = RECENT_NS
SECOND = 1_000_000_000
DELIVERY_TIMEOUT_S = 60
EXPORTER = "otlp_grpc/tokenotel"
#: A GitHub-shaped personal access token, fresh for every run: it must never be stored.
RAW_TOKEN = "ghp_" + "".join(
    secrets.choice(string.ascii_letters + string.digits) for _ in range(36)
)
EXPIRES_MS = T0 // 1_000_000 + 30 * 86_400_000 + 250
ISSUED_S = T0 // SECOND - 7200

APP = {"service.name": "billing-api", "deployment.environment.name": "prod", "k8s.pod.name": "b-1"}
EDGE = {"service.name": "edge-proxy"}

#: A stored event whose sender set nothing but its name (and an identity).
DEFAULTS: dict[str, Any] = {
    **EMPTY_EVENT,
    "service_name": "billing-api",
    "environment": "prod",
    "scope_name": "billing.auth",
    "resource_attributes": {"k8s.pod.name": "b-1"},
}
#: Stands for the fingerprint of RAW_TOKEN, which only the stopped service's key can tell.
FINGERPRINT = "<fingerprint of RAW_TOKEN>"


def at(seconds: int) -> dict[str, Any]:
    ns = T0 + seconds * SECOND + 123_456_789
    return {"timestamp": ns, "observed_timestamp": ns + 5_000}


def stored_at(seconds: int) -> dict[str, str]:
    ns = T0 + seconds * SECOND + 123_456_789
    return {"time": rfc3339_ns(ns), "observed_time": rfc3339_ns(ns + 5_000)}


# (what the SDK emits over OTLP/gRPC, what query must return for it); None = must not arrive.
GRPC_CASES: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    (
        {
            "event_name": "token.created",
            **at(1),
            "severity_number": SeverityNumber.INFO,
            "severity_text": "INFO",
            "body": "token created for alice",
            "attributes": {
                "token.id": "tok_gw_1",
                "token.value": RAW_TOKEN,
                "token.type": "pat",
                "token.name": "deploy key",
                "user.id": "alice",
                "token.actor.id": "admin-1",
                "token.scopes": ["repo", "read:org", "workflow"],
                "token.expires_at": rfc3339_ms(EXPIRES_MS),
                "token.issued_at": ISSUED_S,
                "client.address": "203.0.113.7",
                "token.request.id": "req-gw-1",
                "token.source": "github",
                "ticket": "CHG-42",
                "approval.count": 2,
                "mfa": True,
                "risk.score": 0.25,
                "labels": ["ci", "ops"],
            },
        },
        {
            **stored_at(1),
            "event_name": "token.created",
            "token_status": "active",
            "severity_number": 9,
            "severity_text": "INFO",
            "body": "token created for alice",
            "token_id": "tok_gw_1",
            "token_fingerprint": FINGERPRINT,
            "token_type": "pat",
            "token_name": "deploy key",
            "principal_id": "alice",
            "actor_id": "admin-1",
            "scopes": ["repo", "read:org", "workflow"],
            "expires_at": rfc3339_ms(EXPIRES_MS),
            "issued_at": rfc3339_ms(ISSUED_S * 1000),
            "client_ip": "203.0.113.7",
            "request_id": "req-gw-1",
            "source": "github",
            "attributes": {
                "ticket": "CHG-42",
                "approval.count": "2",
                "mfa": "true",
                "risk.score": "0.25",
                "labels": '["ci","ops"]',
            },
        },
    ),
    (
        {
            "event_name": "token.used",
            **at(2),
            "attributes": {
                "token.id": "tok_gw_1",
                "token.value": RAW_TOKEN,
                "client.address": "2001:db8:85a3::8a2e:370:7334",
                "user_agent.original": "gh-cli/2.40 (linux)",
                "http.request.method": "POST",
                "http.route": "/repos/{owner}/{repo}/issues",
                "url.path": "/repos/acme/api/issues",
                "http.response.status_code": 201,
                "token.scopes": ["repo"],
                "token.expires_at": EXPIRES_MS,
                "token.request.id": "req-gw-2",
            },
        },
        {
            **stored_at(2),
            "event_name": "token.used",
            "token_status": "active",
            "token_id": "tok_gw_1",
            "token_fingerprint": FINGERPRINT,
            "client_ip": "2001:db8:85a3::8a2e:370:7334",
            "user_agent": "gh-cli/2.40 (linux)",
            "http_method": "POST",
            "http_route": "/repos/{owner}/{repo}/issues",
            "url_path": "/repos/acme/api/issues",
            "http_status": 201,
            "scopes": ["repo"],
            "expires_at": rfc3339_ms(EXPIRES_MS),
            "request_id": "req-gw-2",
        },
    ),
    # Not token events: dropped by the collector.
    ({"event_name": "http.server.request", **at(3), "attributes": {"token.id": "tok_gw_1"}}, None),
    ({"body": "GET /healthz 200", **at(3)}, None),
    ({**at(3), "attributes": {"event.name": "user.login", "token.id": "tok_gw_1"}}, None),
    (
        {
            "event_name": "token.auth_failed",
            **at(4),
            "severity_number": SeverityNumber.WARN,
            "severity_text": "WARN",
            "attributes": {
                "token.id": "tok_gw_2",
                "token.failure_reason": "expired",
                "client.address": "198.51.100.23",
                "http.request.method": "GET",
                "url.path": "/api/v1/invoices",
                "http.response.status_code": 401,
                "token.expires_at": (T0 // SECOND) - 60,
            },
        },
        {
            **stored_at(4),
            "event_name": "token.auth_failed",
            "outcome": "failure",
            "failure_reason": "expired",
            "severity_number": 13,
            "severity_text": "WARN",
            "token_id": "tok_gw_2",
            "client_ip": "198.51.100.23",
            "http_method": "GET",
            "url_path": "/api/v1/invoices",
            "http_status": 401,
            "expires_at": rfc3339_ms((T0 // SECOND - 60) * 1000),
            "token_status": "expired",
        },
    ),
    # The deprecated event.name attribute still makes a token event.
    (
        {
            **at(5),
            "attributes": {
                "event.name": "token.revoked",
                "token.id": "tok_gw_2",
                "token.reason": "leak",
                "token.actor.id": "secbot",
            },
        },
        {
            **stored_at(5),
            "event_name": "token.revoked",
            "token_status": "revoked",
            "token_id": "tok_gw_2",
            "reason": "leak",
            "actor_id": "secbot",
        },
    ),
]

# The gateway's OTLP/HTTP receiver, fed by the SDK's HTTP/protobuf exporter.
HTTP_CASES: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    (
        {
            "event_name": "token.used",
            **at(6),
            "attributes": {
                "token.id": "tok_gw_3",
                "client.address": "192.0.2.10",
                "token.scopes": "read:packages write:packages",
                "token.tenant": "acme",
                "note": "via OTLP/HTTP",
            },
        },
        {
            **stored_at(6),
            "event_name": "token.used",
            "token_id": "tok_gw_3",
            "client_ip": "192.0.2.10",
            "scopes": ["read:packages", "write:packages"],
            "tenant": "acme",
            "attributes": {"note": "via OTLP/HTTP"},
            "service_name": "edge-proxy",
            "environment": "",
            "scope_name": "edge.auth",
            "resource_attributes": {},
        },
    ),
    ({"event_name": "proxy.access", **at(6), "attributes": {"token.id": "tok_gw_3"}}, None),
]
CASES = GRPC_CASES + HTTP_CASES
TOKEN_EVENTS = sum(expected is not None for _, expected in CASES)
OTHER_RECORDS = len(CASES) - TOKEN_EVENTS


@dataclass
class Delivered:
    data_dir: Path
    sent_by_exporter: float
    filtered_by_collector: float
    collector_log: str


def send(exporter: LogRecordExporter, resource: dict[str, Any], scope: str, cases: list) -> None:
    checked = CheckedExporter(exporter)
    provider = logger_provider(checked, resource)
    logger = provider.get_logger(scope)
    for emit, _ in cases:
        logger.emit(**emit)
    provider.shutdown()
    assert checked.results == [LogRecordExportResult.SUCCESS] * len(cases)


@pytest.fixture(scope="module")
def delivered(
    tmp_path_factory: pytest.TempPathFactory, collector_binary: Path
) -> Iterator[Delivered]:
    """Sends CASES through the SDK into gateway.yaml in front of serve, waits until the collector
    has delivered every token event, stops both; yields the data directory."""
    root = tmp_path_factory.mktemp("gateway")
    with serve_behind_collector(root, "gateway.yaml") as (_, collector):
        grpc_exporter = GrpcLogExporter(endpoint=collector.grpc_target, insecure=True, timeout=30)
        send(grpc_exporter, APP, "billing.auth", GRPC_CASES)
        http_exporter = HttpLogExporter(
            endpoint=collector.logs_url, compression=Compression.Gzip, timeout=30
        )
        send(http_exporter, EDGE, "edge.auth", HTTP_CASES)

        def sent() -> float:
            return collector.metric("otelcol_exporter_sent_log_records", exporter=EXPORTER)

        wait_until(
            lambda: sent() >= TOKEN_EVENTS,
            DELIVERY_TIMEOUT_S,
            f"the collector to deliver {TOKEN_EVENTS} token events:\n{collector.output()}",
        )
        sent_by_exporter = sent()
        filtered = collector.metric("otelcol_processor_filter_logs_filtered")
    result = Delivered(root / "data", sent_by_exporter, filtered, collector.output())
    yield result


def expected_events(fingerprint: str) -> list[dict[str, Any]]:
    events = []
    for _, expected in CASES:
        if expected is None:
            continue
        event = DEFAULTS | expected
        if event["token_fingerprint"] == FINGERPRINT:
            event["token_fingerprint"] = fingerprint
        events.append(event)
    return events


def test_the_collector_forwards_token_events_and_drops_the_rest(delivered: Delivered) -> None:
    assert delivered.sent_by_exporter == TOKEN_EVENTS
    assert delivered.filtered_by_collector == OTHER_RECORDS


def test_every_token_event_arrives_field_by_field(delivered: Delivered) -> None:
    fingerprint = run_cli("fingerprint", "--data-dir", str(delivered.data_dir), stdin=RAW_TOKEN)
    assert fingerprint.returncode == 0, fingerprint.stderr
    current = fingerprint.stdout.splitlines()[0]  # (the last line: GitHub's hash of it)
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]+:[0-9a-f]{64}", current)
    assert query_json(delivered.data_dir) == expected_events(current)


def test_non_token_records_do_not_arrive(delivered: Delivered) -> None:
    events = query_json(delivered.data_dir)
    assert {e["event_name"] for e in events} == {
        "token.created",
        "token.used",
        "token.auth_failed",
        "token.revoked",
    }
    assert not [e for e in events if e["time"] == stored_at(3)["time"]]


def test_the_raw_token_is_found_by_its_fingerprint_and_shown_nowhere(delivered: Delivered) -> None:
    fingerprint = run_cli("fingerprint", "--data-dir", str(delivered.data_dir), stdin=RAW_TOKEN)
    by_token = run_cli(
        "query", "--data-dir", str(delivered.data_dir), "--format", "json",
        "--token", fingerprint.stdout.splitlines()[0],
    )  # fmt: skip
    assert by_token.returncode == 0, by_token.stderr
    assert [e["request_id"] for e in map(json.loads, by_token.stdout.splitlines())] == [
        "req-gw-1",
        "req-gw-2",
    ]
    everything = run_cli("query", "--data-dir", str(delivered.data_dir), "--format", "csv")
    assert RAW_TOKEN not in everything.stdout + by_token.stdout
    assert RAW_TOKEN not in delivered.collector_log
