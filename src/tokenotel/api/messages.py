"""The query layer's plain values as API messages and back, field by field, so that a reading
command prints the same through the service as from the store itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tokenotel.query.readable import format_ms, format_ns

M = TypeVar("M", bound=Message)
#: Times the store keeps to the millisecond; the others to the nanosecond.
MS_TIMES = frozenset({"expires_at", "issued_at"})
_TIMESTAMP = Timestamp.DESCRIPTOR


def to_message(values: dict[str, Any], message: M) -> M:
    """``message`` with every field that ``values`` gives (times as RFC 3339 text)."""
    for field in message.DESCRIPTOR.fields:
        value = values.get(field.name)
        if value is None:
            continue
        target = getattr(message, field.name)
        if field.message_type is _TIMESTAMP:
            target.FromNanoseconds(ns_of(value))
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.message_type is not None and _repeated(field):
            for item in value:
                to_message(item, target.add())
        elif field.message_type is not None:
            to_message(value, target)
        elif _repeated(field):
            target.extend(value)
        else:
            setattr(message, field.name, value)
    return message


def from_message(message: Message) -> dict[str, Any]:
    """The plain values of ``message``, as the query layer gives them (an unset time: None)."""
    values: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is _TIMESTAMP:
            if not message.HasField(field.name):
                values[field.name] = None
            else:
                ns = value.ToNanoseconds()
                values[field.name] = (
                    format_ms(ns // 1_000_000) if field.name in MS_TIMES else format_ns(ns)
                )
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            values[field.name] = dict(sorted(value.items()))
        elif field.message_type is not None and _repeated(field):
            values[field.name] = [from_message(item) for item in value]
        elif field.message_type is not None:
            values[field.name] = from_message(value) if message.HasField(field.name) else None
        elif _repeated(field):
            values[field.name] = list(value)
        else:
            values[field.name] = value
    return values


def ns_of(text: str) -> int:
    """RFC 3339 UTC text (``...Z``, with up to nine digits of fraction) as ns since the epoch."""
    base, _, fraction = text.rstrip("Z").partition(".")
    seconds = int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    message = Timestamp()
    message.FromDatetime(moment.astimezone(UTC))
    return message


def moment(message: Timestamp, present: bool) -> datetime | None:
    """A request's time (``present``: whether the field was set)."""
    return message.ToDatetime(UTC) if present else None


def duration(delta: timedelta | None) -> Duration | None:
    if delta is None:
        return None
    message = Duration()
    message.FromTimedelta(delta)
    return message


def _repeated(field: Any) -> bool:
    return bool(field.is_repeated)
