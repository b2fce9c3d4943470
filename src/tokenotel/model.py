"""The token event: its taxonomy, outcomes, token statuses, and the registry of the columns one
event row has (name, ClickHouse and Arrow type, default, where the value comes from)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa

EVENT_PREFIX = "token."

#: Event names of the README ("Sending token events"). Custom names under ``token.`` are
#: accepted and stored as sent.
KNOWN_EVENTS = (
    "token.created",
    "token.used",
    "token.auth_failed",
    "token.refreshed",
    "token.refresh_failed",
    "token.updated",
    "token.rotated",
    "token.enabled",
    "token.disabled",
    "token.revoked",
    "token.expired",
    "token.reuse_detected",
    "token.leak_detected",
    "token.owner_removed",
    "token.access_requested",
    "token.access_approved",
    "token.access_denied",
)


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


#: Events whose outcome is a failure unless the sender says otherwise.
FAILURE_EVENTS = frozenset(
    {"token.auth_failed", "token.refresh_failed", "token.access_denied", "token.reuse_detected"}
)


def default_outcome(event_name: str) -> Outcome:
    """The outcome an event has when its sender did not set ``token.outcome``."""
    if event_name in FAILURE_EVENTS:
        return Outcome.FAILURE
    if event_name in KNOWN_EVENTS:
        return Outcome.SUCCESS
    return Outcome.UNKNOWN


class TokenStatus(StrEnum):
    """The status a token had when an event arrived (the ``token_status`` column)."""

    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"
    ROTATED = "rotated"
    EXPIRED = "expired"
    UNKNOWN = ""


#: Statuses in which a token must not be used any more: a use then is a use after revocation
#: or expiry.
DEAD_STATUSES = frozenset(
    {TokenStatus.DISABLED, TokenStatus.REVOKED, TokenStatus.ROTATED, TokenStatus.EXPIRED}
)


# -- the columns -----------------------------------------------------------------------------


class Filled(StrEnum):
    """Who gives a column its value."""

    MAPPING = "mapping"  # read from the log record by the mapping
    WRITER = "writer"  # set by the writer when it inserts
    STORE = "store"  # computed by ClickHouse (an alias or a default expression)


class Read(StrEnum):
    """How the mapping turns an attribute's value into a column's value."""

    TEXT = "text"
    INT = "int"  # an unsigned integer that fits the column
    SCOPES = "scopes"  # an array, or one space/comma separated string
    TIME = "time"  # ISO 8601 or epoch s/ms/us/ns, as epoch ms
    IP = "ip"  # IPv4 or IPv6, as 16 bytes
    OUTCOME = "outcome"  # one of Outcome
    SECRET = "secret"  # a raw secret: only its fingerprint is kept
    UID = "uid"  # the record's own unique id: it names the event (docs/event-identity.md)


#: A ClickHouse type's Arrow type (what the mapping hands the store) and the value a row holds
#: when the record says nothing. Each fact once; every column's follow from its type.
_TYPES: dict[str, tuple[pa.DataType, Any]] = {
    "String": (pa.string(), ""),
    "LowCardinality(String)": (pa.string(), ""),
    "Array(LowCardinality(String))": (pa.list_(pa.string()), ()),
    "Map(LowCardinality(String), String)": (pa.map_(pa.string(), pa.string()), ()),
    "DateTime64(9, 'UTC')": (pa.timestamp("ns", tz="UTC"), 0),
    "DateTime64(3, 'UTC')": (pa.timestamp("ms", tz="UTC"), 0),
    "Nullable(DateTime64(3, 'UTC'))": (pa.timestamp("ms", tz="UTC"), None),
    "Int64": (pa.int64(), 0),
    "UInt64": (pa.uint64(), 0),
    "UInt32": (pa.uint32(), 0),
    "UInt16": (pa.uint16(), 0),
    "UInt8": (pa.uint8(), 0),
    "IPv6": (pa.binary(16), bytes(16)),  # "::" when absent; IPv4 is stored IPv4-mapped
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the ``token_events`` table."""

    name: str
    type: str  # ClickHouse type
    source: str  # where the value comes from, as docs/schema.md says it
    meaning: str
    filled: Filled = Filled.MAPPING
    #: Record attributes the mapping reads into this column (the last one present wins).
    attributes: tuple[str, ...] = ()
    #: Resource attributes the mapping reads into this column.
    resource_attributes: tuple[str, ...] = ()
    read: Read = Read.TEXT

    @property
    def arrow_type(self) -> pa.DataType:
        return _TYPES[self.type][0]

    @property
    def default(self) -> Any:
        """The value of a row whose record does not set this column."""
        return _TYPES[self.type][1]


