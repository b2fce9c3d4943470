"""What the API gateways' access logs (Kong, nginx, Envoy) share: one request made with a
credential is one token event, a use, or a failure when the gateway answered 401 or 403; and
a credential a log carries itself is taken apart into the secret alone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenotel.sources.record import AttributeValue, TokenRecord

#: Request headers (lowercase) that carry a credential as their whole value.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "apikey", "x-api-key", "api-key", "x-auth-token"}
)
#: Query parameters that carry a credential (key-auth's default key name, OAuth's bearer).
SECRET_PARAMETERS = frozenset({"apikey", "api_key", "access_token"})


def credential(value: str, header: str = "") -> tuple[str, str]:
    """The secret in a credential header's (or parameter's) value and the token type it is:
    ``Bearer x`` → (x, bearer), ``Basic x`` → (x, basic), anything else → (itself, api_key)."""
    scheme, _, rest = value.partition(" ")
    lowered = scheme.lower()
    if rest and lowered in ("bearer", "basic", "token"):
        return rest.strip(), "bearer" if lowered != "basic" else "basic"
    if header in ("authorization", "proxy-authorization"):
        return value, "bearer"
    return value, "api_key"


def logged_values(entry: dict[str, Any]) -> dict[str, Any]:
    """The fields of a JSON access log entry that have a value: nginx and Envoy write "-" (or
    "") for a variable or operator without one (a header not sent)."""
    return {k: v for k, v in entry.items() if v not in ("", "-", None)}


def raw_authorization(
    value: str, attributes: dict[str, AttributeValue], secrets: list[str]
) -> None:
    """An Authorization header logged as it was sent (not recommended): the secret alone is
    ``token.value``, and the whole header is what the kept record hides."""
    secret, token_type = credential(value, "authorization")
    attributes["token.value"] = secret
    attributes["token.type"] = token_type
    secrets.append(value)


def query_secrets(
    pairs: Iterable[tuple[str, str]], attributes: dict[str, AttributeValue], secrets: list[str]
) -> None:
    """The credentials in a query string's (name, value) pairs: each one a secret to hide, the
    first one ``token.value`` (an API key) unless the request carries one already."""
    for name, value in pairs:
        if name.lower() in SECRET_PARAMETERS and value:
            secrets.append(value)
            if "token.value" not in attributes:
                attributes["token.value"] = value
                attributes.setdefault("token.type", "api_key")


def request_event(
    time_ns: int, attributes: dict[str, AttributeValue], status: Any
) -> list[TokenRecord]:
    """The token event of one request, whose attributes (the credential's and the request's)
    are given: none when no credential is named (token.id, token.value or token.hash).
    401: the credential failed; 403: it was refused what it asked; else it was used (what
    else failed is the request's, as its status says)."""
    if "token.id" not in attributes and "token.value" not in attributes:
        token_hash = attributes.get("token.hash")
        if not token_hash:
            return []
        attributes["token.id"] = token_hash  # a hash of the secret is its only name
    event = "token.used"
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, int) and not isinstance(status, bool) and status > 0:
        attributes["http.response.status_code"] = status
        if status == 401:
            event = "token.auth_failed"
            attributes["token.outcome"] = "failure"
            attributes["token.failure_reason"] = "unknown"
        elif status == 403:
            event = "token.access_denied"
            attributes["token.outcome"] = "failure"
            attributes["token.failure_reason"] = "permission_denied"
    return [TokenRecord(event, time_ns, attributes)]
