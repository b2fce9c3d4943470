"""A webhook receiver for tests: a real HTTP server (aiohttp) on its own event loop, which
answers 503 to the first POST (so a sender's retry is seen), then 204 and keeps each body."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from processes import free_port


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        #: POSTs refused so far (set it to 1 to refuse none).
        self.refused = 0
        self.port = free_port()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def texts(self) -> list[str]:
        return [body.decode() for body in self.bodies]

    @property
    def documents(self) -> list[Any]:
        """Each body read as JSON."""
        return [json.loads(body) for body in self.bodies]

    async def _post(self, request: web.Request) -> web.Response:
        if not self.refused:
            self.refused += 1
            return web.Response(status=503)
        self.bodies.append(await request.read())
        self.content_types.append(request.content_type)
        return web.Response(status=204)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A receiver taking POSTs on any path, until the block ends."""
    receiver = Receiver()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/{path:.*}", receiver._post)
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
