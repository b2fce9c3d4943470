"""OTLP/gRPC: LogsService/Export and the standard gRPC health service on one server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from tokenotel.errors import PermanentError, RequestTooLarge, RetryableError
from tokenotel.ingest.decode import PROTOBUF
from tokenotel.ingest.result import ExportResult

log = logging.getLogger(__name__)

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"
#: The next consumer: takes a request body (decompressed) and its content type.
Export = Callable[[bytes, str], Awaitable[ExportResult]]


class LogsServicer:
    """Takes raw request bytes: decoding happens downstream, and a malformed body is then
    INVALID_ARGUMENT rather than gRPC's own INTERNAL."""

    def __init__(self, export: Export) -> None:
        self._export = export

    async def export(
        self, body: bytes, context: grpc.aio.ServicerContext
    ) -> ExportLogsServiceResponse:
        try:
            result = await self._export(body, PROTOBUF)
        except RequestTooLarge as e:  # no RetryInfo: the client must not retry it
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except PermanentError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except RetryableError as e:
            await _abort_unavailable(context, e)
        return result.response()


async def _abort_unavailable(context: grpc.aio.ServicerContext, error: RetryableError) -> None:
    """UNAVAILABLE with RetryInfo twice: in the status details (read by the collector) and as
    its own ``google.rpc.retryinfo-bin`` trailer (the only place the Python SDK looks)."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(error.retry_after_s * 1e9))
    retry_info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(retry_info)
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.UNAVAILABLE, message=str(error), details=[detail])
    )
    trailers = (*status.trailing_metadata, (RETRY_INFO_TRAILER, retry_info.SerializeToString()))
    await context.abort(status.code, status.details, trailing_metadata=trailers)


def build_server(
    export: Export, address: str, max_request_bytes: int
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """The server (not started), its health servicer and the port it is bound to.

    gRPC applies ``max_request_bytes`` to the decompressed message and answers
    RESOURCE_EXHAUSTED (without RetryInfo) above it, as OTLP asks. SO_REUSEPORT is off so a
    port already taken is an error, not a silent second listener.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    servicer = LogsServicer(export)
    handler = grpc.method_handlers_generic_handler(
        LOGS_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                servicer.export,
                request_deserializer=None,
                response_serializer=ExportLogsServiceResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    if port == 0 and not address.endswith(":0"):
        raise OSError(f"cannot listen for gRPC on {address}: the address is taken or invalid")
    return server, health_servicer, port


async def report_health(
    servicer: health.aio.HealthServicer, ready: Callable[[], Awaitable[bool]], every_s: float = 1.0
) -> None:
    """Keeps the health service in step with the store: SERVING only while it is reachable."""
    last: bool | None = None
    while True:
        serving = await ready()
        if serving != last:
            await set_health(servicer, serving)
            last = serving
        await asyncio.sleep(every_s)


async def set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    """The status of the server as a whole and of LogsService (gRPC health starts as SERVING)."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", LOGS_SERVICE):
        await servicer.set(name, status)
