"""The Kubernetes API server's audit log (``audit.k8s.io/v1`` Events, JSON lines; also lines
with a node-name prefix as ``oc adm node-logs`` prints them) as token events.

A TokenRequest (``create`` on ``serviceaccounts/token``) issues a service-account token, whose
id is the annotation ``authentication.kubernetes.io/issued-credential-id``; a request made with
a token names it in ``user.extra["authentication.kubernetes.io/credential-id"]``. Each request
is logged at several stages under one ``auditID``: only the last (ResponseComplete, or Panic)
is mapped.
"""

from __future__ import annotations

from typing import Any

from tokenotel.errors import SourceRecordError
from tokenotel.sources.record import (
    AttributeValue,
    RawRecord,
    TokenRecord,
    as_object,
    iso_to_ns,
    json_object,
    kept_record,
    put,
    string_list,
)

NAME = "kubernetes"
_SERVICE_ACCOUNT = "system:serviceaccount:"
_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
_ISSUED_CREDENTIAL_ID = "authentication.kubernetes.io/issued-credential-id"
_LEGACY_TOKEN = "authentication.k8s.io/legacy-token"
#: Stages whose event is the request's last word.
_FINAL_STAGES = frozenset({"ResponseComplete", "Panic", None})
#: The credential-id of a token (its JWT id); others name client certificates
#: ("X509SHA256=…"), which are no tokens.
_TOKEN_CREDENTIAL = "JTI="


class Kubernetes:
    """Kubernetes audit Events."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        event = json_object(_without_prefix(raw), NAME)
        if event.get("kind") != "Event" or not event.get("auditID"):
            raise SourceRecordError(
                "kubernetes record is not an audit Event (kind Event with an auditID)"
            )
        if event.get("stage") not in _FINAL_STAGES:
            return []  # the same request again, at an earlier stage
        time_ns = iso_to_ns(
            event.get("requestReceivedTimestamp") or event.get("timestamp"),
            NAME,
            "requestReceivedTimestamp",
        )
        user = as_object(event.get("user"))
        username = user.get("username")
        annotations = as_object(event.get("annotations"))
        status = as_object(event.get("responseStatus"))
        code = status.get("code")
        ok = isinstance(code, int) and code < 400
        audit_id = str(event["auditID"])
        common: dict[str, AttributeValue] = {"token.source": NAME, "token.request.id": audit_id}
        sources = event.get("sourceIPs")
        if isinstance(sources, list) and sources:
            put(common, "client.address", sources[0])
        put(common, "user_agent.original", event.get("userAgent"))
        put(common, "url.path", event.get("requestURI"))
        put(common, "kubernetes.verb", event.get("verb"))
        if isinstance(code, int):
            common["http.response.status_code"] = code
        secrets: list[str] = []
        events: list[tuple[str, dict[str, AttributeValue]]] = []

        used = _credential(user, username, annotations)
        if used is not None:
            attributes = {"log.record.uid": f"kubernetes:{audit_id}", **used}
            put(attributes, "user.id", username)
            event_name = "token.used"
            if code == 403:  # (other failures are the request's, not the token's)
                event_name = "token.access_denied"
                attributes["token.outcome"] = "failure"
                attributes["token.failure_reason"] = "permission_denied"
            events.append((event_name, attributes))
        ref = as_object(event.get("objectRef"))
        if (
            ok
            and event.get("verb") == "create"
            and ref.get("resource") == "serviceaccounts"
            and ref.get("subresource") == "token"
        ):
            issued = _issued(event, ref, annotations, secrets)
            if issued is not None:
                uid = f"kubernetes:{audit_id}" + (":issued" if events else "")
                issued["log.record.uid"] = uid
                put(issued, "token.actor.id", username)
                events.append(("token.created", issued))
        if not events:
            return []
        kept = kept_record(event, secrets)
        return [
            TokenRecord(name, time_ns, {**attributes, **common, "kubernetes.record": kept})
            for name, attributes in events
        ]


def _without_prefix(raw: RawRecord) -> RawRecord:
    """A line as ``oc adm node-logs`` prints it starts with the node's name: the Event is
    what follows it."""
    if isinstance(raw, str) and not raw.startswith("{"):
        start = raw.find("{")
        return raw[start:] if start > 0 else raw
    if isinstance(raw, bytes) and not raw.startswith(b"{"):
        start = raw.find(b"{")
        return raw[start:] if start > 0 else raw
    return raw


def _credential(
    user: dict[str, Any], username: Any, annotations: dict[str, Any]
) -> dict[str, AttributeValue] | None:
    """The token a request was made with: the id the API server gives it, else, for a service
    account (whose tokens servers before 1.30 do not name, nor a legacy secret-based token),
    the account itself. None when the request names no token (a certificate, an OIDC or
    OpenShift OAuth token without an id, anonymous)."""
    extra = as_object(user.get("extra"))
    credential = string_list(extra.get(_CREDENTIAL_ID))
    if credential and credential[0].startswith(_TOKEN_CREDENTIAL):
        attributes: dict[str, AttributeValue] = {
            "token.id": credential[0],
            "token.type": "service_account_token",
        }
    elif isinstance(username, str) and username.startswith(_SERVICE_ACCOUNT):
        attributes = {"token.id": username, "token.type": "service_account"}
    else:
        return None
    if isinstance(username, str) and username.startswith(_SERVICE_ACCOUNT):
        attributes["token.principal.type"] = "service_account"
    if annotations.get(_LEGACY_TOKEN):
        attributes["kubernetes.legacy_token"] = "true"
    return attributes


def _issued(
    event: dict[str, Any],
    ref: dict[str, Any],
    annotations: dict[str, Any],
    secrets: list[str],
) -> dict[str, AttributeValue] | None:
    """The token a TokenRequest issued."""
    account = f"{_SERVICE_ACCOUNT}{ref.get('namespace')}:{ref.get('name')}"
    attributes: dict[str, AttributeValue] = {}
    credential_id = annotations.get(_ISSUED_CREDENTIAL_ID)
    attributes["token.id"] = str(credential_id) if credential_id else account
    attributes["token.type"] = "service_account_token" if credential_id else "service_account"
    attributes["user.id"] = account
    attributes["token.principal.type"] = "service_account"
    spec = as_object(as_object(event.get("requestObject")).get("spec"))
    audiences = string_list(spec.get("audiences"))
    if audiences:
        attributes["kubernetes.audiences"] = audiences
    status = as_object(as_object(event.get("responseObject")).get("status"))
    put(attributes, "token.expires_at", status.get("expirationTimestamp"))
    token = status.get("token")
    if isinstance(token, str) and token:  # logged at level RequestResponse: the token itself
        attributes["token.value"] = token
        secrets.append(token)
    return attributes
