"""telemetrygen, OpenTelemetry's load generator, → ``tokenotel serve``: every record stored once."""

from __future__ import annotations

from pathlib import Path

import pytest

from go_build import TELEMETRYGEN, go_installed
from processes import ServeProcess, query_json, stored_row_count
from telemetrygen import send_logs

pytestmark = pytest.mark.e2e  # starts tokenotel serve and telemetrygen

WORKERS = 2
LOGS_PER_WORKER = 500
SENT = WORKERS * LOGS_PER_WORKER
TOKEN_ID = "tg_load_1"
#: What every stored event says, from the attributes given and telemetrygen's own defaults.
AS_SENT = {
    "event_name": "token.used",
    "token_id": TOKEN_ID,
    "service_name": "telemetrygen",
    "body": "the message",
    "severity_text": "Info",
    "attributes": {"app": "server"},
}


@pytest.fixture(scope="session")
def telemetrygen_binary() -> Path:
    """telemetrygen, built by `make telemetrygen`'s script when Go is installed."""
    return go_installed(TELEMETRYGEN, "make telemetrygen")


# Every record telemetrygen makes is the same but for its timestamp (time.Now(), in ns) and the
# order of the given attributes (a Go map's, drawn for each worker): two workers that stamp a
# record in the same nanosecond may send two records equal byte for byte, in two requests, and
# each is an event of its own. Both workers build a batch at once when the service answers
# their requests together; such a pair came in about one run in thirty on 2 cores, with
# batches of 100 or 500 (none in 80 runs with batches of 20 or 50).
@pytest.mark.parametrize(
    "batch_size",
    [
        pytest.param(100, id="100-a-request"),  # telemetrygen's default
        pytest.param(LOGS_PER_WORKER, id="all-of-a-worker-in-one-request"),
    ],
)
def test_every_record_telemetrygen_sends_is_stored_once(
    serve: ServeProcess, telemetrygen_binary: Path, tmp_path: Path, batch_size: int
) -> None:
    run = send_logs(
        telemetrygen_binary,
        serve.grpc_target,
        tmp_path / "telemetrygen.log",
        workers=WORKERS,
        logs_per_worker=LOGS_PER_WORKER,
        attributes={"event.name": "token.used", "token.id": TOKEN_ID},
        extra=("--batch-size", str(batch_size)),
    )
    # telemetrygen exits non-zero when an Export fails or its answer carries a partial success
    # (records rejected, or a warning): a zero exit means the service took every record.
    assert run.returncode == 0, run.output
    assert run.logs_generated == SENT, run.output
    assert serve.stop() == 0, serve.output()

    # Rows physically in the table: none dropped as a duplicate, none stored twice.
    assert stored_row_count(serve.data_dir) == SENT
    stored = query_json(serve.data_dir, "--token", TOKEN_ID, "--limit", str(2 * SENT))
    assert len(stored) == SENT
    assert [e for e in stored if {k: e[k] for k in AS_SENT} != AS_SENT] == []
