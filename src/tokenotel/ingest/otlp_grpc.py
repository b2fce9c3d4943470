"""OTLP/gRPC: LogsService/Export and the standard gRPC health service on one listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from tokenotel.errors import INTERNAL_ERROR, TokenotelError, rich_status
from tokenotel.ingest.consumer import LogsConsumer
from tokenotel.mapping.decode import PROTOBUF
from tokenotel.security.access import Access, GrpcAccess
from tokenotel.security.credentials import Role
from tokenotel.security.tls import ServerTls

log = logging.getLogger(__name__)

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"
#: How long requests in flight may take to finish when the listener stops.
STOP_GRACE_S = 5


class OtlpGrpcListener:
    """Serves OTLP/gRPC on ``host``:``port`` (0: the system picks) for ``consumer``, over TLS
    when ``tls`` is given; the health service says SERVING only while the consumer is ready.

    gRPC applies ``max_request_bytes`` to the decompressed message and answers
    RESOURCE_EXHAUSTED (without RetryInfo) above it, as OTLP asks. SO_REUSEPORT is off so a
    port already taken is an error, not a silent second listener. With ``access``, Export needs
    a credential of role ingest (or admin); health stays open.
    """

    name = "OTLP/gRPC"

    def __init__(
        self,
        host: str,
        port: int,
        consumer: LogsConsumer,
        max_request_bytes: int,
        access: Access | None = None,
        *,
        tls: ServerTls | None = None,
    ) -> None:
        self.host, self._port = host, port
        self.tls = tls
        self._consumer = consumer
        self._max_request_bytes = max_request_bytes
        self._access = access
        self._server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self.port = 0  # the port it listens on, once started

    async def start(self) -> None:
        interceptors = []
        if self._access is not None:
            interceptors.append(GrpcAccess(self._access, self.name, lambda _: Role.INGEST))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self._max_request_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        handler = grpc.method_handlers_generic_handler(
            LOGS_SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._handle_export,
                    request_deserializer=None,  # raw bytes: decoding happens downstream
                    response_serializer=ExportLogsServiceResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        address = f"[{self.host}]:{self._port}" if ":" in self.host else f"{self.host}:{self._port}"
        if self.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, self.tls.grpc_credentials())
        if port == 0 and self._port != 0:
            raise OSError(f"cannot listen for gRPC on {address}: the address is taken or invalid")
        await _set_health(health_servicer, serving=False)  # until the store has answered
        await server.start()
        self._server, self.port = server, port
        self._health_task = asyncio.create_task(
            _report_health(health_servicer, self._consumer.ready)
        )

    async def stop(self) -> None:
        """Stops taking requests and lets those in flight finish."""
        if self._server is not None:
            await self._server.stop(grace=STOP_GRACE_S)
            self._server = None
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None

    async def _handle_export(
        self, body: bytes, context: grpc.aio.ServicerContext
    ) -> ExportLogsServiceResponse:
        """Takes raw request bytes: a malformed body is then INVALID_ARGUMENT rather than
        gRPC's own INTERNAL."""
        try:
            with self._consumer.hold(len(body)):
                result = await self._consumer.export(body, PROTOBUF)
        except TokenotelError as e:
            await _abort(context, e)
        except Exception:  # a bug: said once in the log, and a status the client can read
            log.exception("an OTLP/gRPC request failed")
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)
        return result.response()


async def _abort(context: grpc.aio.ServicerContext, error: TokenotelError) -> None:
    """Ends the call with the error's status (errors.rich_status). A retryable one carries its
    RetryInfo twice: in the status details (read by the collector) and as its own
    ``google.rpc.retryinfo-bin`` trailer (the only place the Python SDK looks)."""
    status = rich_status(error)
    rich = rpc_status.to_status(status)
    trailers = tuple(rich.trailing_metadata)
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            trailers += ((RETRY_INFO_TRAILER, info.SerializeToString()),)
    await context.abort(rich.code, rich.details, trailing_metadata=trailers)


async def _report_health(
    servicer: health.aio.HealthServicer, ready: Callable[[], Awaitable[bool]], every_s: float = 1.0
) -> None:
    """Keeps the health service in step with the store: SERVING only while it is reachable."""
    last: bool | None = None
    while True:
        serving = await ready()
        if serving != last:
            await _set_health(servicer, serving)
            last = serving
        await asyncio.sleep(every_s)


async def _set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    """The status of the server as a whole and of LogsService (gRPC health starts as SERVING)."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", LOGS_SERVICE):
        await servicer.set(name, status)
