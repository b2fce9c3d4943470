"""The service: the ingest pipeline behind its listeners (OTLP/gRPC, OTLP/HTTP, the query API,
and when asked the ClickHouse HTTP interface)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from tokenotel.api.clickhouse_http import ClickHouseHttpListener, read_password_file
from tokenotel.api.grpc_api import TokenAuditListener
from tokenotel.api.readers import forget_service, record_service
from tokenotel.config import Settings, split_listen
from tokenotel.ingest.otlp_grpc import OtlpGrpcListener
from tokenotel.ingest.otlp_http import OtlpHttpListener
from tokenotel.pipeline import Pipeline

log = logging.getLogger(__name__)


class Listener(Protocol):
    """A server in front of the pipeline: bound and serving after ``start``, and after
    ``stop`` no longer taking requests, with those in flight finished."""

    name: str
    host: str
    port: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Service:
    """The pipeline and its listeners, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.pipeline = Pipeline(settings)
        limit = settings.max_request_bytes
        self.otlp_grpc = OtlpGrpcListener(*split_listen(settings.grpc_listen), self.pipeline, limit)
        self.otlp_http = OtlpHttpListener(*split_listen(settings.http_listen), self.pipeline, limit)
        pipeline = self.pipeline
        self.api = TokenAuditListener(
            *split_listen(settings.api_listen),
            pipeline.store,
            pipeline.fingerprint,
            pipeline.writer,
            pipeline.previous_fingerprints,
        )
        self.listeners: list[Listener] = [self.otlp_grpc, self.otlp_http, self.api]
        if settings.clickhouse_listen is not None:
            assert settings.clickhouse_password_file is not None  # the settings require it
            self.clickhouse_http = ClickHouseHttpListener(
                *split_listen(settings.clickhouse_listen),
                pipeline.store,
                user=settings.clickhouse_user,
                password=read_password_file(settings.clickhouse_password_file),
            )
            self.listeners.append(self.clickhouse_http)
        # With the embedded store, the reading commands find the running service through
        # its data directory (the store itself is this process's alone).
        self._record_in = settings.data_dir if settings.clickhouse_url is None else None

    async def start(self) -> None:
        """Starts the pipeline, then binds every listener; a start that fails stops what it
        started. The store may still be unreachable."""
        await self.pipeline.start()
        started: list[Listener] = []
        try:
            for listener in self.listeners:
                await listener.start()
                started.append(listener)
        except BaseException:
            for listener in reversed(started):
                await listener.stop()
            await self.pipeline.stop()
            raise
        if self._record_in is not None:
            record_service(self._record_in, f"{self.api.host}:{self.api.port}")
        gc.freeze()  # what start-up loaded stays: later collections need not scan it again
        log.info(
            "tokenotel listening: %s; store: %s",
            ", ".join(f"{x.name} on {x.host}:{x.port}" for x in self.listeners),
            self.pipeline.store.target,
        )

    async def stop(self) -> None:
        """Stops taking requests, finishes those in flight, then stops the pipeline."""
        if self._record_in is not None:
            forget_service(self._record_in)
        try:
            for listener in reversed(self.listeners):
                await listener.stop()
        finally:
            await self.pipeline.stop()

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


@contextmanager
def running_in_thread(settings: Settings | Service) -> Iterator[Service]:
    """The service (of the settings, or one built already) on an event loop of its own in a
    background thread, for callers that are not async (the demo, tests); stopped when the
    block ends. An error at start is raised here."""
    service = settings if isinstance(settings, Service) else Service(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tokenotel-service", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(service.start(), loop).result()
        try:
            yield service
        finally:
            asyncio.run_coroutine_threadsafe(service.stop(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
