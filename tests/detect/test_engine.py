"""The rule engine: windows by event time, thresholds, distinct counts, suppression."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tokenotel.detect import Detector, Observed, Rule, engine, shipped_rules
from tokenotel.detect.engine import NS_PER_S, matches
from tokenotel.detect.rules import Match, parse_rules

S = NS_PER_S
BURST = parse_rules(
    """
rules:
  - id: burst
    severity: warning
    description: failures
    runbook: look
    kind: count
    match: {outcome: failure}
    group_by: [token]
    window: 5m
    threshold: 3
    suppress_for: 10m
  - id: spray
    severity: critical
    description: many tokens from one address
    runbook: block it
    kind: distinct
    match: {outcome: failure}
    group_by: [ip]
    distinct_of: token
    window: 5m
    threshold: 3
    suppress_for: 10m
""",
    "test",
)


def failure(at_s: int, token: str = "t1", ip: str = "203.0.113.7") -> Observed:
    return Observed(at_s * S, "token.auth_failed", "failure", "active", token, ip, "p", "", None)


def fired(detector: Detector, *events: Observed) -> list[tuple[str, dict[str, str], int]]:
    return [(a.rule.id, a.labels, a.count) for e in events for a in detector.observe(e)]


def test_a_count_fires_when_the_window_holds_the_threshold_and_names_the_key() -> None:
    burst = Detector(BURST[:1])
    assert fired(burst, failure(0), failure(100)) == []
    assert fired(burst, failure(200)) == [("burst", {"token": "t1"}, 3)]


def test_events_further_apart_than_the_window_do_not_add_up() -> None:
    burst = Detector(BURST[:1])
    assert fired(burst, failure(0), failure(200), failure(301), failure(700)) == []


def test_a_late_event_counts_at_its_own_time() -> None:
    burst = Detector(BURST[:1])
    assert fired(burst, failure(1000), failure(1100)) == []
    assert fired(burst, failure(0)) == []  # late, and alone in its own window
    alerts = burst.observe(failure(1050))  # late, between the two: three within 5 minutes
    assert [(a.count, a.first_ns // S, a.last_ns // S) for a in alerts] == [(3, 1000, 1100)]


def test_an_alert_suppresses_the_same_rule_and_key_for_its_window_only() -> None:
    burst = Detector(BURST[:1])
    events = [failure(t) for t in (0, 10, 20, 30, 40)]  # fires at 20; 30 and 40 suppressed
    assert [c for _, _, c in fired(burst, *events)] == [3]
    assert fired(burst, failure(30, token="t2"), failure(31, token="t2")) == []
    assert fired(burst, failure(32, token="t2")) == [("burst", {"token": "t2"}, 3)]
    later = [failure(620), failure(621), failure(622)]  # 10 minutes after the alert
    assert [c for _, _, c in fired(burst, *later)] == [3]


def test_a_distinct_rule_counts_distinct_values_not_events() -> None:
    spray = Detector(BURST[1:])
    assert fired(spray, failure(0, "a"), failure(1, "a"), failure(2, "b")) == []
    assert fired(spray, failure(3, "c")) == [("spray", {"ip": "203.0.113.7"}, 3)]


def test_an_event_without_the_grouped_field_is_left_out() -> None:
    spray = Detector(BURST[1:])
    assert fired(spray, *(failure(n, f"t{n}", ip="") for n in range(5))) == []


def test_matches_reads_every_condition() -> None:
    created = Observed(0, "token.created", "success", "active", "t", "", "alice", "bob", None)
    assert matches(Match(events=("token.created",), actor_is_not_principal=True), created)
    mine = Observed(0, "token.created", "success", "active", "t", "", "alice", "alice", None)
    assert not matches(Match(actor_is_not_principal=True), mine)
    long_lived = Match(events=("token.created",), lifetime_over=timedelta(days=90))
    assert matches(long_lived, created)  # no expiry: lives for ever
    short = Observed(0, "token.created", "success", "active", "t", "", "a", "", 30 * 86400 * S)
    assert not matches(long_lived, short)
    year = Observed(0, "token.created", "success", "active", "t", "", "a", "", 365 * 86400 * S)
    assert matches(long_lived, year)
    assert not matches(Match(token_status=("revoked",)), created)


def test_an_alert_as_a_row_says_what_and_when() -> None:
    (alert,) = Detector(BURST[:1]).observe_all([failure(0), failure(1), failure(2)])
    assert alert.as_row() == {
        "rule": "burst",
        "severity": "warning",
        "token": "t1",
        "count": 3,
        "first": "1970-01-01T00:00:00.000000000Z",
        "last": "1970-01-01T00:00:02.000000000Z",
        "description": "failures",
    }
    assert isinstance(alert.rule, Rule)


NEW_AND_DORMANT = parse_rules(
    """
