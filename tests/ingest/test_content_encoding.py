"""HTTP Content-Encoding is undone within the size limit: gzip (several members too), deflate."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tokenotel.errors import MalformedRequest, RequestTooLarge
from tokenotel.ingest.content_encoding import decompress

PAYLOAD = b"x" * 1000


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("", PAYLOAD),
        ("identity", PAYLOAD),
        ("gzip", gzip.compress(PAYLOAD)),
        ("GZIP ", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
    ],
)
def test_content_encodings_are_undone(encoding: str, body: bytes) -> None:
    assert decompress(body, encoding, limit=1000) == PAYLOAD


def test_the_limit_applies_after_decompression() -> None:
    bomb = gzip.compress(b"\0" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(RequestTooLarge, match="larger than 65536 bytes after decompression"):
        decompress(bomb, "gzip", limit=65536)
    assert len(decompress(gzip.compress(b"\0" * 65536), "gzip", limit=65536)) == 65536
    with pytest.raises(RequestTooLarge):
        decompress(gzip.compress(b"\0" * 65537), "gzip", limit=65536)


def test_the_limit_applies_to_uncompressed_bodies() -> None:
    assert decompress(b"a" * 100, "", limit=100) == b"a" * 100
    with pytest.raises(RequestTooLarge):
        decompress(b"a" * 101, "", limit=100)


def test_concatenated_gzip_members_are_all_read() -> None:
    body = gzip.compress(b"first,") + gzip.compress(b"second")
    assert decompress(body, "gzip", limit=1000) == b"first,second"
    with pytest.raises(RequestTooLarge):
        decompress(body, "gzip", limit=11)


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("gzip", gzip.compress(PAYLOAD)[:-8], "truncated"),
        ("gzip", gzip.compress(PAYLOAD)[:20], "truncated"),
        ("deflate", zlib.compress(PAYLOAD)[:-4], "truncated"),
        ("gzip", gzip.compress(PAYLOAD) + b"trailing garbage", "cannot be decompressed"),
        ("gzip", b"not gzip at all", "cannot be decompressed"),
        ("br", b"...", "not supported"),
        ("zstd", b"...", "not supported"),
    ],
)
def test_bad_or_unknown_encodings_are_permanent_errors(
    encoding: str, body: bytes, message: str
) -> None:
    with pytest.raises(MalformedRequest, match=message):
        decompress(body, encoding, limit=1000)
