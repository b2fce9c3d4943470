"""OTLP/HTTP: POST /v1/logs in protobuf or JSON (gzip accepted), plus /healthz and /readyz."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from tokenotel.errors import PermanentError, RequestTooLarge, RetryableError
from tokenotel.ingest.decode import JSON, PROTOBUF, decompress
from tokenotel.ingest.otlp_grpc import Export

log = logging.getLogger(__name__)

LOGS_PATH = "/v1/logs"
_CONTENT_TYPES = (PROTOBUF, JSON)
_STATUS_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}


def build_app(
    export: Export, ready: Callable[[], Awaitable[bool]], max_request_bytes: int
) -> web.Application:
    async def logs(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _error(
                405,
                f"{request.method} is not allowed on {LOGS_PATH}; use POST",
                JSON,
                headers={"Allow": "POST"},
            )
        content_type = request.content_type
        if content_type not in _CONTENT_TYPES:
            return _error(
                415,
                f"Content-Type {content_type!r} is not supported; use {PROTOBUF} or {JSON}",
                JSON,
            )
        try:
            body = await _read(request, max_request_bytes)
            data = decompress(body, request.headers.get("Content-Encoding", ""), max_request_bytes)
            result = await export(data, content_type)
        except RequestTooLarge as e:
            return _error(413, str(e), content_type)
        except PermanentError as e:
            return _error(400, str(e), content_type)
        except RetryableError as e:
            retry_after = str(max(1, round(e.retry_after_s)))
            return _error(503, str(e), content_type, headers={"Retry-After": retry_after})
        return _message(200, result.response(), content_type)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        if await ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "store unreachable"}, status=503)

    app = web.Application(client_max_size=max_request_bytes)
    app.router.add_route("*", LOGS_PATH, logs)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _read(request: web.Request, limit: int) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge(f"the request body is larger than {limit} bytes") from None


def _message(status: int, message: Message, content_type: str, **kwargs: Any) -> web.Response:
    if content_type == PROTOBUF:
        body = message.SerializeToString()
    else:
        body = json_format.MessageToJson(message, indent=None).encode()
    return web.Response(status=status, body=body, content_type=content_type, **kwargs)


def _error(status: int, message: str, content_type: str, **kwargs: Any) -> web.Response:
    """Errors are google.rpc.Status bodies in the request's content type."""
    return _message(
        status,
        status_pb2.Status(code=_STATUS_CODES[status], message=message),
        content_type,
        **kwargs,
    )
