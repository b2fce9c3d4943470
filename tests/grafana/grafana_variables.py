"""Dashboard variables substituted into a query as Grafana's browser does it, before the
query reaches the ClickHouse data source's backend.

Syntax: ``$name``, ``${name}``, ``${name:format}`` and the deprecated ``[[name]]``. A value
is a string or a list of strings (multi-value). Without a format, the ClickHouse data source
quotes a list as ``'a','b'`` and leaves a single value as it is. Names Grafana itself
defines (``$__...``: the plugin's macros, ``$__interval`` ...) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_REFERENCE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)

Value = str | Sequence[str]


class VariableError(ValueError):
    """A query refers to a variable the dashboard does not define, or to an unknown format."""


def _quote(value: str, quote: str, escaped: str) -> str:
    return quote + value.replace(quote, escaped) + quote


def _format(value: Value, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:
        if isinstance(value, str):
            return value
        return "'" + "','".join(values) + "'"
    if fmt == "raw":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join(_quote(v, "'", "\\'") for v in values)
    if fmt == "doublequote":
        return ",".join(_quote(v, '"', '\\"') for v in values)
    if fmt == "sqlstring":
        return ",".join(_quote(v, "'", "''") for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "text":
        return " + ".join(values)
    raise VariableError(f"unknown variable format {fmt!r}")


def substitute(sql: str, variables: Mapping[str, Value]) -> str:
    """``sql`` with every dashboard variable replaced; raises VariableError on an unknown one."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name.startswith("__"):
            return match.group(0)
        if match.group(5):
            raise VariableError(f"{match.group(0)}: field paths are not supported here")
        if name not in variables:
            raise VariableError(f"{match.group(0)} refers to no variable of the dashboard")
        return _format(variables[name], fmt)

    return _REFERENCE.sub(replace, sql)


def references(sql: str) -> set[str]:
    """Names of the dashboard variables ``sql`` uses."""
    names = set()
    for match in _REFERENCE.finditer(sql):
        name = match.group(1) or match.group(2) or match.group(4)
        if not name.startswith("__"):
            names.add(name)
    return names
