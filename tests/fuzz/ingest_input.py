"""One fuzz input through the service's ingest path: decompress, decode, map, hand the columns on.

A fuzz input is one header byte and a request body. The header picks the content type and the
Content-Encoding (``FORMATS``), so one harness and one corpus cover OTLP/protobuf and OTLP/JSON,
plain, gzip and deflate. ``run_one`` is the function the fuzzer calls and the tests replay: it
returns the mapped table or the ``TokenotelError`` the service would answer with; any other
exception escapes, and that is a finding.
"""

from __future__ import annotations

import gzip
import pickle
import re
import zlib

from tokenotel.errors import TokenotelError
from tokenotel.ingest.content_encoding import decompress
from tokenotel.mapping.columns import rows_to_arrow
from tokenotel.mapping.decode import JSON, PROTOBUF
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import Mapper
from tokenotel.mapping.workers import MappedTable, decode_and_map

#: (content type, Content-Encoding) by header byte, modulo their number.
FORMATS: tuple[tuple[str, str], ...] = tuple(
    (content_type, encoding)
    for content_type in (PROTOBUF, JSON)
    for encoding in ("", "gzip", "deflate")
)

#: The service's limit is 64 MiB. This one is large enough for a cost that grows faster than
#: the request to pass the fuzzer's timeout (a regular expression that is quadratic on some
#: text takes seconds at this size), and small enough that a plain large request does not: the
#: slowest, OTLP/JSON, decodes at about 0.3-1 us a byte (protobuf's JSON parser is Python).
MAX_REQUEST_BYTES = 256 * 1024

#: When every request arrives: fixed, so that an input maps to the same rows on every replay.
RECEIVED_NS = 1_750_000_000_000_000_000

FINGERPRINTER = Fingerprinter(b"k" * 32)
#: One mapper for every input, as a mapping worker keeps one for its life: what it remembers
#: between requests (clean texts, attribute effects) is part of what is fuzzed.
MAPPER = Mapper(FINGERPRINTER)

_SCHEMA = rows_to_arrow([]).schema
_FINGERPRINT_RE = re.compile(rf"hmac-sha256:{FINGERPRINTER.key_id}:[0-9a-f]{{64}}")


def input_format(data: bytes) -> tuple[str, str]:
    """The content type and Content-Encoding the header byte of ``data`` picks."""
    return FORMATS[data[0] % len(FORMATS)] if data else FORMATS[0]


def make_input(payload: bytes, content_type: str, encoding: str) -> bytes:
    """A fuzz input carrying ``payload`` (an uncompressed body) as ``content_type``, encoded."""
    return bytes([FORMATS.index((content_type, encoding))]) + compress(payload, encoding)


def compress(payload: bytes, encoding: str) -> bytes:
    """``payload`` with a Content-Encoding applied, byte for byte the same on every run."""
    if encoding == "gzip":
        return gzip.compress(payload, mtime=0)
    if encoding == "deflate":  # HTTP's "deflate" is the zlib format, not raw deflate
        return zlib.compress(payload)
    return payload


def run_one(data: bytes) -> MappedTable | TokenotelError:
    """Maps one fuzz input as the service does; returns the table or the error it answers with.

    The table and the error cross a pickle round trip, as they do between a mapping worker and
    the service (the table as an Arrow IPC stream). A result is also checked for what the store
    relies on: its schema, one message per rejected record, and fingerprints of the right form.
    """
    content_type, encoding = input_format(data)
    try:
        body = decompress(data[1:], encoding, MAX_REQUEST_BYTES)
        mapped = decode_and_map(MAPPER, body, content_type, RECEIVED_NS)
    except TokenotelError as e:
        error: TokenotelError = pickle.loads(pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL))
        return error
    mapped = pickle.loads(pickle.dumps(mapped, protocol=pickle.HIGHEST_PROTOCOL))
    if mapped.table.schema != _SCHEMA:
        raise AssertionError(f"the table has another schema than the store's:\n{mapped.table}")
    if len(mapped.errors) != mapped.rejected:
        raise AssertionError(f"{mapped.rejected} rejected records, {len(mapped.errors)} messages")
    for fingerprint in set(mapped.table.column("token_fingerprint").to_pylist()):
        if fingerprint and not _FINGERPRINT_RE.fullmatch(fingerprint):
            raise AssertionError(f"token_fingerprint {fingerprint!r} is not a fingerprint")
    return mapped
