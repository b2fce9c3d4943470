"""A running service's report: `tokenotel report --server` through GenerateReport, and a
generic gRPC client (grpcurl, through server reflection) streaming the same call; both sealed
with the service's signing key (docs/report.md, "From a running service")."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from go_build import GRPCURL, go_installed
from otel_sdk import CheckedExporter, logger_provider
from processes import ServeProcess, clean_env, run_cli
from tokenotel.integrity.signing import VerifierKey
from tokenotel.report.seal import check

pytestmark = pytest.mark.e2e  # starts the service


def send(serve: ServeProcess, count: int) -> None:
    exporter = CheckedExporter(OTLPLogExporter(endpoint=serve.grpc_target, insecure=True))
    provider = logger_provider(exporter, {"service.name": "billing-api"})
    logger = provider.get_logger("billing.auth")
    for i in range(count):
        logger.emit(
            event_name="token.used" if i % 4 else "token.auth_failed",
            attributes={"token.id": f"tok-{i % 3}", "client.address": "203.0.113.7"},
        )
    provider.shutdown()
    assert exporter.results == [LogRecordExportResult.SUCCESS] * count


def test_a_running_service_streams_its_report_sealed_with_its_key(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    data = tmp_path / "data"
    serve = serve_factory(data_dir=data, env=clean_env(TOKENOTEL_CHECKPOINT_INTERVAL_S="1"))
    send(serve, 12)
    deadline = time.monotonic() + 30
    out = tmp_path / "report.json"
    while True:  # once a checkpoint covers the events
        result = run_cli("report", "--server", serve.api_target, "--since", "1d",
                         "--format", "json", "-o", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        document = json.loads(out.read_text())
        if document["checkpoint"] is not None:
            break
        assert time.monotonic() < deadline, "no checkpoint in the report"
        time.sleep(0.5)
    assert document["trail"].startswith("tokenotel service (")
    scope, failures = document["sections"][0], document["sections"][6]
    assert scope["figures"]["events"] == 12
    assert failures["figures"]["auth_failures"] == 3
    assert document["sections"][7]["figures"]["tamper_evidence"] == "on"
    verified = run_cli("verify", "--report", str(out), "--public-key", str(data / "signing.pub"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "(trusted)" in verified.stdout

    grpcurl = go_installed(GRPCURL, "make grpcurl")
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = json.dumps({"since": since, "format": "csv", "policy": "dormant_days: 7\n"})
    streamed = subprocess.run(
        [str(grpcurl), "-plaintext", "-d", request, serve.api_target,
         "tokenotel.v1.TokenAudit/GenerateReport"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    decoder, text, chunks = json.JSONDecoder(), streamed.stdout.strip(), []
    while text:
        message, end = decoder.raw_decode(text)
        chunks.append(base64.b64decode(message["data"]))
        text = text[end:].strip()
    csv_report = b"".join(chunks)
    assert b"policy.dormant_days,7" in csv_report
    key = VerifierKey.parse((data / "signing.pub").read_text())
    checked = check(csv_report, [key])
    assert checked.ok and checked.signer == key

    bad = subprocess.run(
        [str(grpcurl), "-plaintext", "-d", '{"format": "docx"}', serve.api_target,
         "tokenotel.v1.TokenAudit/GenerateReport"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stderr and "format 'docx' is not html, pdf, json or csv" in (
        bad.stderr
    )
    assert serve.stop() == 0, serve.output()
