"""What the protocol edges hand on and get back, independent of gRPC or HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse


@dataclass(frozen=True)
class ExportResult:
    rejected: int = 0
    message: str = ""

    def response(self) -> ExportLogsServiceResponse:
        """Full success leaves ``partial_success`` unset, as the OTLP specification asks."""
        response = ExportLogsServiceResponse()
        if self.rejected or self.message:
            response.partial_success.rejected_log_records = self.rejected
            response.partial_success.error_message = self.message
        return response


def error_summary(errors: list[str], limit: int = 5) -> str:
    """The first ``limit`` errors in one message, and how many more there were."""
    shown = "; ".join(errors[:limit])
    more = len(errors) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


#: The next consumer of a request: its body (decompressed) and content type in, the result out
#: once its rows are committed; raises TokenotelError (see errors.client_status).
Export = Callable[[bytes, str], Awaitable[ExportResult]]
#: Whether the service can take requests now (the store answers and the last write went through).
Ready = Callable[[], Awaitable[bool]]
