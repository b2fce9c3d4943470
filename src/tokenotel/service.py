"""The service: how an OTLP request becomes rows, and the servers that receive it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from tokenotel.config import Settings, split_listen
from tokenotel.errors import StoreUnavailable
from tokenotel.ingest import otlp_grpc, otlp_http
from tokenotel.ingest.result import ExportResult, error_summary
from tokenotel.mapping.fingerprint import load_key
from tokenotel.store.client import Store
from tokenotel.store.writer import BatchWriter
from tokenotel.workers import MappingPool

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    requests: int = 0
    records_stored: int = 0
    records_ignored: int = 0
    records_rejected: int = 0


class Service:
    """Decode → map & redact → batch → ClickHouse, behind OTLP/gRPC and OTLP/HTTP."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.fingerprint = load_key(settings.fingerprint_key_file, settings.data_dir)
        self.mapping = MappingPool(self.fingerprint, settings.mapping_workers)
        self.store = store or Store.from_settings(settings)
        self.writer = BatchWriter(
            self.store,
            max_rows=settings.batch_max_rows,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            max_pending_rows=settings.max_pending_rows,
            dedup_window=settings.dedup_window,
            retry_after_s=settings.retry_after_s,
        )
        self.stats = IngestStats()
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: otlp_grpc.grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def export(self, body: bytes, content_type: str) -> ExportResult:
        """One request: decode and map it (in a worker), store its token events, and report
        what was left out. Answers only once the rows are committed."""
        self.stats.requests += 1
        mapped = await self.mapping.map(body, content_type, time.time_ns())
        stored = await self.writer.write(mapped.table)  # new rows only
        self.stats.records_stored += stored  # (after the await: requests interleave there)
        self.stats.records_ignored += mapped.ignored
        self.stats.records_rejected += mapped.rejected
        if mapped.rejected:
            return ExportResult(mapped.rejected, error_summary(mapped.errors))
        return ExportResult()

    async def ready(self) -> bool:
        """Ready while the store answers and the last write went through."""
        return self.writer.failing is None and await asyncio.to_thread(self.store.ready)

    async def start(self) -> None:
        """Binds both ports and starts serving; the store may still be unreachable."""
        s = self.settings
        try:
            await asyncio.to_thread(self.store.connect)
        except StoreUnavailable as e:
            log.warning("%s; starting anyway, clients will be asked to retry", e)
        self.writer.start()
        await self.mapping.start()

        self._grpc, health, self.grpc_port = otlp_grpc.build_server(
            self.export, s.grpc_listen, s.max_request_bytes
        )
        await otlp_grpc.set_health(health, serving=False)  # until the store has answered
        await self._grpc.start()
        self._tasks.append(asyncio.create_task(otlp_grpc.report_health(health, self.ready)))

        app = otlp_http.build_app(self.export, self.ready, s.max_request_bytes)
        self._http = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._http.setup()
        host, port = split_listen(s.http_listen)
        site = web.TCPSite(self._http, host, port, reuse_port=False)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        gc.freeze()  # what start-up loaded stays: later collections need not scan it again
        log.info(
            "tokenotel listening: OTLP/gRPC on %s:%d, OTLP/HTTP on %s:%d; store: %s",
            split_listen(s.grpc_listen)[0],
            self.grpc_port,
            host,
            self.http_port,
            self.store.target,
        )

    async def stop(self) -> None:
        """Stops taking requests, finishes those in flight, flushes, closes the store."""
        if self._http is not None:
            await self._http.cleanup()
        if self._grpc is not None:
            await self._grpc.stop(grace=5)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.writer.stop()
        self.mapping.close()
        self.store.close()
        log.info(
            "tokenotel stopped: %d requests, %d token events stored in %d inserts, %d duplicates "
            "dropped, %d other records ignored, %d rejected",
            self.stats.requests,
            self.stats.records_stored,
            self.writer.stats.inserts,
            self.writer.stats.duplicates_dropped,
            self.stats.records_ignored,
            self.stats.records_rejected,
        )

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
