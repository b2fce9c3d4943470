"""Over 100,000 hostile requests to one ``tokenotel serve``: each class gets the answer OTLP and
the ingest contract ask for, memory stays bounded, and a good request is stored afterwards."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
import grpc
import psutil
import pytest
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from multidict import CIMultiDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

import hostile_requests as hostile
from hostile_requests import JSON, PROTOBUF
from otlp_builders import (
    EXPORT_METHOD,
    RECENT_NS,
    export_request,
    grpc_export,
    log_record,
    rfc3339_ns,
)
from processes import (
    ServeProcess,
    http_get,
    http_post,
    query_json,
    start_serve,
    stored_row_count,
)

pytestmark = pytest.mark.e2e  # starts tokenotel processes

LIMIT = 1 << 20  # --max-request-bytes: keeps bombs and oversized bodies cheap to send
#: An OTLP exporter gives up on a request after 10 s (OTEL_EXPORTER_OTLP_TIMEOUT's default):
#: a request not answered by then has failed, as far as any client can tell.
DEADLINE_S = 10.0
#: The project's overload ceiling for the memory of the service and its mapping workers together
#: (they idle at a few hundred MB): their own pages, anonymous and shared, not the library files
#: mapped, which the kernel maps more of while the libraries are in the page cache (the first
#: runs after an install, README "Benchmarks") whatever the load.
RSS_CEILING_BYTES = 1_500_000_000
FLOOD_CONCURRENCY = 64
GRPC_CHANNELS = 2
SLOW_BYTE_INTERVAL_S = 0.25
LOGS_PATH = "/v1/logs"


# -- answers, in the words of the expectations -----------------------------------------------


class Answer(NamedTuple):
    text: str
    seconds: float  # how long it took (a slow client's: from its last byte)


def http_answer(status: int, headers: Mapping[str, str], body: bytes) -> str:
    """The status; for an OTLP answer also its content type and what its body holds: OK (with
    the records rejected through partial_success) or the google.rpc.Status code."""
    if status == 405:
        return f"HTTP 405 Allow: {headers.get('Allow')}"
    if status in (404, 415):
        return f"HTTP {status}"
    content_type = headers.get("Content-Type", "").partition(";")[0].strip()
    if content_type not in (PROTOBUF, JSON):
        return f"HTTP {status} {content_type}"
    try:
        described = _otlp_body(status, content_type, body)
    except (DecodeError, ValueError, KeyError, TypeError):
        described = "unreadable body"
    retry_after = ", Retry-After" if "Retry-After" in headers else ""
    return f"HTTP {status} {content_type} {described}{retry_after}"


def _otlp_body(status: int, content_type: str, body: bytes) -> str:
    if status == 200:
        if content_type == PROTOBUF:
            partial = ExportLogsServiceResponse.FromString(body).partial_success
            return _ok(partial.rejected_log_records, partial.error_message)
        partial_json = json.loads(body).get("partialSuccess", {})
        return _ok(int(partial_json.get("rejectedLogRecords", 0)), partial_json.get("errorMessage"))
    if content_type == PROTOBUF:
        return code_pb2.Code.Name(status_pb2.Status.FromString(body).code)
    return code_pb2.Code.Name(json.loads(body)["code"])


def _ok(rejected: int, message: str | None = "") -> str:
    """OK, and what partial_success says: how many records were rejected, or that a message
    came with none rejected (a warning, such as a request taken for a retry)."""
    if rejected:
        return f"OK, {rejected} rejected"
    return "OK, with a message" if message else "OK"


def grpc_answer(response: bytes | None, error: grpc.aio.AioRpcError | None = None) -> str:
    if error is None:
        partial = ExportLogsServiceResponse.FromString(response or b"").partial_success
        return f"gRPC {_ok(partial.rejected_log_records, partial.error_message)}"
    retry_info = " with RetryInfo" if _has_retry_info(error) else ""
    return f"gRPC {error.code().name}{retry_info}"


def _has_retry_info(error: grpc.aio.AioRpcError) -> bool:
    for key, value in error.trailing_metadata() or ():
        if key == "google.rpc.retryinfo-bin":
            return True
        if key == "grpc-status-details-bin":
            details = status_pb2.Status.FromString(value).details
            if any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details):
                return True
    return False


def ok(content_type: str, rejected: int = 0) -> str:
    return f"HTTP 200 {content_type} {_ok(rejected)}"


def invalid(content_type: str) -> str:
    return f"HTTP 400 {content_type} INVALID_ARGUMENT"


def too_large(content_type: str) -> str:
    return f"HTTP 413 {content_type} RESOURCE_EXHAUSTED"  # and no Retry-After


GRPC_OK = "gRPC OK"
GRPC_INVALID = "gRPC INVALID_ARGUMENT"
GRPC_TOO_LARGE = "gRPC RESOURCE_EXHAUSTED"  # and no RetryInfo
#: Overloaded: the client is asked to slow down and send again.
SLOW_DOWN = f"HTTP 429 {PROTOBUF} RESOURCE_EXHAUSTED, Retry-After"
NOT_FOUND = "HTTP 404"
NOT_ALLOWED = "HTTP 405 Allow: POST"
UNSUPPORTED = "HTTP 415"
NO_ANSWER = f"no answer within {DEADLINE_S:g} s"


# -- how requests are sent -------------------------------------------------------------------


@dataclass
class Clients:
    """The senders of the run: an HTTP session of a few connections for the flood, one that
    opens a connection a request, and a few gRPC channels (each its own HTTP/2 connection)."""

    http_port: int
    session: aiohttp.ClientSession
    wide_session: aiohttp.ClientSession
    channels: list[grpc.aio.Channel]
    flood_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


#: How the i-th request of a class is sent, and what came back.
Send = Callable[[Clients, int], Awaitable[Answer]]
#: The body of the i-th request of a class.
Bodies = Callable[[int], bytes]
#: A header, method or path: the same for every request, or one for the i-th.
Varying = str | Callable[[int], str]


def cycle(bodies: list[bytes]) -> Bodies:
    return lambda i: bodies[i % len(bodies)]


def unique(build: Callable[[str], bytes], prefix: str) -> Bodies:
    """Request ``i``'s token ids start with ``prefix-i``: no two requests are retries."""
    return lambda i: build(f"{prefix}-{i}")


