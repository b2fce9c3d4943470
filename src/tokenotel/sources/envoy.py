"""Envoy's JSON access logs (``json_format`` of a file or stdout access logger, with the command
operators docs/sources.md gives) as token events.

Envoy has no operator that hashes a header: the credential is named by a header an ext_authz
service or a Lua filter set after checking it (``%REQ(X-API-KEY-ID)%``), or by the JWT the
jwt_authn filter verified (its ``jti`` and ``sub`` from dynamic metadata). A logged
``%REQ(AUTHORIZATION)%`` is taken as the secret itself.
"""

from __future__ import annotations

from typing import Any

from tokenotel.errors import SourceRecordError
from tokenotel.sources.access_log import (
    logged_values,
    query_secrets,
    raw_authorization,
    request_event,
)
from tokenotel.sources.record import (
    AttributeValue,
    RawRecord,
    TokenRecord,
    content_uid,
    iso_to_ns,
    json_object,
    kept_record,
    put,
)

NAME = "envoy"


class Envoy:
    """Envoy JSON access log entries."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        entry = json_object(raw, NAME)
        values = logged_values(entry)
        if "start_time" not in values:
            raise SourceRecordError("envoy record has no start_time (%START_TIME%)")
        time_ns = iso_to_ns(values["start_time"], NAME, "start_time")
        request_id = values.get("request_id")
        attributes: dict[str, AttributeValue] = {
            "log.record.uid": f"envoy:{request_id}" if request_id else content_uid(NAME, entry),
            "token.source": NAME,
        }
        put(attributes, "token.id", values.get("api_key_id") or values.get("jwt_id"))
        put(attributes, "user.id", values.get("principal"))
        secrets: list[str] = []
        authorization = values.get("authorization")
        if isinstance(authorization, str):
            raw_authorization(authorization, attributes, secrets)
        elif "api_key_id" in values:
            attributes["token.type"] = "api_key"
        elif "jwt_id" in values:
            attributes["token.type"] = "jwt"
        put(attributes, "client.address", _address(values.get("downstream_remote_address")))
        put(attributes, "user_agent.original", values.get("user_agent"))
        put(attributes, "http.request.method", values.get("method"))
        path = values.get("path")
        if isinstance(path, str):
            path, _, query = path.partition("?")
            attributes["url.path"] = path
            if query:
                pairs = (pair.partition("=")[::2] for pair in query.split("&"))
                query_secrets(pairs, attributes, secrets)
        put(attributes, "token.request.id", request_id)
        put(attributes, "envoy.response_flags", values.get("response_flags"))
        put(attributes, "envoy.upstream_cluster", values.get("upstream_cluster"))
        attributes["envoy.record"] = kept_record(entry, secrets)
        return request_event(time_ns, attributes, values.get("response_code"))


def _address(value: Any) -> Any:
    """%DOWNSTREAM_REMOTE_ADDRESS% carries a port ("203.0.113.7:51234", "[2001:db8::1]:443");
    the _WITHOUT_PORT operator does not."""
    if not isinstance(value, str):
        return value
    if value.startswith("["):
        return value[1 : value.find("]")]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value
