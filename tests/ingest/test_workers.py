"""Mapping worker processes: requests and errors cross the pipe; a dead worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from otlp_builders import export_request, log_record
from tokenotel.errors import RetryableError
from tokenotel.ingest.decode import PROTOBUF, MalformedRequest
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.workers import MappingPool

BODY = export_request(log_record("token.used", {"token.id": "t1"})).SerializeToString()


def test_a_worker_maps_requests_reports_bad_ones_and_is_replaced_when_it_dies() -> None:
    async def scenario() -> None:
        pool = MappingPool(Fingerprinter(b"k" * 32), workers=1)
        await pool.start()
        try:
            mapped = await pool.map(BODY, PROTOBUF, 1)
            assert mapped.table.column("token_id").to_pylist() == ["t1"]
            with pytest.raises(MalformedRequest):
                await pool.map(b"\xff\xff not protobuf", PROTOBUF, 1)

            (first,) = pool.pids
            os.kill(first, signal.SIGKILL)
            with pytest.raises(RetryableError):  # the client retries it
                await pool.map(BODY, PROTOBUF, 1)
            (second,) = pool.pids
            assert second != first
            assert (await pool.map(BODY, PROTOBUF, 1)).table.num_rows == 1
        finally:
            pool.close()
        assert pool.pids == []

    asyncio.run(scenario())


def test_the_same_records_map_alike_whatever_their_encoding_order() -> None:
    """Encoders order fields differently (the collector writes a KeyValue's value before its
    key): mapping reads a canonical re-encoding, so rows and event ids do not depend on it."""
    request = export_request(
        log_record("", {"event.name": "token.revoked", "token.id": "t1", "n": 3}),
        log_record("token.used", {"token.id": "t1"}, body="hello"),
    )
    canonical = request.SerializeToString()
    reordered = _reversed_fields(canonical, depth=6)
    assert reordered != canonical
    assert type(request).FromString(reordered) == request
    pool = MappingPool(Fingerprinter(b"k" * 32), workers=0)

    async def tables() -> tuple:
        return (await pool.map(canonical, PROTOBUF, 1), await pool.map(reordered, PROTOBUF, 1))

    first, second = asyncio.run(tables())
    assert first.table.column("event_name").to_pylist() == ["token.revoked", "token.used"]
    assert second.table.equals(first.table)


def _reversed_fields(data: bytes, depth: int) -> bytes:
    """The same message with the fields of every level, down to ``depth``, in descending
    order of their numbers, as the collector writes them (a repeated field keeps its order;
    length-delimited fields are taken for messages while they parse as such)."""
    fields = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        start = pos
        if key & 7 == 2:
            size, pos = _varint(data, pos)
            payload = data[pos : pos + size]
            pos += size
            if depth and _is_message(payload):
                payload = _reversed_fields(payload, depth - 1)
            fields.append((key >> 3, _encode_varint(key) + _encode_varint(len(payload)) + payload))
            continue
        pos = _scalar_end(data, start, key & 7)
        fields.append((key >> 3, _encode_varint(key) + data[start:pos]))
    fields.sort(key=lambda field: -field[0])  # stable: a repeated field keeps its order
    return b"".join(encoded for _, encoded in fields)


def _is_message(payload: bytes) -> bool:
    try:
        pos = 0
        while pos < len(payload):
            key, pos = _varint(payload, pos)
            if key >> 3 == 0 or key & 7 not in (0, 1, 2, 5):
                return False
            if key & 7 == 2:
                size, pos = _varint(payload, pos)
                pos += size
            else:
                pos = _scalar_end(payload, pos, key & 7)
        return pos == len(payload)
    except IndexError:
        return False


def _scalar_end(data: bytes, pos: int, wire_type: int) -> int:
    """Where a varint (0), 64-bit (1) or 32-bit (5) value starting at ``pos`` ends."""
    return _varint(data, pos)[1] if wire_type == 0 else pos + (8 if wire_type == 1 else 4)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_a_worker_never_loads_pandas() -> None:
    """pyarrow would import pandas (installed for chDB) on its first conversion: ~35 MB a
    worker for nothing."""

    async def maps_of_the_worker() -> str:
        pool = MappingPool(Fingerprinter(b"k" * 32), workers=1)
        await pool.start()
        try:
            mapped = await pool.map(BODY, PROTOBUF, 1)
            assert mapped.table.num_rows == 1
            (pid,) = pool.pids
            with open(f"/proc/{pid}/maps") as maps:
                return maps.read()
        finally:
            pool.close()

    maps = asyncio.run(maps_of_the_worker())
    assert "pyarrow" in maps  # the worker did convert
    assert "/pandas/" not in maps
