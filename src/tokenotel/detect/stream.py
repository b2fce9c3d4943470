"""Detection in the service: every committed insert goes through the rules, in a thread of its
own, after the requests it holds were answered; what the rules raise is stored in
``token_alerts`` and handed to the notifiers (webhooks).

Each rule reads the insert at once (Arrow compute): the events it matches are picked out
together, and for the rules that remember values (new address, dormant token, distinct
networks) the events of one key and value are taken as the first and the last of them, which
say all those rules can tell within a batch (``observations``).

At start the rules learn what the store knows before the first insert: the alerts raised
within their suppression (not raised again), each token's last use (dormant), the values each
key had within a new-value rule's window, and the events of the count rules' windows.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from tokenotel.detect.engine import NS_PER_MINUTE, NS_PER_S, Alert, Detector, Observed, matches
from tokenotel.detect.replay import learn_from_rollups, stored_events
from tokenotel.detect.rules import Kind, Match, Rule
from tokenotel.errors import StoreUnavailable
from tokenotel.query.readable import IP_TEXT_SQL, ip_to_text
from tokenotel.store.client import ALERTS_TABLE, EVENTS_TABLE, Store

log = logging.getLogger(__name__)

#: The investigation dashboard (grafana/dashboards/token-investigation.json).
INVESTIGATION_PATH = "/d/tokenotel-investigation/tokenotel-token-investigation"
#: Inserts waiting for the rules; past this the oldest waits are dropped, and counted.
QUEUE_INSERTS = 256
#: How often, without inserts, the alerts whose condition cleared are looked for.
RESOLVE_EVERY_S = 1.0

#: The alerts of the last ``seconds`` (their suppression may still run).
RECENT_ALERTS_SQL = f"""
SELECT rule, labels, event_count, toUnixTimestamp64Nano(first_event),
       toUnixTimestamp64Nano(last_event), toUnixTimestamp64Nano(quiet_until)
FROM {ALERTS_TABLE}
WHERE raised_at >= now64(3) - toIntervalSecond({{seconds:UInt64}})
"""
#: Each key and value a new-value rule saw within its window, with its latest time (the
#: fields' expressions go in first: ``{fields}``).
VALUES_SQL = f"""
SELECT {{fields}}, toUnixTimestamp64Nano(max(event_time))
FROM {EVENTS_TABLE}
WHERE event_time >= fromUnixTimestamp64Nano({{{{start:Int64}}}}, 'UTC')
  AND ingested_at < fromUnixTimestamp64Milli({{{{before_ms:Int64}}}}, 'UTC')
  AND (empty({{{{events:Array(String)}}}}) OR event_name IN {{{{events:Array(String)}}}})
  AND ({{{{outcome:String}}}} = '' OR outcome = {{{{outcome:String}}}})
GROUP BY ALL
"""

#: The name and owner of the tokens alerts are about.
TOKENS_SQL = """
SELECT token_key, token_name, owner FROM token_inventory
WHERE token_key IN {keys:Array(String)}
"""

#: The stored column of each field a rule groups by or counts, and how it is read as text.
_COLUMNS = {
    "token": "token_key",
    "ip": "client_ip",
    "principal": "principal_id",
    "actor": "actor_id",
    "asn": "asn",
}
_SQL_OF = {
    "token": "token_key",
    "ip": IP_TEXT_SQL.format("client_ip"),
    "principal": "principal_id",
    "actor": "actor_id",
    "asn": "if(asn = 0, '', toString(asn))",
}


@dataclass(frozen=True)
class RaisedAlert:
    """An alert as it leaves the service: when, and the dashboard link that shows it."""

    alert: Alert
    raised_ns: int
    link: str
    #: "firing", or "resolved": the condition cleared at ``ends_ns`` (a notice, not stored).
    state: str = "firing"
    ends_ns: int | None = None
    #: The token's name and owner, as the inventory knows them ("" when unknown).
    token_name: str = ""
    principal: str = ""

    def as_row(self) -> dict[str, object]:
        return {**self.alert.as_row(), "link": self.link}


class Notifier(Protocol):
    """Somewhere alerts go (a webhook)."""

    def send(self, alerts: list[RaisedAlert]) -> None:
        """Hands the alerts over; never blocks on the receiver."""
        ...

    def close(self) -> None: ...


def link(grafana_url: str, alert: Alert) -> str:
    """The investigation dashboard with the alert's token and IP selected, over its window."""
    labels = alert.labels
    start_ms = alert.first_ns // 1_000_000 - 3_600_000
    end_ms = alert.last_ns // 1_000_000 + 3_600_000
    query = [f"from={start_ms}", f"to={end_ms}"]
    for field in ("token", "ip"):
        if labels.get(field):
            query.append(f"var-{field}={quote(labels[field], safe='')}")
    return f"{grafana_url.rstrip('/')}{INVESTIGATION_PATH}?{'&'.join(query)}"