rules:
  - id: new-ip
    severity: warning
    description: new address
    runbook: ask
    kind: new_value
    match: {events: [token.used]}
    group_by: [token]
    new_of: ip
    window: 1h
    suppress_for: 0s
  - id: dormant
    severity: warning
    description: idle, then used
    runbook: ask
    kind: dormant
    match: {events: [token.used]}
    group_by: [token]
    window: 1d
    suppress_for: 0s
""",
    "test",
)


def use(at_s: int, ip: str, token: str = "t1") -> Observed:
    return Observed(at_s * S, "token.used", "success", "active", token, ip, "p", "", None)


def test_a_new_value_is_one_not_seen_with_the_key_within_the_window() -> None:
    new_ip = Detector(NEW_AND_DORMANT[:1])
    assert fired(new_ip, use(0, "192.0.2.1")) == []  # the token's first address: not news
    assert fired(new_ip, use(60, "192.0.2.1")) == []
    assert fired(new_ip, use(120, "192.0.2.2")) == [
        ("new-ip", {"token": "t1", "ip": "192.0.2.2"}, 1)
    ]
    assert fired(new_ip, use(180, "192.0.2.2"), use(3000, "192.0.2.1")) == []
    assert fired(new_ip, use(9000, "192.0.2.2")) == []  # seen at 180, 2.4 h before: new...
    assert fired(new_ip, use(9100, "192.0.2.1")) == [  # ...but the token had no other since
        ("new-ip", {"token": "t1", "ip": "192.0.2.1"}, 1)
    ]


def test_dormant_fires_on_the_first_use_after_the_idle_window() -> None:
    dormant = Detector(NEW_AND_DORMANT[1:])
    assert fired(dormant, use(0, "a"), use(80_000, "a")) == []  # under a day apart
    (alert,) = dormant.observe(use(80_000 + 90_000, "a"))
    assert (alert.labels, alert.first_ns // S, alert.last_ns // S) == (
        {"token": "t1"},
        80_000,
        170_000,
    )
    assert fired(dormant, use(170_001, "a")) == []


def test_a_dormant_rule_learns_the_last_use_from_before() -> None:
    dormant = Detector(NEW_AND_DORMANT[1:])
    dormant.remember_last(NEW_AND_DORMANT[1], ("t1",), 0)
    assert [a.first_ns for a in dormant.observe(use(2 * 86400, "a"))] == [0]


def test_letting_go_of_old_state_changes_no_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep (every SWEEP_EVERY events) drops only what no later event can count."""
    generator = random.Random(7)
    events = []
    for n in range(3000):
        at = n * 20 + generator.randrange(0, 15) + (2 * 86400 if n >= 1500 else 0)  # a pause
        token, ip = f"t{generator.randrange(8)}", f"192.0.2.{generator.randrange(12)}"
        outcome = "failure" if generator.random() < 0.4 else "success"
        name = "token.auth_failed" if outcome == "failure" else "token.used"
        events.append(Observed(at * S, name, outcome, "active", token, ip, "p", "", None))
    rules = [*BURST, *NEW_AND_DORMANT]

    def alerts() -> list[tuple[str, dict[str, str], int, int]]:
        found = Detector(rules).observe_all(events)
        return [(a.rule.id, a.labels, a.count, a.last_ns) for a in found]

    kept = alerts()
    monkeypatch.setattr(engine, "SWEEP_EVERY", 3)
    assert alerts() == kept
    assert {rule for rule, *_ in kept} == {"burst", "spray", "new-ip", "dormant"}


def busiest_by_definition(
    seen: list[tuple[int, str]], at: int, span: int, distinct: bool
) -> tuple[int, int, int]:
    """What a count window answers for the event at ``at`` (the last of ``seen``), read off
    every event seen so far: of the events within ``span`` before the newest, the fullest
    window of ``span`` ending at an event at or after ``at`` (the earliest on a tie); an
    event older than that is too late to count: nothing."""
    newest = max(t for t, _ in seen)
    kept = [(t, v) for t, v in seen if t >= newest - span]

    def window(end: int) -> tuple[int, int, int]:
        inside = [(t, v) for t, v in kept if end - span <= t <= end]
        count = len({v for _, v in inside}) if distinct else len(inside)
        return count, min(t for t, _ in inside), end

    if at < newest - span:
        return 0, at, at
    best = (0, 0, 0)
    for end in sorted({t for t, _ in kept if at <= t <= at + span}):
        found = window(end)
        if found[0] > best[0]:
            best = found
    return best


