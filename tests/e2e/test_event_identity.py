"""Every record is an event of its own, even when equal to another; a request sent again is
stored once, and the answer says so (docs/event-identity.md)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import ServeProcess, http_post, query_json, stored_row_count

pytestmark = pytest.mark.e2e  # starts tokenotel processes

PROTOBUF, JSON = "application/x-protobuf", "application/json"
#: A whole second: the clock of a source that logs in seconds.
SECOND_NS = RECENT_NS + 7_000_000_000


def send(
    serve: ServeProcess, how: str, request: ExportLogsServiceRequest
) -> ExportLogsServiceResponse:
    """Sends ``request`` over gRPC, OTLP/HTTP protobuf or OTLP/HTTP JSON; returns the answer."""
    if how == "grpc":
        with grpc.insecure_channel(serve.grpc_target) as channel:
            return grpc_export(channel, request.SerializeToString())
    if how == "http/protobuf":
        status, _, body = http_post(serve.logs_url, request.SerializeToString(), PROTOBUF)
        assert status == 200, body
        return ExportLogsServiceResponse.FromString(body)
    status, _, body = http_post(serve.logs_url, json_format.MessageToJson(request).encode(), JSON)
    assert status == 200, body
    return json_format.Parse(body, ExportLogsServiceResponse())


def failed_attempt(**attributes: object) -> object:
    """One failed attempt as a source with a one-second clock and no observed time logs it."""
    return log_record(
        "token.auth_failed",
        {"token.id": "billing_ci", "client.address": "198.51.100.23", **attributes},
        time_unix_nano=SECOND_NS,
    )


@pytest.mark.parametrize("how", ["grpc", "http/protobuf", "http/json"])
def test_equal_records_in_one_request_are_each_stored(
    serve_factory: Callable[..., ServeProcess], how: str
) -> None:
    serve = serve_factory()
    answer = send(serve, how, export_request(*[failed_attempt() for _ in range(20)]))
    assert answer == ExportLogsServiceResponse()  # all stored: nothing to report
    assert serve.stop() == 0
    stored = query_json(serve.data_dir)
    assert len(stored) == stored_row_count(serve.data_dir) == 20
    assert {e["event_name"] for e in stored} == {"token.auth_failed"}


def test_the_json_a_log_shipper_sends_stores_all_twenty_attempts(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    """The request of the report: OTLP/JSON, twenty identical failures, a one-second
    timestamp as a string, no observed time."""
    record = {
        "timeUnixNano": str(SECOND_NS),
        "eventName": "token.auth_failed",
        "attributes": [
            {"key": "token.id", "value": {"stringValue": "billing_ci"}},
            {"key": "client.address", "value": {"stringValue": "198.51.100.23"}},
        ],
    }
    document = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record] * 20}]}]}
    serve = serve_factory()
    status, _, body = http_post(serve.logs_url, json.dumps(document).encode(), JSON)
    assert (status, json.loads(body)) == (200, {})
    assert serve.stop() == 0
    assert stored_row_count(serve.data_dir) == 20


@pytest.mark.parametrize("how", ["grpc", "http/protobuf", "http/json"])
def test_equal_records_in_different_requests_are_each_stored(
    serve_factory: Callable[..., ServeProcess], how: str
) -> None:
    serve = serve_factory()
    attempt = failed_attempt()
    neighbour = log_record("token.used", {"token.id": "deploy_bot"}, time_unix_nano=SECOND_NS)
    requests = [
        export_request(attempt),
        export_request(attempt, neighbour),
        export_request(neighbour, attempt),
        export_request(attempt, attempt),
    ]
    for request in requests:
        assert send(serve, how, request) == ExportLogsServiceResponse()
    assert serve.stop() == 0
    tokens = Counter(e["token_id"] for e in query_json(serve.data_dir))
    assert tokens == {"billing_ci": 5, "deploy_bot": 2}


@pytest.mark.parametrize("how", ["grpc", "http/protobuf", "http/json"])
def test_a_request_sent_again_is_stored_once_and_the_answer_says_so(
    serve_factory: Callable[..., ServeProcess], how: str
) -> None:
    serve = serve_factory()
    request = export_request(failed_attempt(), failed_attempt(), failed_attempt(attempt=3))
    assert send(serve, how, request) == ExportLogsServiceResponse()
    again = send(serve, how, request)
    assert again.partial_success.rejected_log_records == 0
    assert again.partial_success.error_message.startswith(
        "3 token events of this request were stored before"
    )
    assert serve.stop() == 0
    assert stored_row_count(serve.data_dir) == 3


def test_a_record_with_its_own_uid_is_stored_once_in_whatever_request_it_comes(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    """A collector that restarted sends what it had not seen acknowledged again, maybe in other
    batches: the records' uids (the gateway gives each one) name them."""
    serve = serve_factory()
    first, second = (failed_attempt(**{"log.record.uid": f"0193a2b4-{n}"}) for n in (1, 2))
    other = log_record("token.used", {"token.id": "deploy_bot"}, time_unix_nano=SECOND_NS)
    with grpc.insecure_channel(serve.grpc_target) as channel:
        grpc_export(channel, export_request(first, other).SerializeToString())
        again = grpc_export(channel, export_request(second, first).SerializeToString())
    assert again.partial_success.error_message.startswith("1 token event of this request was")
    assert serve.stop() == 0
    tokens = Counter(e["token_id"] for e in query_json(serve.data_dir))
    assert tokens == {"billing_ci": 2, "deploy_bot": 1}
