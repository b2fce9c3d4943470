"""The rule engine: events in, by event time, alerts out; windows and suppression in memory."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter, itemgetter
from typing import NamedTuple

from tokenotel.detect.rules import Kind, Match, Rule
from tokenotel.query.readable import format_ns

NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S
NS_PER_HOUR = 3600 * NS_PER_S


class Observed(NamedTuple):
    """What the rules read of one stored event (a tuple: the stream makes many)."""

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
    country: str = ""  # the client's country (ISO 3166-1 alpha-2), when the source tells
    #: How many events of the same key and minute this one stands for (a spike rule reads
    #: counts a minute).
    weight: int = 1


#: What a rule reads of an event it matches: its time (ns), the values of the fields the rule
#: groups by, the value of the field it counts (``counted``), how many events of the same key
#: and minute it stands for (a spike rule reads counts a minute; else 1), and the time of the
#: last event of the same key and value it stands for (a new-value or dormant rule learns the
#: latest time of a value or key: the events between it and the first can raise nothing when
#: they lie within the rule's window; else its own time).
Reading = tuple[int, tuple[str, ...], str, int, int]


def counted(rule: Rule) -> str:
    """The field whose value ``rule`` counts: the one it finds new values of, else the one it
    counts distinct values of, else the first it groups by (its events are counted)."""
    return rule.new_of or rule.distinct_of or rule.group_by[0]


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

#: What an event a rule matches does to the rule's state, by kind of rule (a method of Detector).
_HANDLERS = {
    Kind.NEW_VALUE: "_new_value",
    Kind.DORMANT: "_dormant",
    Kind.EVENT: "_event",
    Kind.SPIKE: "_spike",
    Kind.COUNT: "_count",
    Kind.DISTINCT: "_count",
}

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
        self._rules = {rule.id: rule for rule in self.rules}
        self._span_ns = {rule.id: _ns(rule.window) for rule in self.rules}
        # (attrgetter: picklable, as the Detector goes to the rules' process)
        self._key_of = {rule.id: attrgetter(*rule.group_by) for rule in self.rules}
        self._value_of = {rule.id: attrgetter(counted(rule)) for rule in self.rules}
        self._hold = {rule.id: self._hold_ns(rule) for rule in self.rules}
        # The state of each kind of rule, per key: the matching events inside the window
        # (times and the values counted, oldest first); the values seen, each with its latest
        # time, and the latest of them; the latest matching event; and the end of each key's
        # suppression.
        self._events: dict[Key, Window] = {}
        self._seen: dict[Key, dict[str, int]] = {}
        self._seen_last: dict[Key, int] = {}
        self._last: dict[Key, int] = {}
        self._quiet: dict[Key, int] = {}
        self._rates: dict[Key, Rate] = {}
        #: The alerts raised whose condition may still hold, with when it clears (event time).
        self.active: dict[Key, tuple[Alert, int]] = {}
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
        """``rule`` on an event it matches (``matches``): the alert it completes, if any."""
        alerts = self.apply_all(rule, (event,))
        return alerts[0] if alerts else None

    def apply_all(self, rule: Rule, events: Iterable[Observed]) -> list[Alert]:
        """``rule`` on events it matches (``matches``), in their order: the alerts they
        complete."""
        key_of, value_of = self._key_of[rule.id], self._value_of[rule.id]
        single = len(rule.group_by) == 1
        readings = []
        for event in events:
            key = (key_of(event),) if single else key_of(event)
            if all(key):  # an event without an address is no one's in a rule by address
                readings.append(
                    (event.time_ns, key, str(value_of(event)), event.weight, event.time_ns)
                )
        return self.apply_readings(rule, readings)

    def apply_readings(self, rule: Rule, readings: Sequence[Reading]) -> list[Alert]:
        """``rule`` on what it reads (``Reading``) of events it matches (``matches``, or the
        same test over many events at once) and that tell every field it groups by, in their
        order: the alerts they complete. What each event does depends on the rule alone, so
        the rule is read once, not once an event."""
        if not readings:
            return []
        # What no later event can count is let go now and then, as the newest event seen
        # before these tells.
        before, self._observed = self._observed, self._observed + len(readings)
        if before // SWEEP_EVERY != self._observed // SWEEP_EVERY:
            self._sweep()
        self._latest_ns = max(self._latest_ns, max(map(itemgetter(4), readings)))
        alerts = []
        handle = getattr(self, _HANDLERS[rule.kind])
        for at, key, value, weight, until in readings:
            alert = handle(rule, key, at, value, weight, until)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def observe_all(self, events: Iterable[Observed]) -> Iterator[Alert]:
        for event in events:
            yield from self.observe(event)

    def remember_last(self, rule: Rule, key: tuple[str, ...], at_ns: int) -> None:
        """A dormant rule learns the key's latest matching event before what it will see (from
        a rollup, say): what tells a dormant token's next use."""
        self._last[rule.id, key] = max(self._last.get((rule.id, key), at_ns), at_ns)

    def remember_value(self, rule: Rule, key: tuple[str, ...], value: str, at_ns: int) -> None:
        """A new-value rule learns that the key had ``value`` at ``at_ns`` (from the store)."""
        self._see((rule.id, key), value, at_ns)

    def _see(self, held: Key, value: str, at_ns: int) -> tuple[int | None, int | None]:
        """The key had ``value`` at ``at_ns``; returns when it last had it before, and when
        it last had any value before (None: not within what is kept)."""
        seen = self._seen.get(held)
        if seen is None:
            seen = self._seen[held] = {}
        before = seen.get(value)
        if before is None or at_ns > before:
            seen[value] = at_ns
        last = self._seen_last.get(held)
        if last is None or at_ns > last:
            self._seen_last[held] = at_ns
        return before, last

    def remember_rate(self, rule: Rule, key: tuple[str, ...], hour_ns: int, count: int) -> None:
        """A spike rule learns the key's matching events of an hour before what it will see
        (from the token_minutes rollup): its usual rate."""
        self._rates.setdefault((rule.id, key), Rate()).add_hour(hour_ns, count)

    def remember_alert(self, alert: Alert) -> None:
        """The rule raised ``alert`` before (a stored one): it stays quiet for the key until the
        alert's quiet time ends, and the alert is active until it clears."""
        held = (alert.rule.id, tuple(alert.labels.get(f, "") for f in alert.rule.group_by))
        self._quiet[held] = max(self._quiet.get(held, alert.quiet_until_ns), alert.quiet_until_ns)
        clears_ns = alert.last_ns + self._hold_ns(alert.rule)
        if clears_ns > self.active.get(held, (alert, 0))[1]:
            self.active[held] = (alert, clears_ns)

    def _sweep(self) -> None:
        """Drops what no later event can count: events and values older than their rule's
        window before the newest event, and suppressions that are over. A dormant rule keeps
        each key's latest event: that is what it knows."""
        latest = self._latest_ns
        for (rule_id, key), window in list(self._events.items()):
            if window.times[-1] < latest - self._span_ns[rule_id]:
                del self._events[rule_id, key]
        for held, seen in list(self._seen.items()):
            horizon = latest - self._span_ns[held[0]]
            if self._seen_last[held] < horizon:
                del self._seen[held], self._seen_last[held]
            else:
                for old in [value for value, at in seen.items() if at < horizon]:
                    del seen[old]
        for (rule_id, key), rate in list(self._rates.items()):
            rule = self._rules[rule_id]
            if rate.newest_ns < latest - _ns(rule.window) - _ns(rule.baseline):
                del self._rates[rule_id, key]
        for held, until_ns in list(self._quiet.items()):
            if until_ns <= latest:
                del self._quiet[held]

    def _new_value(
        self, rule: Rule, key: tuple[str, ...], at: int, value: str, _: int, until: int
    ) -> Alert | None:
        assert rule.new_of is not None
        if not value:
            return None
        held = (rule.id, key)
        horizon = at - self._span_ns[rule.id]
        # New: not seen within the window before (a value seen longer ago is new again), while
        # the key was in use within it, so from elsewhere.
        before, last = self._see(held, value, until)
        known = before is not None and before >= horizon
        in_use = last is not None and last >= horizon
        if known or not in_use:
            return None
        return self._alert(rule, (*key, value), (*rule.group_by, rule.new_of), 1, at, at)

    def _event(
        self, rule: Rule, key: tuple[str, ...], at: int, _: str, __: int, ___: int
    ) -> Alert | None:
        return self._alert(rule, key, rule.group_by, 1, at, at)

    def _dormant(
        self, rule: Rule, key: tuple[str, ...], at: int, _: str, __: int, until: int
    ) -> Alert | None:
        previous = self._last.get((rule.id, key))
        self._last[rule.id, key] = until if previous is None else max(previous, until)
        if previous is None or at - previous < self._span_ns[rule.id]:
            return None
        return self._alert(rule, key, rule.group_by, 1, previous, at)

    def _count(
        self, rule: Rule, key: tuple[str, ...], at: int, value: str, _: int, __: int
    ) -> Alert | None:
        span_ns = self._span_ns[rule.id]
        if not value:  # a distinct count of what the source did not tell
            return None
        window = self._events.get((rule.id, key))
        if window is None:
            window = self._events[rule.id, key] = Window(span_ns, rule.kind is Kind.DISTINCT)
        count, first, last = window.add(at, value)
        if count < rule.threshold:
            return None
        return self._alert(rule, key, rule.group_by, count, first, last)

    def _spike(
        self, rule: Rule, key: tuple[str, ...], at: int, _: str, weight: int, __: int
    ) -> Alert | None:
        window_ns = self._span_ns[rule.id]
        rate = self._rates.get((rule.id, key))
        if rate is None:
            rate = self._rates[rule.id, key] = Rate()
        rate.add(at, weight)
        start = at - window_ns
        calls, first = rate.calls_since(start)
        usual = rate.usual_per_minute(start, _ns(rule.baseline))
        limit = rule.threshold * max(usual, 1.0) * window_ns / NS_PER_MINUTE
        if calls <= limit:
            return None
        # The count that went over, also when this event stands for a minute's events.
        crossed = math.floor(limit) + 1
        count = crossed if calls - weight < crossed else calls
        return self._alert(rule, key, rule.group_by, count, max(first, start), at)

    def _alert(
        self,
        rule: Rule,
        values: tuple[str, ...],
        names: tuple[str, ...],
        count: int,
        first_ns: int,
        last_ns: int,
    ) -> Alert | None:
        """An alert, unless the rule alerted for the same key within its suppression (then the
        alert it raised holds longer)."""
        held = (rule.id, values[: len(rule.group_by)])
        clears_ns = last_ns + self._hold[rule.id]
        if last_ns < self._quiet.get(held, -1):
            active = self.active.get(held)
            if active is not None and clears_ns > active[1]:
                self.active[held] = (active[0], clears_ns)
            return None
        quiet_until_ns = self._quiet[held] = last_ns + _ns(rule.suppress_for)
        key = tuple(zip(names, values, strict=True))
        alert = Alert(rule, key, count, first_ns, last_ns, quiet_until_ns)
        self.active[held] = (alert, max(clears_ns, self.active.get(held, (alert, 0))[1]))
        return alert

    def _hold_ns(self, rule: Rule) -> int:
        """How long after its last detection an alert holds: a window's count stays over the
        threshold for at most the window; a single event's alert, for its quiet time."""
        if rule.kind in (Kind.COUNT, Kind.DISTINCT, Kind.SPIKE):
            return self._span_ns[rule.id]
        return _ns(rule.suppress_for)

    def resolved(self, now_ns: int) -> list[tuple[Alert, int]]:
        """The alerts whose condition cleared by ``now_ns``, each with when it cleared; they are
        no longer active."""
        cleared = [(held, alert, at) for held, (alert, at) in self.active.items() if at <= now_ns]
        for held, _, _ in cleared:
            del self.active[held]
        return [(alert, at) for _, alert, at in cleared]


