"""Decoding and mapping in worker processes, so the per-record Python work uses every core.

The service process keeps the network and the store; each worker turns request bytes into an
Arrow table of token events. With no workers the same function runs in the service process.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tokenotel.ingest.decode import JSON, decode_json, decode_protobuf
from tokenotel.mapping.columns import rows_to_arrow
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import Mapper

_mapper: Mapper | None = None


@dataclass
class MappedTable:
    """The token events of one request as columns, and what was left out and why.

    Between processes the columns travel as one Arrow IPC stream: a single buffer to copy,
    read back without copying (pickling the table costs both sides more).
    """

    table: pa.Table
    ignored: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def __reduce__(self) -> tuple[Any, ...]:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.table.schema) as writer:
            writer.write_table(self.table)
        return _from_stream, (sink.getvalue(), self.ignored, self.rejected, self.errors)


def _from_stream(stream: pa.Buffer, ignored: int, rejected: int, errors: list[str]) -> MappedTable:
    return MappedTable(pa.ipc.open_stream(stream).read_all(), ignored, rejected, errors)


def _init_worker(key: bytes, parent_pid: int | None = None) -> None:
    global _mapper
    _mapper = Mapper(Fingerprinter(key))
    if parent_pid is not None:
        threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()
        # Mapping allocates many short-lived rows and makes no reference cycles: the modules
        # loaded so far need no more scans, and the youngest generation is collected less
        # often (the collector cost a tenth of the mapping's CPU).
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)


def _exit_with(parent_pid: int) -> None:
    """A worker whose service was killed (SIGKILL leaves no chance to stop it) exits too."""
    while os.getppid() == parent_pid:
        time.sleep(1)
    os._exit(0)


def decode_and_map(body: bytes, content_type: str, received_ns: int) -> MappedTable:
    """Raises MalformedRequest for a body that is not an OTLP logs request."""
    assert _mapper is not None, "worker not initialised"
    request = decode_json(body) if content_type == JSON else decode_protobuf(body)
    batch = _mapper.map(request, received_ns)
    return MappedTable(rows_to_arrow(batch.rows), batch.ignored, batch.rejected, batch.errors)


class MappingPool:
    """``workers`` processes (spawned, never forked: the service runs gRPC threads)."""

    def __init__(self, fingerprinter: Fingerprinter, workers: int) -> None:
        self._executor: ProcessPoolExecutor | None = None
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(fingerprinter.key, os.getpid()),
            )
        else:
            _init_worker(fingerprinter.key)
        self._workers = workers

    async def start(self) -> None:
        """Starts every worker now, so the first requests do not wait for them."""
        if self._executor is not None:
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, _warm_up) for _ in range(self._workers))
            )

    async def map(self, body: bytes, content_type: str, received_ns: int) -> MappedTable:
        if self._executor is None:
            return decode_and_map(body, content_type, received_ns)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, decode_and_map, body, content_type, received_ns
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _warm_up() -> None:
    """Runs in a worker: nothing to do but exist."""
