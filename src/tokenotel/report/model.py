"""What a compliance report holds: its period, its policy, and nine sections of figures and
tables, each naming the requirements it is evidence for (docs/report.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenotel.errors import ConfigError

#: Plain values only, so every format writes them the same: text, numbers, None.
Value = str | int | float | None


class Policy(BaseModel):
    """What the report measures against; every field has a default (docs/report.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rotation_days: int = Field(
        default=90, ge=1, description="A token older than this is due rotation."
    )
    dormant_days: int = Field(
        default=90, ge=1, description="Unused this long while active: dormant."
    )
    revocation_sla_hours: float = Field(
        default=24, gt=0, description="From a leak or reuse detection to revocation."
    )
    broad_scopes: list[str] = Field(
        default_factory=lambda: ["admin", "admin:*", "*", "root", "owner", "write:*"],
        description="Scopes that make a token privileged; '*' matches any characters.",
    )
    source_gap_hours: float = Field(
        default=2,
        gt=0,
        description="A silence this long from a source that usually reports: a gap.",
    )
    usual_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A source usually reports when it sent events in this share of the "
        "period's hours.",
    )
    retention_months: int = Field(default=12, ge=1, description="Months of the trail to keep.")
    immediate_months: int = Field(default=3, ge=1, description="Months to keep searchable at once.")


def load_policy(path: Path | None) -> Policy:
    """The policy in a YAML file; the defaults when ``path`` is None."""
    if path is None:
        return Policy()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the report policy {path}: {e}") from None
    return policy_of(data, str(path))


def policy_of(data: object, where: str) -> Policy:
    if not isinstance(data, dict):
        raise ConfigError(f"the report policy {where} is not a mapping of settings")
    try:
        return Policy(**data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in e.errors()
        )
        raise ConfigError(f"the report policy {where}: {problems}") from None


_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.IGNORECASE)
_HALF = re.compile(r"^(\d{4})-H([12])$", re.IGNORECASE)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")


def period_bounds(text: str) -> tuple[datetime, datetime]:
    """[since, until) of ``2026-Q3``, ``2026-H2``, ``2026-07`` or ``2026`` (UTC)."""
    text = text.strip()
    if m := _QUARTER.match(text):
        year, first, months = int(m[1]), 3 * int(m[2]) - 2, 3
    elif m := _HALF.match(text):
        year, first, months = int(m[1]), 6 * int(m[2]) - 5, 6
    elif (m := _MONTH.match(text)) and 1 <= int(m[2]) <= 12:
        year, first, months = int(m[1]), int(m[2]), 1
    elif m := _YEAR.match(text):
        year, first, months = int(m[1]), 1, 12
    else:
        raise ConfigError(
            f"--period {text!r}: give a quarter (2026-Q3), a half (2026-H2), a month (2026-07) "
            "or a year (2026)"
        )
    since = datetime(year, first, 1, tzinfo=UTC)
    end_month = first + months
    until = datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=UTC)
    return since, until


def report_period(
    period: str | None, since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """[since, until) of a report: the period named, else the bounds given (a missing end is
    ``now``), else the last quarter that has ended."""
    if period is not None:
        if since is not None or until is not None:
            raise ConfigError("give --period or --since/--until, not both")
        return period_bounds(period)
    if since is None and until is None:
        quarter_start = datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=UTC)
        return period_bounds(_names(quarter_start - timedelta(days=1))[0])
    if since is None:
        raise ConfigError("--until needs --since (or give --period)")
    end = until or now
    if end <= since:
        raise ConfigError(f"the period ends ({end:%Y-%m-%dT%H:%M:%SZ}) before it starts")
    return since, end


def period_name(since: datetime, until: datetime) -> str:
    """How a period reads: ``2026-Q3`` when it is one, else its bounds."""
    for name in _names(since):
        if period_bounds(name) == (since, until):
            return name
    last = until - timedelta(microseconds=1)
    return f"{since:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"


def _names(since: datetime) -> list[str]:
    return [
        f"{since.year}-Q{(since.month + 2) // 3}",
        f"{since.year}-H{(since.month + 5) // 6}",
        f"{since.year}-{since.month:02d}",
        f"{since.year}",
    ]


Item = TypeVar("Item")


class Rows(Sequence[list[Value]], Generic[Item]):
    """A table's rows, each made from one item when it is first read: the HTML shows the first
    few rows of tables that hold hundreds of thousands, and only the JSON and CSV read them
    all (formatting every row's times is most of what a large table costs)."""

    def __init__(self, items: Sequence[Item], row: Callable[[Item], list[Value]]) -> None:
        self._items = items
        self._row = row
        self._made: list[list[Value]] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> list[Value]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[Value]]: ...
    def __getitem__(self, index: int | slice) -> list[Value] | list[list[Value]]:
        if self._made is not None:
            return self._made[index]
        if isinstance(index, slice):
            return list(map(self._row, self._items[index]))
        return self._row(self._items[index])

    def __iter__(self) -> Iterator[list[Value]]:
        return iter(self.made())

    def made(self) -> list[list[Value]]:
        """Every row (made once)."""
        if self._made is None:
            self._made = list(map(self._row, self._items))
        return self._made

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rows):
            other = other.made()
        return isinstance(other, list) and self.made() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows)"


@dataclass
class Table:
    """Rows as an auditor reads them: sorted, every row in the JSON and CSV; the HTML shows the
    first ``shown`` and says how many there are. Large tables hold ``Rows``, made when read."""

    name: str
    title: str
    columns: list[str]
    rows: Sequence[list[Value]] = field(default_factory=list)
    shown: int = 50


@dataclass
class Chart:
    """Bars by day (one series a source): drawn as inline SVG in the HTML."""

    title: str
    days: list[str]
    series: dict[str, list[int]]


@dataclass
class Section:
    number: int
    key: str
    title: str
    evidence: list[str]
    figures: dict[str, Value] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chart: Chart | None = None

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


@dataclass
class Report:
    period: str
    since: datetime
    until: datetime
    generated_at: datetime
    trail: str  # which trail: a data directory, a ClickHouse server
    policy: Policy
    checkpoint: str | None  # the newest checkpoint within the period, as "size root time"
    sections: list[Section] = field(default_factory=list)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    def header(self) -> dict[str, Any]:
        """What the report covers, without its sections."""
        return {
            "period": self.period,
            "since": _iso(self.since),
            "until": _iso(self.until),
            "generated_at": _iso(self.generated_at),
            "trail": self.trail,
            "policy": self.policy.model_dump(),
            "checkpoint": self.checkpoint,
        }

    def as_dict(self) -> dict[str, Any]:
        return self.header() | {"sections": [_section_dict(s) for s in self.sections]}


def _section_dict(section: Section) -> dict[str, Any]:
    """A section as plain data (its rows as they are: lists of plain values)."""
    chart = section.chart
    return {
        "number": section.number,
        "key": section.key,
        "title": section.title,
        "evidence": section.evidence,
        "figures": section.figures,
        "tables": [
            {"name": t.name, "title": t.title, "columns": t.columns, "rows": list(t.rows)}
            for t in section.tables
        ],
        "notes": section.notes,
        "chart": None
        if chart is None
        else {"title": chart.title, "days": chart.days, "series": chart.series},
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
