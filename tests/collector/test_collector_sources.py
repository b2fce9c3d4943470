"""Vendors' records, live and from history, give the same rows.

For each source: its records (the vendors' own samples, docs/sources.md "Test data", and the
project's fixtures, tests/sources/fixtures/<source>/) are written where the source's collector
config (collector-config/sources/<source>.yaml) reads them; the real collector sends them to
``tokenotel serve`` (live), and ``tokenotel import`` reads the same files into another data
directory (history). Both stores then hold the same rows, column by column, except what
legitimately differs: ``ingested_at`` (when each was written) and ``observed_delay_ns`` (when
the collector, or the import, read the line). Then the same files are imported into the
running service: nothing is stored twice.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from otelcol import serve_behind_collector, wait_until

from processes import clean_env, free_port, run_cli, stored_row_count
from tokenotel.sources import SOURCES
from vendor_samples import vendor_lines

pytestmark = [pytest.mark.collector, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "sources" / "fixtures"
DELIVERY_TIMEOUT_S = 60

#: The vendor sample files of each source.
SAMPLES: dict[str, list[str]] = {
    "vault": ["vault-audit.jsonl"],
    "github": ["github-audit.jsonl", "github-ghes-audit-syslog.log"],
    "cloudtrail": ["cloudtrail.jsonl", "cloudtrail.elastic-thirdparty.jsonl"],
    "okta": ["okta-system-log.jsonl"],
    "gitlab": ["gitlab-audit.jsonl"],
    "kubernetes": ["k8s-audit.jsonl", "k8s-audit-oc-node-logs.log"],
    "kong": ["kong-file-log.jsonl"],
    "nginx": [],
    "envoy": [],
}
#: Where each source's config reads its files (the variable, and the names it takes).
FILES_SETTING: dict[str, tuple[str, str]] = {
    "vault": ("VAULT_AUDIT_FILES", "audit-{n}.log"),
    "github": ("GITHUB_AUDIT_FILES", "audit-{n}.jsonl"),
    "cloudtrail": ("CLOUDTRAIL_FILES", "trail-{n}.json.gz"),
    "okta": ("OKTA_LOG_FILES", "system-log-{n}.jsonl"),
    "gitlab": ("GITLAB_AUDIT_FILES", "audit-{n}.jsonl"),
    "kubernetes": ("KUBERNETES_AUDIT_FILES", "audit-{n}.log"),
    "kong": ("KONG_LOG_FILES", "file-log-{n}.json"),
    "nginx": ("NGINX_ACCESS_LOGS", "token-access-{n}.log"),
    "envoy": ("ENVOY_ACCESS_LOGS", "access-{n}.json"),
}
#: Listeners of the configs that have some (on free ports in the tests).
LISTENERS = {"vault": ("VAULT_AUDIT_LISTEN",), "github": ("GITHUB_SYSLOG_LISTEN",)}


def test_every_source_has_a_collector_config_and_files() -> None:
    configs = sorted(p.stem for p in (ROOT / "collector-config" / "sources").glob("*.yaml"))
    assert configs == sorted(FILES_SETTING)
    assert set(SOURCES) <= set(SAMPLES)


def source_lines(source: str) -> list[list[str]]:
    """The record files of ``source``: each vendor sample file, then each fixture file."""
    files = [vendor_lines(name) for name in SAMPLES[source]]
    fixtures = FIXTURES / source
    for path in sorted(fixtures.glob("*")) if fixtures.is_dir() else []:
        if path.name != "SOURCES.md":
            files.append(path.read_text(encoding="utf-8").splitlines())
    return files


def write_files(source: str, directory: Path) -> list[Path]:
    """The source's records as the vendor delivers them: lines in files; CloudTrail's as its
    log files are, one gzip JSON document {"Records": [...]} each."""
    directory.mkdir(parents=True)
    _, pattern = FILES_SETTING[source]
    written = []
    for n, lines in enumerate(source_lines(source)):
        path = directory / pattern.format(n=n)
        if source == "cloudtrail":
            records = [orjson.loads(line) for line in lines if line.strip()]
            document = orjson.dumps({"Records": records})
            path.write_bytes(gzip.compress(document + b"\n"))
        else:
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written.append(path)
    return written


# Every row of a stopped data directory's events table, every column but those that differ by
# nature between two stores: as JSON, one a line, in a stable order.
_DUMP_ROWS = """
import json, sys
from pathlib import Path
from tokenotel.config import load_settings
from tokenotel.store.client import EVENTS_TABLE, Store
store = Store(load_settings(data_dir=Path(sys.argv[1])).store_options)
try:
    result = store.query(
        f"SELECT * EXCEPT (ingested_at, observed_delay_ns) FROM {EVENTS_TABLE} "
        "ORDER BY event_time, event_id"
    )
    for row in result.result_rows:
        print(json.dumps(dict(zip(result.column_names, row)), default=repr, sort_keys=True))
finally:
    store.close()
"""


def stored_rows(data_dir: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_ROWS, str(data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def import_files(source: str, data_dir: Path, files: list[Path]) -> str:
    result = run_cli("import", "--source", source, "--data-dir", str(data_dir), *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def events_stored(summary: str) -> int:
    return int(summary.split(" events stored")[0].rsplit(", ", 1)[1].replace(",", ""))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_live_and_imported_records_give_the_same_rows(source: str, tmp_path: Path) -> None:
    files = write_files(source, tmp_path / "files")
    variable, pattern = FILES_SETTING[source]
    glob = str(tmp_path / "files" / pattern.replace("{n}", "*"))

    # History: the files into a data directory of their own.
    summary = import_files(source, tmp_path / "history", files)
    expected = events_stored(summary)
    assert expected > 0, summary
    history = stored_rows(tmp_path / "history")
    assert len(history) == expected

    # Live: the collector reads the same files into a running service, with the same
    # fingerprint key (each data directory makes its own otherwise).
    (tmp_path / "data").mkdir(mode=0o700)
    shutil.copy2(tmp_path / "history" / "fingerprint.key", tmp_path / "data" / "fingerprint.key")
    settings = {variable: glob} | {
        name: f"127.0.0.1:{free_port()}" for name in LISTENERS.get(source, ())
    }
    with serve_behind_collector(tmp_path, f"sources/{source}.yaml", **settings) as _:
        wait_until(
            lambda: _count(tmp_path / "data") >= expected,
            DELIVERY_TIMEOUT_S,
            f"{expected} {source} events through the collector",
        )
        # The same files imported into the running service (found through its data
        # directory): every event is there already, none is stored again.
        again = import_files(source, tmp_path / "data", files)
        assert "lines skipped" in again
    live = stored_rows(tmp_path / "data")

    assert stored_row_count(tmp_path / "data") == expected
    assert [row["event_id"] for row in live] == [row["event_id"] for row in history]
    for live_row, history_row in zip(live, history, strict=True):
        assert live_row == history_row


def _count(data_dir: Path) -> int:
    result = run_cli("query", "--data-dir", str(data_dir), "--format", "json", "--limit", "100000")
    return len(result.stdout.splitlines()) if result.returncode == 0 else 0
