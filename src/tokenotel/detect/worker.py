"""The rules' state and their evaluation, in a process of their own.

The rules are Python work on every event: in the service process they would hold the
interpreter lock its requests need, and ingest would slow by a third. So a spawned process
holds the ``Detector`` (learnt from the store in the service, then handed over pickled); each
committed insert's ``frame`` goes down a pipe as one Arrow stream, and the alerts it raised and
those whose condition cleared come back. With ``separate=False`` (the service runs in one
process: no mapping workers) the same runs in the calling thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from tokenotel.detect.batch import evaluate
from tokenotel.detect.engine import Alert, Detector

log = logging.getLogger(__name__)

#: Alerts raised by an insert, and the alerts that cleared (each with when).
Outcome = tuple[list[Alert], list[tuple[Alert, int]]]

_NOW = struct.Struct("<q")  # the time (ns) alerts clear by


class RulesStopped(Exception):
    """The rules' process is gone (killed, out of memory): its state with it."""


class Rules:
    """A ``Detector``, here or in a process of its own; one caller at a time."""

    def __init__(self, detector: Detector, separate: bool) -> None:
        self._detector: Detector | None = None if separate else detector
        self._conn: Connection | None = None
        self._process: Any = None
        if separate:
            context = multiprocessing.get_context("spawn")  # the service runs threads
            self._conn, theirs = context.Pipe()
            self._process = context.Process(
                target=_serve, args=(theirs,), name="tokenotel-rules", daemon=True
            )
            self._process.start()
            theirs.close()
            self._conn.send_bytes(pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL))
            self._call(b"", 0)  # answered once the detector is unpickled

    @property
    def pid(self) -> int | None:
        """The rules' process (None: they run in the caller's)."""
        return self._process.pid if self._process is not None else None

    def evaluate(self, events: pa.Table | None, now_ns: int) -> Outcome:
        """The alerts ``events`` (an insert's ``frame``; None: no insert) raise, and the alerts
        whose condition cleared by ``now_ns``. Raises RulesStopped when the process is gone."""
        if self._detector is not None:
            raised = evaluate(self._detector, events) if events is not None else []
            return raised, self._detector.resolved(now_ns)
        body = b""
        if events is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, events.schema) as writer:
                writer.write_table(events)
            body = sink.getvalue().to_pybytes()
        return self._call(body, now_ns)

    def _call(self, body: bytes, now_ns: int) -> Outcome:
        assert self._conn is not None
        try:
            self._conn.send_bytes(_NOW.pack(now_ns))
            self._conn.send_bytes(body)
            ok, value = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            raise RulesStopped(
                f"the rules' process stopped (exit code {self._process.exitcode})"
            ) from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the process reads the end of its pipe and exits
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._conn = None


def _serve(conn: Connection) -> None:
    """The process's life: the detector first, then each insert until the pipe closes (also
    when the service was killed: the kernel closes its end)."""
    try:
        detector: Detector = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    while True:
        try:
            (now_ns,) = _NOW.unpack(conn.recv_bytes())
            body = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            raised = []
            if body:
                raised = evaluate(detector, pa.ipc.open_stream(body).read_all())
            reply: tuple[bool, Any] = (True, (raised, detector.resolved(now_ns)))
        except Exception as e:  # raised again in the service, which logs it
            reply = (False, e)
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # the service is gone
            return
