"""A log record with ``tokenotel.source`` stands for its source's token events: each mapped as
the record an SDK would have sent; a bad record is rejected with a message naming it, never
failing its request."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otlp_builders import key_values
from tokenotel.history.requests import encode_request, source_attribute
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import EVENTS, NOT_TOKEN_EVENTS, RECORDS, REJECTED, Mapper
from tokenotel.sources import SOURCES, TokenRecord
from tokenotel.sources.record import RawRecord

RECEIVED = 1_700_000_000_000_000_000


class _Fake:
    """A source whose records are ``name:token id`` lines; "none" has no event, "bad" is
    malformed, "bug" breaks the mapping."""

    name = "fake"

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        from tokenotel.errors import SourceRecordError

        text = raw if isinstance(raw, str) else str(raw)
        if text == "none":
            return []
        if text == "bad":
            raise SourceRecordError("fake record is bad")
        if text == "bug":
            raise KeyError("oops")
        name, token = text.split(":")
        return [
            TokenRecord(
                name,
                RECEIVED - 5,
                {
                    "token.id": token,
                    "token.scopes": ["repo", "read:org"],
                    "log.record.uid": f"fake:{token}",
                    "client.address": "203.0.113.7",
                    "fake.record": text,
                    "attempt": 3,
                },
            )
        ]


@pytest.fixture(autouse=True)
def fake_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SOURCES, "fake", _Fake())


def _request(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.add(key="service.name", value=AnyValue(string_value="edge"))
    resource.scope_logs.add().log_records.extend(records)
    return request


def _raw(body: str, source: str = "fake") -> LogRecord:
    record = LogRecord(body=AnyValue(string_value=body), observed_time_unix_nano=RECEIVED)
    record.attributes.add(key="tokenotel.source", value=AnyValue(string_value=source))
    record.attributes.add(key="log.file.name", value=AnyValue(string_value="a.log"))
    return record


def test_a_raw_record_gives_the_row_an_sdk_record_of_its_events_gives() -> None:
    mapper = Mapper(Fingerprinter(bytes(32)))
    raw = mapper.map(_request(_raw("token.used:tok_1")), RECEIVED)
    token = _Fake().records("token.used:tok_1")[0]
    sdk = LogRecord(
        event_name=token.event_name,
        time_unix_nano=token.time_unix_nano,
        observed_time_unix_nano=RECEIVED,
    )
    sdk.attributes.extend(key_values(token.attributes))
    expected = Mapper(Fingerprinter(bytes(32))).map(_request(sdk), RECEIVED)
    assert raw.rows == expected.rows
    assert raw.sources == {"fake": [1, 1, 0, 0]}
    assert (raw.ignored, raw.rejected, raw.errors) == (0, 0, [])


def test_bad_records_are_rejected_by_name_and_the_others_kept() -> None:
    batch = Mapper(Fingerprinter(bytes(32))).map(
        _request(
            _raw("token.used:tok_1"),
            _raw("bad"),
            _raw("none"),
            _raw("bug"),
            _raw("token.used:tok_2", source="nope"),
            LogRecord(body=AnyValue(string_value="an ordinary log line")),
        ),
        RECEIVED,
    )
    assert [row[-1] for row in batch.rows] and len(batch.rows) == 1
    assert batch.rejected == 3
    assert batch.ignored == 2  # "none" and the ordinary line
    assert batch.errors == [
        "log record 1: fake record is bad",
        "log record 3: the fake mapping failed on this record (KeyError)",
        "log record 4 (tokenotel.source 'nope'): unknown tokenotel.source 'nope': one of "
        + ", ".join(sorted(SOURCES)),
    ]
    assert batch.sources["fake"][RECORDS] == 4
    assert batch.sources["fake"][EVENTS] == 1
    assert batch.sources["fake"][NOT_TOKEN_EVENTS] == 1
    assert batch.sources["fake"][REJECTED] == 2
    assert batch.sources["(unknown)"] == [1, 0, 0, 1]


def test_a_cloudtrail_log_file_is_split_into_its_records() -> None:
    record = (
        '{"eventVersion":"1.08","eventID":"%s","eventTime":"2026-01-01T00:00:00Z",'
        '"eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1",'
        '"sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2",'
        '"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/a",'
        '"accessKeyId":"AKIAIOSFODNN7EXAMPLE","userName":"a"}}'
    )
    document = '{{"Records":[{},{},"not a record"]}}'.format(record % "e-1", record % "e-2")
    batch = Mapper(Fingerprinter(bytes(32))).map(_request(_raw(document, "cloudtrail")), RECEIVED)
    assert len(batch.rows) == 2
    assert batch.rejected == 1
    assert batch.errors[0].startswith("log record 0, cloudtrail record 2: ")


def test_lines_read_from_files_map_as_the_same_lines_sent_in_otlp() -> None:
    """``tokenotel import`` hands its lines to the mapping as they are; the rows, problems and
    tallies are those of the same lines sent one to a log record (how the import sends them to
    a running service, and how the collector sends them live)."""
    key = bytes(32)
    lines = [
        b"token.used:tok_1",
        b"bad",
        b"none",
        b"bug",
        "token.revoked:tok_\u00e9".encode(),
        b"token.used:\xff\xfe",  # not UTF-8: the body is its bytes (here: a bad event name)
        b"token.used:Bearer abcdefgh12345678",  # a secret in the kept record
        b"token.used:Bearer abcdefgh12345678",
    ]
    attribute = source_attribute("fake")
    sent = Mapper(Fingerprinter(key)).map(
        ExportLogsServiceRequest.FromString(encode_request(lines, attribute, 0)), RECEIVED
    )
    read = Mapper(Fingerprinter(key)).map_lines("fake", lines, RECEIVED)
    assert len(read.rows) == 4
    assert read.rows == sent.rows
    assert (read.ignored, read.rejected, read.errors) == (sent.ignored, sent.rejected, sent.errors)
    assert read.sources == sent.sources
    assert not any("abcdefgh12345678" in str(row) for row in read.rows)
