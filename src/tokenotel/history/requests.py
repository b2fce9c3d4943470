"""The OTLP logs requests an import sends to a running service: one log record for each line of
a file, its body the line and its attribute ``tokenotel.source`` the source, as the collector's
source pipelines send them (collector-config/sources/). Encoded by hand: the fields are few and
fixed, and the import builds tens of thousands a second."""

from __future__ import annotations

import struct

from tokenotel.mapping.expand import SOURCE_ATTRIBUTE

# Field keys: ExportLogsServiceRequest.resource_logs (1), ResourceLogs.scope_logs (2),
# ScopeLogs.log_records (2), LogRecord.body (5), .attributes (6), .observed_time_unix_nano
# (11, fixed64); AnyValue.string_value (1), .bytes_value (7); KeyValue.key (1), .value (2).
_RESOURCE_LOGS, _SCOPE_LOGS, _LOG_RECORDS = b"\x0a", b"\x12", b"\x12"
_BODY, _ATTRIBUTE, _OBSERVED = b"\x2a", b"\x32", b"\x59"
_STRING, _BYTES = b"\x0a", b"\x3a"
_TIME = struct.Struct("<Q")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(key: bytes, value: bytes) -> bytes:
    return key + _varint(len(value)) + value


def source_attribute(source: str) -> bytes:
    """The encoded LogRecord field ``attributes`` with ``tokenotel.source = source``."""
    any_value = _field(_STRING, source.encode())
    key_value = _field(b"\x0a", SOURCE_ATTRIBUTE.encode()) + _field(b"\x12", any_value)
    return _field(_ATTRIBUTE, key_value)


def _body(line: bytes) -> bytes:
    """A line as the body: a text when it is UTF-8 (as the collector sends it), else its bytes
    (a protobuf string must be UTF-8: the mapping then says the line is not)."""
    if line.isascii():
        return _field(_BODY, _field(_STRING, line))
    try:
        line.decode()
    except UnicodeDecodeError:
        return _field(_BODY, _field(_BYTES, line))
    return _field(_BODY, _field(_STRING, line))


def encode_request(lines: list[bytes], attribute: bytes, observed_ns: int) -> bytes:
    """An ExportLogsServiceRequest of one log record per line (``attribute``: from
    ``source_attribute``), observed at ``observed_ns``."""
    observed = _OBSERVED + _TIME.pack(observed_ns)
    records = b"".join([_field(_LOG_RECORDS, _body(line) + attribute + observed) for line in lines])
    return _field(_RESOURCE_LOGS, _field(_SCOPE_LOGS, records))
