"""A full disk under the embedded store: writes are answered UNAVAILABLE with RetryInfo (HTTP
503 with Retry-After), nothing is acknowledged that is not stored, and ingest resumes by
itself once there is space again.

The store lives on a small tmpfs mounted in a mount namespace of the service's own (``unshare``
from util-linux: no privileges needed beyond user namespaces); the test reaches the files
through ``/proc/<pid>/root``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult

from otel_sdk import logger_provider
from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import clean_env, free_port, http_get, http_post

pytestmark = pytest.mark.e2e  # starts tokenotel processes

TMPFS_SIZE = "64m"
#: The Python SDK tries an export six times, waiting as long as the service asks between tries:
#: 2 s a time leaves ten seconds for space to come back.
RETRY_AFTER_S = 2.0
STARTUP_TIMEOUT_S = 60
#: The mount lives while this shell does: it keeps it after the service stopped, for the copy.
NAMESPACE_SCRIPT = 'mount -t tmpfs -o size={size} tmpfs "$1" && shift && "$@"; exec sleep 600'


@dataclass
class ServeOnTmpfs:
    """``tokenotel serve`` whose data directory is on a tmpfs only it sees."""

    shell: subprocess.Popen[bytes]
    mount: Path
    grpc_port: int
    http_port: int
    log_path: Path

    @property
    def serve(self) -> psutil.Process:
        (child,) = psutil.Process(self.shell.pid).children()
        return child

    def inside(self, path: str) -> Path:
        """A path on the tmpfs, as the test process reaches it."""
        return Path(f"/proc/{self.shell.pid}/root") / self.mount.relative_to("/") / path

    def stored(self) -> list[dict[str, object]]:
        """``tokenotel query --format json`` of the stopped service's store, run where the
        tmpfs is mounted (its files refer to their own paths: a copy would not open)."""
        result = subprocess.run(
            ["nsenter", "--target", str(self.shell.pid), "--user", "--mount",
             "--preserve-credentials", "--", sys.executable, "-m", "tokenotel", "query",
             "--data-dir", str(self.mount / "data"), "--format", "json", "--limit", "100000"],
            capture_output=True, text=True, env=clean_env(), timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@contextlib.contextmanager
def serve_on_tmpfs(root: Path) -> Iterator[ServeOnTmpfs]:
    mount = root / "mnt"
    mount.mkdir()
    grpc_port, http_port = free_port(), free_port()
    log_path = root / "serve.log"
    command = [
        "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
        "sh", "-c", NAMESPACE_SCRIPT.format(size=TMPFS_SIZE), "sh", str(mount),
        sys.executable, "-m", "tokenotel", "serve", "--data-dir", str(mount / "data"),
        "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}",
        "--api-listen", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        shell = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(
                TOKENOTEL_RETRY_AFTER_S=str(RETRY_AFTER_S), TOKENOTEL_MAPPING_WORKERS="1"
            ),
        )
    running = ServeOnTmpfs(shell, mount, grpc_port, http_port, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert shell.poll() is None, log_path.read_text()
            with contextlib.suppress(OSError):
                if http_get(f"http://127.0.0.1:{http_port}/healthz", timeout=1)[0] == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield running
    finally:
        for process in psutil.Process(shell.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        shell.kill()
        shell.wait()


def fill(path: Path) -> int:
    """Writes ``path`` until the file system is full; returns how many bytes it took."""
    written = 0
    with path.open("wb", buffering=0) as filler:
        block = b"\0" * (1 << 20)
        while True:
            try:
                written += filler.write(block)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                if len(block) == 1:
                    return written
                block = block[: len(block) // 2]


def retry_delay_s(error: grpc.RpcError) -> float | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def sdk_records(count: int, first: int) -> tuple:
    captured = InMemoryLogRecordExporter()
    provider = logger_provider(captured, {"service.name": "api"})
    logger = provider.get_logger("api.auth")
    for i in range(first, first + count):
        logger.emit(
            event_name="token.used",
            timestamp=RECENT_NS + i,
            attributes={"token.id": f"tok-{i:04d}", "token.request.id": f"req-{i:04d}"},
        )
    provider.shutdown()
    return captured.get_finished_logs()


def test_a_full_disk_asks_clients_to_retry_and_ingest_resumes_once_there_is_space(
    tmp_path: Path,
) -> None:
    with serve_on_tmpfs(tmp_path) as running:
        target = f"127.0.0.1:{running.grpc_port}"
        exporter = OTLPLogExporter(endpoint=target, insecure=True, timeout=120)
        assert exporter.export(sdk_records(200, 0)) == LogRecordExportResult.SUCCESS

        filled = fill(running.inside("filler"))
        assert filled > 0
        # Full: a write is answered "come back later", over gRPC and HTTP alike.
        full = export_request(log_record("token.used", {"token.id": "while-full"}))
        with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as refused:
            grpc_export(channel, full.SerializeToString())
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert retry_delay_s(refused.value) == RETRY_AFTER_S
        status, headers, _ = http_post(
            f"http://127.0.0.1:{running.http_port}/v1/logs",
            full.SerializeToString(),
            "application/x-protobuf",
        )
        assert (status, headers["Retry-After"]) == (503, "2")
        assert http_get(f"http://127.0.0.1:{running.http_port}/readyz")[0] == 503

        # An SDK export goes on retrying while the disk is full; space comes back meanwhile,
        # and the same export succeeds without anyone restarting anything.
        freed = subprocess.Popen(
            [sys.executable, "-c", "import os,sys,time; time.sleep(2); os.remove(sys.argv[1])",
             str(running.inside("filler"))]
        )  # fmt: skip
        assert exporter.export(sdk_records(200, 200)) == LogRecordExportResult.SUCCESS
        assert freed.wait() == 0
        exporter.shutdown()
        assert http_get(f"http://127.0.0.1:{running.http_port}/readyz")[0] == 200

        running.serve.terminate()
        running.serve.wait(60)
        stored = running.stored()
        log = running.log_path.read_text()

    assert "write of" in log and "failed, clients will retry" in log  # it did hit the full disk
    # Every acknowledged event, once (query lists every row: the events table does not merge);
    # the one refused while the disk was full was never acknowledged.
    assert sorted(str(e["request_id"]) for e in stored) == [f"req-{i:04d}" for i in range(400)]
