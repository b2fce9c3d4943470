"""What every source mapping hands on: token events as an OpenTelemetry SDK would emit them
(``TokenRecord``), the ``Source`` protocol, and the small readers the mappings share (JSON in and
out, times, event ids of records that have none)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from tokenotel.errors import SourceRecordError

#: An attribute value, as an SDK would set it: text, a number, a flag, or a list of texts.
AttributeValue = str | bool | int | float | list[str]
#: One source record as it arrives: a JSON line or an access-log line (text or bytes), or a
#: JSON object already parsed (a collector that parsed the line, a CloudTrail file's object).
RawRecord = str | bytes | Mapping[str, Any]

#: What stands in a kept original record (``<source>.record``) where a raw secret was.
REDACTED = "[token.value]"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One token event: its name (``token.used`` …), when it happened (ns since the epoch), and
    its attributes in the README's vocabulary. Besides those: ``log.record.uid`` (the source's own
    unique event id, ``<source>:<id>``), ``token.source``, and ``<source>.record``, the whole
    original record as compact JSON with raw secrets replaced by ``[token.value]``. A raw
    secret is only ever in ``token.value``."""

    event_name: str
    time_unix_nano: int
    attributes: dict[str, AttributeValue]


class Source(Protocol):
    """One vendor's records mapped onto token events."""

    name: str

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        """The token events in one raw record: none when it is not a token event; raises
        ``SourceRecordError`` (saying what is wrong, never quoting a secret) when it is
        malformed."""
        ...


# -- JSON ------------------------------------------------------------------------------------


def json_object(raw: RawRecord, source: str) -> dict[str, Any]:
    """A record that is one JSON object: as given when already parsed, else parsed from its
    text. Raises SourceRecordError when it is not a JSON object."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise SourceRecordError(f"{source} record is not JSON ({_json_problem(e)})") from None
    if not isinstance(value, dict):
        raise SourceRecordError(
            f"{source} record is JSON but not an object (a {type(value).__name__})"
        )
    return value


def _json_problem(error: orjson.JSONDecodeError) -> str:
    """Where the JSON broke, without quoting the text (it may hold a secret)."""
    return f"{error.msg} at character {error.pos}"


def text_of(raw: RawRecord, source: str) -> str:
    """A record that is one line of text (an access log), without its line end."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as e:
            raise SourceRecordError(f"{source} line is not UTF-8 (byte {e.start})") from None
    if not isinstance(raw, str):
        raise SourceRecordError(f"{source} record must be a line of text, not a JSON object")
    return raw.rstrip("\r\n")


def compact_json(value: Any) -> str:
    """``value`` as compact JSON (the form ``<source>.record`` keeps)."""
    return orjson.dumps(value).decode()


def kept_record(value: Any, secrets: list[str]) -> str:
    """The original record as kept (``<source>.record``): compact JSON, each raw secret in it
    replaced by ``[token.value]``."""
    text = compact_json(value)
    for secret in secrets:
        text = text.replace(compact_json(secret)[1:-1], REDACTED)
    return text


def content_uid(source: str, value: Any) -> str:
    """The event id of a record that has none of its own: a digest of its content (a text line
    as it is; a JSON object with its keys sorted, so the line and the parsed object agree)."""
    data = value.encode() if isinstance(value, str) else orjson.dumps(value, option=_SORTED)
    return f"{source}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"


_SORTED = orjson.OPT_SORT_KEYS


# -- fields ----------------------------------------------------------------------------------


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def text_field(value: Any) -> str:
    """A field's value as text: "" for null; numbers as written."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return compact_json(value)


def put(attributes: dict[str, AttributeValue], key: str, value: Any) -> None:
    """Sets ``attributes[key]`` to ``value`` as text, unless the source gave none (null or
    empty)."""
    if value is not None and value != "":
        attributes[key] = value if type(value) is str else text_field(value)


def string_list(value: Any) -> list[str]:
    """A list of texts from a JSON array (nulls and empty texts left out), or from one text
    separated by spaces or commas."""
    if isinstance(value, list):
        return [text_field(v) for v in value if v is not None and v != ""]
    if isinstance(value, str):
        return value.replace(",", " ").split()
    return []


# -- times -----------------------------------------------------------------------------------


def iso_to_ns(text: Any, source: str, field: str) -> int:
    """An ISO 8601 / RFC 3339 time (any number of fractional digits; ``Z`` or an offset; no
    offset is UTC) as ns since the epoch. Raises SourceRecordError naming ``field``."""
    if not isinstance(text, str) or len(text) < 19:
        raise SourceRecordError(f"{source} record has no valid time in {field}")
    # fromisoformat reads at most microseconds: the fraction is read here, to the nanosecond.
    fraction_ns = 0
    head = text
    if len(text) > 19 and text[19] == ".":
        end = len(text) - len(text[20:].lstrip(_ASCII_DIGITS))
        while end < len(text) and text[end].isdigit():  # (other scripts' digits: int reads them)
            end += 1
        digits = text[20:end]
        if not digits:
            raise SourceRecordError(f"{source} record has no valid time in {field}")
        fraction_ns = int(digits[:9].ljust(9, "0"))
        head = text[:19] + text[end:]
    seconds = _SECONDS.get(head)
    if seconds is None:
        seconds = _seconds(head, source, field)
        if len(_SECONDS) >= _SECONDS_REMEMBERED:
            _SECONDS.clear()
        _SECONDS[head] = seconds
    return seconds * 1_000_000_000 + fraction_ns


def _seconds(head: str, source: str, field: str) -> int:
    """``iso_to_ns`` of a time without its fraction, in seconds."""
    if head.endswith(("Z", "z")):
        head = head[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(head)
    except ValueError:
        raise SourceRecordError(f"{source} record has no valid time in {field}") from None
    if moment.tzinfo is None:
        return int((moment - _EPOCH_NAIVE).total_seconds())
    return int(moment.timestamp())


_EPOCH_NAIVE = datetime(1970, 1, 1)
_ASCII_DIGITS = "0123456789"
#: Seconds of the times read lately: a log's records come many to a second, and reading a time
#: (datetime.fromisoformat) cost a tenth of mapping a Vault entry.
_SECONDS: dict[str, int] = {}
_SECONDS_REMEMBERED = 4096


def epoch_ms_to_ns(value: Any, source: str, field: str) -> int:
    """Epoch milliseconds (a JSON number) as ns. Raises SourceRecordError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceRecordError(f"{source} record has no valid time in {field}")
    return int(value) * 1_000_000
