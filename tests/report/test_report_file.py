"""`tokenotel report` on a stopped data directory: each format written and sealed, the seal
checked by `tokenotel verify --report` (a changed byte, a key not trusted), the HTML opened in
a real browser, the PDF printed from it (docs/report.md)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from browser import chromium_path, visit

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from processes import run_cli
from tokenotel.integrity.signing import SigningKey, public_path
from tokenotel.report.seal import MARK

pytestmark = pytest.mark.e2e  # runs the CLI and a browser

H = 3600 * 10**9
Q3 = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp()) * 10**9
TITLES = [
    "1. Scope: what the trail covers",
    "2. Token inventory at the end of the period",
    "3. Rotation age against the policy",
    "4. Dormant tokens still active",
    "5. Revocation timeliness",
    "6. Privileged tokens",
    "7. Failed authentication and alerts",
    "8. Log integrity",
    "9. Retention",
]


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small signed trail in 2026-Q3: a few tokens, uses, failures, a leak revoked late;
    sixty tokens, so the inventory is longer than the HTML shows."""
    data = tmp_path_factory.mktemp("trail") / "data"
    ingest = InProcessIngest(data)
    try:
        records = [
            log_record(
                "token.created",
                {"token.id": f"key-{i:02d}", "user.id": f"owner-{i % 7}",
                 "token.scopes": ["admin"] if i % 10 == 0 else ["read"]},
                time_unix_nano=Q3 + i * H,
            )
            for i in range(60)
        ]  # fmt: skip
        records += [
            log_record(
                "token.used",
                {"token.id": f"key-{i % 60:02d}", "client.address": f"198.51.100.{i % 20}"},
                time_unix_nano=Q3 + 100 * H + i * 60 * 10**9,
            )
            for i in range(300)
        ]
        records += [
            log_record(
                "token.auth_failed",
                {"token.id": "key-03", "client.address": "203.0.113.9",
                 "token.failure_reason": "invalid_signature"},
                time_unix_nano=Q3 + 200 * H + i * 10**9,
            )
            for i in range(5)
        ]  # fmt: skip
        records += [
            log_record("token.leak_detected", {"token.id": "key-10"}, time_unix_nano=Q3 + 300 * H),
            log_record("token.revoked", {"token.id": "key-10"}, time_unix_nano=Q3 + 330 * H),
        ]
        assert ingest.send(export_request(*records, resource={"service.name": "billing"}))
        ingest.checkpoint()
    finally:
        ingest.close()
    return data


