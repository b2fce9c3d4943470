"""Where checkpoints are published off the box: whoever can rewrite the store can rewrite the
checkpoints kept beside it, not those already sent elsewhere.

- a directory (``checkpoint_dir``: a mount another machine owns, a synced folder): one file
  per checkpoint, written whole or not at all;
- a webhook (``checkpoint_webhook_url``): the note POSTed as text/plain, retried;
- an OpenTelemetry collector (``checkpoint_otlp_endpoint``): the note as the body of an OTLP
  log record (event ``tokenotel.checkpoint``), through the SDK's batching exporter.

A destination that fails is logged and never holds up ingest: the webhook and the collector
are sent to in the background, with a bounded backlog.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path
from typing import Protocol

from tokenotel.integrity.checkpoint import Checkpoint, format_time
from tokenotel.outbound import WebhookSender, otlp_logger

log = logging.getLogger(__name__)

#: Checkpoints waiting for the webhook before the oldest is dropped (a day of minutes).
WEBHOOK_BACKLOG = 1440
OTLP_EVENT = "tokenotel.checkpoint"


class Publisher(Protocol):
    async def publish(self, checkpoint: Checkpoint) -> None: ...

    async def close(self) -> None: ...


class DirectoryPublisher:
    """Files ``<dir>/<yyyymmdd>/<tree size>-<time>.checkpoint``, each the signed note."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def publish(self, checkpoint: Checkpoint) -> None:
        try:
            await asyncio.to_thread(write_checkpoint_file, self.directory, checkpoint)
        except OSError as e:
            log.error("cannot publish checkpoint %d to %s: %s", checkpoint.size, self.directory, e)

    async def close(self) -> None:
        return None


def write_checkpoint_file(directory: Path, checkpoint: Checkpoint) -> Path:
    path = directory / checkpoint.file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(checkpoint.note)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    return path


def read_checkpoint_files(directory: Path) -> list[tuple[Path, str]]:
    """Every published checkpoint file under ``directory`` and its text."""
    found = []
    for path in sorted(directory.rglob("*.checkpoint")):
        try:
            found.append((path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            found.append((path, f"unreadable: {e}"))
    return found


class WebhookPublisher:
    """POSTs each note (text/plain) to a URL, in order, retrying with a growing delay."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sender: WebhookSender | None = None

    async def publish(self, checkpoint: Checkpoint) -> None:
        if self._sender is None:
            self._sender = WebhookSender(self.url, "text/plain; charset=utf-8", WEBHOOK_BACKLOG)
        self._sender.post(checkpoint.note.encode(), f"checkpoint {checkpoint.size}")

    async def close(self) -> None:
        """Sends what is waiting (for 20 s at most), then stops."""
        if self._sender is not None:
            await asyncio.to_thread(self._sender.close)


class OtlpPublisher:
    """Each note as an OTLP log record to a collector, through the SDK's batching exporter
    (its own thread, queue and retries)."""

    def __init__(self, endpoint: str) -> None:
        self._provider, self._logger = otlp_logger(endpoint, "tokenotel.integrity")

    async def publish(self, checkpoint: Checkpoint) -> None:
        self._logger.emit(
            event_name=OTLP_EVENT,
            body=checkpoint.note,
            timestamp=checkpoint.time_ms * 1_000_000,
            attributes={
                "tokenotel.checkpoint.origin": checkpoint.origin,
                "tokenotel.checkpoint.tree_size": checkpoint.size,
                "tokenotel.checkpoint.root": base64.b64encode(checkpoint.root).decode(),
                "tokenotel.checkpoint.time": format_time(checkpoint.time_ms),
            },
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._provider.shutdown)
