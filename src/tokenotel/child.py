"""A process of the service's own (the mapping workers, the detection rules): spawned, never
forked (the service runs threads), fed through a pipe one call at a time. A call is a header
and a body; the reply is a pickled ``(ok, value)``: the result, or the exception the child
raised, raised again here. Arrow tables cross as one IPC stream: a single buffer to copy,
read back without copying (pickling a table costs both sides more)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa


class ChildProcess:
    """The child and this side of its pipe. ``target(conn, *args)`` is its life: it reads
    ``setup`` (when given), answers ``ready`` once it can take calls, then ``serve_calls``.
    It runs ``nice`` below this process's CPU priority (ingest's, ``ingest_nice``: the query
    API's reads go first when the cores are busy)."""

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        name: str,
        setup: bytes = b"",
        nice: int = 0,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_live, args=(target, nice, theirs, *args), name=name)
        self._process.daemon = True
        self._process.start()
        theirs.close()
        if setup:
            self._conn.send_bytes(setup)
        self._conn.recv_bytes()  # ready

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def call(self, header: bytes, body: bytes | pa.Buffer) -> Any:
        """The child's answer to one call. Raises EOFError or OSError when it is gone."""
        self._conn.send_bytes(header)
        self._conn.send_bytes(body)
        ok, value = pickle.loads(self._conn.recv_bytes())
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._conn.close()  # the child reads the end of its pipe and exits
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _live(target: Callable[..., None], nice: int, *args: Any) -> None:
    """In the child: its priority lowered, then its life."""
    os.nice(nice)
    target(*args)


def ready(conn: Connection) -> None:
    """In the child: it can take calls."""
    conn.send_bytes(b"ready")


def serve_calls(conn: Connection, handle: Callable[[bytes, bytes], Any]) -> None:
    """In the child: each call's header and body to ``handle``, its result (or the exception it
    raised) back, until the pipe closes (also when the service was killed: the kernel closes
    its end)."""
    while True:
        try:
            header = conn.recv_bytes()
            body = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, handle(header, body))
        except Exception as e:  # raised again in the service
            reply = (False, e)
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # the service is gone: nobody to answer
            return


def table_stream(table: pa.Table) -> pa.Buffer:
    """``table`` as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_table_stream(stream: pa.Buffer | bytes) -> pa.Table:
    return pa.ipc.open_stream(stream).read_all()
