"""A raw token sent every way a sender might leaks nowhere: not to disk, logs or CLI output;
nor does the fingerprint key, which is the user's alone on disk (docs/keys.md).

The hard way (README, "Secrets and fingerprints"): a full run at --log-level debug (serve,
SDK traffic, the reading commands through the running service and on the stopped directory),
then every file under the data directory is read as bytes, and every ClickHouse compressed
block in it is decompressed too, because the column files are LZ4/ZSTD-compressed and a plain
grep would not see a stored string. A marker sent alongside the secret proves the scan does
see stored text.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import stat
import string
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Both codecs ship with clickhouse-connect (its own dependencies), so they are always installed.
import backports.zstd as zstd
import lz4.block
import pytest
from opentelemetry.exporter.otlp.json.http._log_exporter import (
    OTLPLogExporter as JsonHttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult

from otel_sdk import CheckedExporter, logger_provider
from processes import ServeProcess, clean_env, query_json, run_cli, start_serve

pytestmark = pytest.mark.e2e  # starts tokenotel processes

# ClickHouse compressed block: 16-byte checksum, method byte, u32 compressed size (counting the
# 9 header bytes from the method on), u32 uncompressed size, payload.
_BLOCK_HEADER = struct.Struct("<BII")
_NONE, _LZ4, _ZSTD = 0x02, 0x82, 0x90
_ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_BLOCK_SIZE = 16 * 1024 * 1024


def readable_contents(data: bytes) -> Iterator[bytes]:
    """The bytes themselves, then whatever any compressed block or zstd frame in them holds.

    Every offset is tried, so blocks nested in packed files (skip indexes) are found too.
    """
    yield data
    for offset in range(len(data) - 25):
        method, compressed, size = _BLOCK_HEADER.unpack_from(data, offset + 16)
        end = offset + 16 + compressed
        if method not in (_NONE, _LZ4, _ZSTD) or compressed < 9 or end > len(data):
            continue
        if size > _MAX_BLOCK_SIZE:  # blocks hold about 1 MiB: a larger size is not a header
            continue
        payload = data[offset + 25 : end]
        try:
            if method == _LZ4:
                yield lz4.block.decompress(payload, uncompressed_size=size)
            elif method == _ZSTD:
                yield zstd.decompress(payload)
            elif len(payload) == size:
                yield payload
        except Exception:  # not a block after all: an offset that merely looked like one
            continue
    start = data.find(_ZSTD_FRAME_MAGIC)
    while start != -1:
        with contextlib.suppress(zstd.ZstdError):
            yield zstd.ZstdDecompressor().decompress(data[start:])
        start = data.find(_ZSTD_FRAME_MAGIC, start + 1)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file() and any(needle in part for part in readable_contents(path.read_bytes()))
    ]


def expected_fingerprint(data_dir: Path, secret: str, key_file: Path | None = None) -> str:
    """HMAC-SHA256 computed here, independently, from the key file serve created (or another)."""
    key = bytes.fromhex((key_file or data_dir / "fingerprint.key").read_text().strip())
    key_id = hashlib.sha256(key).hexdigest()[:8]
    return f"hmac-sha256:{key_id}:{hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()}"


def reading_commands(serve: ServeProcess, secret: str) -> list[str]:
    """What the reading commands print through the running service: stdout and stderr of each."""
    where = ["--data-dir", str(serve.data_dir)]  # (the service is found through it)
    runs = [
        run_cli("query", *where, "--secret-stdin", "--format", "json", stdin=secret),
        run_cli("fingerprint", "--server", serve.api_target, stdin=secret),
        run_cli("tokens", *where, "--format", "json"),
        run_cli("timeline", "tok_leaked", *where, "--format", "json"),
        run_cli("summary", *where, "--format", "json"),
    ]
    for result in runs:
        assert result.returncode == 0, result.stderr
    return [result.stdout + result.stderr for result in runs]


@dataclass
class Ingested:
    data_dir: Path
    secret: str
    marker: str
    server_output: str
    json_error: str
    #: What the reading commands printed, through the running service and on the stopped store.
    cli_output: list[str]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingested]:
    """Sends the secret as token.value, in an Authorization attribute and in bodies; stops serve."""
    # Random per run, so no file could contain it by accident; shaped like a GitHub PAT.
    alphabet = string.ascii_letters + string.digits
    secret = "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))
    marker = "marker-" + secrets.token_hex(8)
    data_dir = tmp_path_factory.mktemp("secrets") / "data"
    serve = start_serve(data_dir, "--log-level", "debug")
    try:
        grpc_exporter = CheckedExporter(GrpcLogExporter(endpoint=serve.grpc_target, insecure=True))
        provider = logger_provider(grpc_exporter, {"service.name": "gateway"})
        logger = provider.get_logger("gateway.auth")
        logger.emit(
            event_name="token.used",
            attributes={"token.value": secret, "note": marker},
        )
        logger.emit(
            event_name="token.used",
            attributes={
                "http.request.header.authorization": [f"Bearer {secret}"],
                "note": marker,
            },
        )
        logger.emit(
            event_name="token.leak_detected",
            attributes={"token.id": "tok_leaked", "note": marker},
            body=f"found {secret} in a public gist",
        )
        provider.shutdown()

        json_exporter = CheckedExporter(JsonHttpLogExporter(endpoint=serve.logs_url))
        provider = logger_provider(json_exporter, {"service.name": "app"})
        provider.get_logger("app").emit(
            event_name="token.auth_failed",
            attributes={"token.value": secret, "note": marker},
            body={"headers": {"Authorization": f"Bearer {secret}"}},
        )
        provider.shutdown()
        assert grpc_exporter.results + json_exporter.results == [LogRecordExportResult.SUCCESS] * 4

        # A malformed request that quotes the secret where a number belongs.
        bad = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": secret}]}]}]}
        request = urllib.request.Request(
            serve.logs_url,
            data=json.dumps(bad).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=10)
            json_error = ""
        except urllib.error.HTTPError as e:
            assert e.code == 400
            json_error = e.read().decode()
        cli_output = reading_commands(serve, secret)
    finally:
        assert serve.stop() == 0, serve.output()
    stopped = run_cli(
        "query", "--data-dir", str(data_dir), "--secret-stdin", "--format", "csv", stdin=secret
    )
    assert stopped.returncode == 0, stopped.stderr
    cli_output.append(stopped.stdout + stopped.stderr)
    yield Ingested(data_dir, secret, marker, serve.output(), json_error, cli_output)


def test_secret_is_in_no_file_under_the_data_directory(ingested: Ingested) -> None:
    files = [p for p in ingested.data_dir.rglob("*") if p.is_file()]
    assert len(files) > 10
    # The scan sees stored text: the marker and the fingerprint sent with the secret are found.
    assert files_containing(ingested.data_dir, ingested.marker.encode())
    fingerprint = expected_fingerprint(ingested.data_dir, ingested.secret)
    assert files_containing(ingested.data_dir, fingerprint.encode())
    assert files_containing(ingested.data_dir, ingested.secret.encode()) == []
    # Nor a recognisable part of it (the stored hint must come from the sender, not the secret).
    assert files_containing(ingested.data_dir, ingested.secret[4:24].encode()) == []


def test_every_record_stores_the_fingerprint_in_place_of_the_secret(ingested: Ingested) -> None:
    fingerprint = expected_fingerprint(ingested.data_dir, ingested.secret)
    value, header, body, json_sent = query_json(ingested.data_dir)
    assert (value["event_name"], value["token_fingerprint"]) == ("token.used", fingerprint)
    assert value["attributes"] == {"note": ingested.marker}
    assert (header["event_name"], header["token_fingerprint"]) == ("token.used", fingerprint)
    assert header["attributes"] == {
        "http.request.header.authorization": f'["Bearer {fingerprint}"]',
        "note": ingested.marker,
    }
    assert (body["token_id"], body["token_fingerprint"]) == ("tok_leaked", "")
    assert body["body"] == f"found {fingerprint} in a public gist"
    assert json_sent["token_fingerprint"] == fingerprint
    assert json_sent["body"] == f'{{"headers":{{"Authorization":"Bearer {fingerprint}"}}}}'


def test_secret_is_in_no_server_log_line_or_error_message(ingested: Ingested) -> None:
    assert "token events stored" in ingested.server_output  # the log was captured
    assert ingested.secret not in ingested.server_output
    assert "timeUnixNano" in ingested.json_error
    assert ingested.secret not in ingested.json_error


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_secret_is_in_no_query_output(ingested: Ingested, fmt: str) -> None:
    fingerprint = expected_fingerprint(ingested.data_dir, ingested.secret)
    result = run_cli(
        "query", "--data-dir", str(ingested.data_dir), "--format", fmt, "--token", fingerprint
    )
    assert result.returncode == 0, result.stderr
    # The three records identified by the secret (the fourth one names token tok_leaked).
    assert ("3 events" if fmt == "table" else ingested.marker) in result.stdout
    assert ingested.secret not in result.stdout + result.stderr


def test_fingerprint_command_reproduces_the_stored_fingerprint(ingested: Ingested) -> None:
    result = run_cli("fingerprint", "--data-dir", str(ingested.data_dir), stdin=ingested.secret)
    assert result.returncode == 0, result.stderr
    current, github_hash = result.stdout.splitlines()
    assert current == expected_fingerprint(ingested.data_dir, ingested.secret)
    assert (
        github_hash == base64.b64encode(hashlib.sha256(ingested.secret.encode()).digest()).decode()
    )
    assert ingested.secret not in result.stdout + result.stderr
    stored = {
        e["token_fingerprint"] for e in query_json(ingested.data_dir, "--event", "token.used")
    }
    assert stored == {current}


def test_the_reading_commands_find_the_secret_and_print_it_nowhere(ingested: Ingested) -> None:
    fingerprint = expected_fingerprint(ingested.data_dir, ingested.secret)
    by_service, fingerprinted, *_, by_store = ingested.cli_output
    # query --secret-stdin: the three records identified by the secret, both ways.
    assert by_service.count(fingerprint) >= 3 and by_service.count('"event_name"') == 3
    assert by_store.count("token.used") == 2 and by_store.count("token.auth_failed") == 1
    # fingerprint: the current key's form first, then the hash GitHub's audit log carries.
    assert fingerprinted.splitlines()[0] == fingerprint
    for output in ingested.cli_output:
        assert ingested.secret not in output


def test_the_fingerprint_key_is_in_no_log_output_or_other_file(ingested: Ingested) -> None:
    key_file = ingested.data_dir / "fingerprint.key"
    key_hex = key_file.read_text().strip()
    assert len(key_hex) == 64
    assert "created a random key" in ingested.server_output  # (its id is logged, not the key)
    for output in [ingested.server_output, ingested.json_error, *ingested.cli_output]:
        assert key_hex not in output.lower()
    assert files_containing(ingested.data_dir, key_hex.encode()) == [key_file]
    assert files_containing(ingested.data_dir, bytes.fromhex(key_hex)) == []


def test_the_signing_key_is_in_no_log_output_or_other_file(ingested: Ingested) -> None:
    """The checkpoints' signing key (docs/tamper-evidence.md): its file holds it, the log names
    the file and the public key only."""
    key_file = ingested.data_dir / "signing.key"
    encoded = key_file.read_text().strip().split("+", 4)[4]  # base64(0x01 || 32-byte seed)
    seed = base64.b64decode(encoded)[1:]
    assert len(seed) == 32
    assert "no signing key configured: created one in" in ingested.server_output
    for output in [ingested.server_output, ingested.json_error, *ingested.cli_output]:
        assert encoded not in output and seed.hex() not in output.lower()
    assert files_containing(ingested.data_dir, encoded.encode()) == [key_file]
    assert files_containing(ingested.data_dir, seed) == []


def test_the_key_and_the_data_directory_are_the_users_alone(ingested: Ingested) -> None:
    assert stat.S_IMODE(ingested.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ingested.data_dir / "fingerprint.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ingested.data_dir / "signing.key").stat().st_mode) == 0o600


def test_after_a_key_rotation_a_secret_is_found_under_every_key(tmp_path: Path) -> None:
    """docs/keys.md: a new fingerprint key, the old one kept as a previous key; events stored
    before and after the rotation are both found by the secret, and no key is printed."""
    secret = "glpat-" + secrets.token_urlsafe(15)
    data_dir = tmp_path / "data"
    new_key = tmp_path / "fingerprint-new.key"
    new_key.write_text(secrets.token_hex(32) + "\n")
    old_key = data_dir / "fingerprint.key"
    outputs = []

    def send_as(name: str, serve: ServeProcess) -> None:
        exporter = CheckedExporter(GrpcLogExporter(endpoint=serve.grpc_target, insecure=True))
        provider = logger_provider(exporter, {"service.name": name})
        provider.get_logger(name).emit(event_name="token.used", attributes={"token.value": secret})
        provider.shutdown()
        assert exporter.results == [LogRecordExportResult.SUCCESS]

    before = start_serve(data_dir, "--log-level", "debug")
    try:
        send_as("before", before)
    finally:
        assert before.stop() == 0, before.output()
    outputs.append(before.output())
    rotated = clean_env(
        TOKENOTEL_FINGERPRINT_KEY_FILE=str(new_key),
        TOKENOTEL_PREVIOUS_FINGERPRINT_KEY_FILES=str(old_key),
    )
    after = start_serve(data_dir, "--log-level", "debug", env=rotated)
    try:
        send_as("after", after)
        through_service = run_cli(
            "query", "--data-dir", str(data_dir), "--secret-stdin", "--format", "json",
            stdin=secret, env=rotated,
        )  # fmt: skip
        fingerprinted = run_cli("fingerprint", "--server", after.api_target, stdin=secret)
    finally:
        assert after.stop() == 0, after.output()
    outputs += [after.output(), through_service.stdout, fingerprinted.stdout]

    old, new = (
        expected_fingerprint(data_dir, secret),
        expected_fingerprint(data_dir, secret, new_key),
    )
    assert old.split(":")[1] != new.split(":")[1]  # each carries its key's id
    assert fingerprinted.stdout.splitlines()[:2] == [new, old]
    found = [json.loads(line) for line in through_service.stdout.splitlines()]
    assert {(e["service_name"], e["token_fingerprint"]) for e in found} == {
        ("before", old),
        ("after", new),
    }
    # On the stopped directory, with the key files: both with the previous key, one without.
    for previous, expected in ((["--previous-key-file", str(old_key)], 2), ([], 1)):
        result = run_cli(
            "query", "--data-dir", str(data_dir), "--secret-stdin", "--format", "json",
            *previous, stdin=secret, env=clean_env(TOKENOTEL_FINGERPRINT_KEY_FILE=str(new_key)),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == expected
        outputs.append(result.stdout + result.stderr)
    for output in outputs:
        assert secret not in output
        for key in (old_key, new_key):
            assert key.read_text().strip() not in output
