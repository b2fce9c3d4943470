"""AWS CloudTrail records (log files ``{"Records": [...]}``, or one record) as token events.

An access key's life is IAM's ``CreateAccessKey``, ``UpdateAccessKey`` (Active: enabled,
Inactive: disabled) and ``DeleteAccessKey``; STS issues session credentials (``AssumeRole*``,
``GetSessionToken``, ``GetFederationToken``). Every call signed with an access key names it in
``userIdentity.accessKeyId``: a use of that key, failed when ``errorCode`` says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tokenotel.errors import SourceRecordError
from tokenotel.sources.record import (
    AttributeValue,
    RawRecord,
    TokenRecord,
    as_object,
    content_uid,
    iso_to_ns,
    json_object,
    kept_record,
    put,
)

NAME = "cloudtrail"

#: STS calls whose answer is a new set of session credentials.
_SESSION_ISSUERS = frozenset(
    {
        "AssumeRole",
        "AssumeRoleWithSAML",
        "AssumeRoleWithWebIdentity",
        "AssumeRoot",
        "GetSessionToken",
        "GetFederationToken",
    }
)
#: Error codes of a signature the service refused: the key itself failed.
_AUTH_FAILURES = {
    "InvalidClientTokenId": "unknown",
    "InvalidAccessKeyId": "unknown",
    "SignatureDoesNotMatch": "invalid_secret",
    "IncompleteSignature": "malformed",
    "ExpiredToken": "expired",
    "ExpiredTokenException": "expired",
    "TokenRefreshRequired": "expired",
}
#: Error codes of a key that was valid but not allowed to do what it asked.
_DENIALS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "Client.UnauthorizedOperation",
        "UnauthorizedAccess",
    }
)
#: Access key id prefixes (AWS IAM identifiers): long-term keys, and STS session keys.
_KEY_TYPES = {"AKIA": "aws_access_key", "ASIA": "aws_session"}


class CloudTrail:
    """CloudTrail records, one at a time or a whole log file's object."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        value = json_object(raw, NAME)
        records = value.get("Records")
        if records is None:
            return _record(value)
        if not isinstance(records, list):
            raise SourceRecordError("cloudtrail file's Records is not a list")
        events: list[TokenRecord] = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise SourceRecordError(f"cloudtrail file's Records[{index}] is not an object")
            events += _record(record)
        return events


def _record(record: dict[str, Any]) -> list[TokenRecord]:
    name = record.get("eventName")
    if not isinstance(name, str) or not name:
        raise SourceRecordError("cloudtrail record has no eventName")
    time_ns = iso_to_ns(record.get("eventTime"), NAME, "eventTime")
    identity = as_object(record.get("userIdentity"))
    caller_key = identity.get("accessKeyId")
    request = as_object(record.get("requestParameters"))
    response = as_object(record.get("responseElements"))
    error = record.get("errorCode")
    event_id = record.get("eventID")
    uid = f"{NAME}:{event_id}" if event_id else content_uid(NAME, record)
    common: dict[str, AttributeValue] = {"token.source": NAME, "cloudtrail.event_name": name}
    put(common, "cloudtrail.event_source", record.get("eventSource"))
    put(common, "client.address", record.get("sourceIPAddress"))
    put(common, "user_agent.original", record.get("userAgent"))
    put(common, "token.request.id", record.get("requestID"))
    put(common, "token.tenant", record.get("recipientAccountId") or identity.get("accountId"))
    caller = identity.get("arn") or identity.get("principalId")
    # The principal a key belongs to: an IAM user by name (as IAM's own calls name it), any
    # other identity (assumed role, root, federated user) by its ARN.
    principal = identity.get("userName") or caller
    secrets: list[str] = []
    events: list[tuple[str, dict[str, AttributeValue]]] = []

    lifecycle = None if error else _lifecycle(name, request, response, identity, secrets)
    if caller_key:  # the call itself, made with a key (first: it was made before it changed)
        attributes: dict[str, AttributeValue] = {
            "log.record.uid": uid if lifecycle is None else f"{uid}:used",
            "token.id": str(caller_key),
            "token.type": _key_type(caller_key),
        }
        put(attributes, "user.id", principal)
        put(attributes, "token.principal.type", identity.get("type"))
        event = "token.used"
        if error:
            attributes["token.outcome"] = "failure"
            put(attributes, "cloudtrail.error_message", record.get("errorMessage"))
            if error in _DENIALS:
                event = "token.access_denied"
                attributes["token.failure_reason"] = "permission_denied"
            elif error in _AUTH_FAILURES:
                event = "token.auth_failed"
                attributes["token.failure_reason"] = _AUTH_FAILURES[error]
            else:
                attributes["token.failure_reason"] = str(error)
        events.append((event, attributes))
    if lifecycle is not None:
        event, attributes = lifecycle
        attributes["log.record.uid"] = uid
        put(attributes, "token.actor.id", caller)
        events.append((event, attributes))
    if not events:
        return []
    kept = kept_record(record, secrets)
    return [
        TokenRecord(event, time_ns, {**attributes, **common, "cloudtrail.record": kept})
        for event, attributes in events
    ]


