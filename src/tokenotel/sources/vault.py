"""HashiCorp Vault's audit device (JSON lines, file or socket) as token events.

Vault writes two entries for each request, joined by ``request.id``: the request, and the
response, which repeats the request and its ``auth`` and adds what came of it (``error``,
``response.auth`` of an issued token). Only the response is mapped: it says everything the
request does and the outcome too. A request entry gives no event (docs/sources.md).
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

NAME = "vault"
_HMAC = "hmac-sha256:"

#: The token auth method's endpoints that change a token's life; every other path is a use.
_CREATE = ("auth/token/create",)  # create, create-orphan, create/:role_name
_RENEW = ("auth/token/renew",)  # renew, renew-self, renew-accessor
_REVOKE = ("auth/token/revoke",)  # revoke, revoke-self, revoke-accessor, revoke-orphan


class Vault:
    """Vault audit entries (``type`` request | response) as token events."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        entry = json_object(raw, NAME)
        kind = entry.get("type")
        if kind == "request":
            return []  # its response says the same and more
        if kind != "response":
            raise SourceRecordError(
                "vault record has no type request or response: is it a Vault audit entry?"
            )
        request = entry.get("request")
        if not isinstance(request, dict) or not request.get("id"):
            raise SourceRecordError("vault response has no request.id")
        response = entry.get("response")
        if response is None:
            # Vault's audit page shows one response under the key " response" (a leading
            # space, a typo of the page): read it as the response it is.
            response = entry.get(" response")
        time_ns = iso_to_ns(entry.get("time"), NAME, "time")
        return _map(entry, request, as_object(response), as_object(entry.get("auth")), time_ns)


def _map(
    entry: dict[str, Any],
    request: dict[str, Any],
    response: dict[str, Any],
    auth: dict[str, Any],
    time_ns: int,
) -> list[TokenRecord]:
    path = request.get("path") or ""
    error = entry.get("error")
    issued = as_object(response.get("auth"))
    attributes: dict[str, AttributeValue] = {
        "log.record.uid": f"vault:{request['id']}:response",
        "token.source": NAME,
        "token.request.id": request["id"],
    }
    put(attributes, "client.address", request.get("remote_address"))
    put(attributes, "url.path", path)
    put(attributes, "vault.operation", request.get("operation"))
    namespace = request.get("namespace")
    if isinstance(namespace, dict):
        put(attributes, "token.tenant", namespace.get("path") or namespace.get("id"))
    put(attributes, "user_agent.original", _header(request, "user-agent"))
    requester = auth.get("entity_id") or auth.get("display_name")
    secrets: list[str] = []

    if error:
        # A failed request is about the token that made it.
        attributes["vault.error"] = str(error)
        event = _failure(attributes, auth, request, str(error), secrets)
        if event is None:
            return []
    elif path.startswith(_CREATE) or (issued.get("accessor") and not path.startswith(_RENEW)):
        # A token issued: by auth/token/create, or by a login to any auth method.
        event = "token.created"
        if not _describe(attributes, issued, secrets):
            return []
        put(attributes, "token.actor.id", requester or issued.get("entity_id"))
        attributes["token.issued_at"] = time_ns // 1_000_000
        _expiry(attributes, issued, time_ns)
    elif path.startswith(_RENEW):
        event = "token.refreshed"
        target = issued if issued.get("accessor") else {}
        if not target:
            data = as_object(request.get("data"))
            target = {"accessor": data.get("accessor")} if path.endswith("-accessor") else auth
        if not _describe(attributes, target, secrets):
            return []
        put(attributes, "token.actor.id", requester)
        _expiry(attributes, issued, time_ns)
    elif path.startswith(_REVOKE):
        event = "token.revoked"
        data = as_object(request.get("data"))
        if path.endswith("-self"):
            target = auth
        elif path.endswith("-accessor"):
            target = {"accessor": data.get("accessor")}
        else:  # revoke, revoke-orphan: the token itself (HMAC'd) names it
            target = {"client_token": data.get("token")}
        if not _describe(attributes, target, secrets):
            return []
        put(attributes, "token.actor.id", requester)
    else:
        event = "token.used"
        if not _describe(attributes, auth, secrets):
            return []
        put(attributes, "token.issued_at", auth.get("token_issue_time"))
    attributes["vault.record"] = kept_record(entry, secrets)
    return [TokenRecord(event, time_ns, attributes)]


def _failure(
    attributes: dict[str, AttributeValue],
    auth: dict[str, Any],
    request: dict[str, Any],
    error: str,
    secrets: list[str],
) -> str | None:
    """The event of a request that failed with ``error``, about the token that made it (None
    when it carried none)."""
    token = auth if auth.get("accessor") else {"client_token": request.get("client_token")}
    if not _describe(attributes, token, secrets):
        return None
    attributes["token.outcome"] = "failure"
    lowered = error.lower()
    if "invalid token" in lowered or ("permission denied" in lowered and not auth.get("accessor")):
        # Vault answers a token it does not know (never issued, expired or revoked) with
        # "permission denied" too; then no accessor is resolved.
        attributes["token.failure_reason"] = "unknown"
        return "token.auth_failed"
    if "permission denied" in lowered:
        attributes["token.failure_reason"] = "permission_denied"
        return "token.access_denied"
    attributes["token.failure_reason"] = "error"
    return "token.used"


def _describe(
    attributes: dict[str, AttributeValue], auth: dict[str, Any], secrets: list[str]
) -> bool:
    """Puts the token an ``auth`` object describes into ``attributes``: its id (the accessor,
    HMAC'd unless hmac_accessor=false; else the HMAC'd token), hash, owner, name, type and
    policies. False when it names no token."""
    accessor = auth.get("accessor")
    client_token = auth.get("client_token")
    if isinstance(client_token, str) and client_token:
        if client_token.startswith(_HMAC):
            attributes["token.hash"] = client_token
        else:  # the audit device has log_raw on: the token itself
            attributes["token.value"] = client_token
            secrets.append(client_token)
    if isinstance(accessor, str) and accessor:
        attributes["token.id"] = accessor
    elif isinstance(client_token, str) and client_token.startswith(_HMAC):
        attributes["token.id"] = client_token
    elif "token.value" not in attributes:
        return False
    put(attributes, "user.id", auth.get("entity_id") or auth.get("display_name"))
    put(attributes, "token.name", auth.get("display_name"))
    token_type = auth.get("token_type")
    if token_type:
        attributes["token.type"] = f"vault_{token_type}"
    policies = string_list(auth.get("token_policies") or auth.get("policies"))
    if policies:
        attributes["token.scopes"] = policies
    return True


def _expiry(attributes: dict[str, AttributeValue], issued: dict[str, Any], time_ns: int) -> None:
    ttl = issued.get("token_ttl")
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:  # 0: never expires
        attributes["token.expires_at"] = time_ns // 1_000_000 + ttl * 1000


def _header(request: dict[str, Any], name: str) -> Any:
    """An audited request header (sys/config/auditing/request-headers), if Vault logs it."""
    headers = request.get("headers")
    if isinstance(headers, dict):
        value = headers.get(name)
        if isinstance(value, list) and value:
            return value[0]
    return None
