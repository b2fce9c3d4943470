"""OTel SDK exporters → ``tokenotel serve`` (subprocess) → embedded store → ``tokenotel query``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.json.http._log_exporter import (
    OTLPLogExporter as JsonHttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as ProtobufHttpLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_sdk import CheckedExporter, logger_provider, span_context
from otlp_builders import RECENT_NS, rfc3339_ms, rfc3339_ns
from processes import EMPTY_EVENT, ServeProcess, query_json, run_cli, start_serve

pytestmark = pytest.mark.e2e  # starts tokenotel processes

T0 = RECENT_NS
SECOND = 1_000_000_000
MS_PER_DAY = 86_400_000
EXPIRES_MS = T0 // 1_000_000 + 90 * MS_PER_DAY + 678  # a quarter after creation
ISSUED_S = T0 // SECOND - 3600
TRACE_1, SPAN_1 = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
TRACE_2, SPAN_2 = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331

RESOURCE = {
    "service.name": "billing-api",
    "deployment.environment.name": "prod",
    "cloud.region": "eu-west-1",
    "k8s.pod.name": "billing-7f9c",
}

#: What every stored event looks like when the sender set nothing but its name and token.
DEFAULTS: dict[str, Any] = {
    **EMPTY_EVENT,
    "service_name": "billing-api",
    "environment": "prod",
    "scope_name": "billing.auth",
    "resource_attributes": {"cloud.region": "eu-west-1", "k8s.pod.name": "billing-7f9c"},
}

# (what the SDK is asked to emit, what query must return for it); None = must not be stored.
CASES: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    (
        {
            "event_name": "token.created",
            "timestamp": T0 + 123_456_789,
            "observed_timestamp": T0 + 223_456_789,
            "severity_number": SeverityNumber.INFO,
            "severity_text": "INFO",
            "body": "token créé pour alice ✓",
            "context": span_context(TRACE_1, SPAN_1),
            "attributes": {
                "token.id": "tok_alpha",
                "token.type": "pat",
                "token.name": "déploiement ключ 🚀",
                "token.hint": "…a1b2",
                "user.id": "alice@example.com",
                "token.principal.type": "user",
                "token.actor.id": "admin-1",
                "token.tenant": "acme",
                "token.scopes": ["repo", "read:org", "workflow"],
                "token.expires_at": rfc3339_ms(EXPIRES_MS),
                "token.issued_at": ISSUED_S,
                "client.address": "203.0.113.7",
                "geo.country.iso_code": "DE",
                "token.client.asn": 64500,
                "token.source": "github",
                "token.request.id": "req-1",
                "ticket": "CHG-1234",
                "approval.count": 2,
                "mfa": True,
                "risk.score": 0.25,
                "labels": ["ci", "ops"],
            },
        },
        {
            "time": rfc3339_ns(T0 + 123_456_789),
            "observed_time": rfc3339_ns(T0 + 223_456_789),
            "event_name": "token.created",
            "token_status": "active",
            "severity_number": 9,
            "severity_text": "INFO",
            "body": "token créé pour alice ✓",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "token_id": "tok_alpha",
            "token_type": "pat",
            "token_name": "déploiement ключ 🚀",
            "token_hint": "…a1b2",
            "principal_id": "alice@example.com",
            "principal_type": "user",
            "actor_id": "admin-1",
            "tenant": "acme",
            "scopes": ["repo", "read:org", "workflow"],
            "expires_at": rfc3339_ms(EXPIRES_MS),
            "issued_at": rfc3339_ms(ISSUED_S * 1000),
            "client_ip": "203.0.113.7",
            "country": "DE",
            "asn": 64500,
            "source": "github",
            "request_id": "req-1",
            "attributes": {
                "ticket": "CHG-1234",
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
            "timestamp": T0 + 1 * SECOND,
            "observed_timestamp": T0 + 1 * SECOND + 5,
            "body": {"message": "issue opened", "count": 3},
            "context": span_context(TRACE_2, SPAN_2),
            "attributes": {
                "token.id": "tok_alpha",
                "client.address": "2001:db8:85a3::8a2e:370:7334",
                "http.request.method": "POST",
                "http.route": "/repos/{owner}/{repo}/issues",
                "url.path": "/repos/acme/api/issues",
                "http.response.status_code": 201,
                "user_agent.original": "gh-cli/2.40 (linux)",
                "token.scopes": "repo read:org",
            },
        },
        {
            "time": rfc3339_ns(T0 + 1 * SECOND),
            "observed_time": rfc3339_ns(T0 + 1 * SECOND + 5),
            "event_name": "token.used",
            "token_status": "active",
            "body": '{"message":"issue opened","count":3}',
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
            "token_id": "tok_alpha",
            "client_ip": "2001:db8:85a3::8a2e:370:7334",
            "http_method": "POST",
            "http_route": "/repos/{owner}/{repo}/issues",
            "url_path": "/repos/acme/api/issues",
            "http_status": 201,
            "user_agent": "gh-cli/2.40 (linux)",
            "scopes": ["repo", "read:org"],
        },
    ),
    (
        {"event_name": "http.server.request", "timestamp": T0, "attributes": {"token.id": "x"}},
        None,
    ),
    ({"body": "an ordinary log line", "timestamp": T0}, None),
    (
        {
            "event_name": "token.auth_failed",
            "timestamp": T0 + 2 * SECOND,
            "observed_timestamp": T0 + 2 * SECOND,
            "severity_number": SeverityNumber.WARN,
            "severity_text": "WARN",
            "attributes": {
                "token.id": "tok_beta",
                "token.failure_reason": "insufficient_scope",
                "client.address": "198.51.100.23",
                "http.response.status_code": 403,
            },
        },
        {
            "time": rfc3339_ns(T0 + 2 * SECOND),
            "observed_time": rfc3339_ns(T0 + 2 * SECOND),
            "event_name": "token.auth_failed",
            "outcome": "failure",
            "failure_reason": "insufficient_scope",
            "severity_number": 13,
            "severity_text": "WARN",
            "token_id": "tok_beta",
            "client_ip": "198.51.100.23",
            "http_status": 403,
        },
    ),
    (
        {
            "timestamp": T0 + 3 * SECOND,
            "observed_timestamp": T0 + 3 * SECOND,
            "attributes": {
                "event.name": "token.revoked",
                "token.id": "tok_beta",
                "token.reason": "leak",
                "token.actor.id": "secbot",
            },
        },
        {
            "time": rfc3339_ns(T0 + 3 * SECOND),
            "observed_time": rfc3339_ns(T0 + 3 * SECOND),
            "event_name": "token.revoked",
            "token_status": "revoked",
            "token_id": "tok_beta",
            "reason": "leak",
            "actor_id": "secbot",
        },
    ),
    (
        {
            "event_name": "token.updated",
            "timestamp": T0 + 4 * SECOND,
            "observed_timestamp": T0 + 4 * SECOND,
            "attributes": {
                "token.id": "tok_alpha",
                "token.scopes_added": ["admin:org"],
                "token.scopes_removed": ["workflow"],
                "token.outcome": "unknown",
                "note": "Ελληνικά 中文 עברית",
            },
        },
        {
            "time": rfc3339_ns(T0 + 4 * SECOND),
            "observed_time": rfc3339_ns(T0 + 4 * SECOND),
            "event_name": "token.updated",
            "token_status": "active",
            "outcome": "unknown",
            "token_id": "tok_alpha",
            "scopes_added": ["admin:org"],
            "scopes_removed": ["workflow"],
            "attributes": {"note": "Ελληνικά 中文 עברית"},
        },
    ),
]
EXPECTED = [DEFAULTS | expected for _, expected in CASES if expected is not None]


def make_exporter(kind: str, serve: ServeProcess) -> LogRecordExporter:
    if kind == "grpc":
        return GrpcLogExporter(endpoint=serve.grpc_target, insecure=True, timeout=30)
    if kind == "http/protobuf":
        return ProtobufHttpLogExporter(
            endpoint=serve.logs_url, compression=Compression.Gzip, timeout=30
        )
    # The JSON exporter wants the full signal URL, path included.
    return JsonHttpLogExporter(endpoint=serve.logs_url, timeout=30)


@pytest.fixture(scope="module", params=["grpc", "http/protobuf", "http/json"])
def sent_via(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Sends CASES through one real SDK exporter into serve, stops it; yields the data dir."""
    data_dir = tmp_path_factory.mktemp("roundtrip") / "data"
    serve = start_serve(data_dir)
    try:
        exporter = CheckedExporter(make_exporter(request.param, serve))
        provider = logger_provider(exporter, RESOURCE)
        logger = provider.get_logger("billing.auth")
        for emit, _ in CASES:
            logger.emit(**emit)
        provider.shutdown()
        assert exporter.results == [LogRecordExportResult.SUCCESS] * len(CASES)
    finally:
        assert serve.stop() == 0, serve.output()
    yield data_dir


