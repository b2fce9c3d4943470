"""OTLP/HTTP: POST /v1/logs in protobuf or JSON (gzip accepted), plus /healthz and /readyz; with
authentication on, /v1/logs needs a credential of role ingest (the health paths stay open)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from tokenotel.errors import (
    INTERNAL_ERROR,
    MethodNotAllowed,
    PermissionDenied,
    RequestTooLarge,
    TokenotelError,
    Unauthenticated,
    UnsupportedContentType,
    client_status,
)
from tokenotel.ingest.consumer import LogsConsumer
from tokenotel.ingest.content_encoding import decompress
from tokenotel.mapping.decode import JSON, PROTOBUF
from tokenotel.security.access import Access
from tokenotel.security.audit import Caller
from tokenotel.security.credentials import Role
from tokenotel.security.tls import ServerTls

log = logging.getLogger(__name__)

LOGS_PATH = "/v1/logs"
_CONTENT_TYPES = (PROTOBUF, JSON)
#: Probed by load balancers, orchestrators and Prometheus without a credential.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: The service's metrics: what renders them, and their media type.
Metrics = tuple[Callable[[], bytes], str]


class OtlpHttpListener:
    """Serves OTLP/HTTP and the health endpoints on ``host``:``port`` (0: the system picks),
    over TLS (HTTPS) when ``tls`` is given."""

    name = "OTLP/HTTP"

    def __init__(
        self,
        host: str,
        port: int,
        consumer: LogsConsumer,
        max_request_bytes: int,
        access: Access | None = None,
        *,
        tls: ServerTls | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``metrics``: the service's own metrics, served at /metrics (Prometheus's text)."""
        self.host, self._port = host, port
        self.tls = tls
        self._app = build_app(consumer, max_request_bytes, access, self.name, metrics)
        self._runner: web.AppRunner | None = None
        self.port = 0  # the port it listens on, once started

    async def start(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, auto_decompress=False)
        await runner.setup()
        try:
            ssl_context = self.tls.ssl_context() if self.tls is not None else None
            site = web.TCPSite(
                runner, self.host, self._port, ssl_context=ssl_context, reuse_port=False
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stops taking requests and lets those in flight finish."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def build_app(
    consumer: LogsConsumer,
    max_request_bytes: int,
    access: Access | None = None,
    listener: str = OtlpHttpListener.name,
    metrics: Metrics | None = None,
) -> web.Application:
    async def logs(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            message = f"{request.method} is not allowed on {LOGS_PATH}; use POST"
            return _error(MethodNotAllowed(message), JSON)
        content_type = request.content_type
        if content_type not in _CONTENT_TYPES:
            message = f"Content-Type {content_type!r} is not supported; use {PROTOBUF} or {JSON}"
            return _error(UnsupportedContentType(message), JSON)
        encoding = request.headers.get("Content-Encoding", "")
        try:
            # Held from before the body is read: a thousand clients sending at once must not
            # all be read into memory first (without a length, count the most it may be).
            with consumer.hold(request.content_length or max_request_bytes) as resize:
                body = await _read(request, max_request_bytes)
                resize(len(body))
                if encoding.strip().lower() in ("", "identity"):
                    data = decompress(body, encoding, max_request_bytes)
                else:  # up to the size limit of work: not on the event loop
                    data = await asyncio.to_thread(decompress, body, encoding, max_request_bytes)
                    del body
                    resize(len(data))
                result = await consumer.export(data, content_type)
        except TokenotelError as e:
            return _error(e, content_type)
        except Exception:  # a bug: said once in the log, and a status the client can read
            log.exception("an OTLP/HTTP request failed")
            return _message(
                500, status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_ERROR), content_type
            )
        return _message(200, result.response(), content_type)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        if await consumer.ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "store unreachable"}, status=503)

    middlewares = [] if access is None else [_required_credential(access, listener)]
    app = web.Application(client_max_size=max_request_bytes, middlewares=middlewares)
    app.router.add_route("*", LOGS_PATH, logs)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        render, content_type = metrics

        async def scrape(_: web.Request) -> web.Response:
            body = await asyncio.to_thread(render)  # (the observed counters are read here)
            return web.Response(body=body, headers={"Content-Type": content_type})

        app.router.add_get("/metrics", scrape)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _required_credential(access: Access, listener: str) -> Any:
    """Middleware: every path but the health ones needs a credential of role ingest, checked
    before the body is read."""

    @web.middleware
    async def required_credential(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            caller = Caller(request.remote or "", listener, request.path, request.method)
            authorization = request.headers.getall("Authorization", [])
            try:
                access.check(authorization, Role.INGEST, caller, http=True)
            except (Unauthenticated, PermissionDenied) as e:
                content_type = request.content_type
                return _error(e, content_type if content_type in _CONTENT_TYPES else JSON)
        return await handler(request)

    return required_credential


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


def _error(error: TokenotelError, content_type: str) -> web.Response:
    """A google.rpc.Status body in the request's content type, with the error's status."""
    status = client_status(error)
    headers = {}
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = "POST"
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"  # the scheme to answer with (RFC 6750)
    if status.retry_after_s is not None:  # whole seconds, at least one
        headers["Retry-After"] = str(max(1, round(status.retry_after_s)))
    return _message(
        status.http_status,
        status_pb2.Status(code=status.grpc_code, message=str(error)),
        content_type,
        headers=headers,
    )
