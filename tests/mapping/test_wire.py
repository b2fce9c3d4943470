"""Reading log records from the protobuf encoding: the same fields the parsed message has."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otlp_builders import key_values, log_record
from tokenotel.mapping import wire

RECORDS = [
    log_record(
        "token.used",
        {"token.id": "t1", "client.address": "2001:db8::1", "token.scopes": ["repo", "ü"]},
        body={"message": "hello", "n": 3},
        time_unix_nano=1_767_225_600_123_456_789,
        observed_time_unix_nano=2**64 - 1,
        severity_number=17,
        severity_text="ERROR",
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        flags=1,
        dropped_attributes_count=300,
    ),
    log_record("", {"event.name": "token.created", "token.id": "t2"}),
    log_record("token.failed", severity_number=-5),  # an open enum: negative numbers come
    log_record("token.failed", severity_number=2**31 - 1, body=""),
    LogRecord(),
]


def request_of(*groups: tuple[dict, list[tuple[str, list[LogRecord]]]]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for resource, scopes in groups:
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.extend(key_values(resource))
        for name, records in scopes:
            scope_logs = resource_logs.scope_logs.add()
            scope_logs.scope.name = name
            scope_logs.log_records.extend(records)
    return request


def fields_of(record: LogRecord) -> wire.LogRecord:
    """What the parsed message says, in the shape wire.log_record gives."""
    return wire.LogRecord(
        record.time_unix_nano,
        record.observed_time_unix_nano,
        record.severity_number,
        record.severity_text.encode(),
        record.body.SerializeToString() if record.HasField("body") else None,
        [kv.SerializeToString() for kv in record.attributes],
        record.trace_id,
        record.span_id,
        record.event_name.encode(),
    )


def test_each_record_reads_as_its_parsed_message() -> None:
    data = request_of(({"service.name": "a"}, [("s", RECORDS)])).SerializeToString()
    ((_, ((_, spans),)),) = wire.resource_logs(data)
    assert len(spans) == len(RECORDS)
    for (start, end), record in zip(spans, RECORDS, strict=True):
        assert data[start:end] == record.SerializeToString()
        assert wire.log_record(data, start, end) == fields_of(record)


def test_resources_and_scopes_keep_their_order_and_bytes() -> None:
    request = request_of(
        ({"service.name": "a"}, [("s1", RECORDS[:2]), ("s2", RECORDS[2:3])]),
        ({}, [("", [])]),
        ({"service.name": "b", "k": 1}, [("s3", RECORDS[3:])]),
    )
    data = request.SerializeToString()
    walked = list(wire.resource_logs(data))
    assert len(walked) == len(request.resource_logs)
    for resource_logs, parsed in zip(walked, request.resource_logs, strict=True):
        assert Resource.FromString(resource_logs.resource) == parsed.resource
        assert len(resource_logs.scopes) == len(parsed.scope_logs)
        for scope_logs, parsed_scope in zip(resource_logs.scopes, parsed.scope_logs, strict=True):
            assert InstrumentationScope.FromString(scope_logs.scope) == parsed_scope.scope
            assert [data[s:e] for s, e in scope_logs.records] == [
                r.SerializeToString() for r in parsed_scope.log_records
            ]


def test_unknown_fields_are_skipped_and_a_repeated_field_keeps_its_last_value() -> None:
    unknown = (
        b"\xa0\x06\x96\x01"  # field 100, varint 150
        b"\xad\x06\x01\x02\x03\x04"  # field 101, 32-bit
        b"\xa3\x06\x08\x01\xa4\x06"  # field 100 as a group holding field 1 = 1
    )
    encoded = (
        LogRecord(event_name="token.first").SerializeToString()
        + unknown
        + LogRecord(event_name="token.last", time_unix_nano=5).SerializeToString()
    )
    assert LogRecord.FromString(encoded).event_name == "token.last"  # what protobuf says
    record = wire.log_record(encoded, 0, len(encoded))
    assert (record.event_name, record.time_unix_nano) == (b"token.last", 5)


def test_the_event_name_attribute_is_recognised_by_its_encoding() -> None:
    (encoded,) = [kv.SerializeToString() for kv in key_values({"event.name": "token.used"})]
    assert encoded.startswith(wire.EVENT_NAME_ATTRIBUTE)
    assert KeyValue.FromString(encoded).value.string_value == "token.used"


def test_a_broken_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="wire type 7"):
        wire.log_record(b"\x0f", 0, 1)
