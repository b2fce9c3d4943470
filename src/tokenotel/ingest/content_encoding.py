"""Undoes an HTTP request's Content-Encoding (gzip, deflate or none) within a size limit."""

from __future__ import annotations

import zlib

from tokenotel.errors import MalformedRequest, RequestTooLarge


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undoes Content-Encoding (gzip, deflate, none); at most ``limit`` bytes may come out."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise RequestTooLarge(_too_large(limit))
        return body
    if encoding not in ("gzip", "deflate"):
        raise MalformedRequest(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    data = bytearray()
    while True:  # a gzip body may be several members, one after the other
        inflater = zlib.decompressobj(wbits)
        try:
            data += inflater.decompress(body, limit + 1 - len(data))
        except zlib.error as e:
            raise MalformedRequest(f"the {encoding} body cannot be decompressed: {e}") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise RequestTooLarge(_too_large(limit))
        if not inflater.eof:  # a cut-off body must not pass for a shorter request
            raise MalformedRequest(f"the {encoding} body is truncated")
        body = inflater.unused_data
        if not body:
            return bytes(data)


def _too_large(limit: int) -> str:
    return f"the request is larger than {limit} bytes after decompression; send smaller batches"
