"""Authentication and roles with real clients (docs/security.md, "Authentication and roles").

``tokenotel serve --auth`` is called by the OpenTelemetry SDK exporters (gRPC and HTTP) with an
``authorization`` header, by the reading commands through the query API with
``server_credential_file``, by grpcurl and by a ClickHouse HTTP client: a missing, malformed,
unknown, wrong or revoked credential is UNAUTHENTICATED / 401 with one and the same message, a
valid one of the wrong role PERMISSION_DENIED / 403, the right role works, and a revocation
counts from the next request on. Then the self-audit: those attempts are token events in the
service's own store, and no credential is anywhere in the data directory or the debug log.
"""

from __future__ import annotations

import base64
import http.client
import json
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

# The deep scan of a data directory (compressed ClickHouse blocks included) of the secret tests.
from test_secrets import files_containing

from go_build import GRPCURL, go_installed
from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import EXPORT_METHOD, export_request, log_record
from processes import (
    ServeProcess,
    auth_add,
    free_port,
    http_get,
    http_post,
    run_cli,
    start_serve,
)
from tokenotel.api.readers import ServiceReader
from tokenotel.query.search import EventFilter

pytestmark = pytest.mark.e2e  # starts tokenotel serve and the CLI

ROLES = ("ingest", "read", "admin")
PROTOBUF = "application/x-protobuf"
CLICKHOUSE_PASSWORD = "grafana-password-for-tests"
AUDIT_TIMEOUT_S = 30
SAME_MESSAGE = (
    "this listener requires a valid credential: send 'authorization: Bearer <credential>' with "
    "one made by `tokenotel auth add`"
)


@dataclass
class Secured:
    """A ``serve --auth`` and its credentials: one of each role, and one revoked before start."""

    serve: ServeProcess
    root: Path
    credentials: dict[str, str]
    clickhouse_port: int

    @property
    def data_dir(self) -> Path:
        return self.serve.data_dir

    def id_of(self, name: str) -> str:
        return self.credentials[name][4:12]

    def file_of(self, credential: str) -> Path:
        """A server_credential_file holding ``credential``."""
        path = self.root / f"{credential[4:12]}-{len(credential)}.credential"
        path.write_text(credential + "\n")
        return path

    def wrong(self) -> dict[str, str]:
        """Authorization values that must all be refused alike."""
        ingest = self.credentials["ingest"]
        flipped = ingest[:13] + ("A" if ingest[13] != "A" else "B") + ingest[14:]
        unknown_id = "00000000" if self.id_of("ingest") != "00000000" else "11111111"
        return {
            "malformed": "Basic dXNlcjpwYXNzd29yZA==",
            "unknown": f"Bearer tko_{unknown_id}_{ingest[13:]}",
            "invalid": f"Bearer {flipped}",
            "revoked": f"Bearer {self.credentials['revoked']}",
        }


def start_secured(root: Path) -> Secured:
    data_dir = root / "data"
    credentials = {role: auth_add(data_dir, role, f"test-{role}") for role in ROLES}
    credentials["revoked"] = auth_add(data_dir, "admin", "test-revoked")
    revoked = run_cli("auth", "revoke", credentials["revoked"][4:12], "--data-dir", str(data_dir))
    assert revoked.returncode == 0, revoked.stderr
    password_file = root / "clickhouse.password"
    password_file.write_text(CLICKHOUSE_PASSWORD + "\n")
    clickhouse_port = free_port()
    serve = start_serve(
        data_dir,
        "--auth",
        "--log-level",
        "debug",
        "--clickhouse-listen",
        f"127.0.0.1:{clickhouse_port}",
        "--clickhouse-password-file",
        str(password_file),
    )
    return Secured(serve, root, credentials, clickhouse_port)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    secured = start_secured(tmp_path_factory.mktemp("auth"))
    yield secured
    assert secured.serve.stop() == 0, secured.serve.output()


def bearer(credential: str) -> str:
    return f"Bearer {credential}"


