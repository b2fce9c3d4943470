"""``tokenotel import``: a source's records from files into the trail, through the same pipeline
as the records the collector sends live.

Each line of each file is one raw record of the source, thousands to a request. The requests go
to the pipeline of a stopped data directory (the embedded store, or a ClickHouse server), whose
mapping takes the lines as they are, or over OTLP/gRPC to the running service, each line the
body of a log record with ``tokenotel.source``. Either way the mapping expands each line into
its token events (mapping/expand.py), exactly as live.

Resumable: ``import-progress.json`` (history/progress.py) notes what was committed. Idempotent:
events are named by the source's own ids, so what was stored before (by an earlier import, an
interrupted one, or live) is dropped as a duplicate, and a file imported whole is not read again.
A line that is not a record of the source is reported (file and line) and skipped.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from tokenotel.errors import Overloaded, PermanentError, StoreUnavailable
from tokenotel.history.files import READ_ERRORS, FileIdentity, read_lines
from tokenotel.history.progress import Progress
from tokenotel.history.requests import encode_request, source_attribute
from tokenotel.ingest.consumer import ExportResult
from tokenotel.pipeline import Pipeline

#: Lines in one request, and the most bytes of lines (a CloudTrail file is one long line).
REQUEST_LINES = 5_000
REQUEST_BYTES = 8 * 1024 * 1024
#: Rows of an import's insert, and how long the writer waits for them: more than live, as nobody
#: waits on an import. ClickHouse spends ~60 ms of CPU on an insert (a part in the events table
#: and in each rollup) whatever its size: 12 µs a row in inserts of 5,000 rows, 3 in 20,000.
INSERT_ROWS = 20_000
INSERT_DELAY_MS = 1_000
#: Requests in flight at once: an insert's worth being written while as many more are mapped.
IN_FLIGHT = 2 * INSERT_ROWS // REQUEST_LINES
_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
_RECORD_INDEX = re.compile(r"^log record (\d+)")


class Sink(Protocol):
    """Where an import's requests go."""

    async def start(self) -> None: ...

    async def export(self, source: str, lines: list[bytes]) -> ExportResult:
        """Raises StoreUnavailable or Overloaded when to be sent again later."""
        ...

    def all_sent(self) -> None:
        """Every request has been sent: what is still under way need not wait for more."""
        ...

    async def stop(self) -> None: ...

    #: Whether results count stored events (a pipeline here) or only rejected records.
    counts_events: bool


class PipelineSink:
    """The pipeline of the data directory (embedded store) or of a ClickHouse server."""

    counts_events = True

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def start(self) -> None:
        await self._pipeline.start()

    async def export(self, source: str, lines: list[bytes]) -> ExportResult:
        return await self._pipeline.export_lines(source, lines)

    def all_sent(self) -> None:
        self._pipeline.stop_waiting()

    async def stop(self) -> None:
        await self._pipeline.stop()