def frame(batch: pa.Table) -> pa.Table:
    """The columns the rules read of a committed insert: its events' times in ns, and the token
    key as the store computes it (the id, else the fingerprint)."""
    token_id = batch.column("token_id")
    token_key = pc.if_else(pc.not_equal(token_id, ""), token_id, batch.column("token_fingerprint"))
    return pa.table(
        {
            "time": batch.column("event_time").cast(pa.int64()),
            "event": batch.column("event_name"),
            "outcome": batch.column("outcome"),
            "token_status": batch.column("token_status"),
            "token_key": token_key,
            "client_ip": batch.column("client_ip"),
            "principal_id": batch.column("principal_id"),
            "actor_id": batch.column("actor_id"),
            "asn": batch.column("asn"),
            "expires_at": pc.multiply(batch.column("expires_at").cast(pa.int64()), 1_000_000),
        }
    )


def _mask(match: Match, events: pa.Table) -> pa.ChunkedArray | None:
    """Which events ``match`` takes (``engine.matches`` over a whole table); None: all."""
    tests = []
    if match.events:
        tests.append(pc.is_in(events["event"], pa.array(sorted(match.events))))
    if match.outcome is not None:
        tests.append(pc.equal(events["outcome"], match.outcome))
    if match.token_status:
        tests.append(pc.is_in(events["token_status"], pa.array(sorted(match.token_status))))
    if match.actor_is_not_principal:
        actor = events["actor_id"]
        tests.append(pc.and_(pc.not_equal(actor, ""), pc.not_equal(actor, events["principal_id"])))
    if match.lifetime_over is not None:
        lifetime = pc.subtract(events["expires_at"], events["time"])
        longer = pc.greater(lifetime, int(match.lifetime_over.total_seconds() * NS_PER_S))
        tests.append(pc.or_kleene(pc.is_null(events["expires_at"]), longer))
    if not tests:
        return None
    mask = tests[0]
    for test in tests[1:]:
        mask = pc.and_(mask, test)
    return mask


def _text(field: str, value: object) -> str:
    if field == "ip":
        return ip_to_text(value) if isinstance(value, bytes) else ""
    if field == "asn":
        return str(value) if value else ""
    return str(value) if value is not None else ""


def _observed(time_ns: int, values: dict[str, str], event: dict[str, object]) -> Observed:
    expires = event.get("expires_at")
    return Observed(
        time_ns=time_ns,
        event=str(event.get("event", "")),
        outcome=str(event.get("outcome", "")),
        token_status=str(event.get("token_status", "")),
        token=values.get("token", ""),
        ip=values.get("ip", ""),
        principal=values.get("principal", ""),
        actor=values.get("actor", ""),
        expires_at_ns=expires if isinstance(expires, int) else None,
        asn=values.get("asn", ""),
    )


def _each(rule: Rule, events: pa.Table) -> list[Observed]:
    fields = _fields(rule)
    observed = []
    for event in events.to_pylist():
        values = {field: _text(field, event[_COLUMNS[field]]) for field in fields}
        observed.append(_observed(int(event["time"]), values, event))
    return observed


