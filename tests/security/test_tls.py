"""TLS on every listener of ``tokenotel serve`` (docs/security.md, "Transport (TLS)"), checked with
real clients: the OpenTelemetry SDK exporters (gRPC and HTTP), the reading commands
(``tokenotel query --server``), grpcurl, clickhouse-go (tests/api/chgo) and Python's ssl module.

The right CA works; a wrong CA, an expired certificate and (under mutual TLS) a missing,
expired or foreign client certificate are refused; a replaced certificate is served to the next
connection without a restart; TLS 1.1 is refused; and a listener other hosts can reach does
not start in plaintext without authentication unless told to."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from certs import Issued, Pki, make_pki
from go_build import GRPCURL, REPO, go_built, go_installed
from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import RECENT_NS
from processes import ServeProcess, free_port, http_get, run_cli, start_serve

pytestmark = pytest.mark.e2e  # starts tokenotel serve, the CLI, grpcurl and clickhouse-go

SUCCESS, FAILURE = LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE
#: How long an SDK exporter keeps retrying a connection that fails: short, it cannot succeed.
REFUSED_TIMEOUT_S = 3
PASSWORD = "correct horse battery staple"
CHGO = REPO / ".build" / "bin" / "tokenotel-chgo"


@pytest.fixture(autouse=True)
def _requests_uses_the_exporters_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (under the SDK's HTTP exporter) lets these variables override the CA file the
    exporter gives its session: the test trusts exactly the CA each client is given."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class TlsServe:
    """A serve with TLS on its four listeners (OTLP/gRPC, OTLP/HTTP, query API, ClickHouse)."""

    serve: ServeProcess
    clickhouse_port: int
    password_file: Path

    @property
    def ports(self) -> dict[str, int]:
        serve = self.serve
        return {
            "OTLP/gRPC": serve.grpc_port,
            "OTLP/HTTP": serve.http_port,
            "query API": serve.api_port,
            "ClickHouse HTTP": self.clickhouse_port,
        }


def start_tls_serve(
    directory: Path,
    cert: tuple[Path, Path],
    health: ssl.SSLContext,
    *args: str,
) -> TlsServe:
    """serve with ``cert`` (and ``args``), healthy once /healthz answers over TLS ``health``."""
    password_file = directory / "grafana.password"
    directory.mkdir(parents=True, exist_ok=True)
    password_file.write_text(PASSWORD + "\n")
    clickhouse_port = free_port()
    serve = start_serve(
        directory / "data",
        "--tls-cert-file",
        str(cert[0]),
        "--tls-key-file",
        str(cert[1]),
        "--clickhouse-listen",
        f"127.0.0.1:{clickhouse_port}",
        "--clickhouse-password-file",
        str(password_file),
        *args,
        tls=health,
    )
    return TlsServe(serve, clickhouse_port, password_file)


@pytest.fixture(scope="module")
def tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServe]:
    """One serve with TLS (no client certificates asked) for the tests that only read it."""
    running = start_tls_serve(tmp_path_factory.mktemp("tls"), pki.server, pki.context())
    yield running
    assert running.serve.stop() == 0, running.serve.output()


@pytest.fixture(scope="module")
def mutual(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServe]:
    """One serve with mutual TLS: clients need a certificate the CA signed."""
    running = start_tls_serve(
        tmp_path_factory.mktemp("mtls"),
        pki.server,
        pki.context(client=pki.client),
        "--tls-client-ca-file",
        str(pki.ca),
    )
    yield running
    assert running.serve.stop() == 0, running.serve.output()


# -- the clients ------------------------------------------------------------------------------


def send(exporter: LogRecordExporter, token_id: str) -> LogRecordExportResult:
    """One token event through the SDK's exporter; what the exporter reported."""
    checked = CheckedExporter(exporter)
    provider = logger_provider(checked, {"service.name": "tls-test"})
    provider.get_logger("tls").emit(
        event_name="token.used", timestamp=RECENT_NS, attributes={"token.id": token_id}
    )
    provider.shutdown()
    assert len(checked.results) == 1
    return checked.results[0]


def read_file(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def grpc_exporter(
    serve: ServeProcess,
    ca: Path,
    client: tuple[Path, Path] | None = None,
    timeout: float = 30,
) -> GrpcLogExporter:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=read_file(client[1] if client else None),
        certificate_chain=read_file(client[0] if client else None),
    )
    return GrpcLogExporter(
        endpoint=serve.grpc_target, insecure=False, credentials=credentials, timeout=timeout
    )


