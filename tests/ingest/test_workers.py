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