def _fields(rule: Rule) -> list[str]:
    value = rule.new_of or rule.distinct_of
    return [*rule.group_by, *([value] if value and value not in rule.group_by else [])]


def observations(rule: Rule, events: pa.Table) -> list[Observed]:
    """The events of ``events`` (a ``frame``) that ``rule`` matches, as the rule reads them,
    oldest first. For a new-value, dormant or distinct rule, the events of one key and value
    within less than the rule's window are its first and its last: what such a rule knows of
    them (whether the value is new, the gap before the first, the windows holding one of them).
    """
    mask = _mask(rule.match, events)
    chosen = events if mask is None else events.filter(mask)
    if not chosen.num_rows:
        return []
    if rule.kind in (Kind.EVENT, Kind.COUNT):
        observed = _each(rule, chosen)
    elif rule.kind is Kind.SPIKE:
        observed = _by_minute(rule, chosen)
    else:
        fields = _fields(rule)
        columns = [_COLUMNS[field] for field in fields]
        groups = chosen.group_by(columns).aggregate([("time", "min"), ("time", "max")])
        span_ns = int(rule.window.total_seconds() * NS_PER_S)
        spread = pc.subtract(groups["time_max"], groups["time_min"])
        if pc.any(pc.greater_equal(spread, span_ns)).as_py():
            observed = _each(rule, chosen)  # (a backfill, most likely: every event counts)
        else:
            observed = []
            for group in groups.to_pylist():
                values = {field: _text(field, group[_COLUMNS[field]]) for field in fields}
                observed.append(_observed(group["time_min"], values, group))
                if group["time_max"] != group["time_min"]:
                    observed.append(_observed(group["time_max"], values, group))
    observed.sort(key=lambda event: event.time_ns)
    return observed


def _by_minute(rule: Rule, events: pa.Table) -> list[Observed]:
    """A spike rule's events: one for each key and minute, the count of its events, at the
    last of them."""
    fields = _fields(rule)
    columns = [_COLUMNS[field] for field in fields]
    with_minute = events.append_column(
        "minute", pc.multiply(pc.divide(events["time"], NS_PER_MINUTE), NS_PER_MINUTE)
    )
    groups = with_minute.group_by([*columns, "minute"]).aggregate(
        [("time", "max"), ("time", "count")]
    )
    observed = []
    for group in groups.to_pylist():
        values = {field: _text(field, group[_COLUMNS[field]]) for field in fields}
        event = _observed(group["time_max"], values, group)
        observed.append(replace(event, weight=group["time_count"]))
    return observed


def evaluate(detector: Detector, batch: pa.Table) -> list[Alert]:
    """Every rule of ``detector`` on one committed insert: the alerts raised."""
    events = frame(batch)
    alerts = []
    for rule in detector.rules:
        for event in observations(rule, events):
            alert = detector.apply(rule, event)
            if alert is not None:
                alerts.append(alert)
    return alerts


