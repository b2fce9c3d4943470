"""The self-audit (docs/security.md, "Authentication and roles"): tokenotel's own credentials are
tokens in its own trail, written through the real pipeline into an embedded store. Creations and
revocations are stored once (also across a restart), uses once per address and minute, failures
each but at most so many a second; a presented secret only as its fingerprint."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inprocess import InProcessIngest
from tokenotel.security.audit import JOURNAL_FILE, Caller, SelfAudit
from tokenotel.security.credentials import (
    Failure,
    Role,
    add_credential,
    read_credentials,
    revoke_credential,
)

#: An instant to count minutes and seconds from (a minute's start), as the audit's clock.
T0 = 1_790_000_040.0
FROM_GATEWAY = Caller(
    "203.0.113.7", "OTLP/gRPC", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
)
FROM_OTHER = Caller("2001:db8::9", "OTLP/HTTP", "/v1/logs", "POST")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessIngest]:
    """One store for the module (each test reads its own credentials' events), and a fresh
    journal for each test."""
    ingest = InProcessIngest(tmp_path_factory.mktemp("audit") / "data")
    yield ingest
    ingest.close()


@pytest.fixture(autouse=True)
def fresh_journal(ingest: InProcessIngest) -> None:
    (ingest.pipeline.store.options.data_dir / JOURNAL_FILE).unlink(missing_ok=True)


def audit_of(ingest: InProcessIngest, clock: Clock | None = None, **limits: Any) -> SelfAudit:
    journal = ingest.pipeline.store.options.data_dir / JOURNAL_FILE
    return SelfAudit(ingest.pipeline.export, journal, clock=clock or Clock(), **limits)


def stored(ingest: InProcessIngest, tokens: list[str], *columns: str) -> list[tuple[Any, ...]]:
    """The self-audit events of ``tokens`` (ids), oldest first; events of one millisecond (the
    credentials file's precision) in the order ``tokens`` names them."""
    return ingest.rows(
        f"SELECT {', '.join(columns)} FROM token_events WHERE source = 'tokenotel' "
        "AND token_id IN {tokens:Array(String)} "
        "ORDER BY event_time, event_name, indexOf({tokens:Array(String)}, token_id)",
        {"tokens": tokens},
    )


def test_creations_and_revocations_are_stored_once_also_after_a_restart(
    ingest: InProcessIngest, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.json"
    kept, _ = add_credential(path, Role.INGEST, "gateway", actor="ops")
    gone, _ = add_credential(path, Role.READ, "grafana", actor="ops")
    revoke_credential(path, gone.id, actor="alice")

    audit = audit_of(ingest)
    audit.credentials_loaded(read_credentials(path))
    audit.credentials_loaded(read_credentials(path))  # read again before they were written
    ingest.run(audit.stop())
    again = audit_of(ingest)  # a restart: a new audit on the same data directory
    again.credentials_loaded(read_credentials(path))
    ingest.run(again.stop())

    columns = ("event_name", "token_id", "principal_id", "actor_id", "scopes")
    assert stored(ingest, [kept.id, gone.id], *columns) == [
        ("token.created", kept.id, "gateway", "ops", ["ingest"]),
        ("token.created", gone.id, "grafana", "ops", ["read"]),
        ("token.revoked", gone.id, "grafana", "alice", ["read"]),
    ]
    journal = ingest.pipeline.store.options.data_dir / JOURNAL_FILE
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    # The token's status follows its own events, as for any token.
    assert ingest.rows(
        "SELECT token_status FROM token_events WHERE token_id = {id:String} ORDER BY event_time",
        {"id": gone.id},
    ) == [("active",), ("revoked",)]


def test_a_use_is_stored_once_per_credential_address_and_minute(
    ingest: InProcessIngest, tmp_path: Path
) -> None:
    record, credential = add_credential(tmp_path / "credentials.json", Role.INGEST, "gateway")
    clock = Clock()
    audit = audit_of(ingest, clock)
    for second in range(60):  # 50 requests a second, for a minute, from the gateway
        clock.now = T0 + second
        for _ in range(50):
            audit.used(record, credential, FROM_GATEWAY)
    audit.used(record, credential, FROM_OTHER)  # another address in the same minute
    clock.now = T0 + 60
    audit.used(record, credential, FROM_GATEWAY)  # the next minute
    ingest.run(audit.stop())

    columns = ("event_name", "token_id", "toString(client_ip)", "url_path", "http_method")
    rows = stored(ingest, [record.id], *columns)
    assert rows == [
        ("token.used", record.id, "::ffff:203.0.113.7", FROM_GATEWAY.target, ""),
        ("token.used", record.id, "2001:db8::9", "/v1/logs", "POST"),
        ("token.used", record.id, "::ffff:203.0.113.7", FROM_GATEWAY.target, ""),
    ]
    # The credential is a secret like any: stored as its fingerprint only.
    fingerprints = {row[0] for row in stored(ingest, [record.id], "token_fingerprint")}
    assert fingerprints == {ingest.pipeline.fingerprint(credential)}


def test_failures_are_each_stored_up_to_the_limit_and_the_rest_counted_in_the_log(
    ingest: InProcessIngest, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    audit = audit_of(ingest, clock, failed_per_s=100)
    for _ in range(250):  # a flood in one second
        audit.failed(
            Failure.UNKNOWN, FROM_GATEWAY, presented="tko_00000000_" + "x" * 43, token_id="00000000"
        )
    clock.now = T0 + 1
    audit.failed(Failure.MISSING, FROM_OTHER, status=401)  # the next second counts anew
    with caplog.at_level(logging.WARNING, logger="tokenotel.security.audit"):
        ingest.run(audit.stop())

    counts = ingest.rows(
        "SELECT failure_reason, token_id, outcome, count() FROM token_events "
        "WHERE event_name = 'token.auth_failed' GROUP BY ALL ORDER BY failure_reason"
    )
    assert counts == [
        ("missing", "anonymous", "failure", 1),
        ("unknown", "00000000", "failure", 100),
    ]
    assert "150 failed attempts were not recorded as events (more than 100 a second)" in (
        caplog.text
    )


def test_a_valid_credential_of_the_wrong_role_is_an_access_denied(
    ingest: InProcessIngest, tmp_path: Path
) -> None:
    record, credential = add_credential(tmp_path / "credentials.json", Role.INGEST, "gateway")
    audit = audit_of(ingest)
    query_api = Caller("127.0.0.1", "query API", "/tokenotel.v1.TokenAudit/SearchEvents")
    audit.failed(Failure.WRONG_ROLE, query_api, credential=record, presented=credential)
    ingest.run(audit.stop())
    assert stored(
        ingest, [record.id], "event_name", "outcome", "failure_reason", "token_id", "principal_id",
        "service_name", "scope_name", "attributes",
    ) == [
        (
            "token.access_denied", "failure", "insufficient_scope", record.id, "gateway",
            "tokenotel", "tokenotel.security", {"tokenotel.listener": "query API"},
        )
    ]  # fmt: skip
