"""The rule engine: events in, by event time, alerts out; windows and suppression in memory."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tokenotel.detect.rules import Kind, Match, Rule

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Observed:
    """What the rules read of one stored event."""

    time_ns: int
    event: str
    outcome: str
    token_status: str
    token: str  # the token key: its id, else its fingerprint
    ip: str  # as people write it ('' when the source gave none)
    principal: str
    actor: str
    expires_at_ns: int | None

    def value(self, name: str) -> str:
        """The field a rule groups by or counts distinct (token, ip, principal, actor)."""
        return str(getattr(self, name))


@dataclass(frozen=True)
class Alert:
    """One detection: which rule, about what (its group-by values), how many events from
    the first to the last."""

    rule: Rule
    key: tuple[tuple[str, str], ...]  # (field, value) of each group-by field
    count: int
    first_ns: int
    last_ns: int

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.key)

    def as_row(self) -> dict[str, object]:
        """The alert as plain values, ready for JSON (times in RFC 3339, UTC)."""
        return {
            "rule": self.rule.id,
            "severity": self.rule.severity.value,
            **self.labels,
            "count": self.count,
            "first": _rfc3339(self.first_ns),
            "last": _rfc3339(self.last_ns),
            "description": self.rule.description,
        }


def _rfc3339(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // NS_PER_S, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % NS_PER_S:09d}Z"


@dataclass
class _Window:
    """The matching events of one rule and key still inside its window, oldest first."""

    times: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    quiet_until_ns: int = -1
    last_ns: int | None = None  # dormant: the key's latest matching event
    seen: dict[str, int] = field(default_factory=dict)  # new_value: value -> latest time


def matches(match: Match, event: Observed) -> bool:
    if match.events and event.event not in match.events:
        return False
    if match.outcome is not None and event.outcome != match.outcome:
        return False
    if match.token_status and event.token_status not in match.token_status:
        return False
    if match.actor_is_not_principal and event.actor in ("", event.principal):
        return False
    if match.lifetime_over is not None and event.expires_at_ns is not None:
        lifetime_ns = event.expires_at_ns - event.time_ns
        if lifetime_ns <= match.lifetime_over.total_seconds() * NS_PER_S:
            return False
    return True


class Detector:
    """Feeds each event to every rule; an event that completes a detection yields an alert,
    unless the rule already alerted for the same key within its suppression window.

    Events are placed in their windows by their own time, so a late one counts where it
    belongs; windows keep what the newest event of their key still needs."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._windows: dict[tuple[str, tuple[str, ...]], _Window] = {}

    def observe(self, event: Observed) -> list[Alert]:
        alerts = []
        for rule in self.rules:
            if not matches(rule.match, event):
                continue
            key = tuple(event.value(name) for name in rule.group_by)
            if not all(key):  # an event without an address is no one's in a rule by address
                continue
            if rule.kind is Kind.NEW_VALUE:
                alert = self._new_value(rule, key, event)
            elif rule.kind is Kind.DORMANT:
                alert = self._dormant(rule, key, event)
            else:
                alert = self._count(rule, key, event)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def observe_all(self, events: Iterable[Observed]) -> Iterator[Alert]:
        for event in events:
            yield from self.observe(event)

    def remember_last(self, rule: Rule, key: tuple[str, ...], at_ns: int) -> None:
        """A dormant rule learns the key's latest matching event before what it will see (from
        a rollup, say): what tells a dormant token's next use."""
        window = self._windows.setdefault((rule.id, key), _Window())
        window.last_ns = at_ns if window.last_ns is None else max(window.last_ns, at_ns)

    def _new_value(self, rule: Rule, key: tuple[str, ...], event: Observed) -> Alert | None:
        assert rule.new_of is not None
        window = self._windows.setdefault((rule.id, key), _Window())
        at, value = event.time_ns, event.value(rule.new_of)
        if not value:
            return None
        span_ns = int(rule.window.total_seconds() * NS_PER_S)
        seen = window.seen
        for old in [v for v, t in seen.items() if t < at - span_ns]:
            del seen[old]  # not seen within the window: new again when it comes back
        new = value not in seen and bool(seen)  # the key is in use, from elsewhere
        seen[value] = max(seen.get(value, at), at)
        if not new:
            return None
        return self._alert(rule, (*key, value), (*rule.group_by, rule.new_of), window, 1, at, at)

    def _dormant(self, rule: Rule, key: tuple[str, ...], event: Observed) -> Alert | None:
        window = self._windows.setdefault((rule.id, key), _Window())
        at, previous = event.time_ns, window.last_ns
        window.last_ns = at if previous is None else max(previous, at)
        if previous is None or at - previous < rule.window.total_seconds() * NS_PER_S:
            return None
        return self._alert(rule, key, rule.group_by, window, 1, previous, at)

    def _alert(
        self,
        rule: Rule,
        values: tuple[str, ...],
        names: tuple[str, ...],
        window: _Window,
        count: int,
        first_ns: int,
        last_ns: int,
    ) -> Alert | None:
        """An alert, unless the rule alerted for the same key within its suppression."""
        if last_ns < window.quiet_until_ns:
            return None
        window.quiet_until_ns = last_ns + int(rule.suppress_for.total_seconds() * NS_PER_S)
        return Alert(rule, tuple(zip(names, values, strict=True)), count, first_ns, last_ns)

    def _count(self, rule: Rule, key: tuple[str, ...], event: Observed) -> Alert | None:
        window = self._windows.setdefault((rule.id, key), _Window())
        at = event.time_ns
        if rule.kind is Kind.EVENT:
            count, first = 1, at
        else:
            span_ns = int(rule.window.total_seconds() * NS_PER_S)
            where = bisect.bisect_right(window.times, at)
            window.times.insert(where, at)
            window.values.insert(where, event.value(rule.distinct_of or rule.group_by[0]))
            stale = bisect.bisect_left(window.times, window.times[-1] - span_ns)
            del window.times[:stale], window.values[:stale]
            count, first, at = _busiest(rule, window, at, span_ns)
            if count < rule.threshold:
                return None
        return self._alert(rule, key, rule.group_by, window, count, first, at)


def _busiest(rule: Rule, window: _Window, at: int, span_ns: int) -> tuple[int, int, int]:
    """The fullest window of ``span_ns`` that holds the event at ``at``: its count, first and
    last time. In order, that is the window ending at the event; an event that came late may
    also complete a window that ends at a later event."""
    best = (0, at, at)
    ends = range(
        bisect.bisect_right(window.times, at), bisect.bisect_right(window.times, at + span_ns) + 1
    )
    for end in ends:  # the window of the events before ``end``, ending at the last of them
        last = window.times[end - 1]
        start = bisect.bisect_left(window.times, last - span_ns)
        inside = window.values[start:end]
        count = len(set(inside)) if rule.kind is Kind.DISTINCT else len(inside)
        if count > best[0]:
            best = (count, window.times[start], last)
    return best