class Rate:
    """A key's matching events by minute (the recent ones: a spike rule's window) and by hour
    (its baseline): enough to tell a burst from its usual rate."""

    __slots__ = ("_usual", "hours", "minutes", "newest_ns")

    def __init__(self) -> None:
        self.minutes: dict[int, int] = {}  # start of the minute (ns): events
        self.hours: dict[int, int] = {}  # start of the hour (ns): events
        self.newest_ns = 0
        self._usual: tuple[int, float] = (-1, 0.0)  # (end of the baseline, its rate)

    def add(self, at_ns: int, count: int) -> None:
        minute = at_ns - at_ns % NS_PER_MINUTE
        self.minutes[minute] = self.minutes.get(minute, 0) + count
        self.add_hour(at_ns, count)
        self.newest_ns = max(self.newest_ns, at_ns)
        if len(self.minutes) > 120:  # keep two hours of minutes: more than a window needs
            for old in sorted(self.minutes)[:-120]:
                del self.minutes[old]

    def add_hour(self, at_ns: int, count: int) -> None:
        hour = at_ns - at_ns % NS_PER_HOUR
        self.hours[hour] = self.hours.get(hour, 0) + count
        if hour < self._usual[0]:
            self._usual = (-1, 0.0)  # a late event: the baseline is counted again
        self.newest_ns = max(self.newest_ns, hour)

    def calls_since(self, start_ns: int) -> tuple[int, int]:
        """The events of the minutes from the one holding ``start_ns`` on, and the start of
        the first such minute that has any."""
        first_minute = start_ns - start_ns % NS_PER_MINUTE
        minutes = self.minutes
        last_minute = self.newest_ns - self.newest_ns % NS_PER_MINUTE  # (none is later)
        if (last_minute - first_minute) // NS_PER_MINUTE < len(minutes):  # (a busy key)
            calls, first = 0, None
            for minute in range(first_minute, last_minute + 1, NS_PER_MINUTE):
                n = minutes.get(minute)
                if n is not None:
                    calls += n
                    first = minute if first is None else first
            return calls, start_ns if first is None else first
        inside = [(m, n) for m, n in minutes.items() if m >= first_minute]
        return sum(n for _, n in inside), min((m for m, _ in inside), default=start_ns)

    def usual_per_minute(self, before_ns: int, baseline_ns: int) -> float:
        """Events a minute over the whole hours of ``baseline_ns`` before ``before_ns``, from the
        first hour that has any (at least an hour, so a token's first calls are no baseline)."""
        end = before_ns - before_ns % NS_PER_HOUR
        if self._usual[0] == end:
            return self._usual[1]
        start = end - baseline_ns
        inside = [(h, n) for h, n in self.hours.items() if start <= h < end]
        if len(self.hours) > baseline_ns // NS_PER_HOUR + 2:
            for old in [h for h in self.hours if h < start]:
                del self.hours[old]
        usual = 0.0
        if inside:
            first = min(h for h, _ in inside)
            usual = sum(n for _, n in inside) / max((end - first) // NS_PER_MINUTE, 60)
        self._usual = (end, usual)
        return usual


class Window:
    """The events of one key that a count rule (or a distinct-count rule) counts: those within
    ``span_ns`` before the newest, oldest first, from ``start`` on in ``times`` and ``values``
    (the events before it have left the window and are dropped in bulk, now and then), with
    how often each value occurs among them when the rule counts distinct values.

    An event in order costs a few list and dict operations whatever the window holds; one that
    came late, the events after it.
    """

    __slots__ = ("counts", "distinct", "span_ns", "start", "times", "values")

    def __init__(self, span_ns: int, distinct: bool) -> None:
        self.span_ns = span_ns
        self.distinct = distinct
        self.times: list[int] = []
        self.values: list[str] = []
        self.start = 0
        self.counts: dict[str, int] = {}

    def add(self, at: int, value: str) -> tuple[int, int, int]:
        """Counts the event at ``at``; the fullest window of ``span_ns`` that holds it: its
        count, first and last time. In order, that is the window ending at the event; an event
        that came late may also complete a window that ends at a later event. An event older
        than the window before the newest is too late to count (the events of its own window
        are gone): it counts nothing."""
        times, values = self.times, self.values
        if not times or at >= times[-1]:
            times.append(at)
            values.append(value)
            if self.distinct:
                self.counts[value] = self.counts.get(value, 0) + 1
            self._leave(at - self.span_ns)
        elif at < times[-1] - self.span_ns:
            return 0, at, at
        else:
            where = bisect.bisect_right(times, at, self.start)
            times.insert(where, at)
            values.insert(where, value)
            if self.distinct:
                self.counts[value] = self.counts.get(value, 0) + 1
            return self._busiest_after(where)
        return self._count(), times[self.start], at

    def _count(self) -> int:
        return len(self.counts) if self.distinct else len(self.times) - self.start

    def _leave(self, horizon: int) -> None:
        """The events before ``horizon`` leave the window."""
        times, values, counts = self.times, self.values, self.counts
        start = bisect.bisect_left(times, horizon, self.start)
        if self.distinct:
            for value in values[self.start : start]:
                _drop(counts, value)
        self.start = start
        if start > 64 and 2 * start > len(times):
            del times[:start], values[:start]
            self.start = 0

    def _busiest_after(self, where: int) -> tuple[int, int, int]:
        """The fullest of the windows ending at the event at ``where`` and at each event after
        it (those hold it: it came late, within the window of the newest), the earliest of
        them on a tie. Walks from the newest window back, one event at a time."""
        times, values, span = self.times, self.values, self.span_ns
        counts = dict(self.counts) if self.distinct else {}
        first = self.start  # (the window ending at the newest begins where the live one does)
        best = (0, 0, 0)
        for end in range(len(times), where, -1):  # the window of the events before ``end``
            last = times[end - 1]
            begin = bisect.bisect_left(times, last - span, self.start)
            if self.distinct:
                for value in values[begin:first]:
                    counts[value] = counts.get(value, 0) + 1
            first = begin
            count = len(counts) if self.distinct else end - begin
            if count >= best[0]:
                best = (count, times[begin], last)
            if self.distinct:
                _drop(counts, values[end - 1])
        return best


def _drop(counts: dict[str, int], value: str) -> None:
    """One occurrence of ``value`` fewer (none left: gone from ``counts``)."""
    left = counts[value] - 1
    if left:
        counts[value] = left
    else:
        del counts[value]


def _ns(span: timedelta) -> int:
    return int(span.total_seconds() * NS_PER_S)
