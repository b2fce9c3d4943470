"""Kong's log plugins (file-log, http-log, tcp-log …: one JSON object a request) as token
events.

The credential is ``authenticated_entity.id`` (the id of the key-auth, JWT, OAuth 2.0 …
credential that authenticated the request) and its consumer. Old Kong versions also logged the
API key itself (``authenticated_entity.key``), and any version logs the request's headers and
query string, where a key or bearer token may be: each such secret becomes ``token.value``
alone (fingerprinted), and ``[token.value]`` in the kept record.
"""

from __future__ import annotations

from tokenotel.errors import SourceRecordError
from tokenotel.sources.access_log import (
    SECRET_HEADERS,
    SECRET_PARAMETERS,
    credential,
    request_event,
)
from tokenotel.sources.record import (
    AttributeValue,
    RawRecord,
    TokenRecord,
    as_object,
    content_uid,
    epoch_ms_to_ns,
    json_object,
    kept_record,
    put,
)

NAME = "kong"


class Kong:
    """Kong log plugin entries."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        entry = json_object(raw, NAME)
        if "started_at" not in entry or not isinstance(entry.get("request"), dict):
            raise SourceRecordError(
                "kong record has no started_at or request: is it a Kong log plugin entry?"
            )
        time_ns = epoch_ms_to_ns(entry["started_at"], NAME, "started_at")
        request = entry["request"]
        entity = as_object(entry.get("authenticated_entity"))
        consumer = as_object(entry.get("consumer"))
        headers = as_object(request.get("headers"))
        query = as_object(request.get("querystring"))
        attributes: dict[str, AttributeValue] = {
            # Kong logs no id of its own for a request: the entry's content names it.
            "log.record.uid": content_uid(NAME, entry),
            "token.source": NAME,
        }
        put(attributes, "token.id", entity.get("id"))
        put(attributes, "user.id", consumer.get("username") or consumer.get("id"))
        if "user.id" not in attributes:
            put(attributes, "user.id", entity.get("consumer_id"))  # (old Kong versions)
        put(attributes, "kong.consumer.id", consumer.get("id"))

        # Secrets the entry carries: the key of old versions, then headers and query string.
        found: list[tuple[str, str]] = []  # (secret, token type)
        key = entity.get("key")
        if isinstance(key, str) and key:
            found.append((key, "api_key"))
        for name, value in headers.items():
            if name.lower() in SECRET_HEADERS and isinstance(value, str) and value:
                found.append(credential(value, name.lower()))
        for name, value in query.items():
            if name.lower() in SECRET_PARAMETERS and isinstance(value, str) and value:
                found.append((value, "api_key"))
        if found:
            attributes["token.value"], attributes["token.type"] = found[0]
        elif "token.id" in attributes:
            attributes["token.type"] = "kong_credential"

        put(attributes, "client.address", entry.get("client_ip"))
        user_agent = headers.get("user-agent")
        put(attributes, "user_agent.original", user_agent if isinstance(user_agent, str) else "")
        put(attributes, "http.request.method", request.get("method"))
        uri = request.get("uri")
        if isinstance(uri, str):
            put(attributes, "url.path", uri.split("?", 1)[0])
        put(attributes, "token.request.id", request.get("id") or headers.get("x-kong-request-id"))
        put(attributes, "token.tenant", entry.get("workspace_name"))
        put(attributes, "kong.service", as_object(entry.get("service")).get("name"))
        put(attributes, "kong.route", as_object(entry.get("route")).get("name"))
        # (Each secret replaced wherever it is: a key in the query string is in the URI too.)
        attributes["kong.record"] = kept_record(entry, [secret for secret, _ in found])
        return request_event(time_ns, attributes, as_object(entry.get("response")).get("status"))
