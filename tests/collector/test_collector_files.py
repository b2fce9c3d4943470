"""Log files → collector (agent-files.yaml) → ``tokenotel serve`` → store.

Token event files (JSON lines in tokenotel's generic format) and gateway JSON access logs, as
collector-config/README.md describes them: lines present when the collector starts, lines
appended while it runs and a file created while it runs all arrive as correctly mapped token
events; lines that are not token events do not.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from otelcol import serve_behind_collector, wait_until

from otlp_builders import RECENT_NS, rfc3339_ms, rfc3339_ns
from processes import EMPTY_EVENT, query_json, run_cli

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

SECOND = 1_000_000_000
MS = 1_000_000
DELIVERY_TIMEOUT_S = 60
EXPORTER = "otlp_grpc/tokenotel"
RAW_TOKEN = "glpat-" + "".join(
    secrets.choice(string.ascii_letters + string.digits) for _ in "x" * 20
)
EXPIRES_MS = RECENT_NS // MS + 90 * 86_400_000


def ns_at(seconds: float) -> int:
    return RECENT_NS + int(seconds * SECOND)


def rfc3339(ns: int, offset_hours: int = 0) -> str:
    """An RFC 3339 time with millisecond fraction, written in the given UTC offset."""
    tz = timezone(timedelta(hours=offset_hours)) if offset_hours else UTC
    moment = datetime.fromtimestamp(ns // SECOND, tz)
    suffix = moment.strftime("%z")
    suffix = "Z" if not offset_hours else f"{suffix[:3]}:{suffix[3:]}"
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ns % SECOND // MS:03d}{suffix}"


#: A stored event from a file, before the fields each case sets.
DEFAULTS: dict[str, Any] = EMPTY_EVENT
FINGERPRINT = "<fingerprint of RAW_TOKEN>"
#: Stands for "the time the collector read the line" (the line has no time of its own).
READ_TIME = "<observed time>"

# Each case: (file, line as written, the stored event or None when it must not arrive).
Case = tuple[str, Any, dict[str, Any] | None]

TOKEN_FILE, SECOND_TOKEN_FILE = "tokens/app.jsonl", "tokens/rotation.jsonl"
ACCESS_LOG = "gateway/access.log"

# In the files before the collector starts.
AT_START: list[Case] = [
    (
        TOKEN_FILE,
        {
            "time": rfc3339(ns_at(1.125)),
            "event": "token.used",
            "token.id": "tok_f1",
            "user.id": "alice",
            "client.address": "203.0.113.7",
            "token.scopes": ["repo", "read:org"],
            "http.response.status_code": 200,
            "attempt": 3,
            "ratio": 0.5,
            "mfa": True,
            "context": {"team": "core"},
        },
        {
            "time": rfc3339_ns(ns_at(1.125)),
            "event_name": "token.used",
            "token_id": "tok_f1",
            "principal_id": "alice",
            "client_ip": "203.0.113.7",
            "scopes": ["repo", "read:org"],
            "http_status": 200,
            "source": "file",
            "attributes": {
                "attempt": "3",
                "ratio": "0.5",
                "mfa": "true",
                "context": '{"team":"core"}',
                "log.file.name": "app.jsonl",
            },
        },
    ),
    (TOKEN_FILE, {"time": rfc3339(ns_at(1.5)), "event": "user.login", "user.id": "bob"}, None),
    (TOKEN_FILE, "not a JSON object", None),
    (TOKEN_FILE, {"time": rfc3339(ns_at(1.6)), "token.id": "tok_no_event"}, None),
    (
        TOKEN_FILE,
        # A local time two hours ahead of UTC, and a source of its own.
        {
            "time": rfc3339(ns_at(2.5), offset_hours=2),
            "event": "token.revoked",
            "token.id": "tok_f1",
            "token.actor.id": "admin-7",
            "token.reason": "leak",
            "token.source": "vault",
        },
        {
            "time": rfc3339_ns(ns_at(2.5)),
            "event_name": "token.revoked",
            "token_status": "revoked",
            "token_id": "tok_f1",
            "actor_id": "admin-7",
            "reason": "leak",
            "source": "vault",
            "attributes": {"log.file.name": "app.jsonl"},
        },
    ),
    (
        TOKEN_FILE,
        # No time: tokenotel uses the time the collector read the line.
        {
            "event": "token.created",
            "token.id": "tok_f2",
            "token.type": "api_key",
            "token.expires_at": rfc3339(EXPIRES_MS * MS),
        },
        {
            "time": READ_TIME,
            "event_name": "token.created",
            "token_status": "active",
            "token_id": "tok_f2",
            "token_type": "api_key",
            "expires_at": rfc3339_ms(EXPIRES_MS),
            "source": "file",
            "attributes": {"log.file.name": "app.jsonl"},
        },
    ),
    (
        ACCESS_LOG,
        {
            "ts": rfc3339(ns_at(3.25)),
            "remote_addr": "203.0.113.7",
            "method": "GET",
            "path": "/api/repos/1",
            "route": "/api/repos/{id}",
            "status": 200,
            "token_id": "tok_g1",
            "user_id": "alice",
            "user_agent": "curl/8.5.0",
            "request_id": "req-g1",
            "latency_ms": 12,
        },
        {
            "time": rfc3339_ns(ns_at(3.25)),
            "event_name": "token.used",
            "token_id": "tok_g1",
            "principal_id": "alice",
            "client_ip": "203.0.113.7",
            "http_method": "GET",
            "url_path": "/api/repos/1",
            "http_route": "/api/repos/{id}",
            "http_status": 200,
            "user_agent": "curl/8.5.0",
            "request_id": "req-g1",
            "source": "gateway",
            "attributes": {"latency_ms": "12", "log.file.name": "access.log"},
        },
    ),
    (
        ACCESS_LOG,
        {
            "ts": rfc3339(ns_at(3.5)),
            "remote_addr": "2001:db8::7",
            "method": "POST",
            "path": "/api/repos",
            "route": "/api/repos",
            "status": 401,
            "token_id": "tok_g9",
            "failure_reason": "expired",
            "request_id": "req-g2",
        },
        {
            "time": rfc3339_ns(ns_at(3.5)),
            "event_name": "token.auth_failed",
            "outcome": "failure",
            "failure_reason": "expired",
            "token_id": "tok_g9",
            "client_ip": "2001:db8::7",
            "http_method": "POST",
            "url_path": "/api/repos",
            "http_route": "/api/repos",
            "http_status": 401,
            "request_id": "req-g2",
            "source": "gateway",
            "attributes": {"log.file.name": "access.log"},
        },
    ),
    (
        ACCESS_LOG,
        {
            "ts": rfc3339(ns_at(3.6)),
            "remote_addr": "198.51.100.4",
            "path": "/healthz",
            "status": 200,
        },
        None,
    ),
    (
        ACCESS_LOG,
        # The raw token logged by the gateway, and the status as a string.
        {
            "ts": rfc3339(ns_at(3.75)),
            "remote_addr": "198.51.100.5",
            "method": "DELETE",
            "path": "/api/projects/9",
            "status": "403",
            "token": RAW_TOKEN,
            "token_type": "pat",
        },
        {
            "time": rfc3339_ns(ns_at(3.75)),
            "event_name": "token.auth_failed",
            "outcome": "failure",
            "token_fingerprint": FINGERPRINT,
            "token_type": "pat",
            "client_ip": "198.51.100.5",
            "http_method": "DELETE",
            "url_path": "/api/projects/9",
            "http_status": 403,
            "source": "gateway",
            "attributes": {"log.file.name": "access.log"},
        },
    ),
]

# Appended while the collector runs, to the same files and to a file created meanwhile.
APPENDED: list[Case] = [
    (
        TOKEN_FILE,
        {
            "time": rfc3339(ns_at(4.25)),
            "event": "token.used",
            "token.id": "tok_f2",
            "client.address": "2001:db8:85a3::8a2e:370:7334",
            "user_agent.original": "sdk/1.0",
        },
        {
            "time": rfc3339_ns(ns_at(4.25)),
            "event_name": "token.used",
            "token_status": "active",
            "token_id": "tok_f2",
            "client_ip": "2001:db8:85a3::8a2e:370:7334",
            "user_agent": "sdk/1.0",
            "source": "file",
            "attributes": {"log.file.name": "app.jsonl"},
        },
    ),
    (
        ACCESS_LOG,
        {
            "ts": rfc3339(ns_at(4.5)),
            "remote_addr": "192.0.2.44",
            "method": "GET",
            "path": "/api/missing",
            "status": 404,
            "token_id": "tok_g5",
        },
        {
            "time": rfc3339_ns(ns_at(4.5)),
            "event_name": "token.used",
            "token_id": "tok_g5",
            "client_ip": "192.0.2.44",
            "http_method": "GET",
            "url_path": "/api/missing",
            "http_status": 404,
            "source": "gateway",
            "attributes": {"log.file.name": "access.log"},
        },
    ),
    (ACCESS_LOG, {"ts": rfc3339(ns_at(4.6)), "remote_addr": "192.0.2.45", "status": 200}, None),
    (
        SECOND_TOKEN_FILE,
        {
            "time": rfc3339(ns_at(5)),
            "event": "token.rotated",
            "token.id": "tok_f3",
            "token.previous_id": "tok_f2",
            "user.id": "carol",
        },
        {
            "time": rfc3339_ns(ns_at(5)),
            "event_name": "token.rotated",
            "token_status": "active",
            "token_id": "tok_f3",
            "previous_token_id": "tok_f2",
            "principal_id": "carol",
            "source": "file",
            "attributes": {"log.file.name": "rotation.jsonl"},
        },
    ),
]


def tokens(cases: list[Case]) -> int:
    return sum(expected is not None for _, _, expected in cases)


def append(root: Path, cases: list[Case]) -> None:
    """Appends each line with one write, as a logging process does."""
    for name, line, _ in cases:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = line if isinstance(line, str) else json.dumps(line)
        with path.open("a", encoding="utf-8") as f:
            f.write(text + "\n")


@dataclass
class Delivered:
    data_dir: Path
    started_ns: int
    stopped_ns: int
    sent_at_start: float
    sent: float
    filtered: float


@pytest.fixture(scope="module")
def delivered(
    tmp_path_factory: pytest.TempPathFactory, collector_binary: Path
) -> Iterator[Delivered]:
    """Writes AT_START, starts serve and agent-files.yaml, waits for delivery, appends
    APPENDED, waits again, stops both; yields the data directory and the collector's counts."""
    root = tmp_path_factory.mktemp("files")
    append(root, AT_START)
    started_ns = time.time_ns()
    with serve_behind_collector(
        root,
        "agent-files.yaml",
        TOKEN_EVENT_FILES=f"{root}/tokens/*.jsonl",
        GATEWAY_ACCESS_LOGS=f"{root}/gateway/access*.log",
    ) as (_, collector):

        def sent() -> float:
            return collector.metric("otelcol_exporter_sent_log_records", exporter=EXPORTER)

        first = tokens(AT_START)
        wait_until(
            lambda: sent() >= first,
            DELIVERY_TIMEOUT_S,
            f"{first} token events from the files:\n{collector.output()}",
        )
        sent_at_start = sent()
        append(root, APPENDED)
        total = first + tokens(APPENDED)
        wait_until(
            lambda: sent() >= total,
            DELIVERY_TIMEOUT_S,
            f"{total} token events after appending:\n{collector.output()}",
        )
        # The lines that are not token events have been read (and dropped) as well.
        dropped = len(AT_START) + len(APPENDED) - total
        wait_until(
            lambda: collector.metric("otelcol_processor_filter_logs_filtered") >= dropped,
            DELIVERY_TIMEOUT_S,
            f"{dropped} other lines to be dropped:\n{collector.output()}",
        )
        stopped_ns = time.time_ns()
        sent_total = sent()
        filtered = collector.metric("otelcol_processor_filter_logs_filtered")
    result = Delivered(root / "data", started_ns, stopped_ns, sent_at_start, sent_total, filtered)
    yield result


