"""The query API: tokenotel.v1.TokenAudit, with gRPC health and reflection, on its own listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import grpc
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from tokenotel.api import paging
from tokenotel.api.messages import moment, to_message
from tokenotel.api.rows import committed_events, search_events, token_page
from tokenotel.errors import (
    INTERNAL_ERROR,
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TokenotelError,
    rich_status,
)
from tokenotel.integrity.checkpoint import stored_checkpoints
from tokenotel.integrity.verify import Trust, Verification, prove_consistency
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.model import Outcome, TokenStatus
from tokenotel.query.search import Cursor, EventFilter, newest_stamp
from tokenotel.query.summary import summarise
from tokenotel.query.timeline import timeline
from tokenotel.query.tokens import TokenFilter
from tokenotel.report.model import Policy, policy_of, report_period
from tokenotel.report.output import Trail
from tokenotel.report.render import ReportFormat
from tokenotel.security.access import Access, GrpcAccess
from tokenotel.security.credentials import Role
from tokenotel.security.tls import ServerTls
from tokenotel.store.client import Store
from tokenotel.v1 import audit_pb2, audit_pb2_grpc

log = logging.getLogger(__name__)

SERVICE = audit_pb2.DESCRIPTOR.services_by_name["TokenAudit"].full_name
DEFAULT_PAGE, MOST_PAGE = 100, 1_000
DEFAULT_TIMELINE, MOST_TIMELINE = 1_000, 10_000
DEFAULT_TOP, MOST_TOP = 5, 100
#: How many events one tail message carries at most (a message well under gRPC's 4 MB).
TAIL_MESSAGE = 1_000
#: How many a tail reads at once: a whole insert under load, most often.
TAIL_READ = 20_000
#: A tail looks for new events this often when no commit wakes it (another writer's inserts).
TAIL_POLL_S = 1.0
R = TypeVar("R")
#: ClickHouse settings of the API's reads: one thread each (a read of a few tokens touches few
#: granules), so the other cores stay with ingest.
READ_SETTINGS = {"max_threads": 1}


class Commits(Protocol):
    """What the API needs of the writer: where committed events end, and a wake-up when more
    are committed (the pipeline's BatchWriter)."""

    def committed_up_to(self) -> int | None: ...

    async def wait_for_commit(self, timeout_s: float) -> None: ...


class TokenAuditService(audit_pb2_grpc.TokenAuditServicer):
    """Each method reads the store in a thread, within the client's deadline."""

    def __init__(
        self,
        store: Store,
        fingerprint: Fingerprinter,
        commits: Commits,
        previous_fingerprints: tuple[Fingerprinter, ...] = (),
        trust: Trust | None = None,
        reports: Trail | None = None,
    ) -> None:
        """``trust``: the service's own public key and checkpoint directory (None: tamper
        evidence is off); ``reports``: the trail the compliance reports are made of."""
        self._reports = reports
        self._store = store
        self._fingerprint = fingerprint
        self._previous_fingerprints = previous_fingerprints
        self._commits = commits
        self._trust = trust

    async def SearchEvents(
        self, request: audit_pb2.SearchEventsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.SearchEventsResponse:
        async def answer(settings: dict[str, Any]) -> audit_pb2.SearchEventsResponse:
            event_filter = event_filter_of(request.filter)
            size = _size(request.page_size, DEFAULT_PAGE, MOST_PAGE, "page_size")
            if request.page_token:
                up_to, offset = paging.read_page_token(request.page_token, request.filter)
            else:
                up_to, offset = await self._up_to(), 0
            response = await asyncio.to_thread(
                search_events, self._store, event_filter, limit=size + 1, offset=offset,
                up_to_stamp=up_to, settings=settings,
            )  # fmt: skip
            if len(response.events) > size:
                del response.events[size:]
                response.next_page_token = paging.page_token(request.filter, up_to, offset + size)
            return response

        return await _answer(context, answer)

    async def TailEvents(
        self, request: audit_pb2.TailEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.TailEventsResponse]:
        try:
            event_filter = event_filter_of(request.filter)
            after = paging.read_cursor(request.cursor, request.filter) if request.cursor else None
            if after is None:
                after = Cursor(await self._up_to())
                yield audit_pb2.TailEventsResponse(
                    cursor=paging.cursor_token(request.filter, after)
                )
            while True:
                up_to = await self._up_to()
                read, body = await asyncio.to_thread(
                    committed_events, self._store, event_filter, after, up_to, limit=TAIL_READ
                )
                ends = read.events
                for start in range(0, len(ends), TAIL_MESSAGE):
                    end = min(start + TAIL_MESSAGE, len(ends))
                    response = audit_pb2.TailEventsResponse.FromString(
                        body[ends[start - 1] if start else 0 : ends[end - 1]]
                    )
                    after = read.cursor(end)
                    response.cursor = paging.cursor_token(request.filter, after)
                    yield response
                if read.cursor(len(read.events)) != after:  # nothing matched: the cursor moves
                    after = read.cursor(len(read.events))
                    yield audit_pb2.TailEventsResponse(
                        cursor=paging.cursor_token(request.filter, after)
                    )
                if read.complete:
                    await self._commits.wait_for_commit(TAIL_POLL_S)
        except TokenotelError as e:
            await _abort(context, e)

    async def GetTokenTimeline(
        self, request: audit_pb2.GetTokenTimelineRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.TokenTimeline:
        async def answer(settings: dict[str, Any]) -> audit_pb2.TokenTimeline:
            if not request.token:
                raise InvalidArgument("give a token id or a fingerprint", field="token")
            limit = _size(request.limit, DEFAULT_TIMELINE, MOST_TIMELINE, "limit")
            found = await asyncio.to_thread(
                timeline, self._store, request.token, limit=limit, settings=settings
            )
            return to_message(found, audit_pb2.TokenTimeline())

        return await _answer(context, answer)

    async def ListTokens(
        self, request: audit_pb2.ListTokensRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListTokensResponse:
        async def answer(settings: dict[str, Any]) -> audit_pb2.ListTokensResponse:
            token_filter = token_filter_of(request)
            size = _size(request.page_size, DEFAULT_PAGE, MOST_PAGE, "page_size")
            criteria = audit_pb2.ListTokensRequest()
            criteria.CopyFrom(request)
            criteria.ClearField("page_token")
            criteria.ClearField("page_size")
            after = ""
            if request.page_token:
                after = str(paging.decode(request.page_token, criteria, "page_token")["after"])
            tokens = await asyncio.to_thread(
                token_page, self._store, token_filter, limit=size + 1, after_key=after,
                settings=settings,
            )  # fmt: skip
            response = audit_pb2.ListTokensResponse(tokens=tokens[:size])
            if len(tokens) > size:
                response.next_page_token = paging.encode(criteria, after=tokens[size - 1].token_key)
            return response

        return await _answer(context, answer)

    async def GetSummary(
        self, request: audit_pb2.GetSummaryRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.Summary:
        async def answer(settings: dict[str, Any]) -> audit_pb2.Summary:
            top = _size(request.top, DEFAULT_TOP, MOST_TOP, "top")
            summary = await asyncio.to_thread(
                summarise,
                self._store,
                moment(request.since, request.HasField("since")),
                moment(request.until, request.HasField("until")),
                top=top,
                settings=settings,
            )
            return to_message(vars(summary), audit_pb2.Summary())

        return await _answer(context, answer)

    async def FingerprintSecret(
        self, request: audit_pb2.FingerprintSecretRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.FingerprintSecretResponse:
        async def answer(_: dict[str, Any]) -> audit_pb2.FingerprintSecretResponse:
            if not request.secret:
                raise InvalidArgument("the secret is empty", field="secret")
            return audit_pb2.FingerprintSecretResponse(
                fingerprint=self._fingerprint(request.secret),
                key_id=self._fingerprint.key_id,
                previous_fingerprints=[key(request.secret) for key in self._previous_fingerprints],
            )

        return await _answer(context, answer)

    async def Verify(
        self, request: audit_pb2.VerifyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.VerifyResponse]:
        try:
            trust = self._tamper_evidence()
            verification = Verification(
                self._store,
                trust.keys,
                await asyncio.to_thread(trust.published),
                since_ms=_since_ms(request),
                live=True,
            )
            findings = verification.run()
            while (finding := await asyncio.to_thread(next, findings, None)) is not None:
                yield audit_pb2.VerifyResponse(
                    finding=audit_pb2.VerifyFinding(
                        status=finding.status.value,
                        subject=finding.subject,
                        reason=finding.reason,
                        kind=finding.kind.value,
                    )
                )
            yield audit_pb2.VerifyResponse(
                summary=audit_pb2.VerifySummary(**vars(verification.summary))
            )
        except TokenotelError as e:
            await _abort(context, e)

    async def ListCheckpoints(
        self, request: audit_pb2.ListCheckpointsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListCheckpointsResponse:
        async def answer(_: dict[str, Any]) -> audit_pb2.ListCheckpointsResponse:
            self._tamper_evidence()
            notes = await asyncio.to_thread(stored_checkpoints, self._store, _since_ms(request))
            return audit_pb2.ListCheckpointsResponse(notes=notes)

        return await _answer(context, answer)

    async def GetConsistencyProof(
        self, request: audit_pb2.GetConsistencyProofRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ConsistencyProof:
        async def answer(_: dict[str, Any]) -> audit_pb2.ConsistencyProof:
            self._tamper_evidence()
            try:
                hashes = await asyncio.to_thread(
                    prove_consistency, self._store, request.old_size, request.new_size
                )
            except ValueError as e:
                raise InvalidArgument(str(e), field="old_size") from None
            return audit_pb2.ConsistencyProof(hashes=hashes)

        return await _answer(context, answer)

    async def GenerateReport(
        self, request: audit_pb2.GenerateReportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audit_pb2.ReportChunk]:
        async def answer(_: dict[str, Any]) -> bytes:
            if self._reports is None:
                raise NotFound("this service makes no reports")
            since, until, policy, form = report_request(request, datetime.now(UTC))
            try:
                return await asyncio.to_thread(self._reports.report, since, until, policy, form)
            except ConfigError as e:  # what the service lacks: a browser for a PDF
                raise FailedPrecondition(str(e)) from None

        content = await _answer(context, answer)
        for start in range(0, len(content), REPORT_CHUNK):
            yield audit_pb2.ReportChunk(data=content[start : start + REPORT_CHUNK])

    def _tamper_evidence(self) -> Trust:
        if self._trust is None:
            raise NotFound(
                "this service keeps no ledger: tamper evidence is off (setting tamper_evidence)"
            )
        return self._trust

    async def _up_to(self) -> int:
        """The last insert every search and tail may read: one that is committed, with none
        committed later before it (see BatchWriter.committed_up_to)."""
        up_to = self._commits.committed_up_to()
        if up_to is None:
            up_to = await asyncio.to_thread(newest_stamp, self._store)
        return up_to


def event_filter_of(message: audit_pb2.EventFilter) -> EventFilter:
    """The query layer's filter; raises InvalidArgument naming the field that is wrong."""
    outcome = None
    if message.outcome:
        if message.outcome not in Outcome.__members__.values():
            raise InvalidArgument(
                f"outcome {message.outcome!r} is not success, failure or unknown",
                field="filter.outcome",
            )
        outcome = Outcome(message.outcome)
    statuses = [
        _token_status(status, "token status", "filter.token_statuses")
        for status in message.token_statuses
    ]
    event_filter = EventFilter(
        tokens=list(message.tokens),
        principal=message.principal or None,
        ip=message.ip or None,
        events=list(message.event_names),
        outcome=outcome,
        statuses=statuses,
        since=moment(message.since, message.HasField("since")),
        until=moment(message.until, message.HasField("until")),
    )
    try:
        event_filter.where()  # the address or range
    except InvalidArgument as e:
        raise InvalidArgument(str(e), field=f"filter.{e.field}") from None
    return event_filter


def token_filter_of(message: audit_pb2.ListTokensRequest) -> TokenFilter:
    status = _token_status(message.status, "status", "status") if message.status else None

    def delta(name: str) -> timedelta | None:
        return getattr(message, name).ToTimedelta() if message.HasField(name) else None

    return TokenFilter(
        status=status,
        principal=message.principal or None,
        scope=message.scope or None,
        expires_within=delta("expires_within"),
        unused_for=delta("unused_for"),
    )


def _token_status(value: str, name: str, field: str) -> TokenStatus:
    """``value`` as one of the five statuses a filter may name; raises InvalidArgument naming
    ``field`` otherwise (the empty, unknown status included)."""
    if not value or value not in TokenStatus.__members__.values():
        raise InvalidArgument(
            f"{name} {value!r} is not active, disabled, revoked, rotated or expired", field=field
        )
    return TokenStatus(value)


#: The administrative calls (docs/tamper-evidence.md, docs/report.md): what they tell is for
#: auditors.
ADMIN_METHODS = frozenset(
    f"/{SERVICE}/{name}"
    for name in ("Verify", "ListCheckpoints", "GetConsistencyProof", "GenerateReport")
)
#: The most bytes of a report one message carries (well under gRPC's 4 MB).
REPORT_CHUNK = 1 << 20


def need_of(method: str) -> Role:
    """The role a call of the query API needs: admin for the administrative calls, read for
    the others (admin may do everything). Reflection too: the schema is public (proto/), but a
    caller without a credential learns nothing about what runs here. Health is open
    (security.access)."""
    return Role.ADMIN if method in ADMIN_METHODS else Role.READ


class TokenAuditListener:
    """Serves TokenAudit, gRPC health (SERVING while the store answers) and server reflection on
    ``host``:``port`` (0: the system picks), over TLS when ``tls`` is given; with ``access``,
    every call but health needs a credential (``need_of``)."""

    name = "query API"

    def __init__(
        self,
        host: str,
        port: int,
        store: Store,
        fingerprint: Fingerprinter,
        commits: Commits,
        previous_fingerprints: tuple[Fingerprinter, ...] = (),
        access: Access | None = None,
        *,
        tls: ServerTls | None = None,
        trust: Trust | None = None,
        reports: Trail | None = None,
    ) -> None:
        self.host, self._port = host, port
        self.tls = tls
        self._access = access
        self._service = TokenAuditService(
            store, fingerprint, commits, previous_fingerprints, trust, reports
        )
        self._store = store
        self._server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        interceptors = []
        if self._access is not None:
            interceptors.append(GrpcAccess(self._access, self.name, need_of))
        server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        audit_pb2_grpc.add_TokenAuditServicer_to_server(self._service, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
        address = f"[{self.host}]:{self._port}" if ":" in self.host else f"{self.host}:{self._port}"
        if self.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, self.tls.grpc_credentials())
        if port == 0 and self._port != 0:
            raise OSError(f"cannot listen for the query API on {address}: taken or invalid")
        await server.start()
        self._server, self.port = server, port
        self._health_task = asyncio.create_task(_report_health(health_servicer, self._store))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=5)
            self._server = None
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None


async def _report_health(servicer: health.aio.HealthServicer, store: Store) -> None:
    last = None
    while True:
        serving = await asyncio.to_thread(store.ready)
        if serving != last:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", SERVICE):
                await servicer.set(name, status)
            last = serving
        await asyncio.sleep(1.0)


async def _answer(
    context: grpc.aio.ServicerContext, answer: Callable[[dict[str, Any]], Awaitable[R]]
) -> R:
    """``answer``, given ClickHouse settings that stop its queries at the client's deadline;
    its errors become the gRPC status they stand for."""
    settings: dict[str, Any] = dict(READ_SETTINGS)
    remaining = context.time_remaining()
    if remaining is not None:
        settings["max_execution_time"] = max(1, math.ceil(remaining))
    try:
        return await answer(settings)
    except TokenotelError as e:
        await _abort(context, e)
    except Exception:  # a bug: said once in the log, and a status the client can read
        log.exception("a query API request failed")
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)
    raise AssertionError("unreachable: abort raises")


async def _abort(context: grpc.aio.ServicerContext, error: TokenotelError) -> None:
    """Ends the call with the error's status, details included (errors.rich_status)."""
    rich = rpc_status.to_status(rich_status(error))
    await context.abort(rich.code, rich.details, trailing_metadata=rich.trailing_metadata)


def report_request(
    request: audit_pb2.GenerateReportRequest, now: datetime
) -> tuple[datetime, datetime, Policy, ReportFormat]:
    """What a report request asks for; raises InvalidArgument naming the field that is wrong."""
    try:
        form = ReportFormat(request.format or ReportFormat.HTML.value)
    except ValueError:
        raise InvalidArgument(
            f"format {request.format!r} is not html, pdf, json or csv", field="format"
        ) from None
    try:
        data = yaml.safe_load(request.policy) if request.policy else {}
        policy = policy_of(data or {}, "in the request")
    except (yaml.YAMLError, ConfigError) as e:
        raise InvalidArgument(str(e), field="policy") from None
    try:
        since, until = report_period(
            request.period or None,
            moment(request.since, request.HasField("since")),
            moment(request.until, request.HasField("until")),
            now,
        )
    except ConfigError as e:
        raise InvalidArgument(str(e), field="period") from None
    return since, until, policy, form


def _since_ms(request: audit_pb2.VerifyRequest | audit_pb2.ListCheckpointsRequest) -> int:
    """The request's ``since`` in milliseconds since the epoch (0: from the start)."""
    since = moment(request.since, request.HasField("since"))
    return int(since.timestamp() * 1000) if since else 0


def _size(given: int, default: int, most: int, name: str) -> int:
    if given < 0 or given > most:
        raise InvalidArgument(f"{name} must be between 1 and {most} (0: {default})", field=name)
    return given or default
