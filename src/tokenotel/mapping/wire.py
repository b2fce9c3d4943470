"""Reads the log records of an encoded OTLP logs request straight from its protobuf bytes.

The request was parsed (and so validated) once; mapping then walks its canonical encoding
(``SerializeToString`` of the parsed message: fields in number order, whatever order the
sender's encoder used, so event ids do not depend on it) instead of the message objects. A
field costs a few byte reads, not a Python object, and each attribute comes out as its own
encoded bytes — the key under which the mapper remembers what that attribute does to a row.

Field numbers are those of opentelemetry/proto/logs/v1/logs.proto (v1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

# Wire types (protobuf encoding): varint, 64-bit, length-delimited, group start/end, 32-bit.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5

# Field keys ((number << 3) | wire type) of LogRecord.
_TIME = 1 << 3 | _I64
_SEVERITY_NUMBER = 2 << 3 | _VARINT
_SEVERITY_TEXT = 3 << 3 | _LEN
_BODY = 5 << 3 | _LEN
_ATTRIBUTE = 6 << 3 | _LEN
_TRACE_ID = 9 << 3 | _LEN
_SPAN_ID = 10 << 3 | _LEN
_OBSERVED_TIME = 11 << 3 | _I64
_EVENT_NAME = 12 << 3 | _LEN

#: How a KeyValue whose key is "event.name" starts in the canonical encoding, which writes
#: the key (field 1) first; other encoders need not (the collector writes the value first).
EVENT_NAME_ATTRIBUTE = b"\x0a\x0aevent.name"


class LogRecord(NamedTuple):
    """The fields of one LogRecord that mapping reads; text fields still encoded (UTF-8)."""

    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: int
    severity_text: bytes
    body: bytes | None  # an encoded AnyValue, None when the record has no body
    attributes: list[bytes]  # each an encoded KeyValue
    trace_id: bytes
    span_id: bytes
    event_name: bytes


class ScopeLogs(NamedTuple):
    scope: bytes  # an encoded InstrumentationScope
    records: list[tuple[int, int]]  # where each encoded LogRecord starts and ends


class ResourceLogs(NamedTuple):
    resource: bytes  # an encoded Resource
    scopes: list[ScopeLogs]


def resource_logs(data: bytes) -> Iterator[ResourceLogs]:
    """The ResourceLogs of an encoded ExportLogsServiceRequest, in order."""
    for number, start, end in _messages(data, 0, len(data)):
        if number == 1:
            resource, scopes = _head_and_items(data, start, end)
            yield ResourceLogs(resource, [ScopeLogs(*_head_and_items(data, *s)) for s in scopes])


def _head_and_items(data: bytes, start: int, end: int) -> tuple[bytes, list[tuple[int, int]]]:
    """Field 1 (encoded) and where each field 2 starts and ends: ResourceLogs (resource,
    scope_logs) and ScopeLogs (scope, log_records) are alike in that."""
    head = b""
    items = []
    for number, s, e in _messages(data, start, end):
        if number == 1:
            head = data[s:e]
        elif number == 2:
            items.append((s, e))
    return head, items


def log_record(data: bytes, pos: int, end: int) -> LogRecord:
    """The LogRecord encoded in ``data[pos:end]``; a field given twice keeps its last value."""
    time = observed = severity = 0
    severity_text = trace_id = span_id = event_name = b""
    body: bytes | None = None
    attributes: list[bytes] = []
    while pos < end:
        key = data[pos]
        pos += 1
        if key >= 0x80:
            key, pos = read_varint(data, pos - 1)
        wire = key & 7
        if wire == _LEN:
            size = data[pos]
            pos += 1
            if size >= 0x80:
                size, pos = read_varint(data, pos - 1)
            value = data[pos : pos + size]
            pos += size
            if key == _ATTRIBUTE:
                attributes.append(value)
            elif key == _EVENT_NAME:
                event_name = value
            elif key == _SEVERITY_TEXT:
                severity_text = value
            elif key == _TRACE_ID:
                trace_id = value
            elif key == _SPAN_ID:
                span_id = value
            elif key == _BODY:
                body = value
        elif wire == _I64:
            if key == _TIME:
                time = int.from_bytes(data[pos : pos + 8], "little")
            elif key == _OBSERVED_TIME:
                observed = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif key == _SEVERITY_NUMBER:
            severity, pos = read_varint(data, pos)
            severity &= 0xFFFFFFFF  # an int32 enum: the low 32 bits, two's complement
            if severity >= 0x80000000:
                severity -= 0x100000000
        else:
            pos = _skip(data, pos, key)
    return LogRecord(
        time, observed, severity, severity_text, body, attributes, trace_id, span_id, event_name
    )


def _messages(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field in ``data[pos:end]``."""
    while pos < end:
        key, pos = read_varint(data, pos)
        if key & 7 == _LEN:
            size, pos = read_varint(data, pos)
            yield key >> 3, pos, pos + size
            pos += size
        else:
            pos = _skip(data, pos, key)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos``, and where what follows it starts."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _skip(data: bytes, pos: int, key: int) -> int:
    """Where the field after the one with ``key`` (its value starting at ``pos``) starts."""
    wire = key & 7
    if wire == _VARINT:
        return read_varint(data, pos)[1]
    if wire == _I64:
        return pos + 8
    if wire == _LEN:
        size, pos = read_varint(data, pos)
        return pos + size
    if wire == _I32:
        return pos + 4
    if wire == _SGROUP:  # a deprecated group, kept as an unknown field: skip to its end
        while True:
            inner, pos = read_varint(data, pos)
            if inner & 7 == _EGROUP:
                return pos
            pos = _skip(data, pos, inner)
    raise ValueError(f"wire type {wire} at byte {pos}: not a valid protobuf encoding")