def export_status(target: str, authorization: str | None) -> tuple[grpc.StatusCode, str]:
    """An OTLP/gRPC export of one token event with the given ``authorization`` metadata."""
    body = export_request(log_record("token.used", {"token.id": "raw-grpc"})).SerializeToString()
    metadata = (("authorization", authorization),) if authorization is not None else ()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        try:
            call(body, timeout=30, metadata=metadata)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def sdk_export(exporter: LogRecordExporter, token_id: str) -> LogRecordExportResult:
    """One token event through the SDK (one request), and the exporter's result."""
    checked = CheckedExporter(exporter)
    provider = logger_provider(checked, {"service.name": "billing-api"})
    provider.get_logger("billing.auth").emit(
        event_name="token.used", attributes={"token.id": token_id}
    )
    provider.shutdown()
    assert len(checked.results) == 1
    return checked.results[0]


def stored_token_ids(secured: Secured) -> set[str]:
    """Every token id in the store, read through the query API with the admin credential."""
    reader = ServiceReader(secured.serve.api_target, secured.credentials["admin"])
    try:
        return {e["token_id"] for e in reader.events(EventFilter(), limit=100_000)}
    finally:
        reader.close()


def query_cli(secured: Secured, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("query", "--server", secured.serve.api_target, "--format", "json", *args)


# -- OTLP ingest ---------------------------------------------------------------------------------


def test_otlp_grpc_needs_an_ingest_or_admin_credential_sdk_exporter(secured: Secured) -> None:
    target = secured.serve.grpc_target

    def grpc_exporter(credential: str | None) -> GrpcLogExporter:
        headers = {"authorization": bearer(credential)} if credential else None
        return GrpcLogExporter(endpoint=target, insecure=True, headers=headers, timeout=30)

    results = {
        "none": sdk_export(grpc_exporter(None), "sdk-grpc-none"),
        "read": sdk_export(grpc_exporter(secured.credentials["read"]), "sdk-grpc-read"),
        "revoked": sdk_export(grpc_exporter(secured.credentials["revoked"]), "sdk-grpc-revoked"),
        "ingest": sdk_export(grpc_exporter(secured.credentials["ingest"]), "sdk-grpc-ingest"),
        "admin": sdk_export(grpc_exporter(secured.credentials["admin"]), "sdk-grpc-admin"),
    }
    success, failure = LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE
    assert results == {
        "none": failure,
        "read": failure,
        "revoked": failure,
        "ingest": success,
        "admin": success,
    }
    stored = stored_token_ids(secured)
    assert {"sdk-grpc-ingest", "sdk-grpc-admin"} <= stored
    assert not {"sdk-grpc-none", "sdk-grpc-read", "sdk-grpc-revoked"} & stored

    # The statuses behind those results: one answer for every bad credential, no detail.
    refused = {name: export_status(target, value) for name, value in secured.wrong().items()}
    refused["missing"] = export_status(target, None)
    assert refused == {
        name: (grpc.StatusCode.UNAUTHENTICATED, SAME_MESSAGE)
        for name in ("malformed", "unknown", "invalid", "revoked", "missing")
    }
    assert export_status(target, bearer(secured.credentials["read"])) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "this credential (role read) may not call the OTLP/gRPC listener: use one with role "
        "ingest or admin",
    )


def test_otlp_http_needs_an_ingest_or_admin_credential_sdk_exporter(secured: Secured) -> None:
    url = secured.serve.logs_url

    def http_exporter(credential: str | None) -> HttpLogExporter:
        headers = {"authorization": bearer(credential)} if credential else None
        return HttpLogExporter(endpoint=url, headers=headers, timeout=30)

    assert sdk_export(http_exporter(None), "sdk-http-none") == LogRecordExportResult.FAILURE
    assert (
        sdk_export(http_exporter(secured.credentials["read"]), "sdk-http-read")
        == LogRecordExportResult.FAILURE
    )
    assert (
        sdk_export(http_exporter(secured.credentials["ingest"]), "sdk-http-ingest")
        == LogRecordExportResult.SUCCESS
    )
    stored = stored_token_ids(secured)
    assert "sdk-http-ingest" in stored and not {"sdk-http-none", "sdk-http-read"} & stored

    body = export_request(log_record("token.used", {"token.id": "raw-http"})).SerializeToString()
    answers = {}
    for name, value in {**secured.wrong(), "missing": None}.items():
        headers = {"Authorization": value} if value is not None else {}
        status, headers_back, content = http_post(url, body, PROTOBUF, headers=headers)
        answers[name] = (status, headers_back.get("WWW-Authenticate"), content)
    assert len(set(answers.values())) == 1  # the same answer, whatever was wrong
    status, challenge, _ = answers["missing"]
    assert (status, challenge) == (401, "Bearer")
    status, _, _ = http_post(
        url, body, PROTOBUF, headers={"Authorization": bearer(secured.credentials["read"])}
    )
    assert status == 403
    # Probes stay open.
    assert http_get(f"{secured.serve.http_url}/healthz")[0] == 200
    assert http_get(f"{secured.serve.http_url}/readyz")[0] == 200


