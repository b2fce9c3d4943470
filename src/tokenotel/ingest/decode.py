"""Decodes OTLP/protobuf and OTLP/JSON export requests, with gzip and a size limit."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tokenotel.errors import PermanentError, RequestTooLarge
from tokenotel.mapping.redact import SECRET_RE

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class MalformedRequest(PermanentError):
    """The body is not a valid OTLP logs export request."""


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undoes Content-Encoding (gzip, deflate, none); at most ``limit`` bytes may come out."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise RequestTooLarge(_too_large(limit))
        return body
    if encoding not in ("gzip", "deflate"):
        raise MalformedRequest(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    data = bytearray()
    while True:  # a gzip body may be several members, one after the other
        inflater = zlib.decompressobj(wbits)
        try:
            data += inflater.decompress(body, limit + 1 - len(data))
        except zlib.error as e:
            raise MalformedRequest(f"the {encoding} body cannot be decompressed: {e}") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise RequestTooLarge(_too_large(limit))
        if not inflater.eof:  # a cut-off body must not pass for a shorter request
            raise MalformedRequest(f"the {encoding} body is truncated")
        body = inflater.unused_data
        if not body:
            return bytes(data)


def _too_large(limit: int) -> str:
    return f"the request is larger than {limit} bytes after decompression; send smaller batches"


def decode_protobuf(body: bytes) -> ExportLogsServiceRequest:
    try:
        return ExportLogsServiceRequest.FromString(body)
    except DecodeError as e:
        raise MalformedRequest(
            f"the body is not a protobuf ExportLogsServiceRequest: {e}"
        ) from None


def decode_json(body: bytes) -> ExportLogsServiceRequest:
    """OTLP/JSON: like proto3 JSON, except that trace and span ids are hex, not base64."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedRequest(f"the body is not valid JSON: {e}") from None
    if not isinstance(document, dict):
        raise MalformedRequest("the JSON body must be an object with resourceLogs")
    try:
        for resource_logs in _items(document, "resourceLogs", "resource_logs"):
            for scope_logs in _items(resource_logs, "scopeLogs", "scope_logs"):
                for record in _items(scope_logs, "logRecords", "log_records"):
                    _hex_ids_to_base64(record)
        return json_format.ParseDict(
            document, ExportLogsServiceRequest(), ignore_unknown_fields=True
        )
    except (json_format.ParseError, TypeError, AttributeError) as e:
        # The parser quotes the value it rejected, which may be a token: never echo one.
        detail = SECRET_RE.sub("<redacted>", str(e))
        raise MalformedRequest(f"the JSON is not an OTLP logs export request: {detail}") from None


def _items(parent: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(parent, dict):
        raise MalformedRequest("the JSON body does not have the OTLP structure")
    items = parent.get(camel, parent.get(snake)) or []
    if not isinstance(items, list):
        raise MalformedRequest(f"{camel} must be a list")
    return items


def _hex_ids_to_base64(record: dict[str, Any]) -> None:
    for camel, snake, size in (("traceId", "trace_id", 16), ("spanId", "span_id", 8)):
        key = camel if camel in record else snake
        value = record.get(key)
        if not value:
            continue
        try:
            raw = bytes.fromhex(value)
        except (ValueError, TypeError):
            raise MalformedRequest(f"{camel} is not hex") from None
        if len(raw) != size:
            raise MalformedRequest(f"{camel} must be {size} bytes ({size * 2} hex digits)")
        record[key] = base64.b64encode(raw).decode("ascii")
