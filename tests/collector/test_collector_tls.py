"""The collector sends to tokenotel over TLS: gateway.yaml's ``otlp_grpc`` exporter with its
``tls`` settings from TOKENOTEL_INSECURE, TOKENOTEL_CA_FILE and, for mutual TLS,
TOKENOTEL_CLIENT_CERT_FILE and TOKENOTEL_CLIENT_KEY_FILE (collector-config/README.md); and the
``otlp_http`` exporter with ``tls: ca_file``. A wrong CA, or no client certificate under mutual
TLS, delivers nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from otelcol import CollectorProcess, collector_env, start_collector, wait_until

from certs import Pki, make_pki
from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import RECENT_NS
from processes import ServeProcess, start_serve
from tokenotel.v1 import audit_pb2, audit_pb2_grpc

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

DELIVERY_TIMEOUT_S = 60
#: What the collector logs when an export failed and will be tried again.
RETRYING = "Exporting failed. Will retry the request after interval."
EVENTS = 5

#: The collector's ``otlp_http`` exporter towards tokenotel's OTLP/HTTP listener over HTTPS.
OTLP_HTTP_CONFIG = """
extensions:
  health_check:
    endpoint: ${env:HEALTH_CHECK_ENDPOINT}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:GATEWAY_GRPC_ENDPOINT}
exporters:
  otlp_http/tokenotel:
    logs_endpoint: https://${env:TOKENOTEL_HTTP_ENDPOINT}/v1/logs
    tls:
      ca_file: ${env:TOKENOTEL_CA_FILE}
    compression: gzip
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp_http/tokenotel]
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_serve(pki: Pki, tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Starts serve with TLS (``mutual=True``: client certificates the CA signed required)."""
    started: list[ServeProcess] = []

    def start(*, mutual: bool = False) -> ServeProcess:
        args = ["--tls-cert-file", str(pki.server[0]), "--tls-key-file", str(pki.server[1])]
        if mutual:
            args += ["--tls-client-ca-file", str(pki.ca)]
        health = pki.context(client=pki.client if mutual else None)
        serve = start_serve(tmp_path / f"data{len(started)}", *args, tls=health)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        assert serve.stop() == 0, serve.output()


def send_token_events(collector: CollectorProcess) -> None:
    """EVENTS token events from the SDK to the collector (plaintext, on loopback)."""
    exporter = CheckedExporter(
        GrpcLogExporter(endpoint=collector.grpc_target, insecure=True, timeout=30)
    )
    provider = logger_provider(exporter, {"service.name": "tls-test"})
    logger = provider.get_logger("tls")
    for i in range(EVENTS):
        logger.emit(
            event_name="token.used", timestamp=RECENT_NS + i, attributes={"token.id": f"t{i}"}
        )
    provider.shutdown()
    assert exporter.results == [LogRecordExportResult.SUCCESS] * EVENTS


def stored(serve: ServeProcess, pki: Pki) -> int:
    """Events in serve's store, read through its query API over mutual TLS when asked."""
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), pki.client[1].read_bytes(), pki.client[0].read_bytes()
    )
    with grpc.secure_channel(serve.api_target, credentials) as channel:
        request = audit_pb2.SearchEventsRequest(page_size=1000)
        return len(audit_pb2_grpc.TokenAuditStub(channel).SearchEvents(request, timeout=30).events)


def delivered(serve: ServeProcess, pki: Pki, collector: CollectorProcess) -> None:
    wait_until(
        lambda: stored(serve, pki) == EVENTS,
        DELIVERY_TIMEOUT_S,
        f"{EVENTS} events to arrive over TLS:\n{collector.output()}",
    )


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_the_gateway_delivers_over_tls_trusting_the_ca_it_is_given(
    pki: Pki,
    tls_serve: Callable[..., ServeProcess],
    collector_factory: Callable[..., CollectorProcess],
    mutual: bool,
) -> None:
    serve = tls_serve(mutual=mutual)
    client = (
        {
            "TOKENOTEL_CLIENT_CERT_FILE": str(pki.client[0]),
            "TOKENOTEL_CLIENT_KEY_FILE": str(pki.client[1]),
        }
        if mutual
        else {}
    )
    collector = collector_factory(
        "gateway.yaml",
        TOKENOTEL_ENDPOINT=serve.grpc_target,
        TOKENOTEL_INSECURE="false",
        TOKENOTEL_CA_FILE=str(pki.ca),
        **client,
    )
    send_token_events(collector)
    delivered(serve, pki, collector)


@pytest.mark.parametrize(
    ("mutual", "trusted", "reason"),
    [
        (False, "wrong_ca", "x509: certificate signed by unknown authority"),
        # gRPC's server closes the connection after the handshake: Go sees no reason.
        (True, "ca", ""),
    ],
    ids=["wrong-ca", "no-client-certificate"],
)
def test_the_gateway_delivers_nothing_to_a_server_it_must_not_trust_or_without_a_certificate(
    pki: Pki,
    tls_serve: Callable[..., ServeProcess],
    collector_factory: Callable[..., CollectorProcess],
    mutual: bool,
    trusted: str,
    reason: str,
) -> None:
    serve = tls_serve(mutual=mutual)
    collector = collector_factory(
        "gateway.yaml",
        TOKENOTEL_ENDPOINT=serve.grpc_target,
        TOKENOTEL_INSECURE="false",
        TOKENOTEL_CA_FILE=str(getattr(pki, trusted)),
    )
    send_token_events(collector)  # the collector takes them into its queue ...
    wait_until(
        lambda: RETRYING in collector.output(),
        DELIVERY_TIMEOUT_S,
        f"the collector to fail an export:\n{collector.output()}",
    )
    assert reason in collector.output()
    assert stored(serve, pki) == 0  # ... and cannot hand them on


def test_the_otlp_http_exporter_delivers_over_https_with_its_ca_file(
    pki: Pki, tls_serve: Callable[..., ServeProcess], tmp_path: Path, collector_binary: Path
) -> None:
    serve = tls_serve()
    config = tmp_path / "otlp-http.yaml"
    config.write_text(OTLP_HTTP_CONFIG)
    env = collector_env(
        tmp_path / "storage",
        TOKENOTEL_HTTP_ENDPOINT=f"127.0.0.1:{serve.http_port}",
        TOKENOTEL_CA_FILE=str(pki.ca),
    )
    collector = start_collector(config, env, tmp_path / "collector.log")
    try:
        send_token_events(collector)
        delivered(serve, pki, collector)
    finally:
        assert collector.stop() == 0, collector.output()