def test_grpc_health_stays_open_on_both_grpc_listeners(secured: Secured) -> None:
    for target in (secured.serve.grpc_target, secured.serve.api_target):
        with grpc.insecure_channel(target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


# -- the query API -------------------------------------------------------------------------------


def test_the_reading_commands_need_a_read_or_admin_credential(secured: Secured) -> None:
    sdk_export(
        GrpcLogExporter(
            endpoint=secured.serve.grpc_target,
            insecure=True,
            headers={"authorization": bearer(secured.credentials["ingest"])},
        ),
        "read-me",
    )
    missing = query_cli(secured, "--token", "read-me")
    assert missing.returncode == 2
    assert "requires a credential: set server_credential_file" in missing.stderr

    for name in ("unknown", "invalid", "revoked"):
        wrong_file = secured.file_of(secured.wrong()[name].removeprefix("Bearer "))
        refused = query_cli(secured, "--server-credential-file", str(wrong_file))
        assert refused.returncode == 2
        assert "refused the credential of server_credential_file" in refused.stderr, name

    ingest_file = secured.file_of(secured.credentials["ingest"])
    denied = query_cli(secured, "--server-credential-file", str(ingest_file))
    assert denied.returncode == 2
    assert "(role ingest) may not call the query API listener: use one with role read or admin" in (
        denied.stderr
    )

    for role in ("read", "admin"):
        credential_file = secured.file_of(secured.credentials[role])
        found = query_cli(
            secured, "--server-credential-file", str(credential_file), "--token", "read-me"
        )
        assert found.returncode == 0, found.stderr
        assert [json.loads(line)["token_id"] for line in found.stdout.splitlines()] == ["read-me"]


def test_verify_through_the_query_api_needs_an_admin_credential(secured: Secured) -> None:
    """Verify, ListCheckpoints and GetConsistencyProof are administrative
    (docs/tamper-evidence.md)."""
    public_key = secured.data_dir / "signing.pub"

    def verify_with(role: str) -> subprocess.CompletedProcess[str]:
        credential_file = secured.file_of(secured.credentials[role])
        return run_cli(
            "verify", "--server", secured.serve.api_target, "--public-key", str(public_key),
            "--server-credential-file", str(credential_file),
        )  # fmt: skip

    denied = verify_with("read")
    assert denied.returncode == 2
    assert "(role read) may not call the query API listener: use one with role admin" in (
        denied.stderr
    )
    allowed = verify_with("admin")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "inserts valid" in allowed.stdout


def test_a_report_through_the_query_api_needs_an_admin_credential(
    secured: Secured, tmp_path: Path
) -> None:
    """GenerateReport is administrative (docs/report.md)."""

    def report_with(role: str) -> subprocess.CompletedProcess[str]:
        credential_file = secured.file_of(secured.credentials[role])
        return run_cli(
            "report", "--server", secured.serve.api_target, "--since", "1d", "--format", "json",
            "--server-credential-file", str(credential_file), "-o", str(tmp_path / "r.json"),
        )  # fmt: skip

    denied = report_with("read")
    assert denied.returncode == 2
    assert "(role read) may not call the query API listener: use one with role admin" in (
        denied.stderr
    )
    assert not (tmp_path / "r.json").exists()
    allowed = report_with("admin")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads((tmp_path / "r.json").read_text())["sections"][0]["figures"]["events"] > 0


def test_grpcurl_reads_the_api_with_a_credential_header_and_reflection_needs_one(
    secured: Secured,
) -> None:
    grpcurl = go_installed(GRPCURL, "make grpcurl")

    def grpcurl_run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(grpcurl), "-plaintext", *args, secured.serve.api_target, "list"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    listed = grpcurl_run("-H", f"authorization: {bearer(secured.credentials['read'])}")
    assert listed.returncode == 0, listed.stderr
    assert "tokenotel.v1.TokenAudit" in listed.stdout.split()
    refused = grpcurl_run()
    assert refused.returncode != 0
    assert "code = Unauthenticated" in refused.stderr


# -- revocation while running ----------------------------------------------------------------------


def test_a_credential_added_or_revoked_while_running_counts_from_the_next_request(
    secured: Secured,
) -> None:
    target = secured.serve.grpc_target
    ingest = auth_add(secured.data_dir, "ingest", "added-while-running")
    reader = auth_add(secured.data_dir, "read", "reader-added-while-running")
    reader_file = secured.file_of(reader)
    assert export_status(target, bearer(ingest)) == (grpc.StatusCode.OK, "")
    assert query_cli(secured, "--server-credential-file", str(reader_file)).returncode == 0

    for credential in (ingest, reader):
        revoked = run_cli("auth", "revoke", credential[4:12], "--data-dir", str(secured.data_dir))
        assert revoked.returncode == 0, revoked.stderr
    assert export_status(target, bearer(ingest)) == (grpc.StatusCode.UNAUTHENTICATED, SAME_MESSAGE)
    refused = query_cli(secured, "--server-credential-file", str(reader_file))
    assert refused.returncode == 2 and "refused the credential" in refused.stderr


def test_the_credentials_file_is_private_and_holds_no_credential(secured: Secured) -> None:
    path = secured.data_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for credential in secured.credentials.values():
        assert credential not in text and credential[13:] not in text
    listed = run_cli("auth", "list", "--data-dir", str(secured.data_dir), "--format", "json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {row["name"]: row["role"] for row in rows if row["name"].startswith("test-")} == {
        "test-ingest": "ingest",
        "test-read": "read",
        "test-admin": "admin",
        "test-revoked": "admin",
    }
    assert all(
        set(row) == {"id", "name", "role", "created", "created_by", "revoked", "revoked_by"}
        for row in rows
    )
    for credential in secured.credentials.values():
        assert credential[13:] not in listed.stdout


# -- the self-audit --------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + AUDIT_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def audit_events(secured: Secured) -> list[dict[str, Any]]:
    """The service's own security events, read through the query API (admin)."""
    reader = ServiceReader(secured.serve.api_target, secured.credentials["admin"])
    try:
        return [
            e for e in reader.events(EventFilter(), limit=100_000) if e["source"] == "tokenotel"
        ]
    finally:
        reader.close()


def clickhouse_login(port: int, user: str, password: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        connection.request("GET", "/?query=SELECT%201", headers={"Authorization": f"Basic {token}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_the_service_audits_its_own_credentials_in_its_own_trail(tmp_path: Path) -> None:
    secured = start_secured(tmp_path)
    try:
        grpc_target = secured.serve.grpc_target
        ids = {name: secured.id_of(name) for name in secured.credentials}
        ingest_exporter = GrpcLogExporter(
            endpoint=grpc_target,
            insecure=True,
            headers={"authorization": bearer(secured.credentials["ingest"])},
        )
        checked = CheckedExporter(ingest_exporter)
        provider = logger_provider(checked, {"service.name": "billing-api"})
        for i in range(20):  # twenty requests, all from one address
            provider.get_logger("billing").emit(
                event_name="token.used", attributes={"token.id": f"t{i}"}
            )
        provider.shutdown()
        assert checked.results == [LogRecordExportResult.SUCCESS] * 20
        for value in secured.wrong().values():  # each refused on OTLP/HTTP
            http_post(secured.serve.logs_url, b"", PROTOBUF, headers={"Authorization": value})
        export_status(grpc_target, None)
        export_status(grpc_target, bearer(secured.credentials["read"]))  # wrong role
        assert clickhouse_login(secured.clickhouse_port, "mallory", "guess") == 403
        later = auth_add(secured.data_dir, "read", "revoked-while-running")
        run_cli("auth", "revoke", later[4:12], "--data-dir", str(secured.data_dir))

        revoked = sorted([ids["revoked"], later[4:12]])
        read: list[list[dict[str, Any]]] = [[]]

        def complete() -> bool:
            """The events read hold every one waited for (and are what the test checks)."""
            read[0] = audit_events(secured)
            names = {(e["event_name"], e["failure_reason"]) for e in read[0]}
            return (
                {("token.auth_failed", "missing"), ("token.access_denied", "insufficient_scope")}
                <= names
                and sorted(e["token_id"] for e in read[0] if e["event_name"] == "token.revoked")
                == revoked
                and any(e["token_id"] == "clickhouse:mallory" for e in read[0])
            )

        wait_for(complete, "the self-audit events")
        events = read[0]
        fingerprint = run_cli(
            "fingerprint", "--server", secured.serve.api_target,
            "--server-credential-file", str(secured.file_of(secured.credentials["admin"])),
            stdin=secured.credentials["ingest"],
        )  # fmt: skip
        assert fingerprint.returncode == 0, fingerprint.stderr
    finally:
        assert secured.serve.stop() == 0

    def of(event_name: str) -> list[dict[str, Any]]:
        return [e for e in events if e["event_name"] == event_name]

    later_id = later[4:12]
    # Created: each credential once, named and scoped by its role; revoked: the two revoked.
    assert sorted(
        (e["token_id"], e["principal_id"], e["scopes"]) for e in of("token.created")
    ) == sorted(
        [(ids[r], f"test-{r}", [r]) for r in ROLES]
        + [
            (ids["revoked"], "test-revoked", ["admin"]),
            (later_id, "revoked-while-running", ["read"]),
        ]
    )
    assert sorted(e["token_id"] for e in of("token.revoked")) == sorted([ids["revoked"], later_id])
    # Used: twenty requests, at most one event per minute; the credential as its fingerprint.
    used = [e for e in of("token.used") if e["token_id"] == ids["ingest"]]
    assert 1 <= len(used) < 20
    assert {(e["client_ip"], e["token_fingerprint"]) for e in used} == {
        ("127.0.0.1", fingerprint.stdout.splitlines()[0])
    }
    # Failed: every attempt, with why (which the caller was not told).
    failed = {(e["failure_reason"], e["token_id"]) for e in of("token.auth_failed")}
    assert {
        ("missing", "anonymous"),
        ("malformed", ""),
        ("unknown", secured.wrong()["unknown"][11:19]),
        ("invalid", ids["ingest"]),
        ("revoked", ids["revoked"]),
        ("invalid", "clickhouse:mallory"),
    } <= failed
    assert [
        (e["token_id"], e["failure_reason"], e["outcome"]) for e in of("token.access_denied")
    ] == [(ids["read"], "insufficient_scope", "failure")]
    clickhouse = next(e for e in events if e["token_id"] == "clickhouse:mallory")
    assert (clickhouse["principal_id"], clickhouse["http_status"]) == ("mallory", 403)
    assert clickhouse["token_fingerprint"] == ""  # a password given is not kept, not even hashed

    # No credential anywhere: not in the store's files, not in the debug log.
    log = secured.serve.output()
    assert "DEBUG" in log
    for credential in [*secured.credentials.values(), later]:
        assert files_containing(secured.data_dir, credential[13:].encode()) == []
        assert credential[13:] not in log

    # A restart reads the file again and records no creation or revocation twice.
    serve = start_serve(secured.data_dir, "--auth")
    try:
        secured.serve = serve
        export_status(serve.grpc_target, None)  # stored after anything the start queued
        wait_for(
            lambda: sum(e["failure_reason"] == "missing" for e in audit_events(secured)) == 2,
            "the failed attempt after the restart",
        )
        after = audit_events(secured)
    finally:
        assert serve.stop() == 0
    assert len([e for e in after if e["event_name"] == "token.created"]) == len(of("token.created"))
    assert len([e for e in after if e["event_name"] == "token.revoked"]) == 2