def http_exporter(
    serve: ServeProcess,
    ca: Path,
    client: tuple[Path, Path] | None = None,
    timeout: float = 30,
) -> HttpLogExporter:
    return HttpLogExporter(
        endpoint=f"https://127.0.0.1:{serve.http_port}/v1/logs",
        certificate_file=str(ca),
        client_certificate_file=str(client[0]) if client else None,
        client_key_file=str(client[1]) if client else None,
        timeout=timeout,
    )


def query(
    serve: ServeProcess, ca: Path, client: tuple[Path, Path] | None = None, *filters: str
) -> subprocess.CompletedProcess[str]:
    """``tokenotel query --server <its query API> --server-ca-file CA [--client-cert-file ...]``."""
    mtls = []
    if client is not None:
        mtls = ["--client-cert-file", str(client[0]), "--client-key-file", str(client[1])]
    return run_cli(
        "query",
        "--server",
        serve.api_target,
        "--server-ca-file",
        str(ca),
        *mtls,
        "--format",
        "json",
        *filters,
    )


def stored_tokens(
    serve: ServeProcess, ca: Path, client: tuple[Path, Path] | None = None
) -> list[str]:
    result = query(serve, ca, client)
    assert result.returncode == 0, result.stderr
    return sorted(json.loads(line)["token_id"] for line in result.stdout.splitlines())


