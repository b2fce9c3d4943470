"""A listener that other hosts can reach needs TLS or authentication: without either, serve does
not start unless told to (--insecure-listen, logged as a warning). docs/security.md, "Transport
(TLS)"."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from certs import make_pki
from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import free_port, launch_serve, run_cli
from tokenotel.errors import ConfigError
from tokenotel.security.exposure import check_exposure, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("2001:db8::1", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


LISTENERS = [("grpc_listen", "0.0.0.0:4317"), ("api_listen", "127.0.0.1:4320")]


def test_a_reachable_listener_without_tls_or_auth_is_refused_in_one_sentence() -> None:
    with pytest.raises(ConfigError) as refused:
        check_exposure(LISTENERS, tls=False, auth=False, insecure_listen=False)
    message = str(refused.value)
    assert message.startswith("grpc_listen 0.0.0.0:4317 can be reached from other hosts")
    assert "api_listen" not in message  # loopback: not concerned
    assert "--insecure-listen" in message and "tls_cert_file" in message
    assert message.count(". ") == 0 and "\n" not in message


@pytest.mark.parametrize(
    ("tls", "auth", "insecure_listen", "warned"),
    [(True, False, False, False), (False, True, False, False), (False, False, True, True)],
)
def test_tls_auth_or_insecure_listen_lets_it_start(
    caplog: pytest.LogCaptureFixture, tls: bool, auth: bool, insecure_listen: bool, warned: bool
) -> None:
    with caplog.at_level(logging.WARNING, logger="tokenotel.security.exposure"):
        check_exposure(LISTENERS, tls=tls, auth=auth, insecure_listen=insecure_listen)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == (
        [
            "insecure_listen: grpc_listen 0.0.0.0:4317 listen in plaintext without "
            "authentication; anyone who can reach them can send or read token events"
        ]
        if warned
        else []
    )


def test_loopback_listeners_need_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_exposure(
            [("grpc_listen", "127.0.0.1:4317"), ("http_listen", "[::1]:4318")],
            tls=False,
            auth=False,
            insecure_listen=True,
        )
    assert caplog.records == []


# -- tokenotel serve ------------------------------------------------------------------------


def _listen(grpc_host: str) -> tuple[int, int, list[str]]:
    grpc_port, http_port = free_port(), free_port()
    args = [
        "--grpc-listen",
        f"{grpc_host}:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--api-listen",
        f"127.0.0.1:{free_port()}",
    ]
    return grpc_port, http_port, args


@pytest.mark.e2e
def test_serve_on_all_addresses_without_tls_or_auth_does_not_start(tmp_path: Path) -> None:
    _, _, listen = _listen("0.0.0.0")
    result = run_cli("serve", "--data-dir", str(tmp_path / "data"), *listen)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tokenotel: grpc_listen 0.0.0.0:")
    assert "--insecure-listen" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything was created


@pytest.mark.e2e
def test_serve_on_all_addresses_with_insecure_listen_starts_and_warns(tmp_path: Path) -> None:
    grpc_port, http_port, listen = _listen("0.0.0.0")
    data_dir = tmp_path / "data"
    serve = launch_serve(
        ["--data-dir", str(data_dir), *listen, "--insecure-listen"],
        data_dir=data_dir,
        grpc_port=grpc_port,
        http_port=http_port,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            record = log_record("token.used", {"token.id": "t"}, time_unix_nano=RECENT_NS)
            grpc_export(channel, export_request(record).SerializeToString())
    finally:
        assert serve.stop() == 0
    assert (
        f"WARNING tokenotel.security.exposure: insecure_listen: grpc_listen 0.0.0.0:{grpc_port}"
        in (serve.output())
    )


@pytest.mark.e2e
def test_serve_on_all_addresses_with_tls_starts_without_a_warning(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    grpc_port, http_port, listen = _listen("0.0.0.0")
    data_dir = tmp_path / "data"
    cert, key = pki.server
    serve = launch_serve(
        [
            "--data-dir",
            str(data_dir),
            *listen,
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
        ],
        data_dir=data_dir,
        grpc_port=grpc_port,
        http_port=http_port,
        tls=pki.context(),
    )
    try:
        credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{grpc_port}", credentials) as channel:
            record = log_record("token.used", {"token.id": "t"}, time_unix_nano=RECENT_NS)
            grpc_export(channel, export_request(record).SerializeToString())
    finally:
        assert serve.stop() == 0
    assert "WARNING tokenotel.security.exposure" not in serve.output()
    assert f"OTLP/gRPC on 0.0.0.0:{grpc_port} (TLS)" in serve.output()
