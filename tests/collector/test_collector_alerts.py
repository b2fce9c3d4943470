"""Alerts sent as OTLP log records (``alert_otlp_endpoint``): a collector receives each one,
event name ``tokenotel.alert``, with the rule and the token it names (docs/detection.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from otelcol import collector_env, printing_config, start_collector

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record

pytestmark = [pytest.mark.collector, pytest.mark.e2e]


def test_each_alert_reaches_the_collector_naming_its_rule_and_token(
    tmp_path: Path, collector_binary: Path
) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(printing_config("logs"))
    env = collector_env(tmp_path / "storage")
    collector = start_collector(config, env, tmp_path / "collector.log")
    now = time.time_ns()
    try:
        ingest = InProcessIngest(
            tmp_path / "data",
            alert_otlp_endpoint=f"http://{env['GATEWAY_GRPC_ENDPOINT']}",
            checkpoint_interval_s=3600,
        )
        try:
            leak = log_record(
                "token.leak_detected",
                {"token.id": "tok-leaked", "user.id": "dana", "client.address": "198.51.100.7"},
                time_unix_nano=now - 10**9,
            )
            ingest.send(export_request(leak))
        finally:
            ingest.close()  # the exporter flushes before it returns
    finally:
        assert collector.stop() == 0, collector.output()
    output = collector.output()
    assert output.count("EventName: tokenotel.alert") == 1
    assert (
        "Body: Str(A source reported a replayed refresh token or a secret found exposed.)" in output
    )
    assert "SeverityText: CRITICAL" in output
    assert "-> tokenotel.alert.rule: Str(reuse-or-leak-detected)" in output
    assert "-> tokenotel.alert.token: Str(tok-leaked)" in output
    assert "-> tokenotel.alert.count: Int(1)" in output
    assert "-> tokenotel.alert.principal: Str(dana)" in output
    assert "-> tokenotel.alert.state: Str(firing)" in output
    assert "var-token=tok-leaked" in output
