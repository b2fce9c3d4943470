"""Builds OTLP logs requests by hand, for tests that need exact bytes (raw gRPC / HTTP calls)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def any_value(value: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (str, bool, int, float, bytes, list, dict, None)."""
    if isinstance(value, AnyValue):
        return value
    if value is None:
        return AnyValue()
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    result = AnyValue()
    if isinstance(value, list):
        result.array_value.values.extend(any_value(v) for v in value)
    elif isinstance(value, dict):
        result.kvlist_value.values.extend(key_values(value))
    else:
        raise TypeError(f"no AnyValue for {type(value).__name__}")
    return result


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def log_record(
    event_name: str = "",
    attributes: dict[str, Any] | None = None,
    *,
    body: Any = None,
    time_unix_nano: int = 0,
    observed_time_unix_nano: int = 0,
    **fields: Any,
) -> LogRecord:
    record = LogRecord(
        event_name=event_name,
        attributes=key_values(attributes or {}),
        time_unix_nano=time_unix_nano,
        observed_time_unix_nano=observed_time_unix_nano,
        **fields,
    )
    if body is not None:
        record.body.CopyFrom(any_value(body))
    return record


def export_request(
    *records: LogRecord,
    resource: dict[str, Any] | None = None,
    scope: str = "tests",
) -> ExportLogsServiceRequest:
    """One resource, one scope, the given records."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.extend(key_values(resource or {"service.name": "tests"}))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = scope
    scope_logs.log_records.extend(records)
    return request


def grpc_export(
    channel: grpc.Channel, body: bytes, *, compression: grpc.Compression | None = None
) -> ExportLogsServiceResponse:
    """Sends ``body`` as it is (no serializer) to LogsService/Export."""
    call = channel.unary_unary(
        EXPORT_METHOD,
        request_serializer=None,
        response_deserializer=ExportLogsServiceResponse.FromString,
    )
    return call(body, timeout=30, compression=compression)


HOUR_NS = 3600 * 1_000_000_000
#: A whole hour a day ago: a recent event time, well inside retention (counted from event time).
RECENT_NS = (time.time_ns() // HOUR_NS - 24) * HOUR_NS


def rfc3339_ns(ns: int) -> str:
    """An event time as ``tokenotel query`` prints it: UTC with nine fraction digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def rfc3339_ms(ms: int) -> str:
    """An expiry or issue time as ``tokenotel query`` prints it: UTC with milliseconds."""
    seconds, fraction = divmod(ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{fraction:03d}Z"


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint: seven bits a byte, lowest first."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