def test_query_returns_exactly_the_events_sent(sent_via: Path) -> None:
    assert query_json(sent_via) == EXPECTED


@pytest.mark.parametrize("sent_via", ["grpc"], indirect=True)
def test_table_and_csv_formats_list_every_event(sent_via: Path) -> None:
    table = run_cli("query", "--data-dir", str(sent_via))
    csv_out = run_cli("query", "--data-dir", str(sent_via), "--format", "csv")
    assert table.returncode == csv_out.returncode == 0
    assert re.search(r"\b5 events\b", table.stdout)
    assert table.stdout.count("tok_alpha") == 3
    assert table.stdout.count("tok_beta") == 2
    header, *rows = csv_out.stdout.splitlines()
    assert header.split(",")[:3] == ["time", "observed_time", "event_name"]
    assert [row.split(",")[2] for row in rows] == [e["event_name"] for e in EXPECTED]


@pytest.mark.parametrize("sent_via", ["grpc"], indirect=True)
@pytest.mark.parametrize(
    ("filters", "expected_names"),
    [
        (["--ip", "2001:db8::/32"], ["token.used"]),
        (["--ip", "198.51.100.0/24"], ["token.auth_failed"]),
        (["--ip", "203.0.113.7"], ["token.created"]),
        (["--token", "tok_beta"], ["token.auth_failed", "token.revoked"]),
        (
            ["--event", "token.created", "--event", "token.updated"],
            ["token.created", "token.updated"],
        ),
        (["--outcome", "failure"], ["token.auth_failed"]),
        (["--principal", "alice@example.com"], ["token.created"]),
        (
            ["--since", rfc3339_ns(T0 + 2 * SECOND), "--until", rfc3339_ns(T0 + 3 * SECOND)],
            ["token.auth_failed", "token.revoked"],
        ),
    ],
)
def test_filters_select_the_matching_events(
    sent_via: Path, filters: list[str], expected_names: list[str]
) -> None:
    assert [e["event_name"] for e in query_json(sent_via, *filters)] == expected_names