def key(event: dict[str, Any]) -> tuple[str, str]:
    return event["token_id"] or event["token_fingerprint"], event["event_name"]


def test_collector_forwards_every_token_line_once_and_drops_the_others(
    delivered: Delivered,
) -> None:
    assert delivered.sent_at_start == tokens(AT_START)
    assert delivered.sent == tokens(AT_START) + tokens(APPENDED)
    assert delivered.filtered == len(AT_START) + len(APPENDED) - delivered.sent


def test_file_lines_arrive_as_correctly_mapped_events(delivered: Delivered) -> None:
    fingerprint = run_cli("fingerprint", "--data-dir", str(delivered.data_dir), stdin=RAW_TOKEN)
    assert fingerprint.returncode == 0, fingerprint.stderr
    current = fingerprint.stdout.splitlines()[0]  # (the last line: GitHub's hash of it)
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]+:[0-9a-f]{64}", current)

    stored = query_json(delivered.data_dir)
    window = (rfc3339_ns(delivered.started_ns), rfc3339_ns(delivered.stopped_ns))
    for event in stored:
        # When the collector read the line: while the test ran.
        assert window[0] <= event.pop("observed_time") <= window[1]
    expected = []
    for _, _, event in AT_START + APPENDED:
        if event is None:
            continue
        event = DEFAULTS | event
        if event["token_fingerprint"] == FINGERPRINT:
            event["token_fingerprint"] = current
        expected.append(event)
    by_key = {key(e): e for e in stored}
    assert len(by_key) == len(stored) == len(expected)
    for event in expected:
        actual = by_key[key(event)]
        if event["time"] == READ_TIME:
            assert window[0] <= actual["time"] <= window[1]
            event["time"] = actual["time"]
        assert actual == event


def test_lines_appended_while_running_arrive(delivered: Delivered) -> None:
    stored = {key(e) for e in query_json(delivered.data_dir)}
    assert {("tok_f2", "token.used"), ("tok_g5", "token.used"), ("tok_f3", "token.rotated")} <= (
        stored
    )


def test_lines_that_are_not_token_events_do_not_arrive(delivered: Delivered) -> None:
    stored = query_json(delivered.data_dir)
    assert "tok_no_event" not in {e["token_id"] for e in stored}
    assert "user.login" not in {e["event_name"] for e in stored}
    assert not [e for e in stored if e["url_path"] == "/healthz" or e["client_ip"] == "192.0.2.45"]
    assert not [e for e in stored if e["principal_id"] == "bob"]
