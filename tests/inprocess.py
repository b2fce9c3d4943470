"""The real ingest path in the test process (mapping, token lifecycle, writer, embedded store),
without the network: for tests that need many exact scenarios quickly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tokenotel.config import load_settings
from tokenotel.ingest.decode import PROTOBUF
from tokenotel.ingest.result import ExportResult
from tokenotel.service import Service


class InProcessIngest:
    """One embedded store, fed through ``Service.export``. Close it: a process can hold only
    one embedded ClickHouse data path at a time."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.service = Service(load_settings(data_dir=data_dir, mapping_workers=0, **settings))
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._start())

    async def _start(self) -> None:
        await asyncio.to_thread(self.service.store.connect)
        self.service.writer.start()

    def send(self, request: ExportLogsServiceRequest) -> ExportResult:
        return self._loop.run_until_complete(
            self.service.export(request.SerializeToString(), PROTOBUF)
        )

    def send_all(self, requests: list[ExportLogsServiceRequest]) -> list[ExportResult]:
        """The requests at once, as concurrent clients send them."""

        async def all_at_once() -> list[ExportResult]:
            export = self.service.export
            bodies = [r.SerializeToString() for r in requests]
            return list(await asyncio.gather(*(export(body, PROTOBUF) for body in bodies)))

        return self._loop.run_until_complete(all_at_once())

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.service.store.query(sql, parameters).result_rows

    def close(self) -> None:
        self._loop.run_until_complete(self.service.writer.stop())
        self.service.mapping.close()
        self.service.store.close()
        self._loop.close()
