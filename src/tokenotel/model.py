"""The token event: its taxonomy, outcomes and the columns one event row has."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

EVENT_PREFIX = "token."

#: Event names of SPEC §2. Custom names under ``token.`` are accepted and stored as sent.
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


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the ``token_events`` table."""

    name: str
    type: str
    source: str
    meaning: str


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
    ),
    Column(
        "token_status",
        "LowCardinality(String)",
        "(set at ingest)",
        "The token's status when the event arrived: active, disabled, revoked, rotated, "
        "expired, or empty when unknown. A use with revoked or expired is a use after "
        "revocation or expiry.",
    ),
    Column(
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
    ),
    Column("token_id", "String", "token.id", "Non-secret token id (key id, accessor, PAT id)."),
    Column(
        "token_key",
        "String",
        "(computed)",
        "The token's identity: token_id, else token_fingerprint. First in the sorting key.",
    ),
    Column(
        "token_type",
        "LowCardinality(String)",
        "token.type",
        "pat, oauth_access, oauth_refresh, api_key, service_account, jwt, ...",
    ),
    Column("token_name", "String", "token.name", "Human name of the token."),
    Column("token_hint", "String", "token.hint", "Non-secret display hint (prefix / last 4)."),
    Column("previous_token_id", "String", "token.previous_id", "On token.rotated: the old id."),
    Column(
        "principal_id",
        "String",
        "user.id (else token.principal.id)",
        "Who the token belongs to / acts as.",
    ),
    Column(
        "principal_type",
        "LowCardinality(String)",
        "token.principal.type",
        "user, service, bot, ...",
    ),
    Column(
        "actor_id",
        "String",
        "token.actor.id",
        "Who performed an administrative action (create, revoke, ...).",
    ),
    Column("tenant", "LowCardinality(String)", "token.tenant", "Tenant or organisation."),
    Column(
        "client_ip",
        "IPv6",
        "client.address",
        "Client address; IPv4 stored IPv4-mapped (::ffff:a.b.c.d); :: when absent.",
    ),
    Column("user_agent", "String", "user_agent.original", "Client user agent."),
    Column("country", "LowCardinality(String)", "geo.country.iso_code", "Client country."),
    Column("asn", "UInt32", "token.client.asn", "Client autonomous system number."),
    Column(
        "scopes",
        "Array(LowCardinality(String))",
        "token.scopes",
        "Scopes the token carries (array, or a space/comma separated string).",
    ),
    Column(
        "scopes_added",
        "Array(LowCardinality(String))",
        "token.scopes_added",
        "On token.updated: scopes granted.",
    ),
    Column(
        "scopes_removed",
        "Array(LowCardinality(String))",
        "token.scopes_removed",
        "On token.updated: scopes withdrawn.",
    ),
    Column(
        "expires_at",
        "Nullable(DateTime64(3, 'UTC'))",
        "token.expires_at",
        "When the token expires (ISO 8601 or epoch s/ms/us/ns).",
    ),
    Column(
        "issued_at",
        "Nullable(DateTime64(3, 'UTC'))",
        "token.issued_at",
        "When the token was issued.",
    ),
    Column("http_method", "LowCardinality(String)", "http.request.method", "HTTP method."),
    Column("http_route", "LowCardinality(String)", "http.route", "Route template."),
    Column("url_path", "String", "url.path", "Request path."),
    Column("http_status", "UInt16", "http.response.status_code", "HTTP status code."),
    Column("request_id", "String", "token.request.id", "Request id."),
    Column(
        "reason",
        "LowCardinality(String)",
        "token.reason",
        "Why a lifecycle action happened (revoke: user, admin, leak, reuse, inactivity, ...).",
    ),
    Column(
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
    ),
    Column(
        "environment",
        "LowCardinality(String)",
        "resource deployment.environment.name",
        "Deployment environment.",
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
    ),
    Column(
        "event_id",
        "UInt64",
        "(set at ingest)",
        "A hash of the log record and its resource, to drop a retried request's duplicates; "
        "kept for a day, then 0.",
    ),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
#: Columns the mapping does not fill: computed by ClickHouse, or by the writer at insert.
COMPUTED_COLUMNS = frozenset(c.name for c in COLUMNS if c.source.startswith("("))
#: Columns a mapped row carries, in order: the event id (a hash of the record, to drop
#: retried duplicates), then the columns the mapping fills.
ROW_COLUMNS: tuple[str, ...] = ("event_id", *(n for n in COLUMN_NAMES if n not in COMPUTED_COLUMNS))
