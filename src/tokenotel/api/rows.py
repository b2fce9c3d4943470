"""The query API's events and tokens as ClickHouse serializes them: the store writes the rows of a
search, a tail read or an inventory page as tokenotel.v1 messages (its ProtobufList format), so
no row passes through Python on its way to a client. The columns are named after the message's
fields; the schema ClickHouse is given is written from the message's own descriptor."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from tokenotel.api.messages import MS_TIMES
from tokenotel.mapping.wire import read_varint
from tokenotel.query.readable import IP_TEXT_SQL
from tokenotel.query.search import (
    Committed,
    Cursor,
    EventFilter,
    committed_query,
    committed_stamps,
    search_query,
)
from tokenotel.query.tokens import TokenFilter, read_tokens
from tokenotel.store.client import ProtobufSchema, Store
from tokenotel.v1 import audit_pb2

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_BOOL: "bool",
}


def schema_of(message: Any) -> ProtobufSchema:
    """A proto3 schema with ``message`` alone, its times as a Timestamp of its own (the same on
    the wire as google.protobuf.Timestamp, which ClickHouse cannot import)."""
    lines = ['syntax = "proto3";', "message Timestamp { int64 seconds = 1; int32 nanos = 2; }"]
    lines.append(f"message {message.name} {{")
    for field in message.fields:
        lines.append(f"  {_field_type(field)} {field.name} = {field.number};")
    lines.append("}")
    return ProtobufSchema("\n".join(lines) + "\n", message.name)


def _field_type(field: FieldDescriptor) -> str:
    kind = field.message_type
    if kind is Timestamp.DESCRIPTOR:
        return "Timestamp"
    if kind is not None and kind.GetOptions().map_entry:
        key, value = (_field_type(kind.fields_by_name[name]) for name in ("key", "value"))
        return f"map<{key}, {value}>"
    if kind is not None:
        raise ValueError(f"{field.full_name}: only times and maps are read as messages")
    name = _SCALARS[field.type]
    return f"repeated {name}" if field.is_repeated else name


def columns_of(message: Any, sources: dict[str, str]) -> str:
    """SELECT expressions named after ``message``'s fields: each field's column, or its
    expression in ``sources``; a time (a DateTime64) as its seconds and nanoseconds, and as no
    field at all when NULL. Named in capitals: ClickHouse matches names to fields whatever
    their case, and an alias named as a column would stand for it in the WHERE clause. A time
    kept to the millisecond (an expiry: any year to 2299) is read in milliseconds: in
    nanoseconds, one after April 2262 does not fit in an Int64."""
    columns = []
    for field in message.fields:
        source = sources.get(field.name, field.name)
        if field.message_type is Timestamp.DESCRIPTOR:
            unit, per_s = ("Milli", 1000) if field.name in MS_TIMES else ("Nano", 1000000000)
            ticks = f"toUnixTimestamp64{unit}({source})"
            columns.append(f"intDiv({ticks}, {per_s}) AS `{field.name}.seconds`")
            nanos = f"{ticks} % {per_s} * {1000000000 // per_s}"
            columns.append(f"toInt32({nanos}) AS `{field.name}.nanos`")
        else:
            columns.append(f"{source} AS {field.name.upper()}")
    return ",\n    ".join(columns)


EVENT_SCHEMA = schema_of(audit_pb2.Event.DESCRIPTOR)
EVENT_FIELDS = columns_of(
    audit_pb2.Event.DESCRIPTOR,
    {"time": "event_time", "client_ip": IP_TEXT_SQL.format("client_ip")},
)
TOKEN_SCHEMA = schema_of(audit_pb2.Token.DESCRIPTOR)
TOKEN_FIELDS = columns_of(audit_pb2.Token.DESCRIPTOR, {"last_ip": IP_TEXT_SQL.format("last_ip")})


def search_events(
    store: Store,
    event_filter: EventFilter,
    *,
    limit: int,
    offset: int,
    up_to_stamp: int,
    settings: dict[str, Any],
) -> audit_pb2.SearchEventsResponse:
    """``search``'s events as the answer's ``events``."""
    sql, params = search_query(event_filter, EVENT_FIELDS, limit, offset, up_to_stamp)
    body = store.query_protobuf(sql, params, EVENT_SCHEMA, settings=settings)
    return audit_pb2.SearchEventsResponse.FromString(body)


def committed_events(
    store: Store, event_filter: EventFilter, after: Cursor, up_to_stamp: int, *, limit: int
) -> tuple[Committed, bytes]:
    """``committed``'s read: its ``events`` are where each event ends in the serialized
    ``events`` of a TailEventsResponse, which comes beside it."""
    stamps = committed_stamps(store, event_filter, after, up_to_stamp, limit=limit)
    if not stamps:
        return Committed([], [], after, up_to_stamp, complete=True), b""
    sql, params = committed_query(event_filter, EVENT_FIELDS, after, up_to_stamp, limit)
    body = store.query_protobuf(sql, params, EVENT_SCHEMA)
    ends = _ends(body)
    if len(ends) != len(stamps):
        raise RuntimeError(f"read {len(ends)} events and {len(stamps)} stamps of them")
    return Committed(ends, stamps, after, up_to_stamp, complete=len(stamps) < limit), body


def _ends(body: bytes) -> list[int]:
    """Where each field in a serialized message ends: each is field 1, length-delimited (a tag
    of one byte, the length as a varint, the bytes)."""
    ends, at = [], 0
    while at < len(body):
        length, at = read_varint(body, at + 1)  # after the tag
        at += length
        ends.append(at)
    return ends


def token_page(
    store: Store,
    token_filter: TokenFilter,
    *,
    limit: int,
    after_key: str,
    settings: dict[str, Any],
) -> list[audit_pb2.Token]:
    """``list_tokens``'s tokens as messages."""

    def read(sql: str, params: dict[str, Any]) -> list[audit_pb2.Token]:
        body = store.query_protobuf(sql, params, TOKEN_SCHEMA, settings=settings)
        return list(audit_pb2.ListTokensResponse.FromString(body).tokens)

    return read_tokens(
        store, token_filter, TOKEN_FIELDS, read, limit=limit, after_key=after_key, settings=settings
    )
