"""Decoding and mapping in worker processes, so the per-record Python work uses every core.

The service process keeps the network and the store; each worker turns request bytes into an
Arrow table of token events. With no workers the same function runs in the service process.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.abc
import logging
import queue
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from tokenotel.child import ChildProcess, read_table_stream, ready, serve_calls, table_stream
from tokenotel.errors import MappingWorkerStopped
from tokenotel.mapping.columns import rows_to_arrow
from tokenotel.mapping.decode import JSON, PROTOBUF, decode
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import Mapper

log = logging.getLogger(__name__)


@dataclass
class MappedTable:
    """The token events of one request as columns, and what was left out and why.

    Between processes the columns travel as one Arrow IPC stream (``child.table_stream``).
    """

    table: pa.Table
    ignored: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    #: Raw records of each source and what came of them (see mapper.RECORDS ...).
    sources: dict[str, list[int]] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        return _from_stream, (
            table_stream(self.table),
            self.ignored,
            self.rejected,
            self.errors,
            self.sources,
        )


def _from_stream(
    stream: pa.Buffer,
    ignored: int,
    rejected: int,
    errors: list[str],
    sources: dict[str, list[int]],
) -> MappedTable:
    return MappedTable(read_table_stream(stream), ignored, rejected, errors, sources)


#: The "content type" of a source's lines (``MappingPool.map_lines``): the body is the source's
#: name and the lines, each ending in a newline.
SOURCE_LINES = "tokenotel/source-lines"


def decode_and_map(mapper: Mapper, body: bytes, content_type: str, received_ns: int) -> MappedTable:
    """Raises MalformedRequest for a body that is not an OTLP logs request."""
    if content_type == SOURCE_LINES:
        name, *lines = body.split(b"\n")[:-1]
        batch = mapper.map_lines(name.decode(), lines, received_ns)
    else:
        batch = mapper.map(decode(body, content_type), received_ns)
    return MappedTable(
        rows_to_arrow(batch.rows), batch.ignored, batch.rejected, batch.errors, batch.sources
    )


class MappingPool:
    """``workers`` processes (spawned, never forked: the service runs gRPC threads), each fed
    through its own pipe by one thread of the service: a request's bytes go one way, its
    columns come back as one Arrow stream (a process pool's queues, locks and pickled calls
    cost each request more than twice the CPU of this hand-off).

    A worker that dies (killed, out of memory) is replaced; its request is answered with a
    retryable error (clients are asked to wait ``retry_after_s``). With no workers the mapping
    runs in the service process, with a mapper of this pool's own.
    """

    def __init__(
        self, fingerprinter: Fingerprinter, *, workers: int, retry_after_s: float, nice: int = 0
    ) -> None:
        """``nice``: how much lower the workers' CPU priority is than the service's."""
        self._key = fingerprinter.key
        self._nice = nice
        self._size = workers
        self._retry_after_s = retry_after_s
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        #: Workers replaced after one stopped (killed, out of memory).
        self.restarts = 0
        self._threads: ThreadPoolExecutor | None = None
        self._mapper = Mapper(fingerprinter) if workers == 0 else None

    async def start(self) -> None:
        """Starts every worker now, so the first requests do not wait for them."""
        if self._size and self._threads is None:
            self._threads = ThreadPoolExecutor(self._size, thread_name_prefix="tokenotel-map")
            self._workers = await asyncio.gather(
                *(asyncio.to_thread(_Worker, self._key, self._nice) for _ in range(self._size))
            )
            for worker in self._workers:
                self._idle.put(worker)

    async def map_lines(self, source: str, lines: list[bytes], received_ns: int) -> MappedTable:
        """Lines of ``source``'s files, none holding a newline (``Mapper.map_lines``)."""
        body = b"\n".join([source.encode(), *lines, b""])
        return await self.map(body, SOURCE_LINES, received_ns)

    async def map(self, body: bytes, content_type: str, received_ns: int) -> MappedTable:
        if self._mapper is not None:
            return decode_and_map(self._mapper, body, content_type, received_ns)
        if self._threads is None:
            await self.start()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._threads, self._call, body, content_type, received_ns
        )

    def _call(self, body: bytes, content_type: str, received_ns: int) -> MappedTable:
        """In a thread of the service, one for each worker: a worker is always idle here."""
        worker = self._idle.get()
        try:
            return worker.call(body, content_type, received_ns)
        except (EOFError, OSError):
            log.warning(
                "a mapping worker stopped (exit code %s); starting another", worker.exitcode
            )
            worker.close()
            self._workers.remove(worker)
            worker = _Worker(self._key, self._nice)
            self._workers.append(worker)
            self.restarts += 1
            raise MappingWorkerStopped(
                "a mapping worker stopped while mapping this request", self._retry_after_s
            ) from None
        finally:
            self._idle.put(worker)

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers running now."""
        return [worker.pid for worker in self._workers]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None


_HEADER = struct.Struct("<qB")  # received_ns, the body's content type (_CONTENT_TYPES)
_CONTENT_TYPES = (PROTOBUF, JSON, SOURCE_LINES)


class _Worker:
    """One worker process and the service's end of its pipe (one request at a time)."""

    def __init__(self, key: bytes, nice: int = 0) -> None:
        self._child = ChildProcess(_serve, (key,), "tokenotel-map", nice=nice)

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def exitcode(self) -> int | None:
        return self._child.exitcode

    def call(self, body: bytes, content_type: str, received_ns: int) -> MappedTable:
        header = _HEADER.pack(received_ns, _CONTENT_TYPES.index(content_type))
        result: MappedTable = self._child.call(header, body)
        return result

    def close(self) -> None:
        self._child.close()


class _WithoutPandas(importlib.abc.MetaPathFinder):
    """pyarrow imports pandas (installed for chDB) on its first conversion of Python values,
    to recognise pandas objects; a worker converts tuples only, and pandas would cost it
    ~35 MB of memory. Refused, pyarrow goes on without it."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError("pandas is not used by mapping workers", name=fullname)


def _serve(conn: Connection, key: bytes) -> None:
    """A worker's life: map each request that comes down the pipe until the pipe closes."""
    sys.meta_path.insert(0, _WithoutPandas())
    mapper = Mapper(Fingerprinter(key))
    # Mapping allocates many short-lived rows and makes no reference cycles: the modules
    # loaded so far need no more scans, and the youngest generation is collected less often
    # (the collector cost a tenth of the mapping's CPU).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    ready(conn)

    def handle(header: bytes, body: bytes) -> MappedTable:
        received_ns, content_type = _HEADER.unpack(header)
        return decode_and_map(mapper, body, _CONTENT_TYPES[content_type], received_ns)

    serve_calls(conn, handle)
