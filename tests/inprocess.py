"""The real ingest pipeline in the test process (mapping, token lifecycle, writer, embedded
store), without the network: for tests that need many exact scenarios quickly."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tokenotel.config import load_settings
from tokenotel.ingest.consumer import ExportResult
from tokenotel.mapping.decode import PROTOBUF
from tokenotel.pipeline import Pipeline
from tokenotel.store.client import Store

T = TypeVar("T")


def embedded_store(data_dir: Path, **settings: Any) -> Store:
    """A store in ``data_dir`` with the default settings but those given. Close it."""
    return Store(load_settings(data_dir=data_dir, **settings).store_options)


class InProcessIngest:
    """One embedded store, fed through ``Pipeline.export``. Close it: a process can hold only
    one embedded ClickHouse data path at a time."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.pipeline = Pipeline(load_settings(data_dir=data_dir, mapping_workers=0, **settings))
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.pipeline.start())

    def send(self, request: ExportLogsServiceRequest) -> ExportResult:
        return self._loop.run_until_complete(
            self.pipeline.export(request.SerializeToString(), PROTOBUF)
        )

    def send_all(self, requests: list[ExportLogsServiceRequest]) -> list[ExportResult]:
        """The requests at once, as concurrent clients send them."""

        async def all_at_once() -> list[ExportResult]:
            export = self.pipeline.export
            bodies = [r.SerializeToString() for r in requests]
            return list(await asyncio.gather(*(export(body, PROTOBUF) for body in bodies)))

        return self._loop.run_until_complete(all_at_once())

    def checkpoint(self) -> None:
        """Signs a checkpoint now (as the service does every interval and when it stops), once
        every insert so far is sealed."""
        assert self.pipeline.checkpointer is not None and self.pipeline.ledger is not None
        assert self.pipeline.ledger.wait_sealed(30)
        self._loop.run_until_complete(self.pipeline.checkpointer.checkpoint())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Runs ``work`` on the pipeline's event loop (what else feeds the pipeline)."""
        return self._loop.run_until_complete(work)

    def feed_rollups(self) -> None:
        """What is committed reaches the analytics rollups now (the service feeds them within
        ``rollup_delay_ms``, while its event loop runs)."""
        self._loop.run_until_complete(self.pipeline.writer.feed_rollups())

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.pipeline.store.query(sql, parameters).result_rows

    def close(self) -> None:
        self._loop.run_until_complete(self.pipeline.stop())
        self._loop.close()
