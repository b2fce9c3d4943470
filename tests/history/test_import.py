"""``tokenotel import``: a source's files (plain, gzip, directories, globs) into a stopped data
directory; a malformed line is reported with its file and line and skipped; a second import
stores nothing twice; an import killed half way (kill -9) finishes when run again, storing
every event once."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from processes import clean_env, query_json, run_cli, start_serve, stored_row_count

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "sources" / "fixtures" / "vault" / "audit.jsonl"


def vault_responses(count: int, seed: int = 0) -> list[str]:
    """``count`` Vault response entries, each its own event (its own request id and time)."""
    templates = [
        json.loads(line) for line in FIXTURE.read_text().splitlines() if '"type":"response"' in line
    ]
    lines = []
    for i in range(count):
        entry = json.loads(json.dumps(templates[i % len(templates)]))
        entry["request"]["id"] = str(uuid.UUID(int=seed << 64 | i))
        entry["time"] = f"2026-01-0{1 + i % 9}T10:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z"
        lines.append(json.dumps(entry, separators=(",", ":")))
    return lines


def summary_of(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_files_directories_globs_and_gzip_are_imported_and_bad_lines_reported(
    tmp_path: Path,
) -> None:
    good = vault_responses(30)
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "audit.log").write_text("\n".join(good[:10]) + "\n")
    (logs / "old" / "audit-1.log.gz").write_bytes(
        gzip.compress(("\n".join(good[10:20]) + "\n").encode())
    )
    # A truncated line, a line that is not JSON, and one that is not a Vault entry.
    bad = [good[20][:50], "not json at all", '{"hello":"world"}']
    (tmp_path / "more.log").write_text("\n".join([*good[20:25], *bad, *good[25:]]) + "\n")

    result = run_cli(
        "import",
        "--source",
        "vault",
        "--data-dir",
        str(tmp_path / "data"),
        str(logs),
        str(tmp_path / "more*.log"),
    )
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout) == (
        f"imported into {tmp_path / 'data'}: 3 files, 33 lines read, 30 events stored, "
        "3 lines skipped, 0 records without a token event"
    )
    more = tmp_path / "more.log"
    assert f"{more}:6: vault record is not JSON" in result.stderr
    assert f"{more}:7: vault record is not JSON" in result.stderr
    assert f"{more}:8: vault record has no type request or response" in result.stderr
    assert stored_row_count(tmp_path / "data") == 30

    # Again: every file was imported whole, none is read again, nothing is stored twice.
    again = run_cli(
        "import",
        "--source",
        "vault",
        "--data-dir",
        str(tmp_path / "data"),
        str(logs),
        str(tmp_path / "more*.log"),
    )
    assert again.returncode == 0, again.stderr
    assert summary_of(again.stdout) == (
        f"imported into {tmp_path / 'data'}: 3 files (3 imported before, not read again), "
        "0 lines read, 0 events stored, 0 lines skipped, 0 records without a token event"
    )
    # The same records in another file: known by their ids, stored before.
    (tmp_path / "copy.log").write_text("\n".join(good) + "\n")
    copy = run_cli(
        "import",
        "--source",
        "vault",
        "--data-dir",
        str(tmp_path / "data"),
        str(tmp_path / "copy.log"),
    )
    assert "0 events stored, 30 stored before (not again)" in summary_of(copy.stdout)
    assert stored_row_count(tmp_path / "data") == 30


def test_an_unknown_source_and_a_missing_path_are_refused(tmp_path: Path) -> None:
    unknown = run_cli("import", "--source", "nope", "--data-dir", str(tmp_path), str(tmp_path))
    assert unknown.returncode == 2
    assert "--source 'nope': one of" in unknown.stderr
    missing = run_cli(
        "import", "--source", "vault", "--data-dir", str(tmp_path), str(tmp_path / "none*.log")
    )
    assert missing.returncode == 2
    assert "no such file, directory or matching file" in missing.stderr


def test_an_import_killed_half_way_finishes_when_run_again(tmp_path: Path) -> None:
    files = []
    for n in range(8):
        path = tmp_path / "logs" / f"audit-{n}.log.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gzip.compress(("\n".join(vault_responses(8_000, n)) + "\n").encode()))
        files.append(path)
    data = tmp_path / "data"
    command = [sys.executable, "-m", "tokenotel", "import", "--source", "vault",
               "--data-dir", str(data), str(tmp_path / "logs")]  # fmt: skip
    proc = subprocess.Popen(
        command, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    progress = data / "import-progress.json"
    deadline = time.monotonic() + 120
    while not _committed_some(progress):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no commit noted in 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the import and its mapping workers
    proc.wait()
    proc.communicate()
    assert stored_row_count(data) < 64_000

    again = run_cli("import", "--source", "vault", "--data-dir", str(data), str(tmp_path / "logs"))
    assert again.returncode == 0, again.stderr
    assert stored_row_count(data) == 64_000
    result = run_cli("query", "--data-dir", str(data), "--format", "json", "--limit", "100000")
    ids = {json.loads(line)["request_id"] for line in result.stdout.splitlines()}
    assert len(ids) == 64_000


def _committed_some(progress: Path) -> bool:
    try:
        document = json.loads(progress.read_text())
    except (OSError, ValueError):
        return False
    return any(f["offset"] for f in document["sources"].get("vault", {}).values())


def test_raw_tokens_in_imported_lines_are_stored_only_as_fingerprints(tmp_path: Path) -> None:
    # A Vault audit device with log_raw on writes the token itself; a request may carry
    # another in its data. Imported, the first is the event's token (its fingerprint), the kept
    # entry says [token.value] in its place and the fingerprint of the second in its place.
    token = "hvs.CAESI" + "Abc123XyZ" * 3
    other = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
    entry = json.loads(vault_responses(4)[3])  # a read made with a token
    entry["auth"]["client_token"] = token
    entry["request"]["data"] = {"note": f"Authorization: Bearer {other}"}
    (tmp_path / "audit.log").write_text(json.dumps(entry) + "\n")
    data = tmp_path / "data"

    result = run_cli("import", "--source", "vault", "--data-dir", str(data), str(tmp_path))
    assert result.returncode == 0, result.stderr
    (event,) = query_json(data)
    fingerprints = {
        secret: run_cli("fingerprint", "--data-dir", str(data), stdin=secret)
        .stdout.splitlines()[0]
        .strip()
        for secret in (token, other)
    }
    assert event["token_fingerprint"] == fingerprints[token]
    kept = event["attributes"]["vault.record"]
    assert '"client_token":"[token.value]"' in kept
    assert f"Bearer {fingerprints[other]}" in kept
    for text in (result.stdout, result.stderr, json.dumps(event)):
        assert token not in text and other not in text
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert token.encode() not in content and other.encode() not in content, path


def test_an_import_into_a_running_service_stores_its_events_and_reports_bad_lines(
    tmp_path: Path,
) -> None:
    # The service's OTLP/gRPC endpoint gets each line as the body of a log record, as the
    # collector sends them: the same events, and a bad line named by its file and line.
    good = vault_responses(12, seed=3)
    log = tmp_path / "logs" / "audit.log"
    log.parent.mkdir()
    log.write_text("\n".join([*good[:6], "not json at all", *good[6:]]) + "\n")
    data = tmp_path / "data"
    serve = start_serve(data)
    try:
        result = run_cli("import", "--source", "vault", "--server", serve.grpc_target, str(log))
    finally:
        serve.stop()
    assert result.returncode == 0, result.stderr
    assert summary_of(result.stdout) == (
        f"imported into the service at {serve.grpc_target}: 1 files, 13 lines read, 1 lines skipped"
    )
    assert f"{log}:7: vault record is not JSON" in result.stderr
    assert stored_row_count(data) == 12
