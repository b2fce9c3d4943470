"""When checkpoints are made: every ``checkpoint_every_events`` events sealed, every
``checkpoint_interval_s`` whatever was written (a quiet interval is then signed as quiet),
and once more as the service stops (marked final). Each is signed, kept in the store and
published; none of it runs on the write path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from tokenotel.errors import StoreUnavailable
from tokenotel.integrity.checkpoint import Checkpoint, store_checkpoint
from tokenotel.integrity.publish import Publisher
from tokenotel.integrity.signing import SigningKey
from tokenotel.store.client import Store
from tokenotel.store.ledger import Ledger

log = logging.getLogger(__name__)


#: How often the events sealed since the last checkpoint are counted.
POLL_S = 1.0


class Checkpointer:
    def __init__(
        self,
        ledger: Ledger,
        store: Store,
        key: SigningKey,
        publishers: list[Publisher],
        *,
        every_events: int,
        interval_s: float,
        retention_days: int,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self.key = key
        self._publishers = publishers
        self._every_events = every_events
        self._interval_s = interval_s
        self._retention_days = retention_days
        self._task: asyncio.Task[None] | None = None
        self._last_events = 0
        self._last_time_ms = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tokenotel-checkpoints")

    async def stop(self) -> None:
        """Makes the final checkpoint (after the writer's last insert), then stops
        publishing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.checkpoint(final=True)
        finally:
            for publisher in self._publishers:
                await publisher.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self._interval_s
        while True:
            await asyncio.sleep(min(POLL_S, max(0.0, due - loop.time())))
            events = self._ledger.head().events - self._last_events
            if loop.time() >= due or events >= self._every_events:
                try:
                    await self.checkpoint()
                except Exception:  # a bug: logged, and the next interval tries again
                    log.exception("making a checkpoint failed")
                due = loop.time() + self._interval_s

    async def checkpoint(self, final: bool = False) -> None:
        """Signs the tree as it is now, keeps the checkpoint in the store and publishes it;
        nothing while the ledger is not loaded (the store has not answered yet)."""
        if not self._ledger.loaded:
            return
        head = self._ledger.head()
        now_ms = max(time.time_ns() // 1_000_000, self._last_time_ms + 1)
        checkpoint = Checkpoint.make(self.key, head, now_ms, self._retention_days, final)
        self._last_events, self._last_time_ms = head.events, now_ms
        try:
            await asyncio.to_thread(store_checkpoint, self._store, checkpoint, head)
        except StoreUnavailable as e:  # published all the same: off the box matters most
            log.warning("cannot keep checkpoint %d in the store: %s", head.size, e)
        for publisher in self._publishers:
            await publisher.publish(checkpoint)
        log.debug("checkpoint: %d inserts sealed, root %s", head.size, head.root.hex())
