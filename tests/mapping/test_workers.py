"""Mapping worker processes: requests and errors cross the pipe; a dead worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from otlp_builders import export_request, log_record, varint
from tokenotel.errors import MalformedRequest, RetryableError
from tokenotel.mapping import wire
from tokenotel.mapping.decode import PROTOBUF
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.workers import MappingPool

BODY = export_request(log_record("token.used", {"token.id": "t1"})).SerializeToString()


@pytest.mark.e2e
def test_a_worker_maps_requests_reports_bad_ones_and_is_replaced_when_it_dies() -> None:
    async def scenario() -> None:
        pool = MappingPool(Fingerprinter(b"k" * 32), workers=1, retry_after_s=1, nice=3)
        niced = min(os.getpriority(os.PRIO_PROCESS, 0) + 3, 19)  # below the service's reads
        await pool.start()
        try:
            assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pool.pids] == [niced]
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
            assert os.getpriority(os.PRIO_PROCESS, second) == niced
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
    pool = MappingPool(Fingerprinter(b"k" * 32), workers=0, retry_after_s=1)

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
        key, value_at = wire.read_varint(data, pos)
        end = wire._skip(data, value_at, key)
        encoded = data[pos:end]
        if key & 7 == 2 and depth:
            payload_at = wire.read_varint(data, value_at)[1]
            payload = data[payload_at:end]
            if _is_message(payload):
                payload = _reversed_fields(payload, depth - 1)
                encoded = data[pos:value_at] + varint(len(payload)) + payload
        fields.append((key >> 3, encoded))
        pos = end
    fields.sort(key=lambda field: -field[0])  # stable: a repeated field keeps its order
    return b"".join(encoded for _, encoded in fields)


def _is_message(payload: bytes) -> bool:
    pos = 0
    try:
        while pos < len(payload):
            key, pos = wire.read_varint(payload, pos)
            if key >> 3 == 0 or key & 7 not in (0, 1, 2, 5):
                return False
            pos = wire._skip(payload, pos, key)
    except IndexError:
        return False
    return pos == len(payload)


@pytest.mark.e2e
def test_a_worker_never_loads_pandas() -> None:
    """pyarrow would import pandas (installed for chDB) on its first conversion: ~35 MB a
    worker for nothing."""

    async def maps_of_the_worker() -> str:
        pool = MappingPool(Fingerprinter(b"k" * 32), workers=1, retry_after_s=1)
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
