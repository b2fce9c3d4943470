"""The query API of a running service (tokenotel.v1.TokenAudit) and the reading commands
through it: the same answers as from the stopped store, consistent pages while ingest goes on,
a tail that resumes with nothing lost or repeated, errors that name the field, health and
reflection (read by grpcurl, a generic client)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from go_build import GRPCURL, go_installed
from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import ServeProcess, clean_env, free_port, run_cli
from tokenotel.api.readers import SERVICE_RECORD
from tokenotel.mapping.fingerprint import load_key
from tokenotel.v1 import audit_pb2, audit_pb2_grpc

pytestmark = pytest.mark.e2e  # starts tokenotel serve

HOUR = 3_600_000_000_000
SECRET = "ghp_" + "Q7w8E9r0T1y2U3i4O5p6A7s8D9f0G1h2J3k4"


def lifecycle_traffic() -> list[bytes]:
    """Requests with every kind of thing the reading commands show: uses from several
    addresses, failures, scopes that change, a rotation, a revocation, a use after it."""
    t = RECENT_NS
    records = [
        log_record("token.created", {"token.id": "ci_1", "user.id": "alice", "token.type": "pat",
                   "token.scopes": ["repo"], "token.actor.id": "alice",
                   "token.expires_at": "2099-01-01T00:00:00Z"}, time_unix_nano=t),
        *(
            log_record("token.used", {"token.id": "ci_1", "user.id": "alice",
                       "client.address": f"203.0.113.{i % 3}", "token.scopes": ["repo"],
                       "token.request.id": f"use-{i}", "ci.run": i}, time_unix_nano=t + i * 10**9)
            for i in range(1, 30)
        ),
        log_record("token.updated", {"token.id": "ci_1", "token.scopes": ["repo", "admin:org"],
                   "token.scopes_added": ["admin:org"], "token.actor.id": "bob"},
                   time_unix_nano=t + 40 * 10**9),
        *(
            log_record("token.auth_failed", {"token.id": "ci_1", "client.address": "198.51.100.7",
                       "token.failure_reason": "invalid_secret"},
                       time_unix_nano=t + (50 + i) * 10**9)
            for i in range(12)
        ),
        log_record("token.rotated", {"token.id": "ci_2", "token.previous_id": "ci_1",
                   "user.id": "alice", "token.scopes": ["repo"]}, time_unix_nano=t + HOUR),
        log_record("token.used", {"token.id": "ci_1", "client.address": "198.51.100.7"},
                   time_unix_nano=t + HOUR + 10**9),
        log_record("token.created", {"token.value": SECRET, "user.id": "carol"},
                   time_unix_nano=t + 2 * HOUR),
        log_record("token.revoked", {"token.value": SECRET, "token.reason": "leak"},
                   time_unix_nano=t + 2 * HOUR + 10**9),
    ]  # fmt: skip
    return [export_request(*records[i : i + 10]).SerializeToString() for i in range(0, 50, 10)]


def send(serve: ServeProcess, bodies: list[bytes]) -> None:
    with grpc.insecure_channel(serve.grpc_target) as channel:
        for body in bodies:
            grpc_export(channel, body)


@pytest.fixture
def api(serve: ServeProcess) -> Iterator[audit_pb2_grpc.TokenAuditStub]:
    send(serve, lifecycle_traffic())
    with grpc.insecure_channel(serve.api_target) as channel:
        yield audit_pb2_grpc.TokenAuditStub(channel)


READING_COMMANDS = [
    ("query", "--format", "json"),
    ("query", "--format", "csv", "--token", "ci_1", "--outcome", "failure"),
    ("query", "--format", "json", "--ip", "203.0.113.0/24", "--event", "token.used"),
    ("query", "--format", "json", "--token-status", "rotated"),
    ("query", "--format", "table", "--principal", "alice", "--limit", "7"),
    ("tokens", "--format", "json"),
    ("tokens", "--format", "json", "--status", "revoked"),
    ("tokens", "--format", "table", "--scope", "repo"),
    ("timeline", "ci_1", "--format", "json"),
    ("timeline", "ci_1", "--format", "table"),
    ("summary", "--format", "json", "--until", "2099-01-01T00:00:00Z", "--top", "3"),
    ("summary", "--format", "table", "--since", "2000-01-01T00:00:00Z"),
]


def test_the_reading_commands_print_the_same_through_the_service_as_from_the_store(
    serve: ServeProcess,
) -> None:
    send(serve, lifecycle_traffic())
    data_dir = ["--data-dir", str(serve.data_dir)]
    assert json.loads((serve.data_dir / SERVICE_RECORD).read_text())["api"] == serve.api_target
    # With no flag, the running service is found through its data directory.
    through_service = [run_cli(*command, *data_dir) for command in READING_COMMANDS]
    given_server = run_cli("query", "--format", "json", "--server", serve.api_target)
    assert serve.stop() == 0
    assert not (serve.data_dir / SERVICE_RECORD).exists()
    from_store = [run_cli(*command, *data_dir) for command in READING_COMMANDS]
    for command, remote, local in zip(READING_COMMANDS, through_service, from_store, strict=True):
        assert (remote.returncode, local.returncode) == (0, 0), (
            command,
            remote.stderr,
            local.stderr,
        )
        assert remote.stdout == local.stdout, command
        assert remote.stdout.strip(), command
    assert given_server.stdout == from_store[0].stdout
    assert len(from_store[0].stdout.splitlines()) == 47
    timeline = json.loads(from_store[8].stdout)
    assert [c["event_name"] for c in timeline["lifecycle"]] == [
        "token.created", "token.updated", "token.rotated",
    ]  # fmt: skip
    assert [s["scopes"] for s in timeline["scopes"]] == [["repo"], ["repo", "admin:org"]]
    assert timeline["token"]["status"] == "rotated"
    assert [a["client_ip"] for a in timeline["addresses"]] == [
        "203.0.113.1", "203.0.113.2", "203.0.113.0", "198.51.100.7",
    ]  # fmt: skip


def test_a_stale_record_of_a_dead_service_is_ignored(tmp_path: Path, serve: ServeProcess) -> None:
    send(serve, lifecycle_traffic())
    assert serve.stop() == 0
    dead = subprocess.run(["true"], check=True)  # a process that has ended: its pid is free
    record = {"api": f"127.0.0.1:{free_port()}", "pid": 2**22 + 17 + dead.returncode}
    (serve.data_dir / SERVICE_RECORD).write_text(json.dumps(record))
    result = run_cli("tokens", "--format", "json", "--data-dir", str(serve.data_dir))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_search_pages_do_not_skip_or_repeat_while_ingest_goes_on(
    serve: ServeProcess, api: audit_pb2_grpc.TokenAuditStub
) -> None:
    criteria = audit_pb2.EventFilter(tokens=["ci_1"])
    first = api.SearchEvents(audit_pb2.SearchEventsRequest(filter=criteria, page_size=7))
    seen = [e.request_id for e in first.events]
    # More events of the same token arrive between the pages; the search goes on as it began.
    more = export_request(
        *(log_record("token.used", {"token.id": "ci_1", "token.request.id": f"late-{i}"},
                     time_unix_nano=RECENT_NS - 10**9 + i) for i in range(20))
    ).SerializeToString()  # fmt: skip
    send(serve, [more])
    token = first.next_page_token
    while token:
        page = api.SearchEvents(
            audit_pb2.SearchEventsRequest(filter=criteria, page_size=7, page_token=token)
        )
        seen += [e.request_id for e in page.events]
        token = page.next_page_token
    assert len(seen) == 44  # ci_1's events before the search began: none late, none twice
    assert not any(r.startswith("late-") for r in seen)
    assert sorted(r for r in seen if r) == sorted(f"use-{i}" for i in range(1, 30))
    # A new search sees the late ones, first (they happened first).
    again = api.SearchEvents(audit_pb2.SearchEventsRequest(filter=criteria, page_size=5))
    assert [e.request_id for e in again.events] == [f"late-{i}" for i in range(5)]


def test_a_tail_resumes_from_its_cursor_with_nothing_lost_or_repeated(
    serve: ServeProcess, api: audit_pb2_grpc.TokenAuditStub
) -> None:
    criteria = audit_pb2.EventFilter(event_names=["token.used"])

    def batch(n: int) -> bytes:
        return export_request(
            *(log_record("token.used", {"token.id": f"tail_{n}", "token.request.id": f"t{n}-{i}"})
              for i in range(3)),
            log_record("token.auth_failed", {"token.id": f"tail_{n}"}),  # not in the filter
        ).SerializeToString()  # fmt: skip

    received: list[str] = []
    stream = api.TailEvents(audit_pb2.TailEventsRequest(filter=criteria))
    cursor = next(stream).cursor  # from now
    delays: list[float] = []
    for n in range(3):
        sent_at = time.monotonic()
        send(serve, [batch(n)])
        while len([r for r in received if r.startswith(f"t{n}-")]) < 3:
            message = next(stream)
            received += [e.request_id for e in message.events]
            cursor = message.cursor
        delays.append(time.monotonic() - sent_at)
    stream.cancel()
    send(serve, [batch(3), batch(4)])  # while nobody listens
    resumed = api.TailEvents(audit_pb2.TailEventsRequest(filter=criteria, cursor=cursor))
    while len(received) < 15:
        received += [e.request_id for e in next(resumed).events]
    resumed.cancel()
    print(f"tail delivery after Export answered: max {max(delays) * 1000:.0f} ms")
    # Every one once, insert after insert (within an insert, in event time order: here equal).
    assert sorted(received) == [f"t{n}-{i}" for n in range(5) for i in range(3)]
    assert [r.split("-")[0] for r in received] == [f"t{n}" for n in range(5) for _ in range(3)]


def violation(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return error.code(), bad.field_violations[0].field
    return error.code(), ""


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda a: a.SearchEvents(audit_pb2.SearchEventsRequest(
            filter=audit_pb2.EventFilter(ip="198.51.100.0/33"))), "filter.ip"),
        (lambda a: a.SearchEvents(audit_pb2.SearchEventsRequest(page_size=5000)), "page_size"),
        (lambda a: a.SearchEvents(audit_pb2.SearchEventsRequest(page_token="nonsense")),
         "page_token"),
        (lambda a: a.SearchEvents(audit_pb2.SearchEventsRequest(
            filter=audit_pb2.EventFilter(outcome="maybe"))), "filter.outcome"),
        (lambda a: a.ListTokens(audit_pb2.ListTokensRequest(status="asleep")), "status"),
        (lambda a: a.GetTokenTimeline(audit_pb2.GetTokenTimelineRequest()), "token"),
        (lambda a: a.FingerprintSecret(audit_pb2.FingerprintSecretRequest()), "secret"),
    ],
)  # fmt: skip
def test_a_bad_argument_is_invalid_argument_naming_the_field(
    api: audit_pb2_grpc.TokenAuditStub, call: Callable[..., object], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call(api)
    assert violation(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, field)


def test_a_page_token_is_refused_with_another_filter(api: audit_pb2_grpc.TokenAuditStub) -> None:
    first = api.SearchEvents(audit_pb2.SearchEventsRequest(page_size=2))
    other = audit_pb2.EventFilter(tokens=["ci_2"])
    with pytest.raises(grpc.RpcError) as refused:
        api.SearchEvents(
            audit_pb2.SearchEventsRequest(filter=other, page_token=first.next_page_token)
        )
    assert violation(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")


def test_an_unknown_token_is_not_found(api: audit_pb2_grpc.TokenAuditStub) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        api.GetTokenTimeline(audit_pb2.GetTokenTimelineRequest(token="never_seen"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_fingerprint_secret_matches_the_key_and_keeps_nothing(
    serve: ServeProcess, api: audit_pb2_grpc.TokenAuditStub
) -> None:
    answer = api.FingerprintSecret(audit_pb2.FingerprintSecretRequest(secret=SECRET))
    assert serve.stop() == 0
    key = load_key(None, serve.data_dir, create=False)
    assert (answer.fingerprint, answer.key_id) == (key(SECRET), key.key_id)
    assert SECRET not in serve.output()
    tokens = run_cli("tokens", "--format", "json", "--data-dir", str(serve.data_dir))
    assert answer.fingerprint in tokens.stdout and SECRET not in tokens.stdout


def test_with_the_store_down_reads_are_unavailable_with_retry_info(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    down = serve_factory(
        "--clickhouse-url", f"http://default:@127.0.0.1:{free_port()}/tokenotel",
        env=clean_env(TOKENOTEL_RETRY_AFTER_S="3"),
    )  # fmt: skip
    with grpc.insecure_channel(down.api_target) as channel:
        api = audit_pb2_grpc.TokenAuditStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            api.ListTokens(audit_pb2.ListTokensRequest())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(refused.value)
    info = error_details_pb2.RetryInfo()
    assert status is not None and any(d.Unpack(info) for d in status.details)
    assert info.retry_delay.seconds == 3


def test_health_and_reflection_serve_a_generic_client(serve: ServeProcess, api: object) -> None:
    grpcurl = go_installed(GRPCURL, "make grpcurl")
    with grpc.insecure_channel(serve.api_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="tokenotel.v1.TokenAudit"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING

    def grpcurl_run(*args: str) -> str:
        result = subprocess.run(
            [str(grpcurl), "-plaintext", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    services = grpcurl_run(serve.api_target, "list").split()
    assert "tokenotel.v1.TokenAudit" in services and "grpc.health.v1.Health" in services
    assert "ListTokens" in grpcurl_run(serve.api_target, "describe", "tokenotel.v1.TokenAudit")
    answer = json.loads(
        grpcurl_run("-d", '{"status": "revoked"}', serve.api_target,
                    "tokenotel.v1.TokenAudit/ListTokens")
    )  # fmt: skip
    assert [t["owner"] for t in answer["tokens"]] == ["carol"]
    assert serve.stop() == 0
