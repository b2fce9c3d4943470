"""A report's period and policy as the user writes them, and wrong ones refused with their
name (docs/report.md, "The period", "The policy"); a file that carries no readable seal; broad
scopes matched alike in Python and ClickHouse; the collector's pause while a report builds."""

from __future__ import annotations

import gc
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inprocess import embedded_store
from tokenotel.errors import ConfigError
from tokenotel.report.build import collector_paused
from tokenotel.report.model import Policy, load_policy, period_bounds, period_name, report_period
from tokenotel.report.seal import PLACEHOLDER, check
from tokenotel.report.sections import scope_pattern


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("2026-Q3", utc(2026, 7, 1), utc(2026, 10, 1)),
        ("2026-q4", utc(2026, 10, 1), utc(2027, 1, 1)),
        ("2026-H1", utc(2026, 1, 1), utc(2026, 7, 1)),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        ("2026", utc(2026, 1, 1), utc(2027, 1, 1)),
    ],
)
def test_a_named_period_is_its_bounds_and_reads_back_as_its_name(
    text: str, since: datetime, until: datetime
) -> None:
    assert period_bounds(text) == (since, until)
    assert period_name(since, until) == text.upper()


def test_other_bounds_read_as_dates_and_the_default_is_the_last_quarter_ended() -> None:
    assert period_name(utc(2026, 7, 3), utc(2026, 7, 10)) == (
        "2026-07-03 00:00 to 2026-07-09 23:59 UTC"
    )
    now = utc(2026, 12, 1, 9, 30)
    assert report_period(None, None, None, now) == (utc(2026, 7, 1), utc(2026, 10, 1))
    assert report_period(None, None, None, utc(2026, 1, 5)) == (utc(2025, 10, 1), utc(2026, 1, 1))
    assert report_period(None, utc(2026, 11, 1), None, now) == (utc(2026, 11, 1), now)


@pytest.mark.parametrize(
    ("period", "since", "until", "said"),
    [
        ("2026-Q0", None, None, "give a quarter (2026-Q3)"),
        ("2026-13", None, None, "give a quarter"),
        ("Q3", None, None, "give a quarter"),
        ("2026-Q3", utc(2026, 1, 1), None, "not both"),
        (None, None, utc(2026, 1, 1), "--until needs --since"),
        (None, utc(2026, 2, 1), utc(2026, 1, 1), "before it starts"),
    ],
)
def test_a_wrong_period_says_what_to_give(
    period: str | None, since: datetime | None, until: datetime | None, said: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(said)):
        report_period(period, since, until, utc(2026, 12, 1))


def test_the_policy_file_sets_what_it_names_and_keeps_the_defaults(tmp_path: Path) -> None:
    assert load_policy(None) == Policy()
    path = tmp_path / "policy.yaml"
    path.write_text("rotation_days: 30\nbroad_scopes: [admin, 'repo:*']\n")
    policy = load_policy(path)
    assert policy.rotation_days == 30 and policy.broad_scopes == ["admin", "repo:*"]
    assert policy.dormant_days == Policy().dormant_days == 90
    assert Policy().revocation_sla_hours == 24


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("rotation_dayz: 3\n", "rotation_dayz: Extra inputs are not permitted"),
        ("rotation_days: 0\n", "rotation_days: Input should be greater than or equal to 1"),
        ("usual_share: 2\n", "usual_share: Input should be less than or equal to 1"),
        ("- a list\n", "is not a mapping of settings"),
        ("rotation_days: [\n", "cannot read the report policy"),
    ],
)
def test_a_wrong_policy_names_the_setting(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_policy(path)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"<html>no seal</html>", "no seal in it"),
        (b"tokenotel-report-seal:YQ== tokenotel-report-seal:YQ==", "2 seals in it"),
        (b"tokenotel-report-seal:!!!", "no seal in it"),
        (b"tokenotel-report-seal:YWJj", "not a tokenotel report statement"),
        (PLACEHOLDER.encode(), "the report's seal is not readable"),
    ],
)
def test_a_file_without_a_readable_seal_is_refused(content: bytes, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        check(content, [])


SCOPES = [
    "admin", "admin:all", "Admin", "write:repo", "write:", "write", "*", "read", "a b.c", "a bxc",
    "(x)+", "x", "[y]", "y", "scope\\", "ok\n", "ünïcode:*", "ünïcode:é",
]  # fmt: skip


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["admin", "write:*", "*"], ["admin", "write:repo", "write:", "*"]),
        (["a b.c", "(x)+", "[y]", "scope\\"], ["a b.c", "(x)+", "[y]", "scope\\"]),
        (["ünïcode:*", "*dmin*"], ["admin", "admin:all", "Admin", "ünïcode:*", "ünïcode:é"]),
        ([], []),
    ],
)
def test_a_broad_scope_is_matched_alike_in_python_and_in_clickhouse(
    tmp_path: Path, patterns: list[str], expected: list[str]
) -> None:
    """The report matches token scopes in Python and scope changes in ClickHouse (RE2): one
    expression, read the same by both, whatever punctuation or spaces a pattern holds; only
    '*' is special (and '*' alone is the scope '*')."""
    pattern = scope_pattern(patterns)
    in_python = [s for s in SCOPES if pattern and re.match(f"(?:{pattern})\\Z", s)]
    store = embedded_store(tmp_path / "data")
    try:
        store.connect()
        in_clickhouse = [
            row[0]
            for row in store.query(
                "SELECT s FROM (SELECT arrayJoin({scopes:Array(String)}) AS s) "
                "WHERE {broad:String} != '' AND match(s, {broad:String})",
                {"scopes": SCOPES, "broad": f"^(?:{pattern})$" if pattern else ""},
            ).result_rows
        ]
    finally:
        store.close()
    assert in_python == in_clickhouse == expected


def test_the_collector_pause_nests_and_restores_what_it_found() -> None:
    """Builds may overlap: the collector is back on when the last ends, and stays off when it
    was off before the first began."""
    assert gc.isenabled()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