class ServiceSink:
    """A running tokenotel's OTLP/gRPC endpoint."""

    counts_events = False

    def __init__(
        self,
        address: str,
        credential: str | None = None,
        tls: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self._tls = tls
        self._metadata = (("authorization", f"Bearer {credential}"),) if credential else ()

    async def start(self) -> None:
        """Opens the channel (in the event loop that will use it)."""
        self._channel = (
            grpc.aio.secure_channel(self.address, self._tls)
            if self._tls is not None
            else grpc.aio.insecure_channel(self.address)
        )
        self._export: grpc.aio.UnaryUnaryMultiCallable[bytes, ExportLogsServiceResponse] = (
            self._channel.unary_unary(
                _EXPORT,
                request_serializer=None,
                response_deserializer=ExportLogsServiceResponse.FromString,
            )
        )

    async def export(self, source: str, lines: list[bytes]) -> ExportResult:
        body = encode_request(lines, source_attribute(source), time.time_ns())
        try:
            response = await self._export(body, timeout=120, metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.ABORTED,
            ):
                raise StoreUnavailable(
                    f"the service at {self.address} answers {code.name}: {e.details()}", 1.0
                ) from None
            raise PermanentError(
                f"the service at {self.address} refused the import ({code.name}): {e.details()}"
            ) from None
        partial = response.partial_success
        message = partial.error_message
        errors = tuple(message.split("; ")) if message else ()
        return ExportResult(partial.rejected_log_records, message, errors=errors)

    def all_sent(self) -> None:
        pass  # (the service's writer waits only its short batch delay)

    async def stop(self) -> None:
        await self._channel.close()


@dataclass
class Summary:
    files: int = 0
    files_done_before: int = 0
    lines: int = 0
    events_stored: int = 0
    events_again: int = 0
    lines_skipped: int = 0
    not_token: int = 0
    unreadable_files: list[str] = field(default_factory=list)


@dataclass
class _Request:
    lines: list[bytes]
    #: Which line each record is: (file, line number).
    where: list[tuple[str, int]]
    #: The progress spans it closes: (file, span).
    spans: list[tuple[FileIdentity, list[int]]]


class Importer:
    """Reads ``files`` as records of ``source`` and exports them to ``sink``, noting progress;
    ``report`` is told each problem (a line skipped, a file that cannot be read)."""

    def __init__(
        self,
        source: str,
        files: list[Path],
        sink: Sink,
        progress: Progress,
        report: Callable[[str], None],
        advance: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.source = source
        self.files = files
        self.sink = sink
        self.progress = progress
        self.report = report
        self.advance = advance
        self.summary = Summary(files=len(files))

    async def run(self) -> Summary:
        await self.sink.start()
        gc.freeze()  # what start-up loaded stays: the collections of the lines need not scan it
        try:
            slots = asyncio.Semaphore(IN_FLIGHT)
            tasks: set[asyncio.Task[None]] = set()
            failure: list[BaseException] = []
            for request in self._requests():
                await slots.acquire()
                if failure:
                    slots.release()
                    break
                task = asyncio.create_task(self._send(request, slots, failure))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)  # let finished requests be noted
            self.sink.all_sent()
            if tasks:
                await asyncio.gather(*tasks)
            if failure:
                raise failure[0]
            for identity in self._complete:
                self.progress.complete(identity)
            self.progress.save()
        finally:
            await self.sink.stop()
        return self.summary

    def _requests(self) -> Iterator[_Request]:
        """The requests of every file not imported before, each of whole lines."""
        self._complete: list[FileIdentity] = []
        lines: list[bytes] = []
        where: list[tuple[str, int]] = []
        spans: list[tuple[FileIdentity, list[int]]] = []
        size = 0
        for path in self.files:
            try:
                identity = FileIdentity.of(path)
            except OSError as e:
                self._unreadable(path, e)
                continue
            done = self.progress.of(identity)
            if done.complete:
                self.summary.files_done_before += 1
                self.advance(path.stat().st_size)
                continue
            name = str(path)
            read_to, number = done.offset, done.line
            try:
                for line in read_lines(path, done.offset, done.line + 1):
                    read_to, number = line.end, line.number
                    if not line.text.strip():
                        continue
                    lines.append(line.text)
                    where.append((name, line.number))
                    size += len(line.text)
                    if len(lines) >= REQUEST_LINES or size >= REQUEST_BYTES:
                        spans.append((identity, self.progress.sent(identity, read_to, number)))
                        yield _Request(lines, where, spans)
                        lines, where, spans, size = [], [], [], 0
            except READ_ERRORS as e:
                self._unreadable(path, e)
            if lines:
                spans.append((identity, self.progress.sent(identity, read_to, number)))
            self._complete.append(identity)
            self.advance(path.stat().st_size)
        if lines:
            yield _Request(lines, where, spans)

    def _unreadable(self, path: Path, error: BaseException) -> None:
        self.summary.unreadable_files.append(str(path))
        self.report(f"{path}: cannot be read to its end ({error}); the lines before were read")

    async def _send(
        self, request: _Request, slots: asyncio.Semaphore, failure: list[BaseException]
    ) -> None:
        try:
            result = await self._export(request.lines)
            self._count(request, result)
            for identity, span in request.spans:
                self.progress.committed(identity, span)
            self.progress.save()
        except BaseException as e:  # the first failure ends the import; progress is saved
            failure.append(e)
        finally:
            slots.release()

    async def _export(self, lines: list[bytes]) -> ExportResult:
        """Sends again while the store (or the service) asks to wait."""
        while True:
            try:
                return await self.sink.export(self.source, lines)
            except (StoreUnavailable, Overloaded) as e:
                self.report(f"waiting: {e}")
                await asyncio.sleep(max(e.retry_after_s, 0.5))

    def _count(self, request: _Request, result: ExportResult) -> None:
        summary = self.summary
        summary.lines += len(request.lines)
        summary.events_stored += result.stored
        summary.events_again += result.again
        summary.not_token += result.ignored
        summary.lines_skipped += result.rejected
        for problem in result.errors:
            match = _RECORD_INDEX.match(problem)
            if match is None or int(match.group(1)) >= len(request.where):
                if "stored before" not in problem:  # (that one is counted, not a problem)
                    self.report(problem)
                continue
            file, number = request.where[int(match.group(1))]
            detail = problem[match.end() :]
            detail = detail[2:] if detail.startswith((", ", ": ")) else detail.lstrip()
            self.report(f"{file}:{number}: {detail}")


def summary_line(summary: Summary, counts_events: bool) -> str:
    """The closing line: what was stored, skipped, left out."""
    done_before = (
        f" ({summary.files_done_before} imported before, not read again)"
        if summary.files_done_before
        else ""
    )
    parts = [f"{summary.files} files{done_before}, {summary.lines:,} lines read"]
    if counts_events:
        parts.append(f"{summary.events_stored:,} events stored")
        if summary.events_again:
            parts.append(f"{summary.events_again:,} stored before (not again)")
    parts.append(f"{summary.lines_skipped:,} lines skipped")
    if counts_events:
        parts.append(f"{summary.not_token:,} records without a token event")
    if summary.unreadable_files:
        parts.append(f"{len(summary.unreadable_files)} files not read to their end")
    return ", ".join(parts)
