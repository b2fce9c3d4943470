"""Okta's System Log (JSON events, from the API or an event hook / log stream) as token events.

API tokens: ``system.api_token.*`` (the token is the ``Token`` target), and every action taken
with one (``transaction.detail.requestApiTokenId``). OAuth 2.0 tokens of Okta's authorization
servers: ``app.oauth2[.as].token.grant.*`` (the issued token is a target), their revocation and
refresh-token reuse detection.
"""

from __future__ import annotations

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
    string_list,
)

NAME = "okta"

_API_TOKEN_EVENTS = {
    "system.api_token.create": "token.created",
    "system.api_token.update": "token.updated",
    "system.api_token.revoke": "token.revoked",
}
#: The OAuth token events, for the org authorization server (app.oauth2.token.*) and custom
#: ones (app.oauth2.as.token.*) alike: the part after "token.".
_OAUTH_EVENTS = {
    "grant.access_token": "grant",
    "grant.refresh_token": "grant",
    "grant.id_token": "grant",
    "revoke": "token.revoked",
    "detect_reuse": "token.reuse_detected",
}
_OAUTH_PREFIXES = ("app.oauth2.as.token.", "app.oauth2.token.")
#: Target types of the tokens a grant issues (lowercase, without "_"), and their token.type.
_ISSUED = {
    "accesstoken": "oauth_access",
    "refreshtoken": "oauth_refresh",
    "idtoken": "id_token",
}
#: A lifecycle action that failed: the token is as it was (a revoked event would mark it
#: revoked), so the event says the attempt failed.
_FAILED = {
    "token.created": "token.create_failed",
    "token.updated": "token.update_failed",
    "token.revoked": "token.revoke_failed",
}
#: outcome.result → token.outcome.
_OUTCOMES = {
    "SUCCESS": "success",
    "ALLOW": "success",
    "FAILURE": "failure",
    "DENY": "failure",
}


class Okta:
    """Okta System Log events (LogEvent objects)."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        entry = json_object(raw, NAME)
        event_type = entry.get("eventType")
        if not isinstance(event_type, str) or not event_type:
            raise SourceRecordError("okta record has no eventType: is it a System Log event?")
        targets = [t for t in entry.get("target") or () if isinstance(t, dict)]
        debug = as_object(as_object(entry.get("debugContext")).get("debugData"))
        attributes: dict[str, AttributeValue] = {}
        event = _token_event(event_type, targets, debug, entry, attributes)
        if event is None:
            return []
        uid = entry.get("uuid")
        time_ns = iso_to_ns(entry.get("published"), NAME, "published")
        actor = as_object(entry.get("actor"))
        client = as_object(entry.get("client"))
        outcome = as_object(entry.get("outcome"))
        attributes["log.record.uid"] = f"okta:{uid}" if uid else content_uid(NAME, entry)
        attributes["token.source"] = NAME
        attributes["okta.event_type"] = event_type
        put(attributes, "okta.actor.alternate_id", actor.get("alternateId"))
        put(attributes, "client.address", client.get("ipAddress"))
        put(
            attributes,
            "user_agent.original",
            as_object(client.get("userAgent")).get("rawUserAgent"),
        )
        put(attributes, "token.request.id", as_object(entry.get("transaction")).get("id"))
        result = _OUTCOMES.get(str(outcome.get("result")))
        if result is not None:
            attributes["token.outcome"] = result
            if result == "failure":
                put(attributes, "token.failure_reason", outcome.get("reason") or "unknown")
                event = _FAILED.get(event, event)
        attributes["okta.record"] = kept_record(entry, [])
        return [TokenRecord(event, time_ns, attributes)]


def _token_event(
    event_type: str,
    targets: list[dict[str, Any]],
    debug: dict[str, Any],
    entry: dict[str, Any],
    attributes: dict[str, AttributeValue],
) -> str | None:
    """The event's name, with the token's attributes put in ``attributes``; None when the
    event is about no token."""
    actor_id = as_object(entry.get("actor")).get("id")
    if event_type in _API_TOKEN_EVENTS:
        token = _target(targets, "token")
        if token is None or not token.get("id"):
            return None
        attributes["token.id"] = str(token["id"])
        attributes["token.type"] = "api_token"
        name = token.get("displayName")
        if name and name != "unknown":  # (what Okta writes when it has none)
            attributes["token.name"] = str(name)
        if event_type == "system.api_token.create":
            put(attributes, "user.id", actor_id)  # an API token acts as the admin who made it
        put(attributes, "token.actor.id", actor_id)
        return _API_TOKEN_EVENTS[event_type]
    for prefix in _OAUTH_PREFIXES:
        if event_type.startswith(prefix):
            kind = _OAUTH_EVENTS.get(event_type[len(prefix) :])
            if kind is None:
                return None
            return _oauth(kind, targets, debug, actor_id, attributes)
    api_token = as_object(as_object(entry.get("transaction")).get("detail")).get(
        "requestApiTokenId"
    )
    if api_token:  # any action taken with an API token
        attributes["token.id"] = str(api_token)
        attributes["token.type"] = "api_token"
        put(attributes, "user.id", actor_id)
        return "token.used"
    return None


def _oauth(
    kind: str,
    targets: list[dict[str, Any]],
    debug: dict[str, Any],
    actor_id: Any,
    attributes: dict[str, AttributeValue],
) -> str | None:
    token, token_type = None, ""
    for target in targets:
        issued = _ISSUED.get(str(target.get("type", "")).lower().replace("_", ""))
        if issued and target.get("id"):
            token, token_type = target, issued
            break
    client = next((t for t in targets if str(t.get("type", "")).endswith("ClientApp")), None)
    if client is not None:
        put(attributes, "okta.client_id", client.get("id"))
    put(attributes, "okta.grant_type", debug.get("grantType"))
    scopes = string_list(debug.get("grantedScopes") or debug.get("requestedScopes"))
    if scopes:
        attributes["token.scopes"] = scopes
    if token is None:
        if kind != "grant" or client is None or not client.get("id"):
            return None
        # A grant that issued nothing: the client's credential (or the refresh token it
        # presented, which Okta does not name) failed. The client is what is known.
        attributes["token.id"] = str(client["id"])
        attributes["token.type"] = "oauth_client"
        put(attributes, "user.id", actor_id)
        if debug.get("grantType") == "refresh_token":
            return "token.refresh_failed"
        return "token.auth_failed"
    attributes["token.id"] = str(token["id"])
    attributes["token.type"] = token_type
    detail = as_object(token.get("detailEntry"))
    put(attributes, "user.id", detail.get("subject") or actor_id)
    put(attributes, "token.expires_at", detail.get("expires"))
    return "token.created" if kind == "grant" else kind


def _target(targets: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    for target in targets:
        if str(target.get("type", "")).lower() == kind:
            return target
    return None