def report(trail: Path, out: Path, *args: str) -> str:
    result = run_cli("report", "--data-dir", str(trail), "--period", "2026-Q3", "-o", str(out),
                     *args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def verify_report(trail: Path, path: Path, *args: str) -> tuple[int, str]:
    result = run_cli("verify", "--report", str(path), "--data-dir", str(trail), *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


@pytest.mark.parametrize("form", ["html", "json", "csv"])
def test_each_format_is_sealed_and_signed_and_a_changed_byte_is_found(
    trail: Path, tmp_path: Path, form: str
) -> None:
    out = tmp_path / f"report.{form}"
    report(trail, out, "--format", form)
    code, said = verify_report(trail, out)
    assert code == 0, said
    assert "unchanged: its SHA-256 is the one sealed in it" in said
    assert "(trusted)" in said
    assert "period 2026-07-01T00:00:00Z 2026-10-01T00:00:00Z" in said
    assert "checkpoint " in said and "checkpoint none" not in said

    content = out.read_bytes()
    at = content.index(b"key-10")  # the leaked token: a row an editor would change
    out.write_bytes(content[:at] + b"key-11" + content[at + 6 :])
    code, said = verify_report(trail, out)
    assert code == 1, said
    assert "INVALID: changed after it was sealed" in said


def test_a_seal_signed_by_a_key_not_trusted_is_invalid(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    report(trail, out, "--format", "json")
    other = SigningKey("elsewhere/tokenotel", b"\x01" * 32)
    public = tmp_path / "other.pub"
    public.write_text(f"{other.verifier}\n")
    code, said = verify_report(trail, out, "--public-key", str(public))
    assert code == 1, said
    assert "INVALID: signed, but not by a trusted key" in said
    code, said = verify_report(trail, out, "--public-key", str(public_path(trail / "signing.key")))
    assert code == 0, said


def test_a_trail_without_a_signing_key_gives_an_unsigned_seal(trail: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(trail, copy, symlinks=True)  # (the store links relatively)
    (copy / "signing.key").unlink()
    (copy / "signing.pub").unlink()
    out = tmp_path / "report.html"
    said = report(copy, out)
    assert "sealed unsigned" in said
    code, said = verify_report(copy, out)
    assert code == 0, said
    assert "not signed" in said
    assert "Tamper evidence is off" in out.read_text()


def test_json_and_csv_hold_the_same_rows_and_the_html_shows_the_first(
    trail: Path, tmp_path: Path
) -> None:
    report(trail, tmp_path / "r.json", "--format", "json")
    report(trail, tmp_path / "r.csv", "--format", "csv")
    report(trail, tmp_path / "r.html")
    document = json.loads((tmp_path / "r.json").read_text())
    assert [s["number"] for s in document["sections"]] == list(range(1, 10))
    lines = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert lines[-1]["table"] == "seal"
    assert lines[-1]["value"].startswith(MARK)
    for section in document["sections"]:
        label = f"{section['number']}. {section['key']}"
        figures = {
            line["column"]: line["value"]
            for line in lines
            if line["section"] == label and line["table"] == "figures"
        }
        assert figures == {
            name: "" if value is None else str(value) for name, value in section["figures"].items()
        }
        for table in section["tables"]:
            rows: dict[int, dict[str, str]] = {}
            for line in lines:
                if line["section"] == label and line["table"] == table["name"]:
                    rows.setdefault(int(line["row"]), {})[line["column"]] = line["value"]
            assert [rows[n] for n in sorted(rows)] == [
                {c: "" if v is None else str(v) for c, v in zip(table["columns"], row, strict=True)}
                for row in table["rows"]
            ]
    inventory = document["sections"][1]["tables"][0]
    assert len(inventory["rows"]) == 60
    html = (tmp_path / "r.html").read_text()
    assert "The first 50 of 60 rows; every row is in the CSV and JSON" in html
    revocations = document["sections"][4]["tables"][0]["rows"]
    assert revocations == [
        ["key-10", "token.leak_detected", "2026-07-13T12:00:00Z", "2026-07-14T18:00:00Z",
         "token.revoked", 30.0, "late"]
    ]  # fmt: skip


def test_the_html_renders_in_a_real_browser_with_nothing_fetched(
    trail: Path, tmp_path: Path
) -> None:
    chromium_path()
    out = tmp_path / "report.html"
    report(trail, out)
    seen = visit(out)
    assert seen.console_errors == []
    assert seen.outside_requests == []
    assert seen.title == "Token audit report 2026-Q3"
    for title in TITLES:
        assert title in seen.text
    assert len(seen.screenshot) > 20_000  # a page of text, tables and a chart
    assert seen.colours > 50  # not blank
    (tmp_path / "first-page.png").write_bytes(seen.screenshot)


def test_the_pdf_is_printed_from_the_html_and_sealed(trail: Path, tmp_path: Path) -> None:
    chromium_path()
    out = tmp_path / "report.pdf"
    report(trail, out, "--format", "pdf")
    content = out.read_bytes()
    assert content.startswith(b"%PDF-")
    assert len(content) > 20_000
    code, said = verify_report(trail, out)
    assert code == 0, said
    assert "(trusted)" in said


def test_wrong_arguments_say_what_is_wrong(trail: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rotation_days: 30\nrotation_dayz: 3\n")
    for args, said in [
        (["--period", "2026-Q5"], "give a quarter (2026-Q3)"),
        (["--period", "2026-Q3", "--since", "2026-07-01"], "not both"),
        (["--policy", str(policy)], "rotation_dayz: Extra inputs are not permitted"),
        (["--since", "2026-08-01", "--until", "2026-07-01"], "before it starts"),
    ]:
        result = run_cli("report", "--data-dir", str(trail), "-o", str(tmp_path / "x"), *args)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr
    code, said = verify_report(trail, policy)
    assert code == 2
