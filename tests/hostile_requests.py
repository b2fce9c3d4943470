"""Hostile OTLP logs request bodies, written byte by byte where a well-behaved encoder refuses."""

from __future__ import annotations

import functools
import gzip
import zlib
from typing import Any

from google.protobuf import json_format

from otlp_builders import RECENT_NS, export_request, log_record, varint

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# Wire types of the protobuf encoding.
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return tag(number, LEN) + varint(len(payload)) + payload


def attribute(key: bytes, value: bytes) -> bytes:
    """An encoded KeyValue; ``value`` is an encoded AnyValue."""
    return field(1, key) + field(2, value)


def string_value(text: bytes) -> bytes:
    """An encoded AnyValue holding ``text`` as it is (valid UTF-8 or not)."""
    return field(1, text)


def record(*fields: bytes, event_name: bytes = b"token.used", token_id: bytes = b"") -> bytes:
    """An encoded LogRecord: the event name, a token.id attribute when given, then ``fields``."""
    identity = field(6, attribute(b"token.id", string_value(token_id))) if token_id else b""
    return field(12, event_name) + identity + b"".join(fields)


def request(*records: bytes, scope_name: bytes = b"hostile") -> bytes:
    """An encoded ExportLogsServiceRequest: one resource, one scope, the given records."""
    scope_logs = field(1, field(1, scope_name)) + b"".join(field(2, r) for r in records)
    return field(1, field(2, scope_logs))


def nested_value(depth: int, kind: str) -> bytes:
    """An AnyValue ``depth`` arrays (two messages a level) or kvlists (three) deep."""
    value = string_value(b"bottom")
    for _ in range(depth):
        if kind == "array":  # AnyValue.array_value = 5, ArrayValue.values = 1
            value = field(5, field(1, value))
        else:  # AnyValue.kvlist_value = 6, KeyValueList.values = 1
            value = field(6, field(1, attribute(b"k", value)))
    return value


def nested_json_value(depth: int, kind: str) -> str:
    """The same AnyValue in OTLP/JSON (three JSON containers an array level, four a kvlist
    level), written as text: the json module recurses, and refuses what a hostile sender
    writes by hand."""
    if kind == "array":
        head, tail = '{"arrayValue":{"values":[', "]}}"
    else:
        head, tail = '{"kvlistValue":{"values":[{"key":"k","value":', "}]}}"
    return head * depth + '{"stringValue":"bottom"}' + tail * depth


def json_request(record_json: str) -> bytes:
    """An OTLP/JSON request around one log record given as JSON text."""
    return f'{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{record_json}]}}]}}]}}'.encode()


def json_token_record(token_id: str, *attributes_json: str) -> str:
    """A token.used record in OTLP/JSON with a token.id and the given attributes (JSON text)."""
    identity = f'{{"key":"token.id","value":{{"stringValue":"{token_id}"}}}}'
    attributes = ",".join((identity, *attributes_json))
    return f'{{"eventName":"token.used","attributes":[{attributes}]}}'


def as_json(message: Any) -> bytes:
    """A message in OTLP/JSON (no trace or span ids are set, so proto3 JSON is OTLP/JSON)."""
    return json_format.MessageToJson(message, indent=None, ensure_ascii=False).encode()


def token_event(token_id: str, content_type: str = PROTOBUF, **attributes: Any) -> bytes:
    """A well-formed request with one token event (and ``attributes``)."""
    event = export_request(
        log_record("token.used", {"token.id": token_id, **attributes}, time_unix_nano=RECENT_NS)
    )
    return event.SerializeToString() if content_type == PROTOBUF else as_json(event)


def truncations(body: bytes, count: int) -> list[bytes]:
    """``count`` proper prefixes of ``body``, spread over its length. For a request holding one
    ResourceLogs (protobuf) or one JSON object, every proper prefix is malformed."""
    step = max(1, (len(body) - 1) / count)
    return [body[: 1 + int(i * step)] for i in range(count) if 1 + int(i * step) < len(body)]