@contextmanager
def connected(port: int, context: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to ``port`` on 127.0.0.1 (an address: the client sends no server name),
    offering ALPN h2 as gRPC clients do and http/1.1."""
    context.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
        yield connection


def served_serial(port: int, ca: Path) -> int:
    """The serial number of the certificate a new connection to ``port`` gets."""
    with connected(port, ssl.create_default_context(cafile=str(ca))) as connection:
        der = connection.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def handshake(port: int, context: ssl.SSLContext) -> str:
    """The TLS version a handshake with ``port`` agreed on (raises when refused)."""
    with connected(port, context) as connection:
        version = connection.version()
    assert version is not None
    return version


def answered(port: int, context: ssl.SSLContext) -> bool:
    """Whether ``port`` answers a request over TLS at all. (With TLS 1.3 the server checks the
    client's certificate after the client's side of the handshake is done: a refusal arrives
    with the first read.)"""
    try:
        with connected(port, context) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return connection.recv(1) != b""
    except (ssl.SSLError, ConnectionResetError):
        return False


def grpc_health(port: int, credentials: grpc.ChannelCredentials) -> int:
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status


def chgo(port: int, password_file: Path, ca: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """clickhouse-go (Grafana's driver) over HTTPS, trusting ``ca``: the events' count."""
    binary = go_built(["bash", str(REPO / "tests" / "api" / "build-chgo.sh")], CHGO, "make chgo")
    queries = tmp / "queries.json"
    queries.write_text(json.dumps([{"name": "events", "sql": "SELECT count() FROM token_events"}]))
    return subprocess.run(
        [
            str(binary),
            "-addr",
            f"127.0.0.1:{port}",
            "-password-file",
            str(password_file),
            "-ca-file",
            str(ca),
            str(queries),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- the right CA -----------------------------------------------------------------------------


def test_with_the_right_ca_every_client_is_served(pki: Pki, tls: TlsServe, tmp_path: Path) -> None:
    serve = tls.serve
    assert send(grpc_exporter(serve, pki.ca), "tok-grpc") == SUCCESS
    assert send(http_exporter(serve, pki.ca), "tok-http") == SUCCESS
    assert stored_tokens(serve, pki.ca) == ["tok-grpc", "tok-http"]

    grpcurl = go_installed(GRPCURL, "make grpcurl")
    listed = subprocess.run(
        [str(grpcurl), "-cacert", str(pki.ca), serve.api_target, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "tokenotel.v1.TokenAudit" in listed.stdout.split()

    counted = chgo(tls.clickhouse_port, tls.password_file, pki.ca, tmp_path)
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)[0]["rows"] == [[2]]
    status, _, body = http_get(
        f"https://127.0.0.1:{tls.clickhouse_port}/?query=SELECT+count()+FROM+token_events"
        f"&user=grafana&password={PASSWORD.replace(' ', '+')}",
        context=pki.context(),
    )
    assert (status, body) == (200, b"2\n")


def test_the_health_endpoints_answer_over_tls(pki: Pki, tls: TlsServe) -> None:
    serve = tls.serve
    for path, answer in (("/healthz", b'{"status": "alive"}'), ("/readyz", b'{"status": "ready"}')):
        status, _, body = http_get(f"{serve.http_url}{path}", context=pki.context())
        assert (status, body) == (200, answer)
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    for port in (serve.grpc_port, serve.api_port):
        assert grpc_health(port, credentials) == health_pb2.HealthCheckResponse.SERVING


def test_the_reading_commands_find_a_tls_service_through_its_data_directory(
    pki: Pki, tls: TlsServe
) -> None:
    data_dir = str(tls.serve.data_dir)
    found = run_cli("query", "--data-dir", data_dir, "--server-ca-file", str(pki.ca))
    assert found.returncode == 0, found.stderr
    plain = run_cli("query", "--data-dir", data_dir)
    assert plain.returncode == 2
    assert "serves its query API over TLS: set --server-ca-file" in plain.stderr


# -- refused ----------------------------------------------------------------------------------


def test_a_wrong_ca_is_refused_by_every_client(pki: Pki, tls: TlsServe, tmp_path: Path) -> None:
    serve = tls.serve
    before = stored_tokens(serve, pki.ca)
    assert send(grpc_exporter(serve, pki.wrong_ca, timeout=REFUSED_TIMEOUT_S), "x") == FAILURE
    assert send(http_exporter(serve, pki.wrong_ca, timeout=REFUSED_TIMEOUT_S), "x") == FAILURE
    refused = query(serve, pki.wrong_ca)
    assert refused.returncode == 2
    assert "TLS with the query API" in refused.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr

    grpcurl = go_installed(GRPCURL, "make grpcurl")
    listed = subprocess.run(
        [str(grpcurl), "-cacert", str(pki.wrong_ca), serve.api_target, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode != 0
    assert "certificate signed by unknown authority" in listed.stderr

    counted = chgo(tls.clickhouse_port, tls.password_file, pki.wrong_ca, tmp_path)
    assert counted.returncode != 0
    assert "certificate signed by unknown authority" in counted.stderr

    for name, port in tls.ports.items():
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, pki.context(ca=pki.wrong_ca))
        assert (
            served_serial(port, pki.ca)
            == x509.load_pem_x509_certificate(pki.server[0].read_bytes()).serial_number
        ), name
    assert stored_tokens(serve, pki.ca) == before


def test_a_plaintext_client_is_told_to_use_tls(tls: TlsServe) -> None:
    result = run_cli("query", "--server", tls.serve.api_target)
    assert result.returncode == 2
    assert "if it serves TLS, set server_ca_file" in result.stderr


def test_an_expired_server_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    # The test's own health check looks past the expiry; the clients under test do not.
    lenient = ssl.create_default_context(cafile=str(pki.ca))
    lenient.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    lenient.check_hostname, lenient.verify_mode = False, ssl.CERT_NONE
    expired = start_tls_serve(tmp_path, pki.expired_server, lenient)
    serve = expired.serve
    try:
        assert send(grpc_exporter(serve, pki.ca, timeout=REFUSED_TIMEOUT_S), "x") == FAILURE
        assert send(http_exporter(serve, pki.ca, timeout=REFUSED_TIMEOUT_S), "x") == FAILURE
        refused = query(serve, pki.ca)
        assert refused.returncode == 2
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
        counted = chgo(expired.clickhouse_port, expired.password_file, pki.ca, tmp_path)
        assert counted.returncode != 0
        assert "expired" in counted.stderr
        for port in expired.ports.values():
            with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
                handshake(port, pki.context())
    finally:
        assert serve.stop() == 0


# -- mutual TLS -------------------------------------------------------------------------------


def test_mutual_tls_serves_a_client_certificate_the_ca_signed(pki: Pki, mutual: TlsServe) -> None:
    serve = mutual.serve
    assert send(grpc_exporter(serve, pki.ca, pki.client), "tok-mtls-grpc") == SUCCESS
    assert send(http_exporter(serve, pki.ca, pki.client), "tok-mtls-http") == SUCCESS
    assert stored_tokens(serve, pki.ca, pki.client) == ["tok-mtls-grpc", "tok-mtls-http"]
    status, _, _ = http_get(f"{serve.http_url}/readyz", context=pki.context(client=pki.client))
    assert status == 200
    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), pki.client[1].read_bytes(), pki.client[0].read_bytes()
    )
    assert grpc_health(serve.api_port, credentials) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("client", ["none", "expired", "stranger"])
def test_mutual_tls_refuses_a_missing_expired_or_foreign_client_certificate(
    pki: Pki, mutual: TlsServe, client: str
) -> None:
    serve = mutual.serve
    before = stored_tokens(serve, pki.ca, pki.client)
    presented = {"none": None, "expired": pki.expired_client, "stranger": pki.stranger}[client]
    grpc_sent = send(grpc_exporter(serve, pki.ca, presented, timeout=REFUSED_TIMEOUT_S), "x")
    assert grpc_sent == FAILURE
    http_sent = send(http_exporter(serve, pki.ca, presented, timeout=REFUSED_TIMEOUT_S), "x")
    assert http_sent == FAILURE
    refused = query(serve, pki.ca, presented)
    assert refused.returncode == 2
    assert "TLS with the query API" in refused.stderr
    for name, port in mutual.ports.items():
        assert not answered(port, pki.context(client=presented)), name
        assert answered(port, pki.context(client=pki.client)), name
    assert stored_tokens(serve, pki.ca, pki.client) == before


# -- reload -----------------------------------------------------------------------------------


def replace(issued: Issued, cert: Path, key: Path) -> None:
    """Writes ``issued`` over ``cert`` and ``key`` as a deployment tool does: each file written
    beside its place, then renamed over it."""
    for path, content in ((key, issued.key_pem), (cert, issued.cert_pem)):
        fresh = path.with_suffix(".new")
        fresh.write_bytes(content)
        fresh.chmod(0o600)
        fresh.replace(path)


def test_a_replaced_certificate_is_served_to_new_connections_without_a_restart(
    pki: Pki, tmp_path: Path
) -> None:
    first, second = pki.authority.server(), pki.authority.server()
    cert, key = first.write(tmp_path / "live", "server")
    running = start_tls_serve(tmp_path / "serve", (cert, key), pki.context())
    serve = running.serve
    pid = serve.proc.pid
    try:
        assert send(grpc_exporter(serve, pki.ca), "before") == SUCCESS
        for port in running.ports.values():
            assert served_serial(port, pki.ca) == first.serial

        replace(second, cert, key)
        for name, port in running.ports.items():
            assert served_serial(port, pki.ca) == second.serial, name
        assert send(grpc_exporter(serve, pki.ca), "after") == SUCCESS
        assert send(http_exporter(serve, pki.ca), "after-http") == SUCCESS
        assert stored_tokens(serve, pki.ca) == ["after", "after-http", "before"]

        # A replacement that cannot be used (a key of another certificate) is not taken: the
        # certificate before stays, and the log says why.
        cert.write_bytes(pki.authority.server().cert_pem)
        for name, port in running.ports.items():
            assert served_serial(port, pki.ca) == second.serial, name
        assert "TLS files changed but" in serve.output()
        assert serve.proc.pid == pid and serve.alive()
    finally:
        assert serve.stop() == 0
    fingerprint = second.certificate.fingerprint(hashes.SHA256()).hex()
    assert f"now serving the certificate with SHA-256 {fingerprint}" in serve.output()
    assert second.key_pem.decode() not in serve.output()


# -- TLS versions -----------------------------------------------------------------------------


def tls_1_1_client(ca: Path) -> ssl.SSLContext:
    """A client that offers TLS 1.0 and 1.1 only (OpenSSL allows them at security level 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_verify_locations(cafile=str(ca))
    return context


def only(version: ssl.TLSVersion, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = context.maximum_version = version
    return context


def test_tls_1_1_is_refused_and_1_2_and_1_3_are_served(pki: Pki, tls: TlsServe) -> None:
    # First the client itself: a server that allows TLS 1.1 gets a TLS 1.1 handshake from it,
    # so a refusal below is the listener's.
    assert tls_1_1_accepted_by_a_server_that_allows_it(pki) == "TLSv1.1"
    for name, port in tls.ports.items():
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            handshake(port, tls_1_1_client(pki.ca))
        assert handshake(port, only(ssl.TLSVersion.TLSv1_2, pki.ca)) == "TLSv1.2", name
        assert handshake(port, only(ssl.TLSVersion.TLSv1_3, pki.ca)) == "TLSv1.3", name


def tls_1_1_accepted_by_a_server_that_allows_it(pki: Pki) -> str:
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    permissive.load_cert_chain(*pki.server)
    with socket.create_server(("127.0.0.1", 0)) as listening:

        def serve_one() -> None:
            accepted, _ = listening.accept()
            with permissive.wrap_socket(accepted, server_side=True) as connection:
                connection.recv(1)  # until the client closes

        server = threading.Thread(target=serve_one, daemon=True)
        server.start()
        version = handshake(listening.getsockname()[1], tls_1_1_client(pki.ca))
        server.join(timeout=10)
    return version
