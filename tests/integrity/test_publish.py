"""Checkpoints leave the box: every one is a file in ``checkpoint_dir`` and a POST to
``checkpoint_webhook_url`` (retried when the receiver fails), also when nothing was written."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from inprocess import InProcessIngest
from otlp_builders import RECENT_NS, export_request, log_record
from processes import free_port
from tokenotel.integrity.checkpoint import Checkpoint
from tokenotel.integrity.signing import VerifierKey


class Receiver:
    """A webhook receiver on its own event loop: answers 503 to the first POST, then 200."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.content_types: list[str] = []
        self.refused = 0
        self.port = free_port()

    async def post(self, request: web.Request) -> web.Response:
        if not self.refused:
            self.refused += 1
            return web.Response(status=503)
        self.notes.append(await request.text())
        self.content_types.append(request.content_type)
        return web.Response(status=204)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/checkpoints", receiver.post)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", receiver.port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_every_checkpoint_is_a_file_and_a_post(tmp_path: Path, receiver: Receiver) -> None:
    published = tmp_path / "published"
    ingest = InProcessIngest(
        tmp_path / "data",
        checkpoint_dir=published,
        checkpoint_webhook_url=f"http://127.0.0.1:{receiver.port}/checkpoints",
    )
    try:
        ingest.checkpoint()  # nothing written yet: a quiet interval, signed all the same
        ingest.send(export_request(log_record("token.used", {"token.id": "t"},
                                              time_unix_nano=RECENT_NS)))  # fmt: skip
        ingest.checkpoint()
    finally:
        ingest.close()  # the final checkpoint, and what waits for the webhook is sent
    files = sorted(published.rglob("*.checkpoint"))
    assert [f.name.split("-")[0] for f in files] == ["000000000000", *["000000000001"] * 2]
    assert all(f.parent.name == f.name.split("-")[1][:8] for f in files)  # a folder a day
    notes = [f.read_text() for f in files]
    assert receiver.refused == 1  # the first POST failed and was sent again
    assert receiver.notes == notes
    assert set(receiver.content_types) == {"text/plain"}
    key = VerifierKey.parse((tmp_path / "data" / "signing.pub").read_text())
    checkpoints = [Checkpoint.parse(note) for note in notes]
    assert [c.signer([key]) for c in checkpoints] == [key] * 3
    assert [(c.size, c.final, c.retention_days) for c in checkpoints] == [
        (0, False, 400),
        (1, False, 400),
        (1, True, 400),
    ]
    assert not list(published.rglob(".*.tmp"))  # written whole, renamed into place
