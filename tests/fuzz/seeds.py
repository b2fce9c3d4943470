"""Builds the fuzzer's seed inputs: realistic token event requests in every format served.

Run ``python tests/fuzz/seeds.py tests/fuzz/corpus`` to write them (``seed-<name>-<format>``
files; the same bytes on every run). Each seed is a request a real exporter could send, with the
parts mapping treats specially: secrets in ``token.value``, Authorization headers and bodies,
scopes as arrays and as strings, nested maps, IPv6 addresses, times of every form and out of
range, the deprecated ``event.name`` attribute, records that are ignored or rejected.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

# otlp_builders sits in tests/, which is not a package: pytest puts it on the path, a script
# run on its own needs it added.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest_input import FORMATS, compress, make_input

from otlp_builders import export_request, log_record, varint
from tokenotel.mapping.decode import JSON, PROTOBUF

T0 = 1_749_999_000_000_000_000  # an event time shortly before ingest_input.RECEIVED_NS
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")

#: Raw secrets the seeds carry; none of them may reach a mapped row.
GITHUB_PAT = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2 + "kLmN"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTc1MDAwMDAwMH0"
    ".c2lnbmF0dXJlLW9mLXRoZS1qd3Q"
)
GITLAB_PAT = "glpat-" + "x7Yz" * 6
SLACK = "xoxb-1234567890-abcdefghij"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
VAULT = "hvs.CAESIJ" + "q" * 24
NPM = "npm_" + "a1B2" * 9
OPENAI = "sk-proj-" + "Z9y8X7w6" * 5
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
BASIC = base64.b64encode(b"ci-bot:hunter2-hunter2").decode()
SECRETS = (GITHUB_PAT, JWT, GITLAB_PAT, SLACK, STRIPE, AWS_KEY_ID, VAULT, NPM, OPENAI, GOOGLE)

RESOURCE = {
    "service.name": "api-gateway",
    "deployment.environment.name": "production",
    "host.name": "gw-1",
    "k8s.pod.labels": {"app": "gateway", "tier": "edge"},
}


@dataclass(frozen=True)
class Seed:
    """One request, and how many rows mapping makes of it."""

    name: str
    request: ExportLogsServiceRequest
    rows: int


def _used() -> Seed:
    record = log_record(
        "token.used",
        {
            "token.id": "pat_123",
            "token.value": GITHUB_PAT,
            "token.type": "pat",
            "user.id": "alice",
            "client.address": "203.0.113.7",
            "user_agent.original": "curl/8.5.0",
            "token.scopes": ["repo", "read:org"],
            "http.request.method": "GET",
            "http.route": "/repos/{owner}/{repo}",
            "url.path": "/repos/acme/widgets",
            "http.response.status_code": 200,
            "token.request.id": "req-7f3a",
            "token.client.asn": 64500,
            "geo.country.iso_code": "NL",
        },
        time_unix_nano=T0,
        observed_time_unix_nano=T0 + 1_500_000,
        severity_number=9,
        severity_text="INFO",
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
    )
    return Seed("used", export_request(record, resource=RESOURCE, scope="gateway.auth"), 1)


def _auth_failed() -> Seed:
    records = [
        log_record(
            "token.auth_failed",
            {
                "http.request.header.authorization": f"Bearer {JWT}",
                "client.address": "2001:db8::1",
                "token.failure_reason": "expired",
                "token.outcome": "FAILURE",
                "http.response.status_code": 401,
            },
            body=f"rejected token {GITLAB_PAT} for alice",
            time_unix_nano=T0 + 1,
            severity_number=13,
            severity_text="WARN",
        ),
        log_record(
            "token.auth_failed",
            {
                "http.request.header.authorization": [f"Basic {BASIC}"],
                "client.address": "[2001:db8::2]:443",
                "token.failure_reason": "malformed",
                "http.response.status_code": "401",
            },
            body={"message": "bad credentials", "header": f"Authorization: bearer {SLACK}"},
            time_unix_nano=T0 + 2,
        ),
        log_record(
            "token.auth_failed",
            {"token.id": "key_9", "client.address": "fe80::1%eth0", "token.outcome": "maybe"},
            time_unix_nano=T0 + 3,
        ),
    ]
    return Seed("auth-failed", export_request(*records, resource=RESOURCE), 3)


def _created() -> Seed:
    record = log_record(
        "token.created",
        {
            "token.id": "key_42",
            "token.value": STRIPE,
            "token.type": "api_key",
            "token.name": "billing ci",
            "token.hint": "...p7dc",
            "token.principal.id": "svc-billing",
            "token.principal.type": "service",
            "token.actor.id": "bob",
            "token.tenant": "acme",
            "token.scopes": "read write,admin  billing:*",
            "token.expires_at": "2026-01-01T00:00:00Z",
            "token.issued_at": 1_749_999_000_000,
            "token.source": "vault",
            "labels": {"team": "ci", "nested": {"deep": [1, 2.5, True, None, b"\x00\xff"]}},
            "notes": f"created with {AWS_KEY_ID} and {VAULT}",
        },
        time_unix_nano=T0,
    )
    return Seed("created", export_request(record, resource={"service.name": "vault"}), 1)


def _lifecycle() -> Seed:
    records = [
        log_record(
            "token.rotated",
            {"token.id": "key_43", "token.previous_id": "key_42", "token.reason": "schedule"},
        ),
        log_record(
            "token.updated",
            {
                "token.id": "key_43",
                "token.scopes_added": ["admin", ""],
                "token.scopes_removed": "billing:* write",
            },
        ),
        log_record("token.revoked", {"token.id": "key_43", "token.reason": "leak"}),
        log_record("token.refreshed", {"token.value": JWT, "token.type": "oauth_refresh"}),
        log_record("token.leak_detected", {"token.id": "key_43", "location": NPM}),
        log_record("token.custom_thing", {"token.id": "key_43"}),  # stored as sent
    ]
    return Seed("lifecycle", export_request(*records, resource=RESOURCE, scope="vault.audit"), 6)


def _odd_times() -> Seed:
    records = [
        # No event time: observed time stands in; no observed time either: the receive time.
        log_record("token.used", {"token.id": "t1"}, observed_time_unix_nano=T0),
        log_record("token.used", {"token.id": "t2"}),
        # Times after 2262 do not fit the column: the record is rejected with a message.
        log_record("token.used", {"token.id": "t3"}, time_unix_nano=2**63),
        log_record("token.used", {"token.id": "t4"}, time_unix_nano=2**63 - 1),
        log_record("token.used", {"token.id": "t5"}, time_unix_nano=T0, observed_time_unix_nano=1),
        log_record(
            "token.created",
            {
                "token.id": "t6",
                "token.expires_at": "1899-12-31T23:59:59",
                "token.issued_at": "0001-01-01T00:00:00+14:00",
            },
        ),
        log_record(
            "token.created",
            {"token.id": "t7", "token.expires_at": 1.75e9, "token.issued_at": "1749999000000"},
        ),
        log_record(
            "token.created",
            {"token.id": "t8", "token.expires_at": T0, "token.issued_at": "-5"},
        ),
        log_record(
            "token.created",
            {"token.id": "t9", "token.expires_at": "2300-01-01", "token.issued_at": "\u00b2"},
        ),
        log_record(
            "token.created",
            {"token.id": "t10", "token.expires_at": float("nan"), "token.issued_at": "9" * 40},
        ),
        log_record(
            "token.created",
            {"token.id": "t11", "token.expires_at": T0 // 1000, "token.issued_at": "  12  "},
        ),
    ]
    return Seed("odd-times", export_request(*records), 10)


def _odd_records() -> Seed:
    records = [
        # The deprecated event.name attribute names the event when event_name is empty.
        log_record("", {"event.name": "token.disabled", "token.id": "t1"}),
        log_record("", {"token.id": "t2", "event.name": "token.enabled"}),
        log_record("http.request", {"token.id": "t3"}),  # not a token event: ignored
        log_record("token.used", {"user.id": "nobody"}),  # no identity: rejected
        log_record("token.used", {"token.id": "t4", "token.value": ""}),
        log_record("token.used", {"token.value": 12345, "token.client.asn": 2**40}),
        log_record("token.used", {"token.value": ["a", "b"], "http.response.status_code": -1}),
        log_record("token.used", {"token.value": b"\x01raw", "token.client.asn": 7.0}),
        log_record("token.used", {"token.id": "t5"}, severity_number=-1),
        log_record("token.used", {"token.id": "t6"}, severity_number=300, flags=1),
        log_record("token.used", {"token.id": "t7"}, trace_id=bytes(16), span_id=bytes(8)),
        log_record("token.used", {"token.id": "t8"}, body=[OPENAI, 3, {"k": GOOGLE}]),
        log_record("token.used", {"token.id": "t9", "client.address": "not an address"}),
        log_record("token.used", {"token.id": "t10", "client.address": "::ffff:192.0.2.1"}),
        log_record("token.used", {"token.id": "t11", "client.address": " 203.0.113.9 "}),
    ]
    return Seed("odd-records", export_request(*records), 13)


def _unknown_fields() -> bytes:
    """A request whose record, and the request itself, carry fields no OTLP version defines, of
    every wire type (a newer exporter's fields, a group): decoding keeps them, mapping skips them.
    Protobuf only: OTLP/JSON has no unknown fields to carry."""
    record = log_record("token.used", {"token.id": "t1"}).SerializeToString()
    unknown = b"".join(
        (
            b"\xa0\x01\x05",  # field 20, varint
            b"\xa9\x01" + bytes(8),  # field 21, 64-bit
            b"\xb2\x01\x03abc",  # field 22, length-delimited
            b"\xbb\x01\x08\x01\xbc\x01",  # field 23, a group holding a varint
            b"\xc5\x01" + bytes(4),  # field 24, 32-bit
        )
    )
    scope_logs = b"\x12" + varint(len(record + unknown)) + record + unknown
    resource_logs = b"\x12" + varint(len(scope_logs)) + scope_logs
    return b"\x0a" + varint(len(resource_logs)) + resource_logs + b"\x10\x01"


#: Bodies that are JSON but not an OTLP request, each turned down in its own way.
NOT_OTLP_JSON = {
    "array": b"[]",
    "resource-logs-object": b'{"resourceLogs": {"scopeLogs": []}}',
    "resource-logs-number": b'{"resourceLogs": [1]}',
    "trace-id-not-hex": b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}',
}


def _many() -> Seed:
    """Several resources and scopes, attributes repeating across records (the mapper's caches)."""
    request = ExportLogsServiceRequest()
    for service in ("api", "web"):
        part = export_request(
            *(
                log_record(
                    "token.used",
                    {
                        "token.id": f"pat_{i % 3}",
                        "client.address": f"198.51.100.{i % 4}",
                        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                        "http.route": "/v1/items",
                    },
                    time_unix_nano=T0 + i,
                )
                for i in range(6)
            ),
            resource={"service.name": service, "deployment.environment": "staging"},
            scope=f"{service}.auth",
        )
        request.resource_logs.extend(part.resource_logs)
    return Seed("many", request, 12)


def seeds() -> list[Seed]:
    return [
        _used(),
        _auth_failed(),
        _created(),
        _lifecycle(),
        _odd_times(),
        _odd_records(),
        _many(),
    ]


def encode(request: ExportLogsServiceRequest, content_type: str) -> bytes:
    """``request`` encoded as ``content_type``, as an exporter sends it."""
    return otlp_json(request) if content_type == JSON else request.SerializeToString()


def otlp_json(request: ExportLogsServiceRequest, *, snake_case: bool = False) -> bytes:
    """``request`` as OTLP/JSON: proto3 JSON with enums as numbers and trace ids in hex."""
    document = json_format.MessageToDict(
        request, use_integers_for_enums=True, preserving_proto_field_name=snake_case
    )
    for resource_logs in document.get("resource_logs" if snake_case else "resourceLogs", []):
        for scope_logs in resource_logs.get("scope_logs" if snake_case else "scopeLogs", []):
            for record in scope_logs.get("log_records" if snake_case else "logRecords", []):
                for key in ("trace_id", "span_id") if snake_case else ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(document, separators=(",", ":")).encode()


def seed_inputs() -> dict[str, bytes]:
    """Every seed in every format, by file name."""
    inputs = {}
    for seed in seeds():
        for content_type, encoding in FORMATS:
            kind = "json" if content_type == JSON else "proto"
            name = f"seed-{seed.name}-{kind}{'-' + encoding if encoding else ''}"
            inputs[name] = make_input(encode(seed.request, content_type), content_type, encoding)
    inputs["seed-unknown-fields-proto"] = make_input(_unknown_fields(), PROTOBUF, "")
    for name, not_otlp in NOT_OTLP_JSON.items():
        inputs[f"seed-not-otlp-{name}-json"] = make_input(not_otlp, JSON, "")
    snake = otlp_json(_used().request, snake_case=True)
    inputs["seed-used-json-snake-case"] = make_input(snake, JSON, "")
    # Two gzip members, one after the other, are one body.
    half = len(snake) // 2
    two_members = make_input(snake[:half], JSON, "gzip") + compress(snake[half:], "gzip")
    inputs["seed-used-json-gzip-two-members"] = two_members
    return inputs


def main(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seed_inputs().items():
        (directory / name).write_bytes(data)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
