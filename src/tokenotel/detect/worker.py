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
import pickle
import struct
from multiprocessing.connection import Connection

import pyarrow as pa

from tokenotel.child import ChildProcess, read_table_stream, ready, serve_calls, table_stream
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

    def __init__(self, detector: Detector, separate: bool, nice: int = 0) -> None:
        """``nice``: how far below the service's CPU priority a process of their own runs
        (ingest's, ``ingest_nice``: the rules are ingest's work, and the reads go first)."""
        self._detector: Detector | None = None if separate else detector
        self._child: ChildProcess | None = None
        if separate:
            setup = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
            self._child = ChildProcess(_serve, (), "tokenotel-rules", setup, nice)

    @property
    def pid(self) -> int | None:
        """The rules' process (None: they run in the caller's)."""
        return self._child.pid if self._child is not None else None

    def evaluate(self, events: pa.Table | None, now_ns: int) -> Outcome:
        """The alerts ``events`` (an insert's ``frame``; None: no insert) raise, and the alerts
        whose condition cleared by ``now_ns``. Raises RulesStopped when the process is gone."""
        if self._child is None:
            assert self._detector is not None
            return _outcome(self._detector, events, now_ns)
        body = table_stream(events) if events is not None else b""
        try:
            outcome: Outcome = self._child.call(_NOW.pack(now_ns), body)
        except (EOFError, OSError):
            raise RulesStopped(
                f"the rules' process stopped (exit code {self._child.exitcode})"
            ) from None
        return outcome

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None


def _outcome(detector: Detector, events: pa.Table | None, now_ns: int) -> Outcome:
    raised = evaluate(detector, events) if events is not None else []
    return raised, detector.resolved(now_ns)


def _serve(conn: Connection) -> None:
    """The process's life: the detector first, then each insert until the pipe closes."""
    try:
        detector: Detector = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    ready(conn)

    def handle(header: bytes, body: bytes) -> Outcome:
        (now_ns,) = _NOW.unpack(header)
        return _outcome(detector, read_table_stream(body) if body else None, now_ns)

    serve_calls(conn, handle)
