"""The macro expander and the variable substitution the query tests rely on, held to the
plugin's and Grafana's documented behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import grafana_variables as variables
import macros
import pytest

F = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)  # 1767225600
T = datetime(2026, 1, 1, 6, 0, 0, 500_000, tzinfo=UTC)  # 1767247200.5
CTX = macros.QueryContext(F, T, timedelta(seconds=30))


def expand(sql: str, ctx: macros.QueryContext = CTX, **kwargs: bool) -> str:
    return macros.expand(sql, ctx, **kwargs)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "$__timeFilter(event_time)",
            "event_time >= toDateTime(1767225600) AND event_time <= toDateTime(1767247200)",
        ),
        (
            "$__timeFilter_ms(event_time)",
            "event_time >= fromUnixTimestamp64Milli(1767225600000)"
            " AND event_time <= fromUnixTimestamp64Milli(1767247200500)",
        ),
        ("$__dateFilter(day)", "day >= toDate('2026-01-01') AND day <= toDate('2026-01-01')"),
        (
            "$__dateTimeFilter(day, event_time)",
            "(day >= toDate('2026-01-01') AND day <= toDate('2026-01-01'))"
            " AND (event_time >= toDateTime(1767225600) AND event_time <= toDateTime(1767247200))",
        ),
        (
            "$__dt(day,t)",
            "(day >= toDate('2026-01-01') AND day <= toDate('2026-01-01'))"
            " AND (t >= toDateTime(1767225600) AND t <= toDateTime(1767247200))",
        ),
        ("SELECT $__fromTime", "SELECT toDateTime(1767225600)"),
        ("SELECT $__toTime", "SELECT toDateTime(1767247200)"),
        ("SELECT $__fromTime_ms", "SELECT fromUnixTimestamp64Milli(1767225600000)"),
        ("SELECT $__toTime_ms", "SELECT fromUnixTimestamp64Milli(1767247200500)"),
        ("SELECT $__interval_s", "SELECT 30"),
        ("$__timeInterval(minute)", "toStartOfInterval(toDateTime(minute), INTERVAL 30 second)"),
        (
            "$__timeInterval_ms(event_time)",
            "toStartOfInterval(toDateTime64(event_time, 3), INTERVAL 30000 millisecond)",
        ),
    ],
)
def test_each_macro_expands_as_the_plugin_does(sql: str, expected: str) -> None:
    assert expand(sql) == expected


def test_arguments_are_trimmed_and_every_occurrence_is_replaced() -> None:
    sql = "WHERE $__timeFilter( t ) OR $__timeFilter( t )"
    assert expand(sql) == (
        "WHERE t >= toDateTime(1767225600) AND t <= toDateTime(1767247200)"
        " OR t >= toDateTime(1767225600) AND t <= toDateTime(1767247200)"
    )


def test_a_macro_inside_parentheses_ends_at_the_closing_one() -> None:
    sql = "minute >= toStartOfMinute($__fromTime) AND minute <= toDateTime($__toTime)"
    assert expand(sql) == (
        "minute >= toStartOfMinute(toDateTime(1767225600))"
        " AND minute <= toDateTime(toDateTime(1767247200))"
    )


def test_intervals_are_whole_and_at_least_one_unit() -> None:
    short = macros.QueryContext(F, T, timedelta(milliseconds=500))
    assert expand("$__interval_s", short) == "1"
    assert expand("$__timeInterval(t)", short) == (
        "toStartOfInterval(toDateTime(t), INTERVAL 1 second)"
    )
    assert expand("$__timeInterval_ms(t)", short) == (
        "toStartOfInterval(toDateTime64(t, 3), INTERVAL 500 millisecond)"
    )
    fractional = macros.QueryContext(F, T, timedelta(seconds=1.9))
    assert expand("$__interval_s", fractional) == "1"  # truncated, as Go's int() does
    tiny = macros.QueryContext(F, T, timedelta(microseconds=10))
    assert expand("$__timeInterval_ms(t)", tiny).endswith("INTERVAL 1 millisecond)")


def test_times_are_unix_seconds_whatever_the_zone_and_dates_are_utc() -> None:
    paris = timezone(timedelta(hours=1))
    late = macros.QueryContext(
        datetime(2026, 1, 1, 0, 30, tzinfo=paris),  # 2025-12-31T23:30Z
        datetime(2026, 1, 2, 0, 30, tzinfo=paris),
    )
    assert expand("$__fromTime") == "toDateTime(1767225600)"
    assert expand("$__fromTime", late) == "toDateTime(1767223800)"
    assert expand("$__dateFilter(d)", late) == (
        "d >= toDate('2025-12-31') AND d <= toDate('2026-01-01')"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        macros.QueryContext(datetime(2026, 1, 1), T)


def test_names_end_at_a_word_boundary() -> None:
    # $__timeFilter must not eat the start of $__timeFilter_ms, nor $__fromTime of _ms.
    assert "fromUnixTimestamp64Milli(1767225600000)" in expand("$__timeFilter_ms(t)")
    assert expand("$__fromTime_ms") == "fromUnixTimestamp64Milli(1767225600000)"


def test_a_no_argument_macro_swallows_text_up_to_a_later_parenthesis() -> None:
    # The plugin's matcher scans forward to the first "(": everything up to its ")" goes.
    sql = "WHERE t >= $__fromTime AND name IN ('a', 'b')"
    assert expand(sql, strict=False) == "WHERE t >= toDateTime(1767225600)"
    with pytest.raises(macros.MacroError, match="takes no arguments"):
        expand(sql)


def test_arguments_are_split_on_every_comma() -> None:
    with pytest.raises(macros.MacroError, match="expects 1 argument, received 2"):
        expand("$__timeFilter(toDateTime64(t, 3))", strict=False)
    with pytest.raises(macros.MacroError, match="expects 2 arguments, received 1"):
        expand("$__dateTimeFilter(d)")


def test_strict_mode_refuses_what_would_differ_between_plugin_versions() -> None:
    assert expand("$__timeFilter (t)", strict=False).startswith("t >= toDateTime(")
    with pytest.raises(macros.MacroError, match="followed directly"):
        expand("$__timeFilter (t)")
    with pytest.raises(macros.MacroError, match="macro in its arguments"):
        expand("$__timeInterval($__timeFilter(t))")


def test_unknown_and_browser_only_macros_are_refused() -> None:
    with pytest.raises(macros.MacroError, match="browser only"):
        expand("WHERE $__conditionalAll(x IN ($v), $v)")
    with pytest.raises(macros.MacroError, match="browser only"):
        expand("WHERE $__adHocFilters('t')")
    with pytest.raises(macros.MacroError, match="not a macro"):
        expand("GROUP BY $__timeGroup(t, 5m)")


# ------------------------------------------------------------------ dashboard variables


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("HAVING n >= $min", "HAVING n >= 10"),
        ("HAVING n >= ${min}", "HAVING n >= 10"),
        ("HAVING n >= [[min]]", "HAVING n >= 10"),
        ("WHERE p = ${who:singlequote}", "WHERE p = 'O\\'Brien'"),
        ("WHERE p = ${who:sqlstring}", "WHERE p = 'O''Brien'"),
        ("WHERE p = ${who:doublequote}", 'WHERE p = "O\'Brien"'),
        ("WHERE p IN ($many)", "WHERE p IN ('a','b')"),
        ("WHERE p IN (${many:singlequote})", "WHERE p IN ('a','b')"),
        ("WHERE p IN (${many:csv})", "WHERE p IN (a,b)"),
        ("WHERE p = ${empty:singlequote}", "WHERE p = ''"),
        (
            "WHERE $__timeFilter(t) AND x = $__interval_s",
            "WHERE $__timeFilter(t) AND x = $__interval_s",
        ),
    ],
)
def test_variables_are_substituted_as_grafana_does(sql: str, expected: str) -> None:
    values = {"min": "10", "who": "O'Brien", "many": ["a", "b"], "empty": ""}
    assert variables.substitute(sql, values) == expected


def test_unknown_variables_and_formats_are_refused() -> None:
    with pytest.raises(variables.VariableError, match="refers to no variable"):
        variables.substitute("WHERE x = $min_x", {"min": "1"})  # the name runs to "min_x"
    with pytest.raises(variables.VariableError, match="unknown variable format"):
        variables.substitute("WHERE x = ${min:json}", {"min": "1"})


def test_references_lists_dashboard_variables_only() -> None:
    sql = "WHERE $__timeFilter(t) AND a = ${token:singlequote} AND b > $min AND c = [[ip]]"
    assert variables.references(sql) == {"token", "min", "ip"}
