"""The service: the ingest pipeline behind its listeners (OTLP/gRPC, OTLP/HTTP, the query API,
and when asked the ClickHouse HTTP interface)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from tokenotel.api.clickhouse_http import ClickHouseHttpListener, read_password_file
from tokenotel.api.grpc_api import TokenAuditListener
from tokenotel.api.readers import forget_service, record_service
from tokenotel.config import Settings, join_listen, split_listen
from tokenotel.ingest.otlp_grpc import OtlpGrpcListener
from tokenotel.ingest.otlp_http import OtlpHttpListener
from tokenotel.integrity.verify import Trust
from tokenotel.pipeline import Pipeline
from tokenotel.report.build import Integrity
from tokenotel.report.output import Trail
from tokenotel.security.access import Access
from tokenotel.security.audit import JOURNAL_FILE, Caller, SelfAudit
from tokenotel.security.credentials import CredentialFile, Failure
from tokenotel.security.exposure import check_exposure
from tokenotel.security.tls import ServerTls, ServerTlsFiles
from tokenotel.telemetry import METRICS_CONTENT_TYPE, HealthMinutes, Telemetry

log = logging.getLogger(__name__)


class Listener(Protocol):
    """A server in front of the pipeline: bound and serving after ``start``, and after
    ``stop`` no longer taking requests, with those in flight finished."""

    name: str
    host: str
    port: int
    tls: ServerTls | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Service:
    """The pipeline and its listeners, started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        # The ClickHouse interface always asks for its own user's password.
        check_exposure(
            [
                (name, getattr(settings, name))
                for name in ("grpc_listen", "http_listen", "api_listen")
            ],
            tls=settings.tls_cert_file is not None,
            auth=settings.auth,
            insecure_listen=settings.insecure_listen,
        )
        tls = _server_tls(settings)
        self.pipeline = Pipeline(settings)
        pipeline = self.pipeline
        self.telemetry = Telemetry(
            pipeline, settings.telemetry_otlp_endpoint, settings.telemetry_interval_s
        )
        self.health = HealthMinutes(pipeline, socket.gethostname())
        pipeline.before_close.append(self.health.stop)  # (after the last insert)
        # tokenotel's own security events go into its trail through the pipeline, like any.
        self.audit = SelfAudit(pipeline.export, settings.data_dir / JOURNAL_FILE)
        self.access: Access | None = None
        if settings.auth:
            credentials = CredentialFile(settings.credentials_path, self.audit.credentials_loaded)
            self.access = Access(credentials, self.audit)
        limit, access = settings.max_request_bytes, self.access
        self.otlp_grpc = OtlpGrpcListener(
            *split_listen(settings.grpc_listen), pipeline, limit, access, tls=tls
        )
        self.otlp_http = OtlpHttpListener(
            *split_listen(settings.http_listen),
            pipeline,
            limit,
            access,
            tls=tls,
            metrics=(self.telemetry.render, METRICS_CONTENT_TYPE),
        )
        checkpointer = pipeline.checkpointer
        trust = (
            Trust([checkpointer.key.verifier], settings.checkpoint_dir) if checkpointer else None
        )
        # The compliance reports of this trail (GenerateReport; the demo writes one).
        self.reports = Trail(
            pipeline.store,
            f"tokenotel service ({settings.trail_name})",
            Integrity(trust, live=True),
            settings.retention_days,
            checkpointer.key if checkpointer else None,
        )
        self.api = TokenAuditListener(
            *split_listen(settings.api_listen),
            pipeline.store,
            pipeline.fingerprint,
            pipeline.writer,
            pipeline.previous_fingerprints,
            access,
            tls=tls,
            trust=trust,
            reports=self.reports,
        )
        self.listeners: list[Listener] = [self.otlp_grpc, self.otlp_http, self.api]
        if settings.clickhouse_listen is not None:
            assert settings.clickhouse_password_file is not None  # the settings require it
            self.clickhouse_http = ClickHouseHttpListener(
                *split_listen(settings.clickhouse_listen),
                pipeline.store,
                user=settings.clickhouse_user,
                password=read_password_file(settings.clickhouse_password_file),
                on_failed_login=self._clickhouse_login_failed,
                tls=tls,
            )
            self.listeners.append(self.clickhouse_http)
        self._watch: asyncio.Task[None] | None = None
        # With the embedded store, the reading commands find the running service through
        # its data directory (the store itself is this process's alone).
        self._record_in = settings.data_dir if settings.clickhouse_url is None else None

    async def start(self) -> None:
        """Starts the pipeline, then binds every listener; a start that fails stops what it
        started. The store may still be unreachable."""
        await self.pipeline.start()
        self.health.start()
        await self.audit.start()
        started: list[Listener] = []
        try:
            if self.access is not None:
                self.access.credentials.refresh()  # read once now: its log lines at start
                self._watch = asyncio.create_task(_watch(self.access))
            for listener in self.listeners:
                await listener.start()
                started.append(listener)
        except BaseException:
            for listener in reversed(started):
                await listener.stop()
            await self._stop_audit()
            await self.pipeline.stop()
            raise
        if self._record_in is not None:
            record_service(
                self._record_in,
                join_listen(self.api.host, self.api.port),
                tls=self.api.tls is not None,
                otlp_address=join_listen(self.otlp_grpc.host, self.otlp_grpc.port),
            )
        gc.freeze()  # what start-up loaded stays: later collections need not scan it again
        log.info(
            "tokenotel listening: %s; store: %s",
            ", ".join(
                f"{x.name} on {join_listen(x.host, x.port)}{' (TLS)' if x.tls else ''}"
                for x in self.listeners
            ),
            self.pipeline.store.target,
        )

    async def stop(self) -> None:
        """Stops taking requests, finishes those in flight, then stops the pipeline."""
        if self._record_in is not None:
            forget_service(self._record_in)
        try:
            for listener in reversed(self.listeners):
                await listener.stop()
            await self._stop_audit()
        finally:
            await self.pipeline.stop()
            await asyncio.to_thread(self.telemetry.close)

    async def _stop_audit(self) -> None:
        """Stops watching the credentials file and stores the last self-audit events."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.audit.stop()

    def _clickhouse_login_failed(self, user: str, address: str, given: bool) -> None:
        """A refused login on the ClickHouse HTTP interface: a failed attempt in the trail,
        named by the user it gave (its password is never kept, not even as a fingerprint)."""
        self.audit.failed(
            Failure.INVALID if given else Failure.MISSING,
            Caller(address, self.clickhouse_http.name, "/"),
            token_id=f"clickhouse:{user[:64]}",
            principal=user[:64],
            token_type="password",
            status=403,
        )

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def _server_tls(settings: Settings) -> ServerTls | None:
    """Every listener's TLS, when the settings give a certificate."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    files = ServerTlsFiles(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )
    return ServerTls(files)


#: How often the credentials file is looked at when no request comes (a request looks too).
WATCH_EVERY_S = 0.5


async def _watch(access: Access) -> None:
    """Reads the credentials file again when it changes, also while no request comes: a
    creation or revocation reaches the trail within a second."""
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        access.credentials.refresh()


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
