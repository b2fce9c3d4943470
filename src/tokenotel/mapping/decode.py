"""Decodes the bytes of an OTLP logs export request, protobuf or JSON, into its message."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tokenotel.errors import MalformedRequest
from tokenotel.mapping.redact import SECRET_RE

_TOO_DEEP = (
    "the JSON is nested too deeply for an OTLP logs export request (a value nests at most "
    "as deep as protobuf allows, 100 messages)"
)
#: The content types of OTLP: what the edges accept and the mapping decodes.
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def decode(body: bytes, content_type: str) -> ExportLogsServiceRequest:
    """The request in ``body``, encoded as ``content_type`` (PROTOBUF or JSON)."""
    return decode_json(body) if content_type == JSON else decode_protobuf(body)


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
    except RecursionError:  # a thousand nested brackets: no OTLP request is like that
        raise MalformedRequest(_TOO_DEEP) from None
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
    except RecursionError:
        raise MalformedRequest(_TOO_DEEP) from None
    except (UnicodeError, SystemError):
        # A lone surrogate (\ud800) in a name: protobuf's C parser fails to look it up with a
        # SystemError over a UnicodeEncodeError. Such a text is not UTF-8 whatever the parser.
        raise MalformedRequest(
            "the JSON has a text that is not valid Unicode (a lone surrogate)"
        ) from None


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
