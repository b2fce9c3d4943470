"""How checkpoints and alerts leave the service for elsewhere, never holding it up:

- ``WebhookSender`` POSTs from a thread of its own: in order, with a bounded backlog (the
  oldest waiting is dropped, and logged, when it is full), each retried with a growing delay;
- ``otlp_logger`` emits OpenTelemetry log records to a collector through the SDK's batching
  exporter (its own thread, queue and retries)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import urllib.error
import urllib.request

from opentelemetry._logs import Logger
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

log = logging.getLogger(__name__)

ATTEMPTS = 5
TIMEOUT_S = 10


class WebhookSender:
    """One URL and the bodies waiting for it (``content_type`` each)."""

    def __init__(self, url: str, content_type: str, backlog: int) -> None:
        self.url = url
        self._content_type = content_type
        self._queue: queue.Queue[tuple[bytes, str] | None] = queue.Queue(backlog)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._send_all, name="tokenotel-webhook")
        self._thread.daemon = True
        self._thread.start()

    def post(self, body: bytes, about: str) -> None:
        """Queues ``body``; ``about`` names it in the log should it not be sent."""
        while True:
            try:
                self._queue.put_nowait((body, about))
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    dropped = self._queue.get_nowait()
                    self._queue.task_done()
                    if dropped is not None:
                        log.error("the webhook %s is behind: %s was not sent", self.url, dropped[1])

    def close(self) -> None:
        """Sends what waits (for twice TIMEOUT_S at most), then stops."""
        deadline = time.monotonic() + 2 * TIMEOUT_S
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=TIMEOUT_S)

    def _send_all(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._send(*item)
            finally:
                self._queue.task_done()

    def _send(self, body: bytes, about: str) -> None:
        problem = ""
        for attempt in range(ATTEMPTS):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": self._content_type}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
                    if reply.status < 300:
                        return
                    problem = f"HTTP {reply.status}"
            except urllib.error.HTTPError as e:
                problem = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                problem = str(getattr(e, "reason", e)) or type(e).__name__
            if self._stopping.wait(min(2**attempt, 30)):
                break
        log.error("cannot send %s to the webhook %s: %s", about, self.url, problem)


def otlp_logger(endpoint: str, scope: str) -> tuple[LoggerProvider, Logger]:
    """A logger whose records go to the collector at ``endpoint`` (OTLP/gRPC), as service
    ``tokenotel``; shut the provider down to send what waits and stop."""
    provider = LoggerProvider(resource=Resource({"service.name": "tokenotel"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
    return provider, provider.get_logger(scope)
