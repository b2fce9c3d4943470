"""Tamper evidence end to end: ``tokenotel serve`` fed by the OpenTelemetry SDK, checkpoints
published to a directory, ``tokenotel verify`` on the stopped data directory and through a
running service's query API (docs/tamper-evidence.md)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from inprocess import embedded_store
from otel_sdk import CheckedExporter, logger_provider
from otlp_builders import RECENT_NS
from processes import ServeProcess, clean_env, run_cli
from tokenotel.store.ledger import JOURNAL_FILE

pytestmark = pytest.mark.e2e  # starts tokenotel processes


def send(serve: ServeProcess, token: str, count: int) -> None:
    """``count`` token events through the SDK's OTLP/gRPC exporter, one request each."""
    exporter = CheckedExporter(OTLPLogExporter(endpoint=serve.grpc_target, insecure=True))
    provider = logger_provider(exporter, {"service.name": "billing-api"})
    logger = provider.get_logger("billing.auth")
    for i in range(count):
        logger.emit(
            event_name="token.used",
            timestamp=RECENT_NS + i,
            attributes={"token.id": token, "client.address": "203.0.113.7"},
        )
    provider.shutdown()
    assert exporter.results == [LogRecordExportResult.SUCCESS] * count


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def verify(data_dir: Path, *args: str) -> tuple[int, str]:
    result = run_cli("verify", "--public-key", str(data_dir / "signing.pub"), *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def test_verify_after_a_service_stopped_and_after_a_row_changed(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    data, published = tmp_path / "data", tmp_path / "published"
    serve = serve_factory("--checkpoint-dir", str(published), data_dir=data)
    send(serve, "tok_a", 3)
    send(serve, "tok_b", 2)
    assert serve.stop() == 0, serve.output()
    # PRIVATE+KEY+<name>+<id>+<base64 key>: the key's base64 may hold "+" itself.
    secret = (data / "signing.key").read_text().strip().split("+", 4)[4]
    assert len(secret) == 44  # base64 of 0x01 and the 32-byte seed
    assert secret not in serve.output()  # the log names the key's file and public key only

    code, out = verify(data, "--data-dir", str(data), "--checkpoints", str(published))
    assert code == 0, out
    assert re.search(r"\[store and .*\.checkpoint\]: valid: ", out)
    assert "(tree size 5, final)" in out  # the checkpoint written as the service stopped
    assert "5/5 inserts valid" in out
    assert "0 events after the newest checkpoint, not yet covered" in out

    store = embedded_store(data)
    try:
        store.command(
            "ALTER TABLE token_events UPDATE client_ip = toIPv6('198.51.100.1') "
            "WHERE token_id = 'tok_b' AND event_time = fromUnixTimestamp64Nano("
            f"{RECENT_NS + 1}) SETTINGS mutations_sync = 2"
        )
    finally:
        store.close()
    code, out = verify(data, "--data-dir", str(data), "--checkpoints", str(published))
    assert code == 1
    assert re.search(r"^insert 4 \(1 event at .*\): INVALID: its events were changed: hash value "
                     r"doesn't match$", out, re.M)  # fmt: skip
    assert "4/5 inserts valid" in out


def test_events_after_the_newest_checkpoint_are_not_yet_covered(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    """A service killed before its next checkpoint: what it wrote since is valid, and not yet
    covered by anything signed."""
    data = tmp_path / "data"
    serve = serve_factory(data_dir=data, env=clean_env(TOKENOTEL_CHECKPOINT_INTERVAL_S="3600"))
    send(serve, "tok_a", 4)
    journal = data / JOURNAL_FILE  # gone once every insert is sealed
    wait_until(lambda: not journal.exists(), 30, "the inserts to be sealed")
    serve.proc.send_signal(signal.SIGKILL)
    serve.proc.wait(30)
    serve.returncode = -9
    code, out = verify(data, "--data-dir", str(data))
    assert code == 0, out
    assert out.splitlines()[-3:] == [
        "0/0 checkpoints valid",
        "4/4 inserts valid",
        "4 events after the newest checkpoint, not yet covered",
    ]
    assert re.search(r"^insert 3 \(1 event at .*\): not yet covered$", out, re.M)


def test_verify_through_the_query_api_checks_published_checkpoints_here(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    """The service checks its store; this machine checks the service's checkpoints with its own
    public key and its own published copies by consistency proofs. Deleting the newest insert
    with its leaf and checkpoints shows against the copies."""
    data, published = tmp_path / "data", tmp_path / "published"
    every_second = clean_env(TOKENOTEL_CHECKPOINT_INTERVAL_S="1")
    serve = serve_factory("--checkpoint-dir", str(published), data_dir=data, env=every_second)
    send(serve, "tok_a", 3)
    wait_until(lambda: any(published.rglob("000000000003-*.checkpoint")), 30, "a checkpoint")
    code, out = verify(data, "--server", serve.api_target, "--checkpoints", str(published))
    assert code == 0, out
    assert "3/3 inserts valid" in out
    assert re.search(r"^(\d+)/\1 published checkpoints consistent with the service's tree "
                     r"\(checked here\)$", out, re.M)  # fmt: skip
    ports = serve.ports
    assert serve.stop() == 0, serve.output()

    store = embedded_store(data)
    try:
        for table, where in [
            ("token_events", "ingested_at = (SELECT max(ingested_at) FROM token_events)"),
            ("ledger", "sequence = 2"),
            ("checkpoints", "tree_size = 3"),
        ]:
            store.command(f"ALTER TABLE {table} DELETE WHERE {where} SETTINGS mutations_sync = 2")
    finally:
        store.close()
    elsewhere = tmp_path / "elsewhere"
    serve = serve_factory(
        "--checkpoint-dir", str(elsewhere), data_dir=data, env=every_second, ports=ports
    )
    try:  # once it signed what it holds now
        wait_until(lambda: any(elsewhere.rglob("000000000002-*.checkpoint")), 30, "a checkpoint")
        code, out = verify(data, "--server", serve.api_target, "--checkpoints", str(published))
    finally:
        serve.stop()
    assert code == 1, out
    assert re.search(r"\(tree size 3(, final)?\) \[.*published.*\]: INVALID: it covers 3 inserts "
                     r"and the service's newest checkpoint only 2: the newest inserts were "
                     r"deleted$", out, re.M)  # fmt: skip
