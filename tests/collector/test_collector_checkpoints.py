"""Checkpoints published as OTLP log records (``checkpoint_otlp_endpoint``): a collector
receives each one as sent, and can forward it off the box (docs/tamper-evidence.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from otelcol import collector_env, printing_config, start_collector

from inprocess import InProcessIngest
from otlp_builders import RECENT_NS, export_request, log_record
from tokenotel.integrity.checkpoint import Checkpoint
from tokenotel.integrity.signing import VerifierKey

pytestmark = [pytest.mark.collector, pytest.mark.e2e]


def test_each_checkpoint_reaches_the_collector_as_a_signed_note(
    tmp_path: Path, collector_binary: Path
) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(printing_config("logs"))
    env = collector_env(tmp_path / "storage")
    collector = start_collector(config, env, tmp_path / "collector.log")
    try:
        ingest = InProcessIngest(
            tmp_path / "data",
            checkpoint_otlp_endpoint=f"http://{env['GATEWAY_GRPC_ENDPOINT']}",
            checkpoint_dir=tmp_path / "published",
        )
        try:
            ingest.send(export_request(log_record("token.used", {"token.id": "t"},
                                                  time_unix_nano=RECENT_NS)))  # fmt: skip
            ingest.checkpoint()
        finally:
            ingest.close()  # the final checkpoint; the exporter flushes before it returns
    finally:
        assert collector.stop() == 0, collector.output()
    output = collector.output()
    assert output.count("EventName: tokenotel.checkpoint") == 2
    received = re.findall(r"^Body: Str\((.*?\n)\)$", output, re.M | re.S)
    published = [p.read_text() for p in sorted((tmp_path / "published").rglob("*.checkpoint"))]
    assert received == published
    key = VerifierKey.parse((tmp_path / "data" / "signing.pub").read_text())
    assert [Checkpoint.parse(note).signer([key]) for note in received] == [key, key]
    assert "-> tokenotel.checkpoint.tree_size: Int(1)" in output
