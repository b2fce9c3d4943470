"""tokenotel's own credentials in its own trail: their creation, revocation and use, and every
failed attempt against its listeners, become token events, handed to the ingest pipeline as
OTLP log records like any others (so a presented secret is kept only as its fingerprint).

What is recorded, and how much (docs/security.md, "Authentication and roles"):

- ``token.created`` / ``token.revoked`` when the service reads the credentials file (at start
  and whenever it changes), each once: its ``log.record.uid`` is fixed by the credential id,
  and the uids already stored are noted in a journal beside the store, because the writer
  remembers ids only for a while (docs/event-identity.md);
- ``token.used``: the first use of a credential from an address in each minute, not every
  request (a collector exports many times a second);
- ``token.auth_failed`` / ``token.access_denied``: every failed attempt, up to
  ``failed_per_s`` a second overall; the rest are counted in one log line a second, so a flood
  cannot fill the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from tokenotel.errors import RetryableError, TokenotelError
from tokenotel.model import COLUMN_BY_NAME
from tokenotel.security.credentials import Credential, Failure

log = logging.getLogger(__name__)

#: OTLP/protobuf, as the pipeline takes it from the OTLP edges.
CONTENT_TYPE = "application/x-protobuf"
SERVICE_NAME = "tokenotel"
SCOPE_NAME = "tokenotel.security"
TOKEN_TYPE = "api_key"
#: In the data directory: the uids of the lifecycle events already stored.
JOURNAL_FILE = "credentials-audited.json"
#: The token id of an attempt that presented no credential at all.
ANONYMOUS = "anonymous"
FAILED_PER_S = 100
MAX_PENDING = 10_000
FLUSH_EVERY_S = 0.2
#: How long stopping waits for the last events to be stored.
STOP_FLUSH_S = 5.0

#: Takes an OTLP request (bytes, content type) and returns once its rows are committed: the
#: pipeline's ``export``.
Sink = Callable[[bytes, str], Awaitable[object]]


def _key(column: str) -> str:
    """The attribute a column is read from (model.COLUMNS): one name for each fact."""
    return COLUMN_BY_NAME[column].attributes[0]


TOKEN_ID, TOKEN_VALUE, TOKEN_TYPE_KEY = (
    _key("token_id"),
    _key("token_fingerprint"),
    _key("token_type"),
)
TOKEN_NAME, PRINCIPAL, ACTOR = _key("token_name"), _key("principal_id"), _key("actor_id")
CLIENT_ADDRESS, SCOPES, ISSUED_AT = _key("client_ip"), _key("scopes"), _key("issued_at")
URL_PATH, HTTP_METHOD, HTTP_STATUS = _key("url_path"), _key("http_method"), _key("http_status")
FAILURE_REASON, SOURCE, UID = _key("failure_reason"), _key("source"), _key("event_id")
#: Which listener was called (no column: kept in the attributes map).
LISTENER = "tokenotel.listener"


@dataclass(frozen=True)
class Caller:
    """Where a request came from and what it asked for."""

    address: str  # the peer's IP address ("" when not known)
    listener: str  # OTLP/gRPC, OTLP/HTTP, query API, ClickHouse HTTP
    target: str  # the RPC method, or the HTTP path
    method: str = ""  # the HTTP method

    def attributes(self) -> dict[str, str | int | list[str]]:
        found: dict[str, str | int | list[str]] = {LISTENER: self.listener, URL_PATH: self.target}
        if self.address:
            found[CLIENT_ADDRESS] = self.address
        if self.method:
            found[HTTP_METHOD] = self.method
        return found


@dataclass
class _Event:
    name: str
    time_ns: int
    attributes: dict[str, str | int | list[str]]
    body: str
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    lifecycle: bool = False  # a created/revoked event: noted in the journal once stored

    def record(self) -> LogRecord:
        record = LogRecord(
            time_unix_nano=self.time_ns,
            observed_time_unix_nano=time.time_ns(),
            event_name=self.name,
            body=AnyValue(string_value=self.body),
        )
        for key, value in {**self.attributes, SOURCE: SERVICE_NAME, UID: self.uid}.items():
            record.attributes.append(KeyValue(key=key, value=_any(value)))
        return record


class SelfAudit:
    """Collects the security events of the listeners and writes them through ``sink`` in the
    background, a batch every ``FLUSH_EVERY_S``; a batch the store refused is sent again."""

    def __init__(
        self,
        sink: Sink,
        journal: Path | None,
        *,
        failed_per_s: int = FAILED_PER_S,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._clock = clock  # seconds since the epoch: what "a minute" and "a second" count
        self._journal = journal
        self._recorded = _read_journal(journal)
        self._failed_per_s = failed_per_s
        self._max_pending = max_pending
        self._pending: list[_Event] = []
        self._lifecycle_queued: set[str] = set()
        self._used_minute = 0
        self._used: set[tuple[str, str]] = set()
        self._failed_second = 0
        self._failed_in_second = 0
        self.failed_not_recorded = 0  # over the limit: counted, then logged
        self.dropped = 0  # the pending list was full
        self._task: asyncio.Task[None] | None = None

    # -- what the listeners report ----------------------------------------------------------

    def credentials_loaded(self, credentials: list[Credential]) -> None:
        """The credentials file was (re)read: creations and revocations not yet in the trail."""
        for credential in credentials:
            self._lifecycle(credential, "token.created", credential.created, credential.created_by)
            if credential.revoked is not None:
                self._lifecycle(
                    credential, "token.revoked", credential.revoked, credential.revoked_by
                )

    def used(self, credential: Credential, presented: str, caller: Caller) -> None:
        """A request with a valid credential: the first per address and minute is recorded."""
        now = self._clock()
        minute = int(now // 60)
        if minute != self._used_minute:
            self._used_minute, self._used = minute, set()
        seen = (credential.id, caller.address)
        if seen in self._used:
            return
        self._used.add(seen)
        self._add(
            _Event(
                "token.used",
                int(now * 1e9),
                {**_about(credential), TOKEN_VALUE: presented, **caller.attributes()},
                f"tokenotel credential {credential.id} used on the {caller.listener}",
                uid=f"tokenotel:credential:{credential.id}:used:{caller.address}:{minute}",
            )
        )

    def failed(
        self,
        failure: Failure,
        caller: Caller,
        *,
        credential: Credential | None = None,
        presented: str | None = None,
        token_id: str | None = None,
        principal: str | None = None,
        token_type: str = TOKEN_TYPE,
        status: int = 0,
    ) -> None:
        """A refused request: ``token.access_denied`` for a valid credential of the wrong role,
        ``token.auth_failed`` otherwise; at most ``failed_per_s`` recorded a second."""
        now = self._clock()
        second = int(now)
        if second != self._failed_second:
            self._failed_second, self._failed_in_second = second, 0
        if self._failed_in_second >= self._failed_per_s:
            self.failed_not_recorded += 1
            return
        self._failed_in_second += 1
        attributes = {**(_about(credential) if credential else {}), **caller.attributes()}
        attributes |= {TOKEN_TYPE_KEY: token_type, FAILURE_REASON: failure.value}
        if status:  # the HTTP status it was answered with (OTLP/HTTP, ClickHouse HTTP)
            attributes[HTTP_STATUS] = status
        if credential is None and (token_id or not presented):
            # The id it claims; with nothing presented, the anonymous caller. Otherwise the
            # fingerprint of what was presented is its identity.
            attributes[TOKEN_ID] = token_id or ANONYMOUS
        if principal:
            attributes[PRINCIPAL] = principal
        if presented:
            attributes[TOKEN_VALUE] = presented  # the mapping keeps only its fingerprint
        denied = failure is Failure.WRONG_ROLE
        self._add(
            _Event(
                "token.access_denied" if denied else "token.auth_failed",
                int(now * 1e9),
                attributes,
                f"{'access denied' if denied else 'authentication failed'} on the "
                f"{caller.listener} ({failure.value})",
            )
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stores what is pending (waiting at most STOP_FLUSH_S), then stops."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError, RetryableError):
            await asyncio.wait_for(self._flush(), STOP_FLUSH_S)
        self._report()
        if self._pending:
            log.warning(
                "%d self-audit events could not be stored before stopping", len(self._pending)
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self._report()
            try:
                await self._flush()
            except RetryableError as e:
                log.info("self-audit events wait for the store: %s", e)
                await asyncio.sleep(e.retry_after_s)

    async def _flush(self) -> None:
        """Sends what is pending as one request; on a retryable error keeps it for the next
        flush (and raises), on any other drops it with a log line."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._sink(_request(batch), CONTENT_TYPE)
        except RetryableError:
            self._pending = batch + self._pending
            raise
        except TokenotelError as e:
            log.error("%d self-audit events were refused by the pipeline: %s", len(batch), e)
            return
        except Exception:
            log.exception("%d self-audit events could not be stored", len(batch))
            return
        stored = [e.uid for e in batch if e.lifecycle]
        if stored:
            self._recorded.update(stored)
            self._lifecycle_queued.difference_update(stored)
            _write_journal(self._journal, self._recorded)

    def _add(self, event: _Event) -> None:
        if len(self._pending) >= self._max_pending and not event.lifecycle:
            self.dropped += 1
            return
        self._pending.append(event)

    def _lifecycle(self, credential: Credential, name: str, when: datetime, actor: str) -> None:
        what = name.removeprefix("token.")
        uid = f"tokenotel:credential:{credential.id}:{what}"
        if uid in self._recorded or uid in self._lifecycle_queued:
            return
        self._lifecycle_queued.add(uid)
        attributes = _about(credential) | {ISSUED_AT: _iso(credential.created)}
        if actor:
            attributes[ACTOR] = actor
        self._add(
            _Event(
                name,
                round(when.timestamp() * 1000) * 1_000_000,
                attributes,
                f"tokenotel credential {credential.id} ({credential.role}) {what}",
                uid=uid,
                lifecycle=True,
            )
        )

    def _report(self) -> None:
        if self.failed_not_recorded:
            log.warning(
                "%d failed attempts were not recorded as events (more than %d a second)",
                self.failed_not_recorded,
                self._failed_per_s,
            )
            self.failed_not_recorded = 0
        if self.dropped:
            log.warning(
                "%d self-audit events were dropped: %d were already waiting for the store",
                self.dropped,
                self._max_pending,
            )
            self.dropped = 0