@pytest.mark.parametrize("distinct", [False, True])
def test_a_window_answers_as_its_definition_for_events_in_order_late_and_too_late(
    distinct: bool,
) -> None:
    """The window keeps counts as events come and walks back only over what came after a
    late one; its answers are those of the definition, read off every event each time."""
    generator = random.Random(11)
    span = 300
    for _ in range(20):
        window = engine.Window(span, distinct)
        seen: list[tuple[int, str]] = []
        clock = 0
        for _ in range(400):
            clock += generator.randrange(0, 40)
            lateness = generator.choice([0, 0, 0, 0, 5, 60, 250, 299, 300, 301, 900])
            at, value = max(clock - lateness, 0), f"v{generator.randrange(6)}"
            seen.append((at, value))
            assert window.add(at, value) == busiest_by_definition(seen, at, span, distinct)


def test_a_distinct_count_leaves_out_what_the_source_did_not_tell() -> None:
    (networks,) = [r for r in shipped_rules() if r.id == "token-from-several-networks"]
    detector = Detector([networks])

    def used(at_s: int, asn: str) -> Observed:
        return Observed(
            at_s * S, "token.used", "success", "active", "t1", "192.0.2.1", "p", "", None, asn
        )

    assert fired(detector, used(0, "64500"), used(60, ""), used(120, "64500")) == []
    assert fired(detector, used(180, "64501")) == [
        ("token-from-several-networks", {"token": "t1"}, 2)
    ]
    assert fired(detector, used(4000, "64500"), used(4100, "64502")) == [  # 30 minutes later
        ("token-from-several-networks", {"token": "t1"}, 2)
    ]


SPIKE = parse_rules(
    """
rules:
  - id: spike
    severity: warning
    description: far above its usual rate
    runbook: look
    kind: spike
    match: {events: [token.used]}
    group_by: [token]
    window: 10m
    baseline: 1d
    threshold: 10
    suppress_for: 30m
""",
    "test",
)[0]
HOUR_S = 3600


def test_a_spike_is_over_ten_times_the_usual_rate_and_at_least_ten_a_minute() -> None:
    quiet = Detector([SPIKE])
    # No history: the usual rate is taken as one a minute, so 100 calls in 10 minutes are not
    # a spike and the 101st is.
    calls = [use(5 * HOUR_S + n, "a") for n in range(101)]
    assert fired(quiet, *calls[:100]) == []
    (alert,) = quiet.observe(calls[100])
    assert (alert.count, alert.first_ns // S, alert.last_ns // S) == (
        101,
        5 * HOUR_S,
        5 * HOUR_S + 100,
    )
    assert fired(quiet, use(5 * HOUR_S + 200, "a")) == []  # quiet for 30 minutes

    busy = Detector([SPIKE])
    # Usually 12 a minute (720 in each of the 4 hours before): 101 in 10 minutes is ordinary,
    # and so are 1,200; 1,201 are more than ten times 12 a minute.
    for hour in range(1, 5):
        busy.remember_rate(SPIKE, ("t1",), hour * HOUR_S * S, 720)
    assert fired(busy, *(use(5 * HOUR_S + n // 2, "a") for n in range(1200))) == []
    (alert,) = busy.observe(use(5 * HOUR_S + 599, "a"))
    assert alert.count == 1201


def test_a_spike_counts_the_events_an_observation_stands_for() -> None:
    detector = Detector([SPIKE])
    minute = Observed(3 * HOUR_S * S, "token.used", "success", "", "t1", "a", "", "", None,
                      weight=101)  # fmt: skip
    (alert,) = detector.observe(minute)
    assert alert.count == 101


@pytest.mark.parametrize("seed", range(3))
def test_a_keys_calls_since_a_time_are_those_of_its_minutes_from_then_on(seed: int) -> None:
    """A busy key's minutes are looked up one by one, a quiet key's read through: either way
    the answer is the definition's."""
    rng, minute = random.Random(seed), 60 * NS_PER_S
    for _ in range(300):
        rate, base = engine.Rate(), rng.randrange(10**15)
        for _ in range(rng.randrange(1, 150)):
            rate.add(
                base + rng.randrange(200) * minute + rng.randrange(minute), rng.randrange(1, 4)
            )
        start = min(base + rng.randrange(-5, 200) * minute, rate.newest_ns)
        inside = {m: n for m, n in rate.minutes.items() if m >= start - start % minute}
        assert rate.calls_since(start) == (sum(inside.values()), min(inside, default=start))