#: Bodies no protobuf parser may accept as an ExportLogsServiceRequest.
MALFORMED_PROTOBUF: list[bytes] = [
    b"\x0a\xff\xff\xff\xff\x0f",  # a length of 4 GiB
    b"\x0a\x05ab",  # a length past the end
    field(1, field(2, b"\x12\x50abc")),  # an inner length past its parent's end
    tag(1, 6),  # wire type 6 does not exist
    tag(1, 7) + b"\x00",  # nor does 7
    b"\x02\x00",  # field number 0
    tag(1 << 29, VARINT) + b"\x00",  # a field number above 2^29 - 1
    b"\x08" + b"\xff" * 10 + b"\x01",  # a varint longer than ten bytes
    tag(5, EGROUP),  # the end of a group that never started
    tag(2, SGROUP),  # a group that never ends
    tag(2, SGROUP) + tag(3, EGROUP),  # a group ended by another's end
    tag(3, I64) + b"\x00" * 3,  # a fixed64 cut short
    tag(3, I32) + b"\x00",  # a fixed32 cut short
    field(1, field(2, field(2, tag(1, I64) + b"\x00\x00"))),  # time_unix_nano cut short
    field(1, field(2, field(2, tag(2, VARINT) + b"\xff"))),  # severity_number cut short
    b"hello, world",
    b"\x00" * 64,
    request(record(token_id=b"t")) + b"\x0a\x05ab",  # a good request, then a bad field
]

#: Bodies that are not OTLP/JSON logs export requests.
MALFORMED_JSON: list[bytes] = [
    b'{"resourceLogs": [',
    b"",
    b"[]",
    b"null",
    b"42",
    b'"resourceLogs"',
    b"{'resourceLogs': []}",
    b'{"resourceLogs": []} trailing',
    b'{"resourceLogs": 5}',
    b'{"resourceLogs": [5]}',
    b'{"resourceLogs": [{"scopeLogs": "x"}]}',
    b'{"resourceLogs": [{"scopeLogs": [{"logRecords": ["x"]}]}]}',
    b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [null]}]}]}',
    json_request('{"eventName": "token.used", "attributes": {"token.id": "t"}}'),
    json_request('{"eventName": "token.used", "traceId": "zz"}'),
    json_request('{"eventName": "token.used", "spanId": "00ff"}'),
    json_request('{"eventName": "token.used", "timeUnixNano": "yesterday"}'),
    json_request('{"eventName": "token.used", "timeUnixNano": "-1"}'),
    json_request('{"eventName": "token.used", "timeUnixNano": "18446744073709551616"}'),
    json_request('{"eventName": "token.used", "flags": -1}'),
    json_request(json_token_record("t", '{"key": "n", "value": {"doubleValue": NaN}}')),
    json_request(json_token_record("t", '{"key": "n", "value": {"intValue": "1.5"}}')),
    b'{"resourceLogs": [], "n": ' + b"9" * 5000 + b"}",  # past Python's int digit limit
]

#: Protobuf requests with bytes that are not UTF-8 in a string field: proto3 parsers must refuse.
INVALID_UTF8_PROTOBUF: list[bytes] = [
    request(record(event_name=b"token.\xff")),
    request(record(field(6, attribute(b"key\xfe", string_value(b"v"))), token_id=b"t")),
    request(record(field(6, attribute(b"token.id", string_value(b"\xc3\x28"))))),
    request(record(field(3, b"INFO\xc0\xaf"), token_id=b"t")),  # severity_text, overlong
    request(record(field(5, string_value(b"\xed\xa0\x80")), token_id=b"t")),  # body: a surrogate
    request(record(token_id=b"t"), scope_name=b"\xf8\x88\x80\x80\x80"),  # a 5-byte sequence
    request(record(token_id=b"t\x80")),  # a lone continuation byte
]

#: OTLP/JSON requests with text that is not Unicode: raw bytes, or escaped lone surrogates.
INVALID_UTF8_JSON: list[bytes] = [
    json_request('{"eventName": "token.used-BAD"}').replace(b"-BAD", b"\xff"),
    json_request(json_token_record("t-BAD")).replace(b"-BAD", b"\x80"),
    json_request(json_token_record("\\ud800")),  # escaped surrogates without their pair
    json_request('{"eventName": "token.\\udfff"}'),
]


@functools.cache
def compression_bomb(encoding: str, inflated_bytes: int) -> bytes:
    """Zeros that inflate to ``inflated_bytes``, compressed about a thousand to one."""
    zeros = bytes(inflated_bytes)
    return gzip.compress(zeros, 9) if encoding == "gzip" else zlib.compress(zeros, 9)


def empty_gzip_members(total_bytes: int) -> bytes:
    """About ``total_bytes`` of gzip members that each inflate to nothing (RFC 1952 lets a body
    be many members in a row): a request that is empty once inflated."""
    member = gzip.compress(b"")
    return member * (total_bytes // len(member))
