"""Rules files: the shipped set, and a user's file read strictly with errors that say where."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tokenotel.detect import load_rules, shipped_rules
from tokenotel.detect.rules import Kind, duration, parse_rules
from tokenotel.errors import ConfigError

RULE = """
rules:
  - id: burst
    severity: warning
    description: d
    runbook: r
    kind: count
    match: {outcome: failure}
    group_by: [token]
    window: 5m
    threshold: 10
    suppress_for: 5m
"""


def test_the_shipped_rules_load_and_each_says_what_to_do() -> None:
    rules = shipped_rules()
    assert [r.id for r in rules] == [
        "use-after-revocation-or-expiry",
        "reuse-or-leak-detected",
        "token-created-for-another-principal",
        "long-lived-token-created",
        "failure-burst",
        "token-spray",
        "brute-force",
        "new-ip-for-token",
        "new-network-for-token",
        "new-country-for-token",
        "token-from-several-networks",
        "dormant-token-used",
        "call-rate-spike",
    ]
    assert all(r.description and r.runbook for r in rules)
    assert {r.kind for r in rules} == set(Kind)


def test_a_users_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE)
    (rule,) = load_rules(path)
    assert (rule.id, rule.window, rule.threshold) == ("burst", timedelta(minutes=5), 10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("threshold: 10", "threshold: 0"), "rule 1: threshold: Input should be greater"),
        (("window: 5m", "window: 5 minutes"), "rule 1: window: Value error, '5 minutes'"),
        (("kind: count", "kind: sometimes"), "rule 1: kind: Input should be"),
        (("group_by: [token]", "group_by: [city]"), "rule 1: group_by.0: String should match"),
        (("    window: 5m\n", ""), "rule 1: Value error, rule burst: a count rule needs a window"),
        (("runbook: r", "runbok: r"), "rule 1: runbook: Field required"),
    ],
)
def test_a_wrong_rule_is_refused_naming_it(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_rules(RULE.replace(*change), "mine.yaml")
    assert str(refused.value).startswith(f"mine.yaml, {message}"), str(refused.value)


def test_duplicate_ids_and_other_shapes_are_refused(tmp_path: Path) -> None:
    twice = RULE + RULE.split("rules:\n", 1)[1]
    with pytest.raises(ConfigError, match="rule ids must be unique"):
        parse_rules(twice, "x")
    with pytest.raises(ConfigError, match="a list under 'rules'"):
        parse_rules("- id: a", "x")
    with pytest.raises(ConfigError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_durations() -> None:
    assert duration("30s") == timedelta(seconds=30)
    assert duration("90d") == timedelta(days=90)
    assert duration(60) == timedelta(minutes=1)
    with pytest.raises(ValueError, match="not a duration"):
        duration("1w")
