import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("time", "observed_time", "event_name", "outcome", "token_status", "failure_reason", "token_id", "token_fingerprint", "token_hash", "token_type", "token_name", "token_hint", "previous_token_id", "principal_id", "principal_type", "actor_id", "tenant", "client_ip", "user_agent", "country", "asn", "scopes", "scopes_added", "scopes_removed", "expires_at", "issued_at", "http_method", "http_route", "url_path", "http_status", "request_id", "reason", "source", "service_name", "environment", "scope_name", "trace_id", "span_id", "severity_text", "severity_number", "body", "attributes", "resource_attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ResourceAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HINT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    ASN_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SCOPES_ADDED_FIELD_NUMBER: _ClassVar[int]
    SCOPES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    HTTP_ROUTE_FIELD_NUMBER: _ClassVar[int]
    URL_PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_TEXT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    observed_time: _timestamp_pb2.Timestamp
    event_name: str
    outcome: str
    token_status: str
    failure_reason: str
    token_id: str
    token_fingerprint: str
    token_hash: str
    token_type: str
    token_name: str
    token_hint: str
    previous_token_id: str
    principal_id: str
    principal_type: str
    actor_id: str
    tenant: str
    client_ip: str
    user_agent: str
    country: str
    asn: int
    scopes: _containers.RepeatedScalarFieldContainer[str]
    scopes_added: _containers.RepeatedScalarFieldContainer[str]
    scopes_removed: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _timestamp_pb2.Timestamp
    issued_at: _timestamp_pb2.Timestamp
    http_method: str
    http_route: str
    url_path: str
    http_status: int
    request_id: str
    reason: str
    source: str
    service_name: str
    environment: str
    scope_name: str
    trace_id: str
    span_id: str
    severity_text: str
    severity_number: int
    body: str
    attributes: _containers.ScalarMap[str, str]
    resource_attributes: _containers.ScalarMap[str, str]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., observed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_name: _Optional[str] = ..., outcome: _Optional[str] = ..., token_status: _Optional[str] = ..., failure_reason: _Optional[str] = ..., token_id: _Optional[str] = ..., token_fingerprint: _Optional[str] = ..., token_hash: _Optional[str] = ..., token_type: _Optional[str] = ..., token_name: _Optional[str] = ..., token_hint: _Optional[str] = ..., previous_token_id: _Optional[str] = ..., principal_id: _Optional[str] = ..., principal_type: _Optional[str] = ..., actor_id: _Optional[str] = ..., tenant: _Optional[str] = ..., client_ip: _Optional[str] = ..., user_agent: _Optional[str] = ..., country: _Optional[str] = ..., asn: _Optional[int] = ..., scopes: _Optional[_Iterable[str]] = ..., scopes_added: _Optional[_Iterable[str]] = ..., scopes_removed: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., http_method: _Optional[str] = ..., http_route: _Optional[str] = ..., url_path: _Optional[str] = ..., http_status: _Optional[int] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ..., source: _Optional[str] = ..., service_name: _Optional[str] = ..., environment: _Optional[str] = ..., scope_name: _Optional[str] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., severity_text: _Optional[str] = ..., severity_number: _Optional[int] = ..., body: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., resource_attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EventFilter(_message.Message):
    __slots__ = ("tokens", "principal", "ip", "event_names", "outcome", "token_statuses", "since", "until")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAMES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_STATUSES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedScalarFieldContainer[str]
    principal: str
    ip: str
    event_names: _containers.RepeatedScalarFieldContainer[str]
    outcome: str
    token_statuses: _containers.RepeatedScalarFieldContainer[str]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, tokens: _Optional[_Iterable[str]] = ..., principal: _Optional[str] = ..., ip: _Optional[str] = ..., event_names: _Optional[_Iterable[str]] = ..., outcome: _Optional[str] = ..., token_statuses: _Optional[_Iterable[str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SearchEventsRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: EventFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[EventFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TailEventsRequest(_message.Message):
    __slots__ = ("filter", "cursor")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    filter: EventFilter
    cursor: str
    def __init__(self, filter: _Optional[_Union[EventFilter, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class TailEventsResponse(_message.Message):
    __slots__ = ("events", "cursor")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    cursor: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., cursor: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("token_key", "token_id", "token_type", "token_name", "owner", "tenant", "scopes", "expires_at", "status", "lifecycle_status", "lifecycle_at", "created_at", "last_used_at", "last_ip", "use_count", "failure_count", "first_seen", "last_seen")
    TOKEN_KEY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STATUS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_IP_FIELD_NUMBER: _ClassVar[int]
    USE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    token_key: str
    token_id: str
    token_type: str
    token_name: str
    owner: str
    tenant: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _timestamp_pb2.Timestamp
    status: str
    lifecycle_status: str
    lifecycle_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    last_ip: str
    use_count: int
    failure_count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, token_key: _Optional[str] = ..., token_id: _Optional[str] = ..., token_type: _Optional[str] = ..., token_name: _Optional[str] = ..., owner: _Optional[str] = ..., tenant: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ..., lifecycle_status: _Optional[str] = ..., lifecycle_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_ip: _Optional[str] = ..., use_count: _Optional[int] = ..., failure_count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTokenTimelineRequest(_message.Message):
    __slots__ = ("token", "limit")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    token: str
    limit: int
    def __init__(self, token: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TokenTimeline(_message.Message):
    __slots__ = ("token", "events", "lifecycle", "scopes", "addresses")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    token: Token
    events: _containers.RepeatedCompositeFieldContainer[Event]
    lifecycle: _containers.RepeatedCompositeFieldContainer[LifecycleChange]
    scopes: _containers.RepeatedCompositeFieldContainer[ScopesSince]
    addresses: _containers.RepeatedCompositeFieldContainer[AddressSeen]
    def __init__(self, token: _Optional[_Union[Token, _Mapping]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., lifecycle: _Optional[_Iterable[_Union[LifecycleChange, _Mapping]]] = ..., scopes: _Optional[_Iterable[_Union[ScopesSince, _Mapping]]] = ..., addresses: _Optional[_Iterable[_Union[AddressSeen, _Mapping]]] = ...) -> None: ...

class LifecycleChange(_message.Message):
    __slots__ = ("time", "event_name", "actor_id", "reason", "previous_token_id", "token_id")
    TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    event_name: str
    actor_id: str
    reason: str
    previous_token_id: str
    token_id: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_name: _Optional[str] = ..., actor_id: _Optional[str] = ..., reason: _Optional[str] = ..., previous_token_id: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class ScopesSince(_message.Message):
    __slots__ = ("since", "scopes")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class AddressSeen(_message.Message):
    __slots__ = ("client_ip", "first_seen", "last_seen", "events", "failures")
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    client_ip: str
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    events: int
    failures: int
    def __init__(self, client_ip: _Optional[str] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events: _Optional[int] = ..., failures: _Optional[int] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("status", "principal", "scope", "expires_within", "unused_for", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_WITHIN_FIELD_NUMBER: _ClassVar[int]
    UNUSED_FOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: str
    principal: str
    scope: str
    expires_within: _duration_pb2.Duration
    unused_for: _duration_pb2.Duration
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[str] = ..., principal: _Optional[str] = ..., scope: _Optional[str] = ..., expires_within: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., unused_for: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens", "next_page_token")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    next_page_token: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetSummaryRequest(_message.Message):
    __slots__ = ("since", "until", "top")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    top: int
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., top: _Optional[int] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("by_event", "top_tokens", "top_failing_ips", "failure_bursts", "uses_after_revocation", "uses_after_expiry")
    BY_EVENT_FIELD_NUMBER: _ClassVar[int]
    TOP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOP_FAILING_IPS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_BURSTS_FIELD_NUMBER: _ClassVar[int]
    USES_AFTER_REVOCATION_FIELD_NUMBER: _ClassVar[int]
    USES_AFTER_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    by_event: _containers.RepeatedCompositeFieldContainer[EventCount]
    top_tokens: _containers.RepeatedCompositeFieldContainer[TopToken]
    top_failing_ips: _containers.RepeatedCompositeFieldContainer[FailingAddress]
    failure_bursts: _containers.RepeatedCompositeFieldContainer[FailureBurst]
    uses_after_revocation: _containers.RepeatedCompositeFieldContainer[UseAfterEnd]
    uses_after_expiry: _containers.RepeatedCompositeFieldContainer[UseAfterEnd]
    def __init__(self, by_event: _Optional[_Iterable[_Union[EventCount, _Mapping]]] = ..., top_tokens: _Optional[_Iterable[_Union[TopToken, _Mapping]]] = ..., top_failing_ips: _Optional[_Iterable[_Union[FailingAddress, _Mapping]]] = ..., failure_bursts: _Optional[_Iterable[_Union[FailureBurst, _Mapping]]] = ..., uses_after_revocation: _Optional[_Iterable[_Union[UseAfterEnd, _Mapping]]] = ..., uses_after_expiry: _Optional[_Iterable[_Union[UseAfterEnd, _Mapping]]] = ...) -> None: ...

class EventCount(_message.Message):
    __slots__ = ("event_name", "outcome", "events")
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    event_name: str
    outcome: str
    events: int
    def __init__(self, event_name: _Optional[str] = ..., outcome: _Optional[str] = ..., events: _Optional[int] = ...) -> None: ...

class TopToken(_message.Message):
    __slots__ = ("token", "principal", "uses", "failures", "client_ips")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IPS_FIELD_NUMBER: _ClassVar[int]
    token: str
    principal: str
    uses: int
    failures: int
    client_ips: int
    def __init__(self, token: _Optional[str] = ..., principal: _Optional[str] = ..., uses: _Optional[int] = ..., failures: _Optional[int] = ..., client_ips: _Optional[int] = ...) -> None: ...

class FailingAddress(_message.Message):
    __slots__ = ("client_ip", "failures", "tokens")
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    client_ip: str
    failures: int
    tokens: int
    def __init__(self, client_ip: _Optional[str] = ..., failures: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class FailureBurst(_message.Message):
    __slots__ = ("token", "client_ip", "first", "last", "failures", "peak_5m", "reasons")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    PEAK_5M_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    token: str
    client_ip: str
    first: _timestamp_pb2.Timestamp
    last: _timestamp_pb2.Timestamp
    failures: int
    peak_5m: int
    reasons: str
    def __init__(self, token: _Optional[str] = ..., client_ip: _Optional[str] = ..., first: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures: _Optional[int] = ..., peak_5m: _Optional[int] = ..., reasons: _Optional[str] = ...) -> None: ...

class UseAfterEnd(_message.Message):
    __slots__ = ("token", "status", "used_at", "client_ip", "event_name", "outcome")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USED_AT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    token: str
    status: str
    used_at: _timestamp_pb2.Timestamp
    client_ip: str
    event_name: str
    outcome: str
    def __init__(self, token: _Optional[str] = ..., status: _Optional[str] = ..., used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., client_ip: _Optional[str] = ..., event_name: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class FingerprintSecretRequest(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: str
    def __init__(self, secret: _Optional[str] = ...) -> None: ...

class FingerprintSecretResponse(_message.Message):
    __slots__ = ("fingerprint", "key_id", "previous_fingerprints")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    key_id: str
    previous_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, fingerprint: _Optional[str] = ..., key_id: _Optional[str] = ..., previous_fingerprints: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerifyFinding(_message.Message):
    __slots__ = ("status", "subject", "reason", "kind")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    status: str
    subject: str
    reason: str
    kind: str
    def __init__(self, status: _Optional[str] = ..., subject: _Optional[str] = ..., reason: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class VerifySummary(_message.Message):
    __slots__ = ("checkpoints", "checkpoints_valid", "inserts", "inserts_valid", "sealed_inserts", "sealed_events", "uncovered_events", "invalid")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_VALID_FIELD_NUMBER: _ClassVar[int]
    INSERTS_FIELD_NUMBER: _ClassVar[int]
    INSERTS_VALID_FIELD_NUMBER: _ClassVar[int]
    SEALED_INSERTS_FIELD_NUMBER: _ClassVar[int]
    SEALED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    UNCOVERED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    checkpoints: int
    checkpoints_valid: int
    inserts: int
    inserts_valid: int
    sealed_inserts: int
    sealed_events: int
    uncovered_events: int
    invalid: int
    def __init__(self, checkpoints: _Optional[int] = ..., checkpoints_valid: _Optional[int] = ..., inserts: _Optional[int] = ..., inserts_valid: _Optional[int] = ..., sealed_inserts: _Optional[int] = ..., sealed_events: _Optional[int] = ..., uncovered_events: _Optional[int] = ..., invalid: _Optional[int] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("finding", "summary")
    FINDING_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    finding: VerifyFinding
    summary: VerifySummary
    def __init__(self, finding: _Optional[_Union[VerifyFinding, _Mapping]] = ..., summary: _Optional[_Union[VerifySummary, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("notes",)
    NOTES_FIELD_NUMBER: _ClassVar[int]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, notes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("old_size", "new_size")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GenerateReportRequest(_message.Message):
    __slots__ = ("period", "since", "until", "format", "policy")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    period: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    format: str
    policy: str
    def __init__(self, period: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., format: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class ReportChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
