"""How the reading commands reach the trail: the store itself (a stopped data directory, or a
ClickHouse server), or a running service's query API. Both answer with the same plain values,
so the commands print the same either way."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tokenotel.api import paging
from tokenotel.api.messages import duration, from_message, timestamp
from tokenotel.errors import (
    ConfigError,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermanentError,
    PermissionDenied,
    StoreUnavailable,
    TokenotelError,
    Unauthenticated,
)
from tokenotel.integrity.verify import Finding, Kind, Status
from tokenotel.integrity.verify import Summary as VerifySummary
from tokenotel.query.search import Cursor, EventFilter, committed, newest_stamp, search
from tokenotel.query.summary import Summary, summarise
from tokenotel.query.timeline import timeline
from tokenotel.query.tokens import TokenFilter, list_tokens
from tokenotel.store.client import Store
from tokenotel.v1 import audit_pb2, audit_pb2_grpc

#: In the data directory while `tokenotel serve` holds it: where its query API listens.
SERVICE_RECORD = "serve.json"
#: Events a remote search asks for at a time (the API's most).
PAGE = 1_000


class Reader(Protocol):
    def events(self, event_filter: EventFilter, limit: int) -> list[dict[str, Any]]: ...

    def tokens(self, token_filter: TokenFilter, limit: int) -> list[dict[str, Any]]: ...

    def timeline(self, token: str, limit: int) -> dict[str, Any]: ...

    def summary(self, since: datetime | None, until: datetime | None, top: int) -> Summary: ...

    def tail(
        self, event_filter: EventFilter, cursor: str | None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]: ...

    def close(self) -> None: ...


def filter_message(event_filter: EventFilter) -> audit_pb2.EventFilter:
    """The API's form of a filter (its digest ties page tokens and cursors to it)."""
    message = audit_pb2.EventFilter(
        tokens=event_filter.tokens,
        principal=event_filter.principal or "",
        ip=event_filter.ip or "",
        event_names=event_filter.events,
        outcome=event_filter.outcome.value if event_filter.outcome else "",
        token_statuses=[status.value for status in event_filter.statuses],
    )
    for name in ("since", "until"):
        moment = timestamp(getattr(event_filter, name))
        if moment is not None:
            getattr(message, name).CopyFrom(moment)
    return message


class StoreReader:
    """Reads the store directly: a stopped service's data directory, or a ClickHouse server."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def events(self, event_filter: EventFilter, limit: int) -> list[dict[str, Any]]:
        return search(self._store, event_filter, limit=limit)

    def tokens(self, token_filter: TokenFilter, limit: int) -> list[dict[str, Any]]:
        return list_tokens(self._store, token_filter, limit=limit)

    def timeline(self, token: str, limit: int) -> dict[str, Any]:
        return timeline(self._store, token, limit=limit)

    def summary(self, since: datetime | None, until: datetime | None, top: int) -> Summary:
        return summarise(self._store, since, until, top=top)

    def tail(
        self, event_filter: EventFilter, cursor: str | None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """What was committed after ``cursor``, then the end: nothing commits while the
        service is stopped. Without a cursor, nothing (it starts from now)."""
        criteria = filter_message(event_filter)
        up_to = newest_stamp(self._store)
        after = paging.read_cursor(cursor, criteria) if cursor else Cursor(up_to)
        while True:
            read = committed(self._store, event_filter, after, up_to, limit=PAGE)
            after = read.cursor(len(read.events))
            yield read.events, paging.cursor_token(criteria, after)
            if read.complete:
                return

    def close(self) -> None:
        self._store.close()


def read_credential_file(path: Path) -> str:
    """The credential in ``path`` (its first line); raises ConfigError naming the file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read server_credential_file {path}: {e}; write a credential made by "
            "`tokenotel auth add --role read` into it"
        ) from None
    credential = lines[0].strip() if lines else ""
    if not credential:
        raise ConfigError(
            f"server_credential_file {path} is empty: write a credential made by "
            "`tokenotel auth add --role read` into it"
        )
    return credential