def _about(credential: Credential) -> dict[str, str | int | list[str]]:
    """What every event of a credential says about it: id, name (also its principal), role."""
    return {
        TOKEN_ID: credential.id,
        TOKEN_NAME: credential.name,
        PRINCIPAL: credential.name,
        TOKEN_TYPE_KEY: TOKEN_TYPE,
        SCOPES: [credential.role.value],
    }


def _request(events: list[_Event]) -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=SERVICE_NAME))
    )
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = SCOPE_NAME
    scope_logs.log_records.extend(event.record() for event in events)
    return request.SerializeToString()


def _any(value: str | int | list[str]) -> AnyValue:
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=v) for v in value)
        return any_value
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=value)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _read_journal(path: Path | None) -> set[str]:
    if path is None:
        return set()
    try:
        return set(json.loads(path.read_text(encoding="utf-8"))["recorded"])
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning(
            "cannot read %s (%s): credential creations and revocations are recorded again; "
            "the trail keeps each once while their ids are remembered",
            path,
            e,
        )
        return set()


def _write_journal(path: Path | None, recorded: set[str]) -> None:
    if path is None:
        return
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"recorded": sorted(recorded)}, f)
        os.replace(temporary, path)
    except OSError as e:
        log.warning("cannot write %s: %s", path, e)
