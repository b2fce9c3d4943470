"""The gateway in front of ``tokenotel serve --auth`` (collector-config/gateway-auth.yaml over
gateway.yaml): its bearertokenauth extension sends the ingest credential, so the events are
stored and the service's own trail shows the gateway's credential in use; once that credential
is revoked, or with a wrong one, tokenotel answers UNAUTHENTICATED, which the collector logs as
a permanent error and drops (it does not retry), and nothing more is stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from otelcol import CollectorProcess, wait_until
from tls_front import self_signed, tls_front

from otel_sdk import CheckedExporter, logger_provider
from processes import ServeProcess, auth_add, run_cli
from tokenotel.api.readers import ServiceReader
from tokenotel.query.search import EventFilter

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

DELIVERY_TIMEOUT_S = 60
#: How the collector (v0.161.0) reports a batch it will not send again.
DROPPED = "Exporting failed. Dropping data."


def send_to(collector: CollectorProcess, token_id: str) -> None:
    """One token event into the gateway, as an application's SDK sends it."""
    checked = CheckedExporter(GrpcLogExporter(endpoint=collector.grpc_target, insecure=True))
    provider = logger_provider(checked, {"service.name": "billing-api"})
    provider.get_logger("billing.auth").emit(
        event_name="token.used", attributes={"token.id": token_id}
    )
    provider.shutdown()
    assert checked.results == [LogRecordExportResult.SUCCESS]  # the gateway took it


def refused_in_log(collector: CollectorProcess) -> bool:
    """The collector gave up on a batch because tokenotel refused its credential."""
    return any(
        DROPPED in line and "code = Unauthenticated" in line and "Permanent error" in line
        for line in collector.output().splitlines()
    )


def test_the_gateway_authenticates_with_its_ingest_credential_over_tls(
    tmp_path: Path,
    serve_factory: Callable[..., ServeProcess],
    collector_factory: Callable[..., CollectorProcess],
) -> None:
    data_dir = tmp_path / "data"
    ingest = auth_add(data_dir, "ingest", "gateway-1")
    reader_credential = auth_add(data_dir, "read", "checker")
    serve = serve_factory("--auth", data_dir=data_dir)
    reader = ServiceReader(serve.api_target, reader_credential)

    def stored() -> list[dict[str, str]]:
        return reader.events(EventFilter(), limit=10_000)

    def stored_ids() -> set[str]:
        return {e["token_id"] for e in stored()}

    certificate = self_signed(tmp_path)
    credential_file = tmp_path / "ingest.credential"
    credential_file.write_text(ingest + "\n")
    wrong_file = tmp_path / "wrong.credential"
    wrong_file.write_text(f"tko_00000000_{ingest[13:]}\n")
    try:
        with tls_front(serve.grpc_port, certificate) as port:

            def gateway(credential: Path) -> CollectorProcess:
                return collector_factory(
                    "gateway.yaml",
                    overlays=("gateway-auth.yaml",),
                    TOKENOTEL_ENDPOINT=f"127.0.0.1:{port}",
                    TOKENOTEL_CA_FILE=str(certificate.cert),
                    TOKENOTEL_INGEST_CREDENTIAL_FILE=str(credential),
                )

            collector = gateway(credential_file)
            send_to(collector, "through-the-gateway")
            wait_until(
                lambda: "through-the-gateway" in stored_ids(), DELIVERY_TIMEOUT_S, "delivery"
            )
            # The trail knows the gateway's credential was used (once, whatever the requests).
            wait_until(
                lambda: any(
                    e["event_name"] == "token.used" and e["token_id"] == ingest[4:12]
                    for e in stored()
                ),
                DELIVERY_TIMEOUT_S,
                "the use of the gateway's credential in the trail",
            )
            used = [
                e
                for e in stored()
                if e["event_name"] == "token.used" and e["token_id"] == ingest[4:12]
            ]
            assert [(e["principal_id"], e["source"]) for e in used] == [("gateway-1", "tokenotel")]

            revoked = run_cli("auth", "revoke", ingest[4:12], "--data-dir", str(data_dir))
            assert revoked.returncode == 0, revoked.stderr
            send_to(collector, "after-the-revocation")
            wait_until(
                lambda: refused_in_log(collector), DELIVERY_TIMEOUT_S, "the refusal in the log"
            )
            assert "after-the-revocation" not in stored_ids()  # dropped for good, not retried

            stranger = gateway(wrong_file)
            send_to(stranger, "with-a-wrong-credential")
            wait_until(
                lambda: refused_in_log(stranger), DELIVERY_TIMEOUT_S, "the refusal in the log"
            )
            assert "with-a-wrong-credential" not in stored_ids()
            for process in (collector, stranger):
                assert ingest[13:] not in process.output()
    finally:
        reader.close()
    failures = [
        (e["token_id"], e["failure_reason"])
        for e in stored_after_stop(serve)
        if e["event_name"] == "token.auth_failed"
    ]
    assert (ingest[4:12], "revoked") in failures and ("00000000", "unknown") in failures


def stored_after_stop(serve: ServeProcess) -> list[dict[str, str]]:
    """Every event of the service's data directory, once it is stopped."""
    assert serve.stop() == 0, serve.output()
    result = run_cli(
        "query", "--data-dir", str(serve.data_dir), "--format", "json", "--limit", "100000"
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
