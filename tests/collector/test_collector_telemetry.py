"""The service's metrics over OTLP (``telemetry_otlp_endpoint``): a collector receives them,
named as at /metrics, counting what was stored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from otelcol import collector_env, printing_config, start_collector

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.telemetry import Telemetry

pytestmark = [pytest.mark.collector, pytest.mark.e2e]


def test_the_metrics_reach_a_collector(tmp_path: Path, collector_binary: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(printing_config("metrics"))
    env = collector_env(tmp_path / "storage")
    collector = start_collector(config, env, tmp_path / "collector.log")
    try:
        ingest = InProcessIngest(tmp_path / "data")
        telemetry = Telemetry(ingest.pipeline, f"http://{env['GATEWAY_GRPC_ENDPOINT']}", 3600)
        try:
            records = [
                log_record("token.used", {"token.id": f"t{n}"}, time_unix_nano=time.time_ns())
                for n in range(5)
            ]
            ingest.send(export_request(*records))
        finally:
            telemetry.close()  # the last export, before it returns
            ingest.close()
    finally:
        assert collector.stop() == 0, collector.output()
    output = collector.output()
    stored = output.split("Name: tokenotel.records.stored\n", 1)[1].split("Value: ", 1)[1]
    assert stored.split("\n", 1)[0] == "5"
    assert "Name: tokenotel.insert.duration" in output
    assert "service.name: Str(tokenotel)" in output