def _lifecycle(
    name: str,
    request: dict[str, Any],
    response: dict[str, Any],
    identity: dict[str, Any],
    secrets: list[str],
) -> tuple[str, dict[str, AttributeValue]] | None:
    """The key whose life this (successful) call changed, and how; None for other calls."""
    attributes: dict[str, AttributeValue] = {}
    if name == "CreateAccessKey":
        key = as_object(response.get("accessKey"))
        if not key.get("accessKeyId"):
            return None
        attributes["token.id"] = str(key["accessKeyId"])
        attributes["token.type"] = _key_type(key["accessKeyId"])
        # Without a userName the key is the caller's own.
        put(attributes, "user.id", key.get("userName") or identity.get("userName"))
        secret = key.get("secretAccessKey")  # (CloudTrail leaves it out; never kept if not)
        if isinstance(secret, str) and secret:
            secrets.append(secret)
        return "token.created", attributes
    if name in ("UpdateAccessKey", "DeleteAccessKey"):
        if not request.get("accessKeyId"):
            return None
        attributes["token.id"] = str(request["accessKeyId"])
        attributes["token.type"] = _key_type(request["accessKeyId"])
        put(attributes, "user.id", request.get("userName") or identity.get("userName"))
        if name == "DeleteAccessKey":
            return "token.revoked", attributes
        status = request.get("status")
        if status == "Inactive":
            return "token.disabled", attributes
        if status == "Active":
            return "token.enabled", attributes
        return "token.updated", attributes
    if name in _SESSION_ISSUERS:
        credentials = as_object(response.get("credentials"))
        if not credentials.get("accessKeyId"):
            return None
        attributes["token.id"] = str(credentials["accessKeyId"])
        attributes["token.type"] = "aws_session"
        session = as_object(response.get("assumedRoleUser")) or as_object(
            response.get("federatedUser")
        )
        put(
            attributes,
            "user.id",
            session.get("arn") or identity.get("userName") or identity.get("arn"),
        )
        expiration = _aws_time(credentials.get("expiration"))
        if expiration is not None:
            attributes["token.expires_at"] = expiration
        token = credentials.get("sessionToken")
        if isinstance(token, str) and token:
            attributes["token.value"] = token  # the session token is the secret
            secrets.append(token)
        return "token.created", attributes
    return None


def _key_type(key_id: Any) -> str:
    return _KEY_TYPES.get(str(key_id)[:4], "aws_access_key")


def _aws_time(text: Any) -> int | None:
    """The times CloudTrail writes in response elements ("Jul 18, 2023, 4:07:39 PM", "Jan 8,
    2020 8:43:06 PM", UTC; or ISO 8601) as epoch ms; None when it is none of those."""
    if not isinstance(text, str) or not text:
        return None
    if text[:4].isdigit():
        try:
            return iso_to_ns(text, NAME, "expiration") // 1_000_000
        except SourceRecordError:
            return None
    for layout in ("%b %d, %Y, %I:%M:%S %p", "%b %d, %Y %I:%M:%S %p"):
        try:
            moment = datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
        return int(moment.timestamp()) * 1000
    return None