class ServiceReader:
    """Reads through a running service's query API (tokenotel.v1.TokenAudit), sending
    ``credential`` (as ``authorization: Bearer …``) when one is given; over TLS when given
    ``tls`` (security.tls.channel_credentials), else in plaintext."""

    def __init__(
        self,
        address: str,
        credential: str | None = None,
        tls: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self._channel = (
            grpc.secure_channel(address, tls) if tls is not None else grpc.insecure_channel(address)
        )
        self._tls = tls is not None
        self._api = audit_pb2_grpc.TokenAuditStub(self._channel)
        self._metadata = (("authorization", f"Bearer {credential}"),) if credential else ()
        self._has_credential = credential is not None

    def events(self, event_filter: EventFilter, limit: int) -> list[dict[str, Any]]:
        request = audit_pb2.SearchEventsRequest(filter=filter_message(event_filter))
        return self._pages(self._api.SearchEvents, request, "events", limit)

    def tokens(self, token_filter: TokenFilter, limit: int) -> list[dict[str, Any]]:
        request = audit_pb2.ListTokensRequest(
            status=token_filter.status.value if token_filter.status else "",
            principal=token_filter.principal or "",
            scope=token_filter.scope or "",
        )
        for name in ("expires_within", "unused_for"):
            delta: timedelta | None = getattr(token_filter, name)
            if delta is not None:
                getattr(request, name).CopyFrom(duration(delta))
        return self._pages(self._api.ListTokens, request, "tokens", limit)

    def timeline(self, token: str, limit: int) -> dict[str, Any]:
        request = audit_pb2.GetTokenTimelineRequest(token=token, limit=limit)
        return from_message(self._call(self._api.GetTokenTimeline, request))

    def summary(self, since: datetime | None, until: datetime | None, top: int) -> Summary:
        request = audit_pb2.GetSummaryRequest(top=top)
        for name, moment in (("since", since), ("until", until)):
            if moment is not None:
                getattr(request, name).CopyFrom(timestamp(moment))
        return Summary(**from_message(self._call(self._api.GetSummary, request)))

    def tail(
        self, event_filter: EventFilter, cursor: str | None
    ) -> Iterator[tuple[list[dict[str, Any]], str]]:
        request = audit_pb2.TailEventsRequest(filter=filter_message(event_filter), cursor=cursor)
        try:
            for response in self._api.TailEvents(request, metadata=self._metadata):
                yield [from_message(event) for event in response.events], response.cursor
        except grpc.RpcError as e:
            raise self._error(e) from None

    def fingerprints(self, secret: str) -> list[str]:
        """The secret's fingerprint under the service's key, then under each key it used
        before a rotation."""
        request = audit_pb2.FingerprintSecretRequest(secret=secret)
        answer = self._call(self._api.FingerprintSecret, request)
        return [str(answer.fingerprint), *answer.previous_fingerprints]

    def verify(self, since: datetime | None) -> Iterator[Finding | VerifySummary]:
        """The service's verification of its store: findings, then the summary."""
        request = audit_pb2.VerifyRequest()
        moment = timestamp(since)
        if moment is not None:
            request.since.CopyFrom(moment)
        try:
            for response in self._api.Verify(request, metadata=self._metadata):
                if response.HasField("finding"):
                    found = response.finding
                    yield Finding(
                        Status(found.status), found.subject, found.reason, Kind(found.kind)
                    )
                else:
                    counts = response.summary
                    yield VerifySummary(
                        **{name: getattr(counts, name) for name in vars(VerifySummary())}
                    )
        except grpc.RpcError as e:
            raise self._error(e) from None

    def report(self, since: datetime, until: datetime, form: str, policy: str) -> Iterator[bytes]:
        """The service's report over [since, until), as the pieces of its file in order."""
        request = audit_pb2.GenerateReportRequest(format=form, policy=policy)
        request.since.FromDatetime(since)
        request.until.FromDatetime(until)
        try:
            for chunk in self._api.GenerateReport(request, metadata=self._metadata):
                yield chunk.data
        except grpc.RpcError as e:
            raise self._error(e) from None

    def checkpoints(self) -> list[str]:
        """The signed checkpoints the service keeps, by tree size and time."""
        response = self._call(self._api.ListCheckpoints, audit_pb2.ListCheckpointsRequest())
        return list(response.notes)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        request = audit_pb2.GetConsistencyProofRequest(old_size=old_size, new_size=new_size)
        return list(self._call(self._api.GetConsistencyProof, request).hashes)

    def close(self) -> None:
        self._channel.close()

    def _pages(self, method: Any, request: Any, field: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` of what the answers carry in ``field``, asked for a page at a time."""
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            request.page_size = min(PAGE, limit - len(found))
            response = self._call(method, request)
            found += [from_message(item) for item in getattr(response, field)]
            if not response.next_page_token:
                break
            request.page_token = response.next_page_token
        return found

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=120, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def _error(self, error: grpc.RpcError) -> TokenotelError:
        """A connection that failed for TLS says how to fix it; else as ``_error``."""
        message = error.details() or ""
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            if self._tls and _TLS_FAILED.search(message):
                return PermanentError(
                    f"TLS with the query API at {self.address} failed ({message}): set "
                    "server_ca_file to the CA that signed its certificate, and under mutual TLS "
                    "client_cert_file and client_key_file"
                )
            if not self._tls and _PLAINTEXT_REFUSED.search(message):
                return PermanentError(
                    f"the query API at {self.address} did not answer in plaintext ({message}): "
                    "if it serves TLS, set server_ca_file to the CA that signed its certificate"
                )
        return _error(error, self._has_credential)


#: What gRPC says when a server closes the connection at once: a plaintext client met a TLS
#: server, or (TLS 1.3 settles client certificates after the client's side of the handshake)
#: a server under mutual TLS refused the client's certificate ...
_PLAINTEXT_REFUSED = re.compile(r"Socket closed|Connection reset")
#: ... and when the client refused the server's certificate.
_TLS_FAILED = re.compile(rf"(?i)handshake|certificate|ssl|{_PLAINTEXT_REFUSED.pattern}")


def _error(error: grpc.RpcError, has_credential: bool) -> TokenotelError:
    """The API's status as the error a local read would have raised."""
    message = error.details() or str(error.code())
    code = error.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        if has_credential:
            return Unauthenticated(
                "the service refused the credential of server_credential_file (wrong or "
                "revoked): put a valid one there (tokenotel auth add --role read)"
            )
        return Unauthenticated(
            "the service requires a credential: set server_credential_file "
            "(--server-credential-file) to a file holding one with role read or admin"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        field = ""
        for detail in status.details if status is not None else ():
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad) and bad.field_violations:
                field = bad.field_violations[0].field
        return InvalidArgument(message, field=field)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(message)
    if code == grpc.StatusCode.UNAVAILABLE:
        return StoreUnavailable(f"the service at its query API answers: {message}", 1.0)
    return PermanentError(f"the service's query API answered {code.name}: {message}")


@dataclass(frozen=True)
class RunningService:
    """Where the service that holds a data directory answers its query API."""

    address: str
    tls: bool
    #: Where it takes OTLP/gRPC (``tokenotel import`` sends there); None from older versions.
    otlp: str | None = None


def record_service(
    data_dir: Path, api_address: str, *, tls: bool, otlp_address: str | None = None
) -> None:
    """Notes in the data directory where the running service's query API listens, whether it
    serves TLS, and where it takes OTLP/gRPC."""
    record = {"api": api_address, "pid": os.getpid(), "tls": tls, "otlp": otlp_address}
    (data_dir / SERVICE_RECORD).write_text(json.dumps(record), encoding="utf-8")


def forget_service(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / SERVICE_RECORD).unlink()


def running_service(data_dir: Path) -> RunningService | None:
    """The query API of the service that holds ``data_dir``, if one runs; a record left by a
    service that died (its process is gone) is ignored."""
    try:
        record = json.loads((data_dir / SERVICE_RECORD).read_text(encoding="utf-8"))
        pid, address = int(record["pid"]), str(record["api"])
        tls = bool(record.get("tls", False))
        otlp = record.get("otlp")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return RunningService(address, tls, str(otlp) if otlp else None)
