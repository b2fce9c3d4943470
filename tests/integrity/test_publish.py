"""Checkpoints leave the box: every one is a file in ``checkpoint_dir`` and a POST to
``checkpoint_webhook_url`` (retried when the receiver fails), also when nothing was written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inprocess import InProcessIngest
from otlp_builders import RECENT_NS, export_request, log_record
from tokenotel.integrity.checkpoint import Checkpoint
from tokenotel.integrity.signing import VerifierKey
from webhook_receiver import Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


def test_every_checkpoint_is_a_file_and_a_post(tmp_path: Path, receiver: Receiver) -> None:
    published = tmp_path / "published"
    ingest = InProcessIngest(
        tmp_path / "data",
        checkpoint_dir=published,
        checkpoint_webhook_url=receiver.url("/checkpoints"),
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
    assert receiver.texts == notes
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