class StreamDetector:
    """The rules on each committed insert (``committed``), in a thread of its own.

    Alerts are written to ``token_alerts``, logged, and sent to each notifier. The queue holds
    ``QUEUE_INSERTS`` inserts: when the rules fall that far behind, the oldest waiting insert
    is let go (counted in ``inserts_skipped`` and logged), so detection never holds up ingest.
    """

    def __init__(
        self,
        store: Store,
        rules: Iterable[Rule],
        grafana_url: str,
        notifiers: Iterable[Notifier] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.detector = Detector(rules)
        self.grafana_url = grafana_url
        self.notifiers = list(notifiers)
        self._clock = clock
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(QUEUE_INSERTS)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.alerts_raised = 0
        self.inserts_seen = 0
        self.inserts_skipped = 0
        #: Set once the rules learned the store's state (see ``warm``).
        self.ready = threading.Event()

    def start(self) -> None:
        """Starts the thread; what is committed from now on is evaluated (nothing before it:
        ``warm`` reads that from the store)."""
        started_ms = self._clock() // 1_000_000
        self._thread = threading.Thread(
            target=self._run, args=(started_ms,), name="tokenotel-detect", daemon=True
        )
        self._thread.start()

    def committed(self, batch: pa.Table) -> None:
        """An insert is committed (its rows as inserted): queued for the rules."""
        while True:
            try:
                self._queue.put_nowait(batch)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    continue
                self.inserts_skipped += 1
                log.warning(
                    "detection is %d inserts behind: the oldest waiting insert was not "
                    "evaluated (%d so far)",
                    QUEUE_INSERTS,
                    self.inserts_skipped,
                )

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Waits until every insert queued so far is evaluated (tests, and a stop)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def stop(self) -> None:
        """Evaluates what is queued (unless the rules never got the store's state: then
        there is nothing to evaluate against), then stops the thread and the notifiers."""
        if self._thread is not None:
            self._stopping.set()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                log.warning("detection did not stop within 30 s; its last inserts are lost")
            self._thread = None
        for notifier in self.notifiers:
            notifier.close()

    def _run(self, started_ms: int) -> None:
        self._warm_until_done(started_ms)
        if not self.ready.is_set():
            return  # stopped before the store answered
        while True:
            try:
                batch = self._queue.get(timeout=RESOLVE_EVERY_S)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                self._resolve()
                continue
            try:
                if batch is None:
                    return
                self.inserts_seen += 1
                self._raise(evaluate(self.detector, batch))
                self._resolve()
            except Exception:  # a bug: this insert's alerts are lost, detection goes on
                log.exception("detection failed on a committed insert")
            finally:
                self._queue.task_done()

    def _token_names(self, keys: set[str]) -> dict[str, tuple[str, str]]:
        """The name and owner of each token (empty when the store cannot say now)."""
        if not keys:
            return {}
        try:
            rows = self.store.query(TOKENS_SQL, {"keys": sorted(keys)}).result_rows
        except StoreUnavailable as e:
            log.warning("alerts go out without their tokens' names: %s", e)
            return {}
        return {key: (name, owner) for key, name, owner in rows}

    def _resolve(self) -> None:
        """Resolved notices for the alerts whose condition cleared by now."""
        now = self._clock()
        cleared = self.detector.resolved(now)
        if not cleared:
            return
        notices = [
            RaisedAlert(alert, now, link(self.grafana_url, alert), "resolved", at)
            for alert, at in cleared
        ]
        for notice in notices:
            labels = " ".join(f"{k}={v}" for k, v in notice.alert.labels.items())
            log.info("alert %s resolved: %s", notice.alert.rule.id, labels)
        for notifier in self.notifiers:
            notifier.send(notices)

    def _warm_until_done(self, started_ms: int) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            try:
                warm(self.detector, self.store, started_ms, self._clock())
            except StoreUnavailable as e:
                log.warning("detection waits for the store to learn its state: %s", e)
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            except Exception:
                log.exception("detection could not learn the store's state; it starts afresh")
            self.ready.set()
            return

    def _raise(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        now = self._clock()
        names = self._token_names({a.labels["token"] for a in alerts if a.labels.get("token")})
        raised = [
            RaisedAlert(
                alert,
                now,
                link(self.grafana_url, alert),
                token_name=names.get(alert.labels.get("token", ""), ("", ""))[0],
                principal=names.get(alert.labels.get("token", ""), ("", ""))[1],
            )
            for alert in alerts
        ]
        self.alerts_raised += len(raised)
        for item in raised:
            labels = " ".join(f"{k}={v}" for k, v in item.alert.labels.items())
            log.warning(
                "alert %s (%s): %s; %d events", item.alert.rule.id,
                item.alert.rule.severity.value, labels, item.alert.count,
            )  # fmt: skip
        try:
            self.store.insert_arrow(ALERTS_TABLE, alert_rows(raised))
        except StoreUnavailable as e:
            log.warning("%d alerts not stored (they are still sent): %s", len(raised), e)
        for notifier in self.notifiers:
            notifier.send(raised)


def alert_rows(raised: list[RaisedAlert]) -> pa.Table:
    """Alerts as rows of ``token_alerts``."""
    ns = pa.timestamp("ns", "UTC")
    return pa.table(
        {
            "raised_at": pa.array([r.raised_ns // 1_000_000 for r in raised], pa.int64()).cast(
                pa.timestamp("ms", "UTC")
            ),
            "rule": [r.alert.rule.id for r in raised],
            "severity": [r.alert.rule.severity.value for r in raised],
            "token_key": [r.alert.labels.get("token", "") for r in raised],
            "token_name": [r.token_name for r in raised],
            "principal": [r.principal for r in raised],
            "client_ip": [r.alert.labels.get("ip", "") for r in raised],
            "labels": pa.array(
                [list(r.alert.labels.items()) for r in raised], pa.map_(pa.string(), pa.string())
            ),
            "event_count": pa.array([r.alert.count for r in raised], pa.uint64()),
            "first_event": pa.array([r.alert.first_ns for r in raised], ns),
            "last_event": pa.array([r.alert.last_ns for r in raised], ns),
            "quiet_until": pa.array([r.alert.quiet_until_ns for r in raised], ns),
            "description": [r.alert.rule.description for r in raised],
            "link": [r.link for r in raised],
        }
    )


def warm(detector: Detector, store: Store, before_ms: int, now_ns: int) -> None:
    """What the rules know of the store's events committed before ``before_ms``: the alerts
    still quiet, each token's last matching event (dormant rules), each key's values within a
    new-value rule's window, and the events of the count and distinct rules' windows."""
    rules = {rule.id: rule for rule in detector.rules}
    longest_quiet = max((rule.suppress_for for rule in detector.rules), default=timedelta(0))
    seconds = int(longest_quiet.total_seconds()) + 60
    recent = store.query(RECENT_ALERTS_SQL, {"seconds": seconds}).result_rows
    for rule_id, labels, count, first_ns, last_ns, quiet_ns in recent:
        rule = rules.get(rule_id)
        if rule is not None:
            names = [*rule.group_by, *(n for n in [rule.new_of] if n is not None and n in labels)]
            key = tuple((name, labels.get(name, "")) for name in names)
            detector.remember_alert(Alert(rule, key, count, first_ns, last_ns, quiet_ns))
    now = datetime.fromtimestamp(now_ns / NS_PER_S, UTC)
    windowed = [r for r in detector.rules if r.kind in (Kind.COUNT, Kind.DISTINCT, Kind.SPIKE)]
    longest = max((rule.window for rule in windowed), default=timedelta(0))
    # The rollups up to a whole minute, the events from it on: nothing counted twice (but for
    # a late event committed while this runs, which the rollup and the queue both hold).
    cut = (now - longest).replace(second=0, microsecond=0)
    learn_from_rollups(detector, store, cut)
    for rule in detector.rules:
        if rule.kind is Kind.NEW_VALUE:
            _learn_values(detector, store, rule, before_ms, now_ns)
    if windowed:
        for event in stored_events(store, cut, now, committed_before_ms=before_ms):
            for rule in windowed:
                if matches(rule.match, event):
                    detector.apply(rule, event)


def _learn_values(
    detector: Detector, store: Store, rule: Rule, before_ms: int, now_ns: int
) -> None:
    assert rule.new_of is not None
    fields = [*rule.group_by, rule.new_of]
    params = {
        "start": now_ns - int(rule.window.total_seconds() * NS_PER_S),
        "before_ms": before_ms,
        "events": list(rule.match.events),
        "outcome": rule.match.outcome or "",
    }
    sql = VALUES_SQL.format(fields=", ".join(_SQL_OF[field] for field in fields))
    for *key, value, at_ns in store.query(sql, params, settings={"max_threads": 1}).result_rows:
        if all(key) and value:
            detector.remember_value(rule, tuple(key), value, at_ns)
