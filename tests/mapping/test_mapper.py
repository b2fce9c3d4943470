"""OTLP log records → token event rows: which records, which columns, and no raw secret."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otlp_builders import export_request, log_record
from tokenotel.mapping.columns import rows_to_arrow
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import MappedBatch, Mapper, uid_id
from tokenotel.model import ROW_COLUMNS

fingerprint = Fingerprinter(bytes(range(32)))
RECEIVED_NS = 1_767_225_600_000_000_000
SECRET = "glpat-AbCdEfGhIjKlMnOpQrSt"


def mapped(request: ExportLogsServiceRequest) -> MappedBatch:
    return Mapper(fingerprint).map(request, RECEIVED_NS)


def rows(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    """Mapped rows by column name, with map columns as dicts and arrays as lists."""
    result = []
    for row in mapped(request).rows:
        named = dict(zip(ROW_COLUMNS, row, strict=True))
        for name in ("attributes", "resource_attributes"):
            named[name] = dict(named[name])
        for name in ("scopes", "scopes_added", "scopes_removed"):
            named[name] = list(named[name])
        result.append(named)
    return result


def one_row(attributes: dict[str, Any], event_name: str = "token.used", **kw: Any) -> dict:
    (row,) = rows(export_request(log_record(event_name, {"token.id": "t1", **attributes}, **kw)))
    return row


def v4(text: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{text}").packed


def test_semantic_convention_and_token_attributes_fill_their_columns() -> None:
    row = one_row(
        {
            "token.type": "pat",
            "token.name": "ci deploy",
            "token.hint": "…9f3a",
            "token.previous_id": "t0",
            "user.id": "alice",
            "token.principal.type": "user",
            "token.actor.id": "admin",
            "token.tenant": "acme",
            "client.address": "203.0.113.7",
            "user_agent.original": "curl/8.5",
            "geo.country.iso_code": "NL",
            "token.client.asn": 64500,
            "token.scopes": ["repo", "read:org"],
            "token.scopes_added": ["admin:org"],
            "token.scopes_removed": ["gist"],
            "token.expires_at": "2026-04-01T00:00:00Z",
            "token.issued_at": 1_767_225_600,
            "http.request.method": "GET",
            "http.route": "/repos/{id}",
            "url.path": "/repos/42",
            "http.response.status_code": 200,
            "token.request.id": "req-9",
            "token.failure_reason": "expired",
            "token.reason": "rotation",
            "token.source": "github",
        },
        event_name="token.rotated",
    )
    expected = {
        "event_name": "token.rotated",
        "outcome": "success",
        "token_id": "t1",
        "token_fingerprint": "",
        "token_type": "pat",
        "token_name": "ci deploy",
        "token_hint": "…9f3a",
        "previous_token_id": "t0",
        "principal_id": "alice",
        "principal_type": "user",
        "actor_id": "admin",
        "tenant": "acme",
        "client_ip": v4("203.0.113.7"),
        "user_agent": "curl/8.5",
        "country": "NL",
        "asn": 64500,
        "scopes": ["repo", "read:org"],
        "scopes_added": ["admin:org"],
        "scopes_removed": ["gist"],
        "expires_at": 1_775_001_600_000,
        "issued_at": 1_767_225_600_000,
        "http_method": "GET",
        "http_route": "/repos/{id}",
        "url_path": "/repos/42",
        "http_status": 200,
        "request_id": "req-9",
        "failure_reason": "expired",
        "reason": "rotation",
        "source": "github",
        "attributes": {},
    }
    assert {name: row[name] for name in expected} == expected


def test_record_fields_resource_and_scope_fill_their_columns() -> None:
    request = export_request(
        log_record(
            "token.created",
            {"token.id": "t1"},
            body="created ✓",
            time_unix_nano=RECEIVED_NS - 5_000,
            observed_time_unix_nano=RECEIVED_NS - 1_000,
            severity_number=9,
            severity_text="INFO",
            trace_id=bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
            span_id=bytes.fromhex("00f067aa0ba902b7"),
        ),
        resource={
            "service.name": "auth",
            "deployment.environment.name": "prod",
            "cloud.region": "eu-west-1",
            "host.cpus": 4,
        },
        scope="auth.tokens",
    )
    (row,) = rows(request)
    expected = {
        "event_time": RECEIVED_NS - 5_000,
        "observed_delay_ns": 4_000,
        "event_name": "token.created",
        "severity_number": 9,
        "severity_text": "INFO",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "body": "created ✓",
        "service_name": "auth",
        "environment": "prod",
        "scope_name": "auth.tokens",
        "resource_attributes": {"cloud.region": "eu-west-1", "host.cpus": "4"},
    }
    assert {name: row[name] for name in expected} == expected


def test_unclaimed_attributes_are_kept_as_text_in_the_map() -> None:
    row = one_row(
        {
            "ticket": "CHG-1",
            "count": 3,
            "ratio": 0.5,
            "mfa": True,
            "labels": ["a", "b"],
            "ctx": {"k": "v", "n": 1},
            "raw": b"\x00\x01",
            "note": "Ελληνικά 中文",
        }
    )
    assert row["attributes"] == {
        "ticket": "CHG-1",
        "count": "3",
        "ratio": "0.5",
        "mfa": "true",
        "labels": '["a","b"]',
        "ctx": '{"k":"v","n":1}',
        "raw": "AAE=",
        "note": "Ελληνικά 中文",
    }


def test_values_a_column_cannot_take_are_kept_in_the_map_not_dropped() -> None:
    row = one_row(
        {
            "client.address": "not-an-ip",
            "token.expires_at": "next tuesday",
            "http.response.status_code": 70000,
            "token.client.asn": "AS13335",
            "token.outcome": "maybe",
        }
    )
    assert (row["client_ip"], row["expires_at"], row["http_status"], row["asn"]) == (
        bytes(16),
        None,
        0,
        0,
    )
    assert row["outcome"] == "success"
    assert row["attributes"] == {
        "client.address": "not-an-ip",
        "token.expires_at": "next tuesday",
        "http.response.status_code": "70000",
        "token.client.asn": "AS13335",
        "token.outcome": "maybe",
    }


@pytest.mark.parametrize(
    ("address", "packed"),
    [
        ("198.51.100.23", v4("198.51.100.23")),
        ("2001:db8::1", ipaddress.IPv6Address("2001:db8::1").packed),
        ("[2001:db8::2]:443", ipaddress.IPv6Address("2001:db8::2").packed),
        ("::ffff:192.0.2.1", v4("192.0.2.1")),
    ],
)
def test_client_addresses_ipv4_and_ipv6_share_one_column(address: str, packed: bytes) -> None:
    assert one_row({"client.address": address})["client_ip"] == packed


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2026-04-01T12:30:45.678Z", 1_775_046_645_678),
        ("2026-04-01T14:30:45.678+02:00", 1_775_046_645_678),
        (1_775_046_645, 1_775_046_645_000),
        (1_775_046_645_678, 1_775_046_645_678),
        (1_775_046_645_678_000, 1_775_046_645_678),
        (1_775_046_645_678_000_000, 1_775_046_645_678),
        ("1775046645", 1_775_046_645_000),
    ],
)
def test_expiry_accepts_iso_8601_and_epoch_units(value: Any, ms: int) -> None:
    assert one_row({"token.expires_at": value})["expires_at"] == ms


@pytest.mark.parametrize(
    ("value", "scopes"),
    [
        (["repo", "read:org"], ["repo", "read:org"]),
        ("repo read:org", ["repo", "read:org"]),
        ("repo,read:org, gist", ["repo", "read:org", "gist"]),
        ([], []),
    ],
)
def test_scopes_as_array_or_oauth_string(value: Any, scopes: list[str]) -> None:
    assert one_row({"token.scopes": value})["scopes"] == scopes


@pytest.mark.parametrize(
    ("event_name", "attributes", "outcome"),
    [
        ("token.used", {}, "success"),
        ("token.auth_failed", {}, "failure"),
        ("token.refresh_failed", {}, "failure"),
        ("token.custom_thing", {}, "unknown"),
        ("token.used", {"token.outcome": "FAILURE"}, "failure"),
        ("token.auth_failed", {"token.outcome": "success"}, "success"),
    ],
)
def test_outcome_defaults_by_event_and_follows_the_sender(
    event_name: str, attributes: dict[str, Any], outcome: str
) -> None:
    assert one_row(attributes, event_name=event_name)["outcome"] == outcome


def test_event_name_field_wins_and_the_deprecated_attribute_is_a_fallback() -> None:
    request = export_request(
        log_record("", {"event.name": "token.revoked", "token.id": "t1"}),
        log_record("token.used", {"event.name": "token.revoked", "token.id": "t2"}),
    )
    revoked, used = rows(request)
    assert (revoked["event_name"], revoked["attributes"]) == ("token.revoked", {})
    assert used["event_name"] == "token.used"


def test_non_token_records_are_ignored_and_counted() -> None:
    request = export_request(
        log_record("http.server.request", {"token.id": "t1"}),
        log_record("", {"event.name": "user.login"}),
        log_record(body="plain log line"),
        log_record("tokens.used", {"token.id": "t1"}),
        log_record("token.used", {"token.id": "t1"}),
    )
    batch = mapped(request)
    assert (len(batch.rows), batch.ignored, batch.rejected) == (1, 4, 0)


def test_a_token_record_without_identity_is_rejected_with_a_message() -> None:
    request = export_request(
        log_record("token.used", {"token.id": "t1"}),
        log_record("token.used", {"client.address": "192.0.2.1"}),
        log_record("token.revoked", {"token.value": ""}),
    )
    batch = mapped(request)
    assert (len(batch.rows), batch.rejected) == (1, 2)
    assert batch.errors == [
        "log record 1 (token.used) has no token identity: set token.id or token.value",
        "log record 2 (token.revoked) has no token identity: set token.id or token.value",
    ]


def test_token_value_becomes_its_fingerprint() -> None:
    (row,) = rows(export_request(log_record("token.used", {"token.value": SECRET})))
    assert row["token_fingerprint"] == fingerprint(SECRET)
    assert SECRET not in repr(row)


def test_authorization_header_gives_the_fingerprint_and_is_redacted() -> None:
    request = export_request(
        log_record(
            "token.used",
            {"http.request.header.authorization": [f"Bearer {SECRET}"], "x-trace": "abc"},
        )
    )
    (row,) = rows(request)
    assert row["token_fingerprint"] == fingerprint(SECRET)
    assert row["attributes"] == {
        "http.request.header.authorization": f'["Bearer {fingerprint(SECRET)}"]',
        "x-trace": "abc",
    }
    assert SECRET not in repr(row)


def test_token_value_wins_over_the_authorization_header() -> None:
    other = "glpat-ZyXwVuTsRqPoNmLkJiHg"
    row = one_row({"token.value": SECRET, "http.request.header.authorization": f"Bearer {other}"})
    assert row["token_fingerprint"] == fingerprint(SECRET)
    assert row["attributes"]["http.request.header.authorization"] == f"Bearer {fingerprint(other)}"


def test_secrets_anywhere_else_are_replaced_by_fingerprints() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl"
    request = export_request(
        log_record(
            "token.leak_detected",
            {
                "token.id": "t1",
                "token.name": f"named {SECRET}",
                "token.scopes": [SECRET],
                "leak.location": f"https://gist.example/{SECRET}",
                "leak.context": {"header": f"Authorization: Bearer {jwt}"},
            },
            body={"found": SECRET, "nested": [jwt]},
        ),
        resource={"service.name": "scanner", "scanner.token": SECRET},
    )
    (row,) = rows(request)
    text = repr(row)
    assert SECRET not in text
    assert jwt not in text
    assert row["token_name"] == f"named {fingerprint(SECRET)}"
    assert row["scopes"] == [fingerprint(SECRET)]
    assert row["attributes"]["leak.location"] == f"https://gist.example/{fingerprint(SECRET)}"
    assert row["body"] == f'{{"found":"{fingerprint(SECRET)}","nested":["{fingerprint(jwt)}"]}}'
    assert row["resource_attributes"] == {"scanner.token": fingerprint(SECRET)}
    # The leak is about token t1; the secrets in it do not become its identity.
    assert row["token_fingerprint"] == ""


def test_times_fall_back_to_observed_then_to_reception() -> None:
    request = export_request(
        log_record("token.used", {"token.id": "t1"}, observed_time_unix_nano=RECEIVED_NS - 7),
        log_record("token.used", {"token.id": "t2"}),
    )
    observed_only, neither = rows(request)
    assert (observed_only["event_time"], observed_only["observed_delay_ns"]) == (RECEIVED_NS - 7, 0)
    assert (neither["event_time"], neither["observed_delay_ns"]) == (RECEIVED_NS, 0)


def test_all_zero_trace_and_span_ids_mean_none() -> None:
    row = one_row({}, trace_id=bytes(16), span_id=bytes(8))
    assert (row["trace_id"], row["span_id"]) == ("", "")


def event_ids(request: ExportLogsServiceRequest) -> list[int]:
    return [row["event_id"] for row in rows(request)]


def test_a_request_sent_again_has_the_same_ids_and_every_other_record_its_own() -> None:
    record = log_record("token.auth_failed", {"token.id": "t1"}, time_unix_nano=RECEIVED_NS)
    other = log_record("token.used", {"token.id": "t2"}, time_unix_nano=RECEIVED_NS)
    first = event_ids(export_request(record, record, other))
    assert first == event_ids(export_request(record, record, other))  # a retry
    assert len(set(first)) == 3  # equal records in one request are events of their own
    # The same record in another request is another event, wherever it stands.
    assert event_ids(export_request(record, other))[0] not in first
    assert not set(event_ids(export_request(other, record, record))) & set(first)
    assert event_ids(export_request(record, resource={"service.name": "other"}))[0] not in first


def test_a_record_with_its_own_uid_is_the_same_event_in_any_request() -> None:
    named = log_record(
        "token.used", {"token.id": "t1", "log.record.uid": "01JDEXAMPLE0000000000000001"}
    )
    twin = log_record(
        "token.used", {"token.id": "t1", "log.record.uid": "01JDEXAMPLE0000000000000002"}
    )
    other = log_record("token.used", {"token.id": "t9"})
    alone = event_ids(export_request(named))
    assert event_ids(export_request(other, named, twin))[1:] == [
        alone[0],
        uid_id("01JDEXAMPLE0000000000000002"),
    ]
    assert alone != event_ids(export_request(twin))
    (row,) = rows(export_request(named))
    assert row["attributes"] == {}  # kept as the event's id (a hash of it), not a second time


def test_event_ids_follow_the_documented_formula() -> None:
    """Ids must not change between versions: a retry of a request answered before an upgrade
    is recognised only by the id it had then (docs/event-identity.md)."""
    request = export_request(
        log_record("http.server.request", {}),  # not a token event: still counts its place
        log_record("token.used", {"token.id": "t1"}, body="x", time_unix_nano=RECEIVED_NS),
        log_record("token.used", {"token.id": "t2", "log.record.uid": "u-1"}),
        resource={"service.name": "api"},
    )
    request_key = hashlib.blake2b(request.SerializeToString(), digest_size=16).digest()
    by_place = hashlib.blake2b((1).to_bytes(4, "little"), digest_size=8, key=request_key)
    by_uid = hashlib.blake2b(b"u-1", digest_size=8, person=b"log.record.uid")
    assert event_ids(request) == [
        int.from_bytes(by_place.digest(), "little"),
        int.from_bytes(by_uid.digest(), "little"),
    ]


#: Every attribute a column takes (the README's attribute table), except the token identity.
COLUMN_ATTRIBUTES = (
    "token.type",
    "token.name",
    "token.hint",
    "token.previous_id",
    "user.id",
    "token.principal.id",
    "token.principal.type",
    "token.actor.id",
    "token.tenant",
    "client.address",
    "user_agent.original",
    "geo.country.iso_code",
    "token.client.asn",
    "token.scopes",
    "token.scopes_added",
    "token.scopes_removed",
    "token.expires_at",
    "token.issued_at",
    "http.request.method",
    "http.route",
    "url.path",
    "http.response.status_code",
    "token.request.id",
    "token.outcome",
    "token.failure_reason",
    "token.reason",
    "token.source",
)

ODD_VALUES: list[Any] = [
    float("nan"),
    float("inf"),
    -1e300,
    2**63 - 1,
    -(2**63),
    "9" * 5000,
    "²³",
    "1.2.3.4\x00",
    "\x00",
    "",
    b"\xff" * 20,
    [],
    [None, 1, "a", [2]],
    {"k": {"n": [1.5, False]}},
    AnyValue(),
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
    True,
]


@pytest.mark.parametrize("value", ODD_VALUES, ids=[repr(v)[:24] for v in ODD_VALUES])
def test_any_value_in_any_attribute_maps_to_storable_columns(value: Any) -> None:
    """Whatever a sender puts in an attribute, the record maps and converts to the store's
    column types: one odd value must never fail a whole request."""
    attributes = dict.fromkeys(COLUMN_ATTRIBUTES, value)
    request = export_request(
        log_record("token.used", {"token.id": "t1", **attributes, "custom": value}, body=value)
    )
    batch = mapped(request)
    assert (len(batch.rows), batch.rejected) == (1, 0)
    assert rows_to_arrow(batch.rows).num_rows == 1


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (float("nan"), "nan"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        (-(2**62), str(-(2**62))),
        ("1" + "0" * 30, "1" + "0" * 30),
    ],
)
def test_times_the_store_cannot_hold_are_kept_in_the_map(value: Any, kept: str) -> None:
    row = one_row({"token.expires_at": value})
    assert row["expires_at"] is None
    assert row["attributes"] == {"token.expires_at": kept}


@pytest.mark.parametrize("severity", [1000, -3])
def test_a_severity_number_outside_a_byte_is_kept_in_the_map(severity: int) -> None:
    row = one_row({}, severity_number=severity)
    assert row["severity_number"] == 0
    assert row["attributes"] == {"severity_number": str(severity)}


@pytest.mark.parametrize("field", ["time_unix_nano", "observed_time_unix_nano"])
def test_a_record_timed_after_2262_is_rejected_with_a_message(field: str) -> None:
    request = export_request(
        log_record("token.used", {"token.id": "late"}, **{field: 2**63 + 1}),
        log_record("token.used", {"token.id": "fine"}, time_unix_nano=RECEIVED_NS),
    )
    batch = mapped(request)
    assert [dict(zip(ROW_COLUMNS, r, strict=True))["token_id"] for r in batch.rows] == ["fine"]
    assert batch.rejected == 1
    assert batch.errors == [
        "log record 0 (token.used) has a time after 2262: "
        "send time_unix_nano in nanoseconds since the Unix epoch"
    ]
    assert rows_to_arrow(batch.rows).num_rows == 1


def test_attributes_seen_before_map_the_same_from_memory() -> None:
    mapper = Mapper(fingerprint)
    first = export_request(log_record("token.used", {"token.id": "t1", "token.scopes": ["a"]}))
    again = export_request(log_record("token.used", {"token.id": "t1", "token.scopes": ["a"]}))
    other = export_request(log_record("token.used", {"token.id": "t2", "token.scopes": ["b"]}))
    (row1,) = mapper.map(first, RECEIVED_NS).rows
    (row2,) = mapper.map(again, RECEIVED_NS).rows
    (row3,) = mapper.map(other, RECEIVED_NS).rows
    assert row1 == row2
    named = dict(zip(ROW_COLUMNS, row3, strict=True))
    assert (named["token_id"], list(named["scopes"])) == ("t2", ["b"])


def test_no_secret_stays_in_the_mappers_memory() -> None:
    mapper = Mapper(fingerprint)
    attributes = {
        "token.value": SECRET,
        "token.name": f"named {SECRET}",
        "token.scopes": [SECRET],
        "http.request.header.authorization": f"Bearer {SECRET}",
        "leak.location": f"https://gist.example/{SECRET}",
    }
    for _ in range(2):  # the second time maps from memory where it may
        (row,) = mapper.map(export_request(log_record("token.used", attributes)), RECEIVED_NS).rows
        assert SECRET not in repr(row)
        assert dict(zip(ROW_COLUMNS, row, strict=True))["token_fingerprint"] == fingerprint(SECRET)
    # (every attribute, read one by one: the compiled Mapper keeps no __dict__)
    state = {name: getattr(mapper, name) for name in dir(mapper) if not name.startswith("__")}
    remembered = repr({name: value for name, value in state.items() if not callable(value)})
    assert SECRET not in remembered
    assert SECRET.encode() not in b"".join(mapper._effects)
