"""OTLP/JSON and OTLP/protobuf bodies decode to the same request; malformed ones are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from otlp_builders import export_request, log_record
from tokenotel.errors import MalformedRequest
from tokenotel.mapping.decode import decode_json, decode_protobuf

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"


def otlp_json(record: dict[str, Any], **top: Any) -> bytes:
    document = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]
                },
                "scopeLogs": [{"scope": {"name": "sc"}, "logRecords": [record]}],
            }
        ],
        **top,
    }
    return json.dumps(document).encode()


def only_record(body: bytes) -> Any:
    request = decode_json(body)
    return request.resource_logs[0].scope_logs[0].log_records[0]


def test_json_trace_and_span_ids_are_hex_not_base64() -> None:
    record = only_record(otlp_json({"traceId": TRACE_HEX, "spanId": SPAN_HEX}))
    assert record.trace_id == bytes.fromhex(TRACE_HEX)
    assert record.span_id == bytes.fromhex(SPAN_HEX)


def test_json_snake_case_keys_are_accepted_too() -> None:
    body = json.dumps(
        {
            "resource_logs": [
                {
                    "scope_logs": [
                        {"log_records": [{"trace_id": TRACE_HEX, "event_name": "token.x"}]}
                    ]
                }
            ]
        }
    ).encode()
    record = only_record(body)
    assert (record.trace_id.hex(), record.event_name) == (TRACE_HEX, "token.x")


@pytest.mark.parametrize("encode", [str, int], ids=["string", "number"])
def test_json_64_bit_integers_as_strings_or_numbers(encode: Any) -> None:
    big = 1_767_225_600_123_456_789
    record = only_record(
        otlp_json(
            {
                "timeUnixNano": encode(big),
                "observedTimeUnixNano": encode(big + 1),
                "attributes": [{"key": "n", "value": {"intValue": encode(-(2**63))}}],
            }
        )
    )
    assert (record.time_unix_nano, record.observed_time_unix_nano) == (big, big + 1)
    assert record.attributes[0].value.int_value == -(2**63)


def test_json_enums_as_integers_and_every_value_kind() -> None:
    record = only_record(
        otlp_json(
            {
                "severityNumber": 17,
                "eventName": "token.used",
                "body": {
                    "kvlistValue": {
                        "values": [
                            {"key": "s", "value": {"stringValue": "✓"}},
                            {"key": "b", "value": {"boolValue": True}},
                            {"key": "d", "value": {"doubleValue": 0.5}},
                            {"key": "y", "value": {"bytesValue": "AAE="}},
                            {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}},
                        ]
                    }
                },
            }
        )
    )
    assert (record.severity_number, record.event_name) == (17, "token.used")
    values = {kv.key: kv.value for kv in record.body.kvlist_value.values}
    assert values["s"].string_value == "✓"
    assert values["b"].bool_value is True
    assert values["d"].double_value == 0.5
    assert values["y"].bytes_value == b"\x00\x01"
    assert values["a"].array_value.values[0].int_value == 1


def test_json_unknown_fields_are_ignored() -> None:
    record = only_record(otlp_json({"eventName": "token.used", "futureField": 1}, extra={"x": 1}))
    assert record.event_name == "token.used"


def test_json_and_protobuf_decode_to_the_same_request() -> None:
    request = export_request(
        log_record(
            "token.used",
            {"token.id": "t1", "n": 7},
            time_unix_nano=123,
            trace_id=bytes.fromhex(TRACE_HEX),
            span_id=bytes.fromhex(SPAN_HEX),
        )
    )
    body = otlp_json(
        {
            "timeUnixNano": "123",
            "eventName": "token.used",
            "traceId": TRACE_HEX,
            "spanId": SPAN_HEX,
            "attributes": [
                {"key": "token.id", "value": {"stringValue": "t1"}},
                {"key": "n", "value": {"intValue": "7"}},
            ],
        }
    )
    from_json = decode_json(body)
    from_protobuf = decode_protobuf(request.SerializeToString())
    assert (
        from_json.resource_logs[0].scope_logs[0].log_records[0]
        == from_protobuf.resource_logs[0].scope_logs[0].log_records[0]
    )


def test_empty_json_object_is_an_empty_request() -> None:
    assert len(decode_json(b"{}").resource_logs) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be an object"),
        (b'{"resourceLogs": {"a": 1}}', "must be a list"),
        (b'{"resourceLogs": [7]}', "OTLP structure"),
        (otlp_json({"traceId": "xyz"}), "traceId is not hex"),
        (otlp_json({"spanId": "abcd"}), "spanId must be 8 bytes"),
        (otlp_json({"timeUnixNano": "soon"}), "timeUnixNano"),
        (otlp_json({"attributes": 5}), "attributes"),
    ],
)
def test_malformed_json_is_a_permanent_error_saying_what_is_wrong(
    body: bytes, message: str
) -> None:
    with pytest.raises(MalformedRequest, match=message):
        decode_json(body)


def test_json_errors_never_echo_a_token() -> None:
    secret = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
    for record in ({"timeUnixNano": secret}, {"traceId": secret}):
        with pytest.raises(MalformedRequest) as error:
            decode_json(otlp_json(record))
        assert secret not in str(error.value)


def test_protobuf_round_trips() -> None:
    request = export_request(log_record("token.used", {"token.id": "t1"}, body="é"))
    assert decode_protobuf(request.SerializeToString()) == request


@pytest.mark.parametrize("body", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05abc", b"\xff"])
def test_malformed_protobuf_is_a_permanent_error(body: bytes) -> None:
    with pytest.raises(MalformedRequest, match="not a protobuf ExportLogsServiceRequest"):
        decode_protobuf(body)
