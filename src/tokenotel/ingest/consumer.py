"""What the protocol edges hand requests to: the consumer's interface, what it answers, and the
budget of request bodies the service holds at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from tokenotel.errors import Overloaded


@dataclass(frozen=True)
class ExportResult:
    rejected: int = 0
    message: str = ""
    #: For a caller in this process (``tokenotel import``), not the OTLP answer: token events
    #: stored, stored before (not again), records ignored (no token event), every problem.
    stored: int = 0
    again: int = 0
    ignored: int = 0
    errors: tuple[str, ...] = ()

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


#: Changes how many bytes a held request counts for (its body once decompressed).
Resize = Callable[[int], None]


class LogsConsumer(Protocol):
    """The next consumer of OTLP log requests (the pipeline): an edge holds a request's bytes
    with ``hold`` while it reads, decompresses and exports it."""

    async def export(self, body: bytes, content_type: str) -> ExportResult:
        """The body (decompressed) and its content type in, the result out once its rows are
        committed; raises TokenotelError (see errors.client_status)."""
        ...

    async def ready(self) -> bool:
        """Whether requests can be taken now (the store answers, the last write went through)."""
        ...

    def hold(self, size: int) -> AbstractContextManager[Resize]:
        """Counts ``size`` bytes of a request as held until the block ends; raises Overloaded
        when the service holds too much already."""
        ...


class BodyBudget:
    """The request bytes the service holds (read, decompressed, mapped, waiting for their rows
    to be written). Past ``max_bytes``, new requests are refused before they are read: bodies
    waiting for a mapping worker or the store are what grows under overload. One request is
    always taken, so the limit cannot lock out a body bigger than itself."""

    def __init__(self, max_bytes: int, retry_after_s: float) -> None:
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.held = 0
        self.refused = 0

    @contextmanager
    def hold(self, size: int) -> Iterator[Resize]:
        if self.held and self.held + size > self.max_bytes:
            self.refused += 1
            raise Overloaded(
                "too many requests waiting to be mapped and written; send again later",
                self.retry_after_s,
            )
        counted = [size]
        self.held += size

        def resize(new_size: int) -> None:
            self.held += new_size - counted[0]
            counted[0] = new_size

        try:
            yield resize
        finally:
            self.held -= counted[0]
