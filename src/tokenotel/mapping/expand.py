"""Vendors' raw records in OTLP: a log record with the attribute ``tokenotel.source`` carries
one record of that source (a Vault audit entry, a CloudTrail file, an access-log line …) as its
body, and stands for the token events the source's mapping finds in it.

The collector sends such records live (collector-config/sources/), ``tokenotel import`` builds
the same ones from files: both reach the mapper, which expands each here into the
``TokenRecord``s of ``SOURCES[name].records(body)`` and maps those like records an SDK sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from tokenotel.errors import SourceRecordError
from tokenotel.sources import SOURCES, RawRecord, Source

#: The attribute that names a raw record's source.
SOURCE_ATTRIBUTE = "tokenotel.source"
#: How a KeyValue with that key starts in the canonical encoding (key first: field 1, length 16).
SOURCE_ATTRIBUTE_PREFIX = b"\x0a\x10" + SOURCE_ATTRIBUTE.encode()

#: Deliveries that hold many records in one document, and where: a CloudTrail log file
#: (``{"Records": [...]}``, one line for a whole file) and an Okta event hook's request
#: (``{"data": {"events": [...]}}``). Each record in them is mapped on its own.
_ENVELOPES: dict[str, tuple[str, ...]] = {
    "cloudtrail": ("Records",),
    "okta": ("data", "events"),
}
_ENVELOPE_STARTS = {name: b'{"' + path[0].encode() + b'"' for name, path in _ENVELOPES.items()}


def known_sources() -> str:
    return ", ".join(sorted(SOURCES))


def source_of(name: str) -> Source:
    """The mapping of source ``name``; raises SourceRecordError when there is none."""
    source = SOURCES.get(name)
    if source is None:
        raise SourceRecordError(f"unknown tokenotel.source {name[:40]!r}: one of {known_sources()}")
    return source


def units(name: str, body: Any) -> list[RawRecord]:
    """The raw records in one log record's body (text, bytes or a map) of source ``name``:
    the records of an envelope, else the body itself. Raises SourceRecordError when the body
    cannot be a record."""
    if body is None or body == "":
        raise SourceRecordError(f"{name} record is empty (the log record has no body)")
    if not isinstance(body, str | bytes | Mapping):
        raise SourceRecordError(
            f"{name} record must be a text or a map body, not a {type(body).__name__}"
        )
    return _units(name, body)


def _units(name: str, body: RawRecord) -> list[RawRecord]:
    """The records of a delivery: those of an envelope, else the body itself."""
    path = _ENVELOPES.get(name)
    if path is None:
        return [body]
    document: Any = body
    if not isinstance(body, Mapping):
        data = body.encode() if isinstance(body, str) else body
        if not data.lstrip().startswith(_ENVELOPE_STARTS[name]):
            return [body]  # one record of its own: the mapping reads it
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise SourceRecordError(
                f"{name} record is not JSON ({e.msg} at character {e.pos})"
            ) from None
    items: Any = document
    for key in path:
        items = items.get(key) if isinstance(items, Mapping) else None
    if items is None:
        return [document]
    if not isinstance(items, list):
        raise SourceRecordError(f"{name} document's {'.'.join(path)} is not a list")
    return items


def expanded_id(request_key: bytes, index: int, sub: int) -> int:
    """The event id of the ``sub``-th token event of the ``index``-th record of a request, for
    an event whose mapping gave no ``log.record.uid`` (the mappings always give one)."""
    message = index.to_bytes(4, "little") + sub.to_bytes(4, "little")
    digest = hashlib.blake2b(message, digest_size=8, key=request_key, person=b"source record")
    return int.from_bytes(digest.digest(), "little")
