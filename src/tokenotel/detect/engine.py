"""The rule engine: events in, by event time, alerts out; windows and suppression in memory."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from tokenotel.detect.rules import Kind, Match, Rule
from tokenotel.query.readable import format_ns

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
    asn: str = ""  # the client's autonomous system, when the source tells

    def value(self, name: str) -> str:
        """The field a rule groups by or counts distinct (token, ip, principal, actor, asn)."""
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
    #: Until when (event time) the rule stays quiet for the key after this alert.
    quiet_until_ns: int = 0

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
            "first": format_ns(self.first_ns),
            "last": format_ns(self.last_ns),
            "description": self.rule.description,
        }


#: Every this many events, the state no later event can count is dropped.
SWEEP_EVERY = 1 << 20

#: A rule's state is kept per key: (rule id, the key's values).
Key = tuple[str, tuple[str, ...]]


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
    belongs; what is older than a rule's window before the newest event is let go."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self._span_ns = {rule.id: _ns(rule.window) for rule in self.rules}
        # The state of each kind of rule, per key: the matching events inside the window
        # (times and the values counted, oldest first); the values seen, each with its latest
        # time; the latest matching event; and the end of each key's suppression.
        self._events: dict[Key, tuple[list[int], list[str]]] = {}
        self._seen: dict[Key, dict[str, int]] = {}
        self._last: dict[Key, int] = {}
        self._quiet: dict[Key, int] = {}
        self._observed = 0
        self._latest_ns = 0

    def observe(self, event: Observed) -> list[Alert]:
        alerts = []
        for rule in self.rules:
            if matches(rule.match, event):
                alert = self.apply(rule, event)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def apply(self, rule: Rule, event: Observed) -> Alert | None:
        """``rule`` on an event it matches (``matches``, or the same test over many events at
        once): the alert it completes, if any."""
        self._observed += 1
        self._latest_ns = max(self._latest_ns, event.time_ns)
        if self._observed % SWEEP_EVERY == 0:
            self._sweep()
        key = tuple(event.value(name) for name in rule.group_by)
        if not all(key):  # an event without an address is no one's in a rule by address
            return None
        if rule.kind is Kind.NEW_VALUE:
            return self._new_value(rule, key, event)
        if rule.kind is Kind.DORMANT:
            return self._dormant(rule, key, event)
        if rule.kind is Kind.EVENT:
            return self._alert(rule, key, rule.group_by, 1, event.time_ns, event.time_ns)
        return self._count(rule, key, event)

    def observe_all(self, events: Iterable[Observed]) -> Iterator[Alert]:
        for event in events:
            yield from self.observe(event)

    def remember_last(self, rule: Rule, key: tuple[str, ...], at_ns: int) -> None:
        """A dormant rule learns the key's latest matching event before what it will see (from
        a rollup, say): what tells a dormant token's next use."""
        self._last[rule.id, key] = max(self._last.get((rule.id, key), at_ns), at_ns)

    def remember_value(self, rule: Rule, key: tuple[str, ...], value: str, at_ns: int) -> None:
        """A new-value rule learns that the key had ``value`` at ``at_ns`` (from the store)."""
        seen = self._seen.setdefault((rule.id, key), {})
        seen[value] = max(seen.get(value, at_ns), at_ns)

    def remember_alert(self, rule: Rule, key: tuple[str, ...], quiet_until_ns: int) -> None:
        """The rule alerted for ``key`` before (a stored alert): it stays quiet until then."""
        held = (rule.id, key)
        self._quiet[held] = max(self._quiet.get(held, quiet_until_ns), quiet_until_ns)

    def _sweep(self) -> None:
        """Drops what no later event can count: events and values older than their rule's
        window before the newest event, and suppressions that are over. A dormant rule keeps
        each key's latest event: that is what it knows."""
        latest = self._latest_ns
        for (rule_id, key), (times, _) in list(self._events.items()):
            if times[-1] < latest - self._span_ns[rule_id]:
                del self._events[rule_id, key]
        for (rule_id, key), seen in list(self._seen.items()):
            if max(seen.values()) < latest - self._span_ns[rule_id]:
                del self._seen[rule_id, key]
        for held, until_ns in list(self._quiet.items()):
            if until_ns <= latest:
                del self._quiet[held]

    def _new_value(self, rule: Rule, key: tuple[str, ...], event: Observed) -> Alert | None:
        assert rule.new_of is not None
        at, value = event.time_ns, event.value(rule.new_of)
        if not value:
            return None
        seen = self._seen.setdefault((rule.id, key), {})
        horizon = at - self._span_ns[rule.id]
        for old in [v for v, t in seen.items() if t < horizon]:
            del seen[old]  # not seen within the window: new again when it comes back
        new = value not in seen and bool(seen)  # the key is in use, from elsewhere
        seen[value] = max(seen.get(value, at), at)
        if not new:
            return None
        return self._alert(rule, (*key, value), (*rule.group_by, rule.new_of), 1, at, at)

    def _dormant(self, rule: Rule, key: tuple[str, ...], event: Observed) -> Alert | None:
        at, previous = event.time_ns, self._last.get((rule.id, key))
        self._last[rule.id, key] = at if previous is None else max(previous, at)
        if previous is None or at - previous < self._span_ns[rule.id]:
            return None
        return self._alert(rule, key, rule.group_by, 1, previous, at)

    def _count(self, rule: Rule, key: tuple[str, ...], event: Observed) -> Alert | None:
        at, span_ns = event.time_ns, self._span_ns[rule.id]
        value = event.value(rule.distinct_of or rule.group_by[0])
        if not value:  # a distinct count of what the source did not tell
            return None
        times, values = self._events.setdefault((rule.id, key), ([], []))
        where = bisect.bisect_right(times, at)
        times.insert(where, at)
        values.insert(where, value)
        stale = bisect.bisect_left(times, times[-1] - span_ns)
        del times[:stale], values[:stale]
        count, first, last = _busiest(rule.kind, times, values, at, span_ns)
        if count < rule.threshold:
            return None
        return self._alert(rule, key, rule.group_by, count, first, last)

    def _alert(
        self,
        rule: Rule,
        values: tuple[str, ...],
        names: tuple[str, ...],
        count: int,
        first_ns: int,
        last_ns: int,
    ) -> Alert | None:
        """An alert, unless the rule alerted for the same key within its suppression."""
        held = (rule.id, values[: len(rule.group_by)])
        if last_ns < self._quiet.get(held, -1):
            return None
        quiet_until_ns = self._quiet[held] = last_ns + _ns(rule.suppress_for)
        key = tuple(zip(names, values, strict=True))
        return Alert(rule, key, count, first_ns, last_ns, quiet_until_ns)


def _busiest(
    kind: Kind, times: list[int], values: list[str], at: int, span_ns: int
) -> tuple[int, int, int]:
    """The fullest window of ``span_ns`` that holds the event at ``at``: its count, first and
    last time. In order, that is the window ending at the event; an event that came late may
    also complete a window that ends at a later event."""
    best = (0, at, at)
    ends = range(bisect.bisect_right(times, at), bisect.bisect_right(times, at + span_ns) + 1)
    for end in ends:  # the window of the events before ``end``, ending at the last of them
        last = times[end - 1]
        start = bisect.bisect_left(times, last - span_ns)
        inside = values[start:end]
        count = len(set(inside)) if kind is Kind.DISTINCT else len(inside)
        if count > best[0]:
            best = (count, times[start], last)
    return best


def _ns(span: timedelta) -> int:
    return int(span.total_seconds() * NS_PER_S)
