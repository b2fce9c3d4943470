"""`tokenotel detect`: stored history through the shipped rules, on the same attack and
ordinary traffic the Grafana alert rules are tested on (tests/grafana/grafana_scenarios.py)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grafana"))

import grafana_scenarios as scenarios

from inprocess import InProcessIngest
from processes import ServeProcess, run_cli
from tokenotel.detect import Detector, shipped_rules
from tokenotel.detect.replay import replay

#: What the attack of the last five minutes raises, and only it: (rule, about, events).
ATTACK_ALERTS = {
    ("failure-burst", scenarios.BURST_TOKEN, 10),  # the tenth failure within 5 minutes
    ("token-spray", scenarios.SPRAY_IP, 15),  # the fifteenth distinct token
    ("brute-force", scenarios.SPRAY_IP, 20),  # twenty failures from one address in an hour
    ("use-after-revocation-or-expiry", scenarios.REVOKED_TOKEN, 1),  # once an hour, not twice
    ("use-after-revocation-or-expiry", scenarios.EXPIRED_TOKEN, 1),
    ("new-ip-for-token", scenarios.NEW_IP_TOKEN, 1),  # in use, and now from another address
    ("new-network-for-token", scenarios.NEW_IP_TOKEN, 1),  # ...in another network,
    ("new-country-for-token", scenarios.NEW_IP_TOKEN, 1),  # ...and country,
    ("token-from-several-networks", scenarios.NEW_IP_TOKEN, 2),  # within 30 minutes of its own
    ("new-ip-for-token", scenarios.REVOKED_TOKEN, 1),  # the dead tokens, from theirs
    ("new-ip-for-token", scenarios.EXPIRED_TOKEN, 1),
    ("dormant-token-used", scenarios.DORMANT_TOKEN, 1),  # 45 days after its last use
    # 101 calls within 10 minutes: over ten times its usual (under one a minute, taken as one)
    ("call-rate-spike", scenarios.SPIKE_TOKEN, 101),
}
#: The scenarios' own history of the hours before (the same in both): a replayed refresh
#: token, and a token an administrator made for another principal, without expiry.
HISTORY_ALERTS = {
    ("reuse-or-leak-detected", scenarios.REUSED_REFRESH_TOKEN, 1),
    ("token-created-for-another-principal", "tok-search-onboarded", 1),
    ("long-lived-token-created", "tok-search-onboarded", 1),
}


@dataclass
class Stored:
    now: datetime
    data_dirs: dict[str, Path]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    now_ns = time.time_ns()
    data_dirs = {}
    for name in ("attack", "benign"):
        data_dirs[name] = tmp_path_factory.mktemp(name) / "data"
        ingest = InProcessIngest(data_dirs[name])
        try:
            for request in scenarios.build(name, now_ns).requests():
                assert not ingest.send(request).rejected
        finally:
            ingest.close()
    yield Stored(datetime.fromtimestamp(now_ns / 1e9, UTC), data_dirs)


def alerts(stored: Stored, name: str, since: timedelta) -> set[tuple[str, str, int]]:
    ingest = InProcessIngest(stored.data_dirs[name])
    try:
        window = stored.now - since, stored.now + timedelta(seconds=1)
        found = list(replay(Detector(shipped_rules()), ingest.pipeline.store, *window))
    finally:
        ingest.close()
    return {(a.rule.id, a.labels.get("token") or a.labels["ip"], a.count) for a in found}


def test_the_attack_raises_one_alert_a_rule_and_token_or_address(stored: Stored) -> None:
    assert alerts(stored, "attack", timedelta(minutes=10)) == ATTACK_ALERTS


def test_ordinary_traffic_of_the_same_volume_raises_nothing(stored: Stored) -> None:
    # Seven hours hold the benign scenario's ordinary traffic (as many events as the attack)
    # and the history both scenarios share.
    assert alerts(stored, "benign", timedelta(hours=7)) == HISTORY_ALERTS
    assert alerts(stored, "attack", timedelta(hours=7)) == HISTORY_ALERTS | ATTACK_ALERTS


@pytest.mark.e2e
def test_the_command_prints_the_alerts_and_takes_a_users_rules(
    stored: Stored, tmp_path: Path
) -> None:
    data_dir = str(stored.data_dirs["attack"])
    done = run_cli("detect", "--data-dir", data_dir, "--since", "10m", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(r["rule"], r.get("token") or r["ip"], r["count"]) for r in rows} == ATTACK_ALERTS
    assert [r["last"] for r in rows] == sorted(r["last"] for r in rows)  # as they fired
    burst = next(r for r in rows if r["rule"] == "failure-burst")
    assert set(burst) == {"rule", "severity", "token", "count", "first", "last", "description"}
    assert burst["severity"] == "warning"

    # A user's rules instead: the spray threshold above this spray, so nothing fires.
    shipped = Path(__file__).resolve().parents[2] / "src/tokenotel/detect/rules.yaml"
    spray = shipped.read_text().split("  - id: token-spray")[1].split("  - id: brute-force")[0]
    mine = tmp_path / "mine.yaml"
    mine.write_text("rules:\n  - id: token-spray" + spray.replace("threshold: 15", "threshold: 21"))
    done = run_cli("detect", "--data-dir", data_dir, "--since", "10m", "--rules", str(mine))
    assert done.returncode == 0, done.stderr
    assert "no alerts match" in done.stdout

    done = run_cli("detect", "--data-dir", data_dir, "--since", "1h", "--until", "2h")
    assert done.returncode == 2
    assert "must be before --until" in done.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - id: x\n")
    done = run_cli("detect", "--data-dir", data_dir, "--rules", str(broken))
    assert done.returncode == 2
    assert f"{broken}, rule 1: severity: Field required" in done.stderr


@pytest.mark.e2e
def test_a_data_directory_a_service_holds_is_refused_saying_why(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    serve = serve_factory()
    done = run_cli("detect", "--data-dir", str(serve.data_dir))
    assert done.returncode == 2
    assert "is in use by a running `tokenotel serve`" in done.stderr
    assert "stop the service first" in done.stderr
