"""``tokenotel demo`` end to end: real SDK traffic in, a summary a person can read out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from processes import clean_env, query_json, run_cli

pytestmark = pytest.mark.e2e  # starts tokenotel processes


def test_demo_finds_the_attack_and_leaves_data_to_explore(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "tokenotel", "demo", "--data-dir", str(data_dir), "--events", "400"],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(COLUMNS="160"),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    sent, stored = map(int, re.search(r"(\d+) events sent, (\d+) stored", out).groups())
    assert sent == stored > 400
    assert re.search(r"billing_ci\s+│\s+198\.51\.100\.23\s+│\s+40\s+│\s+40", out)  # the burst
    assert re.search(r"pat_carol_old\s+│\s+revoked\s+│.*203\.0\.113\.99", out)  # after revocation
    assert re.search(r"contractor_dave\s+│.*192\.0\.2\.44\s+│\s+token\.auth_failed", out)
    assert "query --data-dir" in out
    # No raw secret of the demo's tokens (ghp_, glpat-, sk_live_, gho_ + 20 or more characters).
    assert not re.search(r"\b(ghp_|glpat-|sk_live_|gho_)[A-Za-z0-9]{20,}", out + result.stderr)
    # The data stays for the printed commands to explore.
    failures = query_json(data_dir, "--token", "billing_ci", "--outcome", "failure")
    assert len(failures) >= 40
    assert {e["client_ip"] for e in failures} >= {"198.51.100.23"}
    # The compliance report of the demo's days, written beside its data, sealed and signed by
    # the trail's key (docs/report.md); it names the leaked token revoked within the SLA.
    report = data_dir / "report.html"
    assert "compliance report of the last two days" in out
    assert str(report) in out.replace("\n", "")  # however the console wrapped it
    assert "pat_carol_old" in report.read_text(encoding="utf-8")
    checked = run_cli("verify", "--report", str(report), "--data-dir", str(data_dir))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "(trusted)" in checked.stdout