def _attribute(name: str, type_: str, key: str, meaning: str, read: Read = Read.TEXT) -> Column:
    """A column the mapping reads from the record attribute ``key``."""
    return Column(name, type_, key, meaning, attributes=(key,), read=read)


#: Every column of ``token_events``, in table order. The schema document and the
#: migrations are checked against this list by the tests.
COLUMNS: tuple[Column, ...] = (
    Column(
        "event_time",
        "DateTime64(9, 'UTC')",
        "time_unix_nano, else observed_time_unix_nano",
        "When the event happened (UTC, ns).",
    ),
    Column(
        "observed_delay_ns",
        "Int64",
        "observed_time_unix_nano - event time",
        "How long after the event it was observed (ns); read observed_time instead.",
    ),
    Column(
        "observed_time",
        "DateTime64(9, 'UTC')",
        "(alias: event_time + observed_delay_ns)",
        "When the event was observed by the pipeline.",
        filled=Filled.STORE,
    ),
    Column(
        "event_name",
        "LowCardinality(String)",
        "LogRecord event_name, else attribute event.name",
        "token.created, token.used, token.auth_failed, ...",
    ),
    Column(
        "outcome",
        "LowCardinality(String)",
        "token.outcome (default by event name)",
        "success, failure or unknown.",
        attributes=("token.outcome",),
        read=Read.OUTCOME,
    ),
    Column(
        "token_status",
        "LowCardinality(String)",
        "(set at ingest)",
        "The token's status when the event arrived: active, disabled, revoked, rotated, "
        "expired, or empty when unknown. A use with revoked or expired is a use after "
        "revocation or expiry.",
        filled=Filled.WRITER,
    ),
    _attribute(
        "failure_reason",
        "LowCardinality(String)",
        "token.failure_reason",
        "Why it failed: unknown, expired, revoked, malformed, insufficient_scope, ...",
    ),
    Column(
        "token_fingerprint",
        "String",
        "token.value, else a bearer token in Authorization",
        "HMAC-SHA256 of the secret under the fingerprint key (hmac-sha256:<key id>:<hex>).",
        attributes=("token.value",),
        read=Read.SECRET,
    ),
    _attribute("token_id", "String", "token.id", "Non-secret token id (key id, accessor, PAT id)."),
    _attribute(
        "token_hash",
        "String",
        "token.hash",
        "The source's own hash of the secret (GitHub's hashed_token, base64 of SHA-256; "
        "Vault's HMAC'd token): --token finds its events.",
    ),
    Column(
        "token_key",
        "String",
        "(computed)",
        "The token's identity: token_id, else token_fingerprint. First in the sorting key.",
        filled=Filled.STORE,
    ),
    _attribute(
        "token_type",
        "LowCardinality(String)",
        "token.type",
        "pat, oauth_access, oauth_refresh, api_key, service_account, jwt, ...",
    ),
    _attribute("token_name", "String", "token.name", "Human name of the token."),
    _attribute("token_hint", "String", "token.hint", "Non-secret display hint (prefix / last 4)."),
    _attribute("previous_token_id", "String", "token.previous_id", "On token.rotated: the old id."),
    Column(
        "principal_id",
        "String",
        "user.id (else token.principal.id)",
        "Who the token belongs to / acts as.",
        attributes=("user.id", "token.principal.id"),
    ),
    _attribute(
        "principal_type",
        "LowCardinality(String)",
        "token.principal.type",
        "user, service, bot, ...",
    ),
    _attribute(
        "actor_id",
        "String",
        "token.actor.id",
        "Who performed an administrative action (create, revoke, ...).",
    ),
    _attribute("tenant", "LowCardinality(String)", "token.tenant", "Tenant or organisation."),
    _attribute(
        "client_ip",
        "IPv6",
        "client.address",
        "Client address; IPv4 stored IPv4-mapped (::ffff:a.b.c.d); :: when absent.",
        Read.IP,
    ),
    _attribute("user_agent", "String", "user_agent.original", "Client user agent."),
    _attribute("country", "LowCardinality(String)", "geo.country.iso_code", "Client country."),
    _attribute("asn", "UInt32", "token.client.asn", "Client autonomous system number.", Read.INT),
    _attribute(
        "scopes",
        "Array(LowCardinality(String))",
        "token.scopes",
        "Scopes the token carries (array, or a space/comma separated string).",
        Read.SCOPES,
    ),
    _attribute(
        "scopes_added",
        "Array(LowCardinality(String))",
        "token.scopes_added",
        "On token.updated: scopes granted.",
        Read.SCOPES,
    ),
    _attribute(
        "scopes_removed",
        "Array(LowCardinality(String))",
        "token.scopes_removed",
        "On token.updated: scopes withdrawn.",
        Read.SCOPES,
    ),
    _attribute(
        "expires_at",
        "Nullable(DateTime64(3, 'UTC'))",
        "token.expires_at",
        "When the token expires (ISO 8601 or epoch s/ms/us/ns).",
        Read.TIME,
    ),
    _attribute(
        "issued_at",
        "Nullable(DateTime64(3, 'UTC'))",
        "token.issued_at",
        "When the token was issued.",
        Read.TIME,
    ),
    _attribute("http_method", "LowCardinality(String)", "http.request.method", "HTTP method."),
    _attribute("http_route", "LowCardinality(String)", "http.route", "Route template."),
    _attribute("url_path", "String", "url.path", "Request path."),
    _attribute("http_status", "UInt16", "http.response.status_code", "HTTP status code.", Read.INT),
    _attribute("request_id", "String", "token.request.id", "Request id."),
    _attribute(
        "reason",
        "LowCardinality(String)",
        "token.reason",
        "Why a lifecycle action happened (revoke: user, admin, leak, reuse, inactivity, ...).",
    ),
    _attribute(
        "source",
        "LowCardinality(String)",
        "token.source",
        "Source system: vault, github, gateway, app, ...",
    ),
    Column(
        "service_name",
        "LowCardinality(String)",
        "resource service.name",
        "Service that emitted the event.",
        resource_attributes=("service.name",),
    ),
    Column(
        "environment",
        "LowCardinality(String)",
        "resource deployment.environment.name",
        "Deployment environment.",
        resource_attributes=("deployment.environment.name", "deployment.environment"),
    ),
    Column(
        "scope_name",
        "LowCardinality(String)",
        "instrumentation scope name",
        "Logger (instrumentation scope) that emitted the event.",
    ),
    Column("trace_id", "String", "trace_id (hex)", "Trace the event belongs to."),
    Column("span_id", "String", "span_id (hex)", "Span the event belongs to."),
    Column("severity_text", "LowCardinality(String)", "severity_text", "Severity text."),
    Column("severity_number", "UInt8", "severity_number", "Severity number (1-24)."),
    Column("body", "String", "body (redacted; structured bodies as JSON)", "The log body."),
    Column(
        "attributes",
        "Map(LowCardinality(String), String)",
        "every other attribute",
        "Attributes no column takes (redacted; arrays and maps as JSON).",
    ),
    Column(
        "resource_attributes",
        "Map(LowCardinality(String), String)",
        "every other resource attribute",
        "Resource attributes no column takes.",
    ),
    Column(
        "ingested_at",
        "DateTime64(3, 'UTC')",
        "(set at ingest)",
        "When tokenotel wrote the row; one value per insert.",
        filled=Filled.WRITER,
    ),
    Column(
        "event_id",
        "UInt64",
        "log.record.uid, else the record's place in its request",
        "The event's identity, to drop what a retried request sends again: a hash of the "
        "record's own unique id, else of its request and its place in it; kept for a day, "
        "then 0.",
        attributes=("log.record.uid",),
        read=Read.UID,
    ),
)

COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
#: Columns a mapped row carries, in table order: those the mapping fills.
ROW_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.filled is Filled.MAPPING)
