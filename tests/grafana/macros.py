"""The ClickHouse data source's SQL macros, expanded as its backend expands them.

Written from the documented semantics of grafana-clickhouse-datasource v4.x
(pkg/macros/macros.go) and of the SDK's macro matcher it has long used
(grafana-plugin-sdk-go data/sqlutil):

- a macro is ``$__name`` followed by a word boundary, so ``$__timeFilter`` never matches
  the start of ``$__timeFilter_ms``;
- its argument list is found by scanning forward from the name to the first ``(`` and its
  matching ``)``; a ``)`` met before any ``(`` ends the macro with no arguments. The scan
  does not stop at the name: ``$__fromTime AND x IN (1, 2)`` is taken as one macro with the
  arguments ``1, 2``, and all of it is replaced by ``toDateTime(F)``;
- arguments are split on every comma and trimmed (no nesting, no quoting);
- each match is replaced everywhere it occurs, macro by macro, in no fixed order.

``expand(strict=True)`` (the default) refuses the queries on which these rules bite — a
no-argument macro that would swallow text, an argument list that does not follow the name
directly, a macro inside another's arguments, an unknown or browser-only macro — so that a
query it accepts means the same to every v4.x release, including those whose newer parser
(macropro) has no such quirks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Applied by the browser before a query reaches the backend: never in alert rules.
BROWSER_ONLY = frozenset({"conditionalAll", "adHocFilters"})


class MacroError(ValueError):
    """The query uses a macro the plugin would reject or expand into something unintended."""


@dataclass(frozen=True)
class QueryContext:
    """What the backend knows of a query: its time range (UTC) and interval."""

    time_from: datetime
    time_to: datetime
    interval: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if self.time_from.tzinfo is None or self.time_to.tzinfo is None:
            raise ValueError("time_from and time_to must be timezone-aware")


def unix_seconds(t: datetime) -> int:
    """Go's ``Time.Unix()``: whole seconds since the epoch, rounded down."""
    return (t - EPOCH) // timedelta(seconds=1)


def unix_millis(t: datetime) -> int:
    """Go's ``Time.UnixMilli()``."""
    return (t - EPOCH) // timedelta(milliseconds=1)


def _date_time(t: datetime) -> str:
    return f"toDateTime({unix_seconds(t)})"


def _date_time_ms(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({unix_millis(t)})"


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"


def _range(column: str, bound: Callable[[datetime], str], ctx: QueryContext) -> str:
    return f"{column} >= {bound(ctx.time_from)} AND {column} <= {bound(ctx.time_to)}"


def _interval_seconds(ctx: QueryContext) -> int:
    return int(max(ctx.interval.total_seconds(), 1))


def _interval_millis(ctx: QueryContext) -> int:
    return int(max(ctx.interval // timedelta(milliseconds=1), 1))


def _one(name: str, args: list[str]) -> str:
    if len(args) != 1:
        raise MacroError(f"$__{name} expects 1 argument, received {len(args)}")
    return args[0]


def _date_time_filter(name: str, args: list[str], ctx: QueryContext) -> str:
    if len(args) != 2:
        raise MacroError(f"$__{name} expects 2 arguments, received {len(args)}")
    date_column, time_column = args
    return f"({_range(date_column, _date, ctx)}) AND ({_range(time_column, _date_time, ctx)})"


_Expansion = Callable[[str, list[str], QueryContext], str]

#: Macro name -> (expansion of (name, arguments, context), whether it takes arguments).
MACROS: dict[str, tuple[_Expansion, bool]] = {
    "fromTime": (lambda n, a, c: _date_time(c.time_from), False),
    "toTime": (lambda n, a, c: _date_time(c.time_to), False),
    "fromTime_ms": (lambda n, a, c: _date_time_ms(c.time_from), False),
    "toTime_ms": (lambda n, a, c: _date_time_ms(c.time_to), False),
    "timeFilter": (lambda n, a, c: _range(_one(n, a), _date_time, c), True),
    "timeFilter_ms": (lambda n, a, c: _range(_one(n, a), _date_time_ms, c), True),
    "dateFilter": (lambda n, a, c: _range(_one(n, a), _date, c), True),
    "dateTimeFilter": (_date_time_filter, True),
    "dt": (_date_time_filter, True),
    "timeInterval": (
        lambda n, a, c: (
            f"toStartOfInterval(toDateTime({_one(n, a)}), INTERVAL {_interval_seconds(c)} second)"
        ),
        True,
    ),
    "timeInterval_ms": (
        lambda n, a, c: (
            f"toStartOfInterval(toDateTime64({_one(n, a)}, 3), "
            f"INTERVAL {_interval_millis(c)} millisecond)"
        ),
        True,
    ),
    "interval_s": (lambda n, a, c: str(_interval_seconds(c)), False),
}

_ANY_MACRO = re.compile(r"\$__(\w+)")


@dataclass(frozen=True)
class _Match:
    text: str  # what gets replaced
    args: list[str]
    name_end: int  # offset of the end of the name within ``text``
    args_start: int  # offset of the first character after "(", or -1


def _matches(sql: str, name: str) -> list[_Match]:
    """Every ``$__name`` in ``sql`` with the argument list the plugin would give it."""
    found = []
    for hit in re.finditer(rf"\$__{re.escape(name)}\b", sql):
        rest = sql[hit.start() :]
        depth, args_start, end = 0, -1, 0
        for i, char in enumerate(rest):
            if char == "(":
                depth += 1
                if args_start < 0:
                    args_start = i + 1
            elif char == ")":
                if depth == 0:
                    break  # a ")" before any "(": no argument list
                depth -= 1
                end = i + 1
                if depth == 0:
                    break
        name_end = hit.end() - hit.start()
        if end == 0:
            found.append(_Match(rest[:name_end], [""], name_end, -1))
            continue
        text = rest[:end]
        raw_args = text[args_start : end - 1] if args_start > 0 else ""
        found.append(_Match(text, [a.strip() for a in raw_args.split(",")], name_end, args_start))
    return found


def expand(sql: str, ctx: QueryContext, *, strict: bool = True) -> str:
    """``sql`` with every plugin macro expanded for ``ctx``; raises MacroError."""
    if strict:
        for name in _ANY_MACRO.findall(sql):
            if name in BROWSER_ONLY:
                raise MacroError(
                    f"$__{name} is applied by the browser only: it never reaches the backend "
                    "(alert rules, API queries)"
                )
            if name not in MACROS:
                raise MacroError(f"$__{name} is not a macro of the ClickHouse data source")
        for name, (_, takes_args) in MACROS.items():
            for match in _matches(sql, name):
                _check(name, takes_args, match)
    for name, (expansion, _) in MACROS.items():
        for match in _matches(sql, name):
            sql = sql.replace(match.text, expansion(name, match.args, ctx))
    return sql


def _check(name: str, takes_args: bool, match: _Match) -> None:
    if not takes_args:
        if match.args_start >= 0:
            raise MacroError(
                f"$__{name} takes no arguments but the plugin would read {match.text!r} as one "
                "macro: put a ')' (or nothing with parentheses) after it, e.g. wrap it in "
                "toDateTime(...) or move it to the end"
            )
        return
    if match.args_start != match.name_end + 1:
        raise MacroError(f"$__{name} must be followed directly by its arguments: {match.text!r}")
    if "$__" in match.text[match.args_start :]:
        raise MacroError(f"$__{name} has a macro in its arguments: {match.text!r}")
