"""Undoes an HTTP request's Content-Encoding (gzip, deflate or none) within a size limit."""

from __future__ import annotations

import zlib

from tokenotel.errors import MalformedRequest, RequestTooLarge

#: Input is handed to the inflater this much at a time: what a finished gzip member gives
#: back (the bytes after it) is never more, so many members cost time in proportion to the
#: body, not to its square.
_CHUNK = 64 * 1024
#: Concatenated gzip files are a few members; a body of thousands of empty ones is an attack.
MAX_MEMBERS = 1_000


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
    view = memoryview(body)
    position = 0
    inflater = zlib.decompressobj(wbits)
    members = 1
    left_over = b""  # what a finished member did not use: the start of the next one
    chunk: bytes | memoryview
    while left_over or position < len(view):
        if left_over:
            chunk, left_over = left_over, b""
        else:
            chunk = view[position : position + _CHUNK]
            position += len(chunk)
        try:
            data += inflater.decompress(chunk, limit + 1 - len(data))
        except zlib.error as e:
            raise MalformedRequest(f"the {encoding} body cannot be decompressed: {e}") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise RequestTooLarge(_too_large(limit))
        if inflater.eof and (inflater.unused_data or position < len(view)):
            # A gzip body may be several members, one after the other.
            members += 1
            if members > MAX_MEMBERS:
                raise MalformedRequest(
                    f"the {encoding} body has more than {MAX_MEMBERS} members; concatenate "
                    "fewer (one is usual)"
                )
            left_over = inflater.unused_data
            inflater = zlib.decompressobj(wbits)
    if not inflater.eof:  # a cut-off body must not pass for a shorter request
        raise MalformedRequest(f"the {encoding} body is truncated")
    return bytes(data)


def _too_large(limit: int) -> str:
    return f"the request is larger than {limit} bytes after decompression; send smaller batches"
