"""Where the tests of the source mappings read their records: the vendors' own samples
(vendor_samples.py: outside the repository, docs/sources.md "Test data") and the project's own
fixtures (tests/sources/fixtures/<source>/, each field from the vendor's documented schema, as
SOURCES.md there says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tokenotel.sources import SOURCES
from tokenotel.sources.record import RawRecord

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_lines(source: str, name: str) -> list[str]:
    """The lines of one of the project's own fixture files."""
    return (FIXTURES / source / name).read_text(encoding="utf-8").splitlines()


def mapped(source: str, raw: RawRecord) -> list[tuple[str, int, dict[str, Any]]]:
    """What the source's mapping makes of ``raw``: each event's name, time and attributes,
    without the kept original record (``<source>.record``, checked on its own)."""
    result = []
    for record in SOURCES[source].records(raw):
        attributes = dict(record.attributes)
        kept = attributes.pop(f"{source}.record")
        assert isinstance(kept, str)
        orjson.loads(kept)  # compact JSON
        result.append((record.event_name, record.time_unix_nano, attributes))
    return result


def kept(source: str, raw: RawRecord) -> list[Any]:
    """The original records the events of ``raw`` keep, parsed."""
    return [
        orjson.loads(str(r.attributes[f"{source}.record"])) for r in SOURCES[source].records(raw)
    ]
