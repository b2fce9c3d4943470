"""Bad input to ``tokenotel serve``: each rejection has the status OTLP asks for and says why,
and a bad record does not cost the good ones of the same request."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import ServeProcess, http_post, query_json, start_serve

pytestmark = pytest.mark.e2e  # starts tokenotel processes

LIMIT = 65536
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def big_request(size: int) -> bytes:
    """A valid request of at least ``size`` bytes (one token event with a long attribute)."""
    record = log_record("token.used", {"token.id": "t1", "padding": "p" * size})
    return export_request(record).SerializeToString()


def status_of(content_type: str, body: bytes) -> status_pb2.Status:
    """An error body: google.rpc.Status in the response's content type."""
    if content_type == PROTOBUF:
        return status_pb2.Status.FromString(body)
    document = json.loads(body)
    return status_pb2.Status(code=document["code"], message=document["message"])


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One serve for the rejections below, with a 64 KiB request limit."""
    serve = start_serve(
        tmp_path_factory.mktemp("bad-input") / "data", "--max-request-bytes", str(LIMIT)
    )
    yield serve
    assert serve.stop() == 0, serve.output()


@pytest.fixture
def channel(limited: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(limited.grpc_target) as channel:
        yield channel


# -- gRPC -----------------------------------------------------------------------------------


def test_grpc_malformed_protobuf_is_invalid_argument(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as error:
        grpc_export(channel, b"\x0a\xff\xff\xff\xff\x0f")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a protobuf ExportLogsServiceRequest" in error.value.details()


def has_retry_info(error: grpc.RpcError) -> bool:
    status = rpc_status.from_call(error)
    return status is not None and any(
        d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details
    )


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_grpc_over_the_limit_is_resource_exhausted_without_retry_info(
    channel: grpc.Channel, compression: grpc.Compression | None
) -> None:
    body = big_request(LIMIT)
    if compression is not None:
        assert len(gzip.compress(body)) < LIMIT // 10  # the limit is on the inflated size
    with pytest.raises(grpc.RpcError) as error:
        grpc_export(channel, body, compression=compression)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not has_retry_info(error.value)
    assert "google.rpc.retryinfo-bin" not in dict(error.value.trailing_metadata() or ())


def test_grpc_just_under_the_limit_is_accepted(channel: grpc.Channel) -> None:
    body = big_request(LIMIT - 200)
    assert len(body) <= LIMIT
    response = grpc_export(channel, body)
    assert not response.HasField("partial_success")


def test_grpc_empty_request_is_a_full_success(channel: grpc.Channel) -> None:
    response = grpc_export(channel, b"")
    assert response == ExportLogsServiceResponse()
    assert not response.HasField("partial_success")


# -- HTTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (PROTOBUF, b"\x0a\xff\xff\xff\xff\x0f", "not a protobuf ExportLogsServiceRequest"),
        (JSON, b'{"resourceLogs": [', "not valid JSON"),
        (
            JSON,
            b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
            "traceId",
        ),
    ],
)
def test_http_malformed_body_is_400_in_the_request_content_type(
    limited: ServeProcess, content_type: str, body: bytes, message: str
) -> None:
    status, headers, answer = http_post(limited.logs_url, body, content_type)
    assert (status, headers.get_content_type()) == (400, content_type)
    error = status_of(content_type, answer)
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert message in error.message


def test_http_truncated_gzip_is_400_not_a_shorter_request(limited: ServeProcess) -> None:
    body = gzip.compress(
        export_request(log_record("token.used", {"token.id": "t"})).SerializeToString()
    )
    status, _, answer = http_post(
        limited.logs_url, body[:-6], PROTOBUF, headers={"Content-Encoding": "gzip"}
    )
    assert status == 400
    assert "truncated" in status_of(PROTOBUF, answer).message


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_http_over_the_limit_is_413(
    limited: ServeProcess, content_type: str, encoding: str
) -> None:
    body = big_request(LIMIT)
    if content_type == JSON:
        body = json.dumps({"resourceLogs": [], "padding": "p" * LIMIT}).encode()
    headers = {}
    if encoding:
        body, headers = gzip.compress(body), {"Content-Encoding": encoding}
        assert len(body) < LIMIT // 10  # small on the wire, over the limit once inflated
    status, response_headers, answer = http_post(
        limited.logs_url, body, content_type, headers=headers
    )
    assert (status, response_headers.get_content_type()) == (413, content_type)
    error = status_of(content_type, answer)
    assert error.code == code_pb2.RESOURCE_EXHAUSTED
    assert str(LIMIT) in error.message
    assert "Retry-After" not in response_headers


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", "application/xml"])
def test_http_unknown_content_type_is_415(limited: ServeProcess, content_type: str) -> None:
    status, _, answer = http_post(limited.logs_url, b"{}", content_type)
    assert status == 415
    assert content_type in json.loads(answer)["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_http_non_post_is_405(limited: ServeProcess, method: str) -> None:
    status, headers, answer = http_post(limited.logs_url, b"", JSON, method=method)
    assert (status, headers["Allow"]) == (405, "POST")
    assert "use POST" in json.loads(answer)["message"]


@pytest.mark.parametrize(
    ("content_type", "sent_as"),
    [(PROTOBUF, PROTOBUF), (JSON, JSON), (JSON, "application/json; charset=utf-8")],
)
def test_http_success_answers_in_the_request_content_type(
    limited: ServeProcess, content_type: str, sent_as: str
) -> None:
    request = export_request(log_record("token.used", {"token.id": "t-ok"}))
    body = request.SerializeToString() if content_type == PROTOBUF else b'{"resourceLogs": []}'
    status, headers, answer = http_post(limited.logs_url, body, sent_as)
    assert (status, headers.get_content_type()) == (200, content_type)
    if content_type == PROTOBUF:
        assert ExportLogsServiceResponse.FromString(answer) == ExportLogsServiceResponse()
    else:
        assert json.loads(answer) == {}


def test_server_stays_up_after_every_rejection(limited: ServeProcess) -> None:
    assert limited.alive()
    status, _, _ = http_post(f"{limited.http_url}/healthz", b"", JSON, method="GET")
    assert status == 200


# -- partial success ------------------------------------------------------------------------


def mixed_request(tag: str) -> ExportLogsServiceRequest:
    """Two good token events, one token event without identity, one non-token record."""
    return export_request(
        log_record("token.used", {"token.id": f"{tag}-1"}, time_unix_nano=RECENT_NS + 1),
        log_record("token.revoked", {"client.address": "192.0.2.1"}, time_unix_nano=RECENT_NS + 2),
        log_record("http.server.request", {"url.path": "/"}, time_unix_nano=RECENT_NS + 3),
        log_record("token.created", {"token.value": f"opaque-{tag}"}, time_unix_nano=RECENT_NS + 4),
    )


def check_partial(rejected: int, message: str) -> None:
    assert rejected == 1
    assert (
        message == "log record 1 (token.revoked) has no token identity: set token.id or token.value"
    )


def test_a_record_without_token_identity_is_rejected_and_the_rest_stored(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    serve = serve_factory()
    with grpc.insecure_channel(serve.grpc_target) as channel:
        response = grpc_export(channel, mixed_request("grpc").SerializeToString())
    check_partial(
        response.partial_success.rejected_log_records, response.partial_success.error_message
    )

    status, headers, answer = http_post(
        serve.logs_url, mixed_request("proto").SerializeToString(), PROTOBUF
    )
    assert (status, headers.get_content_type()) == (200, PROTOBUF)
    partial = ExportLogsServiceResponse.FromString(answer).partial_success
    check_partial(partial.rejected_log_records, partial.error_message)

    body = json_format.MessageToJson(mixed_request("json")).encode()
    status, headers, answer = http_post(serve.logs_url, body, JSON)
    assert (status, headers.get_content_type()) == (200, JSON)
    partial_json = json.loads(answer)["partialSuccess"]
    check_partial(int(partial_json["rejectedLogRecords"]), partial_json["errorMessage"])

    assert serve.stop() == 0
    stored = query_json(serve.data_dir)
    assert sorted((e["event_name"], e["token_id"]) for e in stored) == [
        ("token.created", ""),
        ("token.created", ""),
        ("token.created", ""),
        ("token.used", "grpc-1"),
        ("token.used", "json-1"),
        ("token.used", "proto-1"),
    ]
    created = [e["token_fingerprint"] for e in stored if e["event_name"] == "token.created"]
    assert len(set(created)) == 3
    assert all(f.startswith("hmac-sha256:") for f in created)
    assert re.search(
        r"6 token events stored .* 3 other records ignored, 3 rejected", serve.output()
    )


def test_values_the_store_cannot_hold_never_cost_the_other_records(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    serve = serve_factory()
    request = export_request(
        log_record("token.used", {"token.id": "fine"}, time_unix_nano=RECENT_NS),
        log_record("token.used", {"token.id": "late"}, time_unix_nano=2**63 + 1),
        log_record(
            "token.used",
            {"token.id": "odd", "token.expires_at": float("nan"), "client.address": "10.0.0.1\0"},
            time_unix_nano=RECENT_NS + 1,
            severity_number=1000,
        ),
    )
    with grpc.insecure_channel(serve.grpc_target) as channel:
        response = grpc_export(channel, request.SerializeToString())
    assert response.partial_success.rejected_log_records == 1
    assert "log record 1 (token.used) has a time after 2262" in (
        response.partial_success.error_message
    )
    assert serve.stop() == 0
    fine, odd = query_json(serve.data_dir)
    assert fine["token_id"] == "fine"
    assert (odd["token_id"], odd["expires_at"], odd["client_ip"], odd["severity_number"]) == (
        "odd",
        None,
        "",
        0,
    )
    assert odd["attributes"] == {
        "token.expires_at": "nan",
        "client.address": "10.0.0.1\0",
        "severity_number": "1000",
    }
    assert "Traceback" not in serve.output()
