"""Every error tokenotel raises on purpose, classified once where it is raised (permanent or
retryable), and the one translation of an error into the status a client sees."""

from __future__ import annotations

from dataclasses import dataclass

from google.rpc import code_pb2, error_details_pb2, status_pb2


class TokenotelError(Exception):
    """Base of every error tokenotel raises on purpose; its message is meant for users."""


class PermanentError(TokenotelError):
    """Retrying the same input cannot succeed (malformed request, bad configuration)."""


class RetryableError(TokenotelError):
    """The same input may succeed later (the store is down or overloaded); clients are asked to
    wait ``retry_after_s`` first."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# -- permanent -------------------------------------------------------------------------------


class ConfigError(PermanentError):
    """The configuration is invalid; the message says which setting and why."""


class InvalidArgument(PermanentError):
    """A request's argument is wrong: ``field`` names it (for google.rpc.BadRequest)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(PermanentError):
    """What the request names is not in the store."""


class FailedPrecondition(PermanentError):
    """The service lacks what the request needs (e.g. a browser to print a PDF with)."""


class Unauthenticated(PermanentError):
    """The request carries no valid credential. One message for every reason (none, malformed,
    unknown, wrong secret, revoked): a caller learns nothing about which credentials exist."""


class PermissionDenied(PermanentError):
    """The request's credential is valid, but its role may not do what was asked."""


class DeadlineExceeded(TokenotelError):
    """The request's deadline passed before its query finished (the query was stopped)."""


class FingerprintKeyError(PermanentError):
    """The fingerprint key file is missing, unreadable or malformed."""


class MalformedRequest(PermanentError):
    """The body is not a valid OTLP logs export request."""


class RequestTooLarge(PermanentError):
    """The request is over the size limit after decompression."""


class UnsupportedContentType(PermanentError):
    """The request's content type is neither OTLP/protobuf nor OTLP/JSON."""


class MethodNotAllowed(PermanentError):
    """An HTTP method other than POST on the logs path."""


class DataDirInUse(PermanentError):
    """Another process (a running ``tokenotel serve``) holds the embedded store."""


class SigningKeyError(PermanentError):
    """The checkpoint signing key file is missing, unreadable or malformed."""


class SchemaOutdated(PermanentError):
    """The schema is behind and this user may not change it (or cluster mode, where only
    ``tokenotel migrate --cluster`` does)."""


class MigrationFailed(PermanentError):
    """A schema change on a cluster failed; the message says why."""


class SourceRecordError(PermanentError):
    """A vendor's record (Vault, GitHub, CloudTrail …) cannot be read as that source's record;
    the message says what is wrong, never quoting a secret."""


# -- retryable -------------------------------------------------------------------------------


class StoreUnavailable(RetryableError):
    """ClickHouse cannot be reached or refused the write."""


class Overloaded(RetryableError):
    """More is waiting to be mapped or written than the service holds: the client should
    slow down and send again later."""


class MappingWorkerStopped(RetryableError):
    """A mapping worker process died while mapping the request (it has been replaced)."""


# -- what a client sees ----------------------------------------------------------------------

#: What a client reads when the service failed in a way it did not foresee (a bug); the log
#: has the rest.
INTERNAL_ERROR = "tokenotel failed on this request; the service log says why"


@dataclass(frozen=True)
class ClientStatus:
    """How an error is answered: a gRPC status code (``google.rpc.Code``), an HTTP status, and
    for a retryable error how long the client should wait."""

    grpc_code: int
    http_status: int
    retry_after_s: float | None = None


#: Most specific class first. OTLP asks for RESOURCE_EXHAUSTED without RetryInfo on a request
#: over the size limit (the client must not retry it), INVALID_ARGUMENT for data that cannot
#: be stored, RESOURCE_EXHAUSTED with RetryInfo (HTTP 429) when the server is overloaded, and
#: UNAVAILABLE with RetryInfo (HTTP 503) for what may succeed later. A missing or wrong
#: credential is UNAUTHENTICATED / 401, a valid one of the wrong role PERMISSION_DENIED / 403.
_STATUSES: tuple[tuple[type[TokenotelError], int, int], ...] = (
    (RequestTooLarge, code_pb2.RESOURCE_EXHAUSTED, 413),
    (Overloaded, code_pb2.RESOURCE_EXHAUSTED, 429),
    (UnsupportedContentType, code_pb2.INVALID_ARGUMENT, 415),
    (MethodNotAllowed, code_pb2.UNIMPLEMENTED, 405),
    (NotFound, code_pb2.NOT_FOUND, 404),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION, 412),
    (Unauthenticated, code_pb2.UNAUTHENTICATED, 401),
    (PermissionDenied, code_pb2.PERMISSION_DENIED, 403),
    (DeadlineExceeded, code_pb2.DEADLINE_EXCEEDED, 504),
    (PermanentError, code_pb2.INVALID_ARGUMENT, 400),
    (RetryableError, code_pb2.UNAVAILABLE, 503),
    (TokenotelError, code_pb2.INTERNAL, 500),
)


def client_status(error: TokenotelError) -> ClientStatus:
    """The status that answers a request which failed with ``error``."""
    for kind, grpc_code, http_status in _STATUSES:
        if isinstance(error, kind):
            retry_after_s = error.retry_after_s if isinstance(error, RetryableError) else None
            return ClientStatus(grpc_code, http_status, retry_after_s)
    raise AssertionError("unreachable: every TokenotelError matches the last entry")


def rich_status(error: TokenotelError) -> status_pb2.Status:
    """The google.rpc.Status of an error (gRPC's rich error model), with what a client can act
    on in its details: the field that was wrong (BadRequest) or when to come back (RetryInfo)."""
    status = client_status(error)
    message = status_pb2.Status(code=status.grpc_code, message=str(error))
    if isinstance(error, InvalidArgument):
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=error.field, description=str(error))
        message.details.add().Pack(bad)
    if status.retry_after_s is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(status.retry_after_s * 1e9))
        message.details.add().Pack(info)
    return message
