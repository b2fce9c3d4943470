"""nginx access logs as token events: the JSON ``log_format`` docs/sources.md gives (escape=json,
with the key id an ``auth_request`` subrequest returned, or the credential's hash), and the
default ``combined`` format, where only HTTP basic authentication names a credential
(``$remote_user``) and a key in the query string is the secret itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

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
    text_of,
)

NAME = "nginx"

# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent" (nginx's predefined "combined" format).
_COMBINED = re.compile(
    r"(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) \S+ '
    r'"(?:[^"\\]|\\.)*" "(?P<user_agent>(?:[^"\\]|\\.)*)"'
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


class Nginx:
    """nginx access log lines: tokenotel's JSON log_format, or the combined format."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        if isinstance(raw, dict) or (isinstance(raw, str | bytes) and raw[:1] in ("{", b"{")):
            return _json(json_object(raw, NAME))
        return _combined(text_of(raw, NAME))


def _json(entry: dict[str, Any]) -> list[TokenRecord]:
    """A line of the JSON log_format (docs/sources.md, "nginx"); "-" and "" are unset."""
    values = logged_values(entry)
    if "msec" in values:  # (to the millisecond: $time_iso8601 has whole seconds)
        time_ns = _msec(values["msec"])
    elif "time" in values:
        time_ns = iso_to_ns(values["time"], NAME, "time")
    else:
        raise SourceRecordError("nginx record has no time (msec or time)")
    request_id = values.get("request_id")
    attributes: dict[str, AttributeValue] = {
        "log.record.uid": f"nginx:{request_id}" if request_id else content_uid(NAME, entry),
        "token.source": NAME,
    }
    put(attributes, "token.id", values.get("key_id"))
    put(attributes, "token.hash", values.get("token_hash"))
    put(attributes, "user.id", values.get("principal") or values.get("remote_user"))
    secrets: list[str] = []
    authorization = values.get("authorization")
    if isinstance(authorization, str):
        raw_authorization(authorization, attributes, secrets)
    elif "token.id" in attributes or "token.hash" in attributes:
        attributes["token.type"] = str(values.get("token_type") or "api_key")
    elif "user.id" in attributes:  # basic authentication: the user is the credential
        attributes["token.id"] = f"nginx:basic:{attributes['user.id']}"
        attributes["token.type"] = "basic"
    _request(attributes, values, secrets)
    attributes["nginx.record"] = kept_record(entry, secrets)
    return request_event(time_ns, attributes, values.get("status"))


def _combined(line: str) -> list[TokenRecord]:
    match = _COMBINED.match(line)
    if match is None:
        raise SourceRecordError("nginx line is neither JSON nor in the combined format")
    time_ns = _time_local(match["time_local"])
    method, _, rest = match["request"].partition(" ")
    uri = rest.rsplit(" ", 1)[0] if " " in rest else rest
    values = {
        "remote_addr": match["remote_addr"],
        "request_method": method,
        "request_uri": uri,
        "http_user_agent": match["user_agent"],
    }
    values = {k: v for k, v in values.items() if v not in ("", "-")}
    attributes: dict[str, AttributeValue] = {
        "log.record.uid": content_uid(NAME, line),
        "token.source": NAME,
    }
    user = match["remote_user"]
    if user != "-":
        attributes["token.id"] = f"nginx:basic:{user}"
        attributes["token.type"] = "basic"
        attributes["user.id"] = user
    secrets: list[str] = []
    _request(attributes, values, secrets)
    if "token.value" not in attributes and "token.id" not in attributes:
        return []  # no credential named: not a token event
    attributes["nginx.record"] = kept_record(line, secrets)  # (a JSON string: the line)
    return request_event(time_ns, attributes, int(match["status"]))


def _request(
    attributes: dict[str, AttributeValue], values: dict[str, Any], secrets: list[str]
) -> None:
    """The request's fields; a credential in its query string is taken as the secret."""
    put(attributes, "client.address", values.get("remote_addr"))
    put(attributes, "user_agent.original", values.get("http_user_agent"))
    put(attributes, "http.request.method", values.get("request_method"))
    uri = values.get("request_uri")
    if isinstance(uri, str):
        path, _, query = uri.partition("?")
        attributes["url.path"] = path
        query_secrets(parse_qsl(query), attributes, secrets)
    put(attributes, "token.request.id", values.get("request_id"))


def _msec(value: Any) -> int:
    """nginx's $msec ("1714644000.123", seconds with milliseconds) as ns, without the
    rounding of a float."""
    seconds, _, fraction = str(value).partition(".")
    if not seconds.isdigit() or not (fraction.isdigit() or fraction == ""):
        raise SourceRecordError("nginx record has no valid time in msec")
    return int(seconds) * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))


def _time_local(text: str) -> int:
    """nginx's $time_local ("02/May/2024:10:00:00 +0000") as ns since the epoch."""
    try:
        day, month, rest = text.split("/", 2)
        year, clock = rest[:4], rest[5:13]
        hour, minute, second = (int(p) for p in clock.split(":"))
        offset = rest[14:]
        moment = datetime(int(year), _MONTHS[month], int(day), hour, minute, second, tzinfo=UTC)
        sign = -1 if offset[0] == "-" else 1
        shift = sign * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
    except (ValueError, KeyError, IndexError):
        raise SourceRecordError("nginx line has no valid time in $time_local") from None
    return (int(moment.timestamp()) - shift) * 1_000_000_000