def in_turn(values: list[str]) -> Callable[[int], str]:
    return lambda i: values[i % len(values)]


def _nth(value: Varying, i: int) -> str:
    return value if isinstance(value, str) else value(i)


def post(
    bodies: Bodies,
    content_type: Varying,
    *,
    encoding: str = "",
    method: Varying = "POST",
    path: Varying = LOGS_PATH,
    chunked: bool = False,
    wide: bool = False,
) -> Send:
    """An HTTP request (chunked, or on a connection of its own when asked)."""

    async def send(clients: Clients, i: int) -> Answer:
        headers = {"Content-Type": _nth(content_type, i)}
        if encoding:
            headers["Content-Encoding"] = encoding
        body = bodies(i)
        session = clients.wide_session if wide else clients.session
        url = clients.base_url + _nth(path, i)
        data = _chunks(body) if chunked else body
        started = time.perf_counter()
        async with session.request(_nth(method, i), url, data=data, headers=headers) as response:
            answer = http_answer(response.status, response.headers, await response.read())
        return Answer(answer, time.perf_counter() - started)

    return send


async def _chunks(body: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def export(
    bodies: Bodies, *, compression: grpc.Compression | None = None, method: Varying = EXPORT_METHOD
) -> Send:
    """A gRPC call with the body as it is, on the channels in turn."""

    async def send(clients: Clients, i: int) -> Answer:
        channel = clients.channels[i % len(clients.channels)]
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(_nth(method, i))
        started = time.perf_counter()
        try:
            response = await call(bodies(i), timeout=DEADLINE_S, compression=compression)
            answer = grpc_answer(response)
        except grpc.aio.AioRpcError as e:
            answer = grpc_answer(None, e)
        return Answer(answer, time.perf_counter() - started)

    return send


def slowly(bodies: Bodies, *, stall_in: str) -> Send:
    """Slowloris: a connection of its own that trickles its request a byte at a time, stalling
    in the headers or in the body until the flood is over; then it sends the rest at once and
    reads the answer."""

    async def send(clients: Clients, i: int) -> Answer:
        body = bodies(i)
        head = (
            f"POST {LOGS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {PROTOBUF}\r\n"
            f"Content-Length: {len(body)}\r\nX-Trickle: {'s' * 1000}\r\nConnection: close\r\n\r\n"
        ).encode()
        raw = head + body
        sent = 0 if stall_in == "headers" else len(head)
        last = len(head) - 1 if stall_in == "headers" else len(raw) - 1
        reader, writer = await asyncio.open_connection("127.0.0.1", clients.http_port)
        try:
            writer.write(raw[:sent])
            while sent < last and not clients.flood_done.is_set():
                writer.write(raw[sent : sent + 1])
                await writer.drain()
                sent += 1
                await asyncio.sleep(SLOW_BYTE_INTERVAL_S)
            writer.write(raw[sent:])
            await writer.drain()
            started = time.perf_counter()
            response = await asyncio.wait_for(reader.read(), DEADLINE_S)  # until it closes
            return Answer(_raw_http_answer(response), time.perf_counter() - started)
        finally:
            writer.close()

    return send


def _raw_http_answer(response: bytes) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    if not head:
        return "connection closed without an answer"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = CIMultiDict((name, value) for name, _, value in (x.partition(": ") for x in lines))
    return http_answer(int(status_line.split()[1]), headers, body)


# -- hostile bodies --------------------------------------------------------------------------


def as_sent(request: ExportLogsServiceRequest, content_type: str) -> bytes:
    return request.SerializeToString() if content_type == PROTOBUF else hostile.as_json(request)


def padded_event(token_id: str) -> bytes:
    return hostile.token_event(token_id, padding="p" * 1000)


TEN_THOUSAND_ATTRIBUTES = b"".join(
    hostile.field(6, hostile.attribute(b"attr.%05d" % n, hostile.string_value(b"v%d" % n)))
    for n in range(10_000)
)
TEN_THOUSAND_ATTRIBUTES_JSON = ",".join(
    f'{{"key":"attr.{n:05}","value":{{"stringValue":"v{n}"}}}}' for n in range(10_000)
)


def wide(token_id: str) -> bytes:
    return hostile.request(hostile.record(TEN_THOUSAND_ATTRIBUTES, token_id=token_id.encode()))


def wide_json(token_id: str) -> bytes:
    return hostile.json_request(hostile.json_token_record(token_id, TEN_THOUSAND_ATTRIBUTES_JSON))


# Protobuf parsers stop at 100 nested messages: 47 nested arrays (two messages a level) or 31
# kvlists (three) are the deepest an attribute may be; OTLP/JSON is held to the same depth.
AT_THE_LIMIT = [("array", 47), ("kvlist", 31)]
JUST_PAST_IT = [("array", 48), ("kvlist", 32)]
HUNDREDS_DEEP = [("array", 300), ("kvlist", 300)]
FAR_PAST_IT = [*JUST_PAST_IT, *HUNDREDS_DEEP, ("array", 10_000)]


def deep(depths: list[tuple[str, int]], prefix: str) -> Bodies:
    """Request ``i``: one token event with an attribute nested as ``depths[i % len]`` says."""

    def body(i: int) -> bytes:
        kind, depth = depths[i % len(depths)]
        value = hostile.field(6, hostile.attribute(b"deep", hostile.nested_value(depth, kind)))
        return hostile.request(hostile.record(value, token_id=f"{prefix}-{i}".encode()))

    return body


def deep_json(depths: list[tuple[str, int]], prefix: str) -> Bodies:
    def body(i: int) -> bytes:
        kind, depth = depths[i % len(depths)]
        value = f'{{"key":"deep","value":{hostile.nested_json_value(depth, kind)}}}'
        return hostile.json_request(hostile.json_token_record(f"{prefix}-{i}", value))

    return body


MB = 1_000_000  # a megabyte string: its request stays just under the 1 MiB limit
#: (where it goes, the string): the body, an attribute's value, an attribute's key, the secret,
#: an Authorization header.
MEGABYTE_STRINGS: list[tuple[str, str]] = [
    ("body", "x" * MB),
    ("body", "é" * (MB // 2)),
    ("note", "a" * MB),
    ("k" * MB, "v"),
    ("token.value", "s" * MB),
    ("http.request.header.authorization", "Bearer " + "b" * MB),
]


def megabyte_string(token_id: str, i: int, content_type: str) -> bytes:
    where, text = MEGABYTE_STRINGS[i % len(MEGABYTE_STRINGS)]
    attributes = {"token.id": token_id} | ({} if where == "body" else {where: text})
    body = text if where == "body" else None
    record = log_record("token.used", attributes, body=body, time_unix_nano=RECENT_NS)
    return as_sent(export_request(record), content_type)


#: 384 KiB of "eyJ-": every fourth character starts what could be a JWT's header.
TOKEN_SHAPED = "eyJ-" * (384 * 1024 // 4)


def token_shaped(token_id: str) -> bytes:
    record = log_record("token.used", {"token.id": token_id}, body=TOKEN_SHAPED)
    return export_request(record).SerializeToString()


EDGE_TIMES = "times and severities at the edges of their types"
EDGE_OF_TIME = "2200-01-01"  # only the records at 2^63 - 1 ns (2262-04-11) are later than this


def edge_times(token_id: str, content_type: str) -> bytes:
    """Times and severities at the edges of their types: 0 (unset), 2^63 - 1 (the last
    nanosecond the store holds), 2^64 - 1 (rejected through partial_success, twice), negative
    severity numbers (an open enum). Five of the seven records are stored."""
    fields: list[dict[str, int]] = [
        {"time_unix_nano": 0},
        {"time_unix_nano": 2**63 - 1},
        {"observed_time_unix_nano": 2**63 - 1},
        {"time_unix_nano": 2**64 - 1},
        {"observed_time_unix_nano": 2**64 - 1},
        {"severity_number": -1},
        {"severity_number": -(2**31)},
    ]
    records = [
        log_record("token.used", {"token.id": f"{token_id}-{n}"}, **f) for n, f in enumerate(fields)
    ]
    return as_sent(export_request(*records), content_type)


def odd_but_valid(token_id: str) -> bytes:
    """A token event with unknown fields, known field numbers in other wire types (unknown
    fields too), a group, and its event name given twice: all legal protobuf."""
    t, f = hostile.tag, hostile.field
    noise = (
        f(100, b"unknown")
        + t(6, hostile.VARINT) + b"\x05"
        + f(1, b"not a fixed64")
        + t(50, hostile.SGROUP) + t(1, hostile.VARINT) + b"\x01" + t(50, hostile.EGROUP)
        + t(2, hostile.I64) + bytes(8)
        + t(99_999, hostile.I32) + bytes(4)
        + f(12, b"token.used")
    )  # fmt: skip
    record = hostile.record(noise, event_name=b"token.ignored", token_id=token_id.encode())
    return hostile.request(record) + t(7, hostile.I64) + bytes(8)


NON_TOKEN_RECORDS = export_request(
    log_record("http.server.request", {"url.path": "/"}, time_unix_nano=RECENT_NS),
    log_record("", {"token.id": "no event name"}),
    log_record("Token.used", {"token.id": "wrong case"}),
    log_record("tokens.used", {"token.id": "another namespace"}),
    log_record("token", {"token.id": "no dot"}),
    log_record("", {"event.name": "session.created", "token.id": "t"}),
)
EMPTY_PROTOBUF = [
    b"",
    hostile.field(1, b""),  # an empty ResourceLogs
    hostile.field(1, hostile.field(2, b"")),  # an empty ScopeLogs
    hostile.request(b""),  # an empty LogRecord
]
EMPTY_JSON = [b"{}", b'{"resourceLogs": []}', b'{"resourceLogs": [{}]}', b'{"resourceLogs": null}']
TRUNCATED_PROTOBUF = hostile.truncations(
    export_request(
        log_record("token.used", {"token.id": "cut", "user.id": "alice", "n": 7}, body="text"),
        log_record("token.created", {"token.value": "opaque", "token.scopes": ["a", "b"]}),
    ).SerializeToString(),
    200,
)
TRUNCATED_JSON = hostile.truncations(hostile.token_event("cut", JSON, **{"user.id": "a"}), 200)
CORRUPT_GZIP = [
    hostile.compression_bomb("gzip", 1000)[:-6],  # cut short
    b"\x1f\x8b\x08\x00" + b"\xff" * 40,  # a gzip header, then nothing inflate can read
    b"not gzip at all",
]
CORRUPT_DEFLATE = [b"\x78\x9c\xff\xff", hostile.compression_bomb("deflate", 1000)[:-4], b"{}"]
BOMB_BYTES = 64 * LIMIT  # inflated: 64 times the limit, from about 64 KiB on the wire
#: A megabyte body whose last bytes are malformed: cheap to refuse, once it has been read.
MEGABYTE_MALFORMED = (
    hostile.request(hostile.record(hostile.field(5, hostile.string_value(b"x" * MB))))
    + hostile.MALFORMED_PROTOBUF[1]
)
OVER_THE_LIMIT = hostile.token_event("big", padding="p" * LIMIT)
OVER_THE_LIMIT_JSON = hostile.token_event("big", JSON, padding="p" * LIMIT)

UNKNOWN_PATHS = [
    "/",
    "/v1/log",
    "/v1/logs/",
    "/v1/logsx",
    "/v1/logs/extra",
    "/V1/LOGS",
    "/v2/logs",
    "/v1/traces",
    "/v1/metrics",
    "/healthz/deeper",
]
OTHER_METHODS = ["GET", "PUT", "DELETE", "PATCH"]
OTHER_CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "application/grpc",
    "application/octet-stream",
    "application/protobuf",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/x-ndjson",
    "application/x-protobuf-json",
]
OTHER_GRPC_METHODS = [
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Exports",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]


# -- the classes, with the answer each must get ----------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One class of hostile request: how many, how the i-th is sent, and its answer."""

    name: str
    count: int
    send: Send
    expected: str
    stored: int = 0  # token events each request adds to the store
    or_else: str = ""  # the answer an overloaded service may give some of them instead
    burst: int = 0  # sent this many at once, beside the flood (0: in the flood)
    alone: bool = False  # sent after everything else, so that nothing waits behind it

    @property
    def allowed(self) -> set[str]:
        return {self.expected, self.or_else} - {""}


def bomb(content_type: str, encoding: str) -> Hostile:
    name = "protobuf" if content_type == PROTOBUF else "JSON"
    return Hostile(
        f"HTTP {name}: {encoding} bomb, {BOMB_BYTES >> 20} MiB of zeros",
        100,
        post(
            lambda _: hostile.compression_bomb(encoding, BOMB_BYTES),
            content_type,
            encoding=encoding,
        ),
        too_large(content_type),
    )


def grpc_bomb(name: str, compression: grpc.Compression) -> Hostile:
    zeros = bytes(4 * LIMIT)  # the gRPC client compresses them
    return Hostile(
        f"gRPC: {name} bomb, {len(zeros) >> 20} MiB of zeros",
        100,
        export(lambda _: zeros, compression=compression),
        GRPC_TOO_LARGE,
    )


P, J = PROTOBUF, JSON
HOSTILE: list[Hostile] = [
    # Never reaches the mapping: the wrong path, method or content type; another service.
    Hostile(
        "HTTP: unknown paths",
        12_000,
        post(unique(hostile.token_event, "lost"), P, path=in_turn(UNKNOWN_PATHS)),
        NOT_FOUND,
    ),
    Hostile(
        "HTTP: GET, PUT, DELETE, PATCH on /v1/logs",
        12_000,
        post(unique(hostile.token_event, "get"), P, method=in_turn(OTHER_METHODS)),
        NOT_ALLOWED,
    ),
    Hostile(
        "HTTP: content types other than OTLP's",
        12_000,
        post(unique(hostile.token_event, "typed"), in_turn(OTHER_CONTENT_TYPES)),
        UNSUPPORTED,
    ),
    Hostile(
        "gRPC: other services and methods",
        4_000,
        export(unique(hostile.token_event, "other"), method=in_turn(OTHER_GRPC_METHODS)),
        "gRPC UNIMPLEMENTED",
    ),
    # Malformed bodies.
    Hostile(
        "HTTP protobuf: malformed", 6_000, post(cycle(hostile.MALFORMED_PROTOBUF), P), invalid(P)
    ),
    Hostile("HTTP protobuf: truncated", 6_000, post(cycle(TRUNCATED_PROTOBUF), P), invalid(P)),
    Hostile("HTTP JSON: malformed", 6_000, post(cycle(hostile.MALFORMED_JSON), J), invalid(J)),
    Hostile("HTTP JSON: truncated", 6_000, post(cycle(TRUNCATED_JSON), J), invalid(J)),
    Hostile("gRPC: malformed", 6_000, export(cycle(hostile.MALFORMED_PROTOBUF)), GRPC_INVALID),
    Hostile("gRPC: truncated", 6_000, export(cycle(TRUNCATED_PROTOBUF)), GRPC_INVALID),
    Hostile(
        "HTTP protobuf: corrupt gzip",
        2_000,
        post(cycle(CORRUPT_GZIP), P, encoding="gzip"),
        invalid(P),
    ),
    Hostile(
        "HTTP JSON: corrupt deflate",
        2_000,
        post(cycle(CORRUPT_DEFLATE), J, encoding="deflate"),
        invalid(J),
    ),
    Hostile(
        "HTTP protobuf: invalid UTF-8 in string fields",
        2_000,
        post(cycle(hostile.INVALID_UTF8_PROTOBUF), P),
        invalid(P),
    ),
    Hostile(
        "HTTP JSON: invalid UTF-8, unpaired surrogates",
        2_000,
        post(cycle(hostile.INVALID_UTF8_JSON), J),
        invalid(J),
    ),
    Hostile(
        "gRPC: invalid UTF-8 in string fields",
        2_000,
        export(cycle(hostile.INVALID_UTF8_PROTOBUF)),
        GRPC_INVALID,
    ),
    # Over the limit: as sent, or once inflated.
    *(bomb(content_type, encoding) for content_type in (P, J) for encoding in ("gzip", "deflate")),
    grpc_bomb("gzip", grpc.Compression.Gzip),
    grpc_bomb("deflate", grpc.Compression.Deflate),
    Hostile("HTTP protobuf: over the limit", 50, post(lambda _: OVER_THE_LIMIT, P), too_large(P)),
    Hostile(
        "HTTP protobuf: over the limit, chunked",
        50,
        post(lambda _: OVER_THE_LIMIT, P, chunked=True),
        too_large(P),
    ),
    Hostile("HTTP JSON: over the limit", 50, post(lambda _: OVER_THE_LIMIT_JSON, J), too_large(J)),
    Hostile("gRPC: over the limit", 50, export(lambda _: OVER_THE_LIMIT), GRPC_TOO_LARGE),
    # Tens of thousands of members: refused as malformed (a gzip body of a few members is
    # usual; each one costs a new inflater).
    Hostile(
        "HTTP protobuf: 1 MiB of empty gzip members",
        10,
        post(lambda _: hostile.empty_gzip_members(LIMIT), P, encoding="gzip"),
        invalid(P),
    ),
    # Legal, but extreme.
    Hostile("gRPC: 10,000 attributes", 10, export(unique(wide, "wide-g")), GRPC_OK, stored=1),
    Hostile(
        "HTTP protobuf: 10,000 attributes", 10, post(unique(wide, "wide-p"), P), ok(P), stored=1
    ),
    Hostile(
        "HTTP JSON: 10,000 attributes", 10, post(unique(wide_json, "wide-j"), J), ok(J), stored=1
    ),
    Hostile(
        "gRPC: AnyValue nested to the parser's limit",
        200,
        export(deep(AT_THE_LIMIT, "deep-g")),
        GRPC_OK,
        stored=1,
    ),
    Hostile(
        "HTTP JSON: AnyValue nested to the parser's limit",
        200,
        post(deep_json(AT_THE_LIMIT, "deep-j"), J),
        ok(J),
        stored=1,
    ),
    Hostile(
        "gRPC: AnyValue nested past the parser's limit, 48 to 10,000 deep",
        500,
        export(deep(FAR_PAST_IT, "deeper")),
        GRPC_INVALID,
    ),
    Hostile(
        "HTTP protobuf: AnyValue nested past the parser's limit, 48 to 10,000 deep",
        500,
        post(deep(FAR_PAST_IT, "deeper"), P),
        invalid(P),
    ),
    Hostile(
        "HTTP JSON: AnyValue nested just past the parser's limit",
        200,
        post(deep_json(JUST_PAST_IT, "deeper"), J),
        invalid(J),
    ),
    Hostile(
        "HTTP JSON: AnyValue nested 300 deep",
        200,
        post(deep_json(HUNDREDS_DEEP, "deeper"), J),
        invalid(J),
    ),
    Hostile(
        "HTTP JSON: 10,000 nested brackets",
        50,
        post(lambda _: b'{"resourceLogs":' + b"[" * 10_000 + b"]" * 10_000 + b"}", J),
        invalid(J),
    ),
    Hostile(
        "gRPC: megabyte strings",
        12,
        export(lambda i: megabyte_string(f"mb-g-{i}", i, P)),
        GRPC_OK,
        stored=1,
    ),
    Hostile(
        "HTTP protobuf: megabyte strings",
        12,
        post(lambda i: megabyte_string(f"mb-p-{i}", i, P), P),
        ok(P),
        stored=1,
    ),
    Hostile(
        "HTTP JSON: megabyte strings",
        12,
        post(lambda i: megabyte_string(f"mb-j-{i}", i, J), J),
        ok(J),
        stored=1,
    ),
    Hostile(
        "HTTP protobuf: a 384 KiB token-shaped body",
        1,
        post(unique(token_shaped, "shaped"), P),
        ok(P),
        stored=1,
    ),
    Hostile(
        f"gRPC: {EDGE_TIMES}",
        300,
        export(lambda i: edge_times(f"edge-g-{i}", P)),
        "gRPC OK, 2 rejected",
        stored=5,
    ),
    Hostile(
        f"HTTP protobuf: {EDGE_TIMES}",
        300,
        post(lambda i: edge_times(f"edge-p-{i}", P), P),
        ok(P, rejected=2),
        stored=5,
    ),
    Hostile(
        f"HTTP JSON: {EDGE_TIMES}",
        300,
        post(lambda i: edge_times(f"edge-j-{i}", J), J),
        ok(J, rejected=2),
        stored=5,
    ),
    Hostile(
        "gRPC: unknown fields and wire types a parser skips",
        500,
        export(unique(odd_but_valid, "odd")),
        GRPC_OK,
        stored=1,
    ),
    Hostile("gRPC: empty requests", 2_000, export(cycle(EMPTY_PROTOBUF)), GRPC_OK),
    Hostile("HTTP protobuf: empty requests", 2_000, post(cycle(EMPTY_PROTOBUF), P), ok(P)),
    Hostile("HTTP JSON: empty requests", 2_000, post(cycle(EMPTY_JSON), J), ok(J)),
    Hostile(
        "gRPC: only records that are not token events",
        1_000,
        export(lambda _: as_sent(NON_TOKEN_RECORDS, P)),
        GRPC_OK,
    ),
    Hostile(
        "HTTP protobuf: only records that are not token events",
        1_000,
        post(lambda _: as_sent(NON_TOKEN_RECORDS, P), P),
        ok(P),
    ),
    Hostile(
        "HTTP JSON: only records that are not token events",
        1_000,
        post(lambda _: as_sent(NON_TOKEN_RECORDS, J), J),
        ok(J),
    ),
    # Many at once, and slow clients, beside the flood. Last, on its own: memory must not grow
    # with the bodies in flight, and a thousand connections may each bring a megabyte.
    Hostile(
        f"gRPC: 400 concurrent calls on {GRPC_CHANNELS} channels",
        2_000,
        export(unique(hostile.token_event, "concurrent-g")),
        GRPC_OK,
        stored=1,
        burst=400,
    ),
    Hostile(
        "HTTP: 400 connections at once",
        1_200,
        post(unique(hostile.token_event, "concurrent-h"), P, wide=True),
        ok(P),
        stored=1,
        burst=400,
    ),
    Hostile(
        "HTTP: 1,000 connections at once, a megabyte each",
        1_000,
        post(lambda _: MEGABYTE_MALFORMED, P, wide=True),
        invalid(P),
        burst=1_000,
        or_else=SLOW_DOWN,
        alone=True,
    ),
    Hostile(
        "HTTP: slowloris, a byte at a time in the headers",
        100,
        slowly(unique(hostile.token_event, "slow-head"), stall_in="headers"),
        ok(P),
        stored=1,
        burst=100,
    ),
    Hostile(
        "HTTP: slowloris, a byte at a time in the body",
        100,
        slowly(unique(padded_event, "slow-body"), stall_in="body"),
        ok(P),
        stored=1,
        burst=100,
    ),
]
BY_NAME = {h.name: h for h in HOSTILE}


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0

    def add(self, answer: Answer) -> None:
        self.answers[answer.text] += 1
        self.slowest_s = max(self.slowest_s, answer.seconds)


async def answer_of(send: Awaitable[Answer]) -> Answer:
    """The answer, or how the request failed without one (each sender keeps the deadline)."""
    try:
        return await send
    except TimeoutError:
        return Answer(NO_ANSWER, DEADLINE_S)
    except (aiohttp.ClientError, OSError) as e:
        return Answer(f"connection failed: {type(e).__name__}", 0.0)


@asynccontextmanager
async def clients_of(serve: ServeProcess) -> AsyncIterator[Clients]:
    timeout = aiohttp.ClientTimeout(total=DEADLINE_S)
    few = aiohttp.TCPConnector(limit=FLOOD_CONCURRENCY)
    one_each = aiohttp.TCPConnector(limit=0, force_close=True)
    channels = [  # a local subchannel pool each: channels do not share a connection
        grpc.aio.insecure_channel(
            serve.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(GRPC_CHANNELS)
    ]
    async with (
        aiohttp.ClientSession(connector=few, timeout=timeout) as session,
        aiohttp.ClientSession(connector=one_each, timeout=timeout) as wide_session,
    ):
        try:
            yield Clients(serve.http_port, session, wide_session, channels)
        finally:
            for channel in channels:
                await channel.close()


async def run_storm(serve: ServeProcess) -> dict[str, Tally]:
    """Every class: the flood (the classes interleaved, the one-off bodies first) and, beside
    it, the bursts and the slow clients, which finish their requests once the flood is over;
    then what is sent alone."""
    tallies = {h.name: Tally() for h in HOSTILE}
    flood_jobs = [(h, i) for h in HOSTILE if not h.burst for i in range(h.count)]
    random.Random(20240601).shuffle(flood_jobs)
    flood_jobs.sort(key=lambda job: job[0].count > 1)  # stable: the rest stays shuffled
    jobs = iter(flood_jobs)  # shared by the flood's senders: each job is sent once

    async with clients_of(serve) as clients:

        async def flood_sender() -> None:
            for h, i in jobs:
                tallies[h.name].add(await answer_of(h.send(clients, i)))

        async def flood() -> None:
            try:
                await asyncio.gather(*(flood_sender() for _ in range(FLOOD_CONCURRENCY)))
            finally:
                clients.flood_done.set()

        async def bursts(h: Hostile) -> None:
            for start in range(0, h.count, h.burst):
                batch = range(start, min(start + h.burst, h.count))
                for answer in await asyncio.gather(*(answer_of(h.send(clients, i)) for i in batch)):
                    tallies[h.name].add(answer)

        await asyncio.gather(flood(), *(bursts(h) for h in HOSTILE if h.burst and not h.alone))
        for h in HOSTILE:
            if h.alone:
                await bursts(h)
    return tallies


class RssWatch:
    """The peak resident memory of a process and all its descendants, sampled in a thread: of
    their own (anonymous and shared pages), and with the library files mapped (all of RSS)."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self._pid, self._every_s = pid, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.first_bytes = self.peak_bytes = self.peak_rss_bytes = 0

    def _watch(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                root = psutil.Process(self._pid)
                processes = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in processes)
                own = sum(_own_bytes(p.pid) for p in processes)
            except (psutil.Error, OSError):  # a process ended between listing and reading
                continue
            self.first_bytes = self.first_bytes or own
            self.peak_bytes = max(self.peak_bytes, own)
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _own_bytes(pid: int) -> int:
    """A process's resident anonymous and shared pages (/proc/<pid>/status), in bytes."""
    kib = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssShmem:")):
                kib += int(line.split()[1])
    return kib * 1024


# -- after the storm: a well-formed request ----------------------------------------------------


def probe(token_id: str) -> ExportLogsServiceRequest:
    attributes = {
        "token.id": token_id,
        "user.id": "alice",
        "client.address": "203.0.113.7",
        "token.scopes": ["repo", "read:org"],
        "note": "after the storm",
    }
    return export_request(
        log_record(
            "token.used",
            attributes,
            body="still here",
            time_unix_nano=RECENT_NS + 7,
            severity_number=9,
            severity_text="INFO",
        )
    )


def send_probes(serve: ServeProcess) -> list[str]:
    """The probe over gRPC (token probe-grpc) and over OTLP/JSON (probe-json); their answers."""
    with grpc.insecure_channel(serve.grpc_target) as channel:
        response = grpc_export(channel, probe("probe-grpc").SerializeToString())
    status, headers, body = http_post(serve.logs_url, hostile.as_json(probe("probe-json")), JSON)
    return [
        grpc_answer(response.SerializeToString()),
        http_answer(status, CIMultiDict(headers.items()), body),
    ]


def unhandled_errors(log: str) -> Counter[str]:
    """The exception that ends each traceback in a log, counted."""
    errors: Counter[str] = Counter()
    in_traceback = False
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            errors[line] += 1
            in_traceback = False
    return errors


# -- the storm, once for the module ----------------------------------------------------------


@dataclass(repr=False)
class Storm:
    tallies: dict[str, Tally]
    seconds: float
    first_rss_bytes: int  # own memory (see RssWatch)
    peak_rss_bytes: int
    peak_all_rss_bytes: int
    alive_after: bool
    healthz_after: int
    probe_answers: list[str]
    exit_code: int
    log: str
    stored_rows: int
    probe_rows: list[dict[str, Any]]
    far_future_rows: list[dict[str, Any]]

    def __repr__(self) -> str:  # (pytest prints it with every failure)
        return f"<Storm of {self.requests:,} requests>"

    @property
    def requests(self) -> int:
        return sum(t.answers.total() for t in self.tallies.values())

    def token_events(self, answered: Callable[[str], bool]) -> int:
        """Token events sent in the requests whose answer passes ``answered``."""
        return sum(
            n * h.stored
            for h in HOSTILE
            for text, n in self.tallies[h.name].answers.items()
            if answered(text)
        )

    def report(self) -> str:
        width = max(len(name) for name in self.tallies)
        lines = [f"{'class':<{width}}  {'sent':>6}  {'slowest':>8}  answers"]
        for h in HOSTILE:
            tally = self.tallies[h.name]
            answers = "; ".join(f"{n} x {text}" for text, n in tally.answers.most_common())
            wrong = "" if set(tally.answers) <= h.allowed else "  WRONG"
            lines.append(
                f"{h.name:<{width}}  {h.count:>6}  {tally.slowest_s:>7.2f}s  {answers}{wrong}"
            )
        rate = self.requests / self.seconds
        lines.append(
            f"{self.requests:,} requests in {self.seconds:.0f} s ({rate:,.0f} requests/s); "
            f"serve and its workers: own memory {self.first_rss_bytes / 1e6:,.0f} MB at the "
            f"start, {self.peak_rss_bytes / 1e6:,.0f} MB at the peak (ceiling "
            f"{RSS_CEILING_BYTES / 1e6:,.0f} MB), all of RSS {self.peak_all_rss_bytes / 1e6:,.0f} "
            f"MB at the peak; {self.stored_rows:,} rows stored"
        )
        return "\n".join(lines)


@pytest.fixture(scope="module")
def storm(tmp_path_factory: pytest.TempPathFactory) -> Storm:
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    serve = start_serve(data_dir, "--max-request-bytes", str(LIMIT))
    try:
        with RssWatch(serve.proc.pid) as rss:
            started = time.perf_counter()
            tallies = asyncio.run(run_storm(serve))
            seconds = time.perf_counter() - started
        alive = serve.alive()
        healthz = http_get(f"{serve.http_url}/healthz")[0] if alive else 0
        probe_answers = send_probes(serve) if alive else []
    finally:
        exit_code = serve.stop()
    result = Storm(
        tallies=tallies,
        seconds=seconds,
        first_rss_bytes=rss.first_bytes,
        peak_rss_bytes=rss.peak_bytes,
        peak_all_rss_bytes=rss.peak_rss_bytes,
        alive_after=alive,
        healthz_after=healthz,
        probe_answers=probe_answers,
        exit_code=exit_code,
        log=serve.output(),
        stored_rows=stored_row_count(data_dir),
        probe_rows=query_json(data_dir, "--token", "probe-grpc", "--token", "probe-json"),
        far_future_rows=query_json(data_dir, "--since", EDGE_OF_TIME, "--limit", "100000"),
    )
    print(f"\n{result.report()}")
    return result


# -- the specification -----------------------------------------------------------------------


def test_over_100000_hostile_requests_reach_one_service(storm: Storm) -> None:
    assert storm.requests == sum(h.count for h in HOSTILE) >= 100_000


@pytest.mark.parametrize("name", list(BY_NAME))
def test_each_request_gets_the_answer_otlp_asks_for(storm: Storm, name: str) -> None:
    hostile_class = BY_NAME[name]
    answers = storm.tallies[name].answers
    assert answers.total() == hostile_class.count
    assert {a: n for a, n in answers.items() if a not in hostile_class.allowed} == {}


def test_the_service_stays_up(storm: Storm) -> None:
    assert (storm.alive_after, storm.healthz_after, storm.exit_code) == (True, 200, 0)


def test_no_request_escapes_as_an_unhandled_error(storm: Storm) -> None:
    assert unhandled_errors(storm.log) == Counter()


def test_memory_stays_under_the_overload_ceiling(storm: Storm) -> None:
    assert 0 < storm.peak_rss_bytes < RSS_CEILING_BYTES


def test_every_acknowledged_token_event_is_stored_once(storm: Storm) -> None:
    acknowledged = storm.token_events(lambda a: a.startswith(("gRPC OK", "HTTP 200")))
    acknowledged += len(storm.probe_answers)
    # A request whose client gave up may still have been stored (its retry would be dropped).
    unanswered = storm.token_events(lambda a: a == NO_ANSWER or a.startswith("connection"))
    assert acknowledged <= storm.stored_rows <= acknowledged + unanswered


def test_events_at_the_last_nanosecond_the_store_holds_are_kept(storm: Storm) -> None:
    # Two records of each edge-times request: its time, or its observed time (and so its time,
    # the time being unset), is 2^63 - 1 ns.
    edge_requests = sum(h.count for h in HOSTILE if h.name.endswith(EDGE_TIMES))
    assert len(storm.far_future_rows) == 2 * edge_requests


def test_a_well_formed_request_is_stored_as_sent_afterwards(storm: Storm) -> None:
    assert storm.probe_answers == [GRPC_OK, ok(JSON)]
    expected = {
        "time": rfc3339_ns(RECENT_NS + 7),
        "event_name": "token.used",
        "outcome": "success",
        "principal_id": "alice",
        "client_ip": "203.0.113.7",
        "scopes": ["repo", "read:org"],
        "severity_number": 9,
        "severity_text": "INFO",
        "body": "still here",
        "attributes": {"note": "after the storm"},
    }
    stored = sorted(storm.probe_rows, key=lambda row: row["token_id"])
    assert [{k: row[k] for k in ("token_id", *expected)} for row in stored] == [
        {"token_id": token_id, **expected} for token_id in ("probe-grpc", "probe-json")
    ]
