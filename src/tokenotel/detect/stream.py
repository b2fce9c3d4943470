"""Detection in the service: every committed insert goes through the rules, in a thread of its
own, after the requests it holds were answered; what the rules raise is stored in
``token_alerts`` and handed to the notifiers (webhooks).

Each rule reads the insert at once (``batch``), in a process of its own when the service
runs mapping workers (``worker``): the service's requests never wait on the rules for the
interpreter lock.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import quote

import pyarrow as pa

from tokenotel.detect.batch import frame
from tokenotel.detect.engine import NS_PER_S, Alert, Detector, matches
from tokenotel.detect.replay import FIELD_SQL, learn_from_rollups, stored_events
from tokenotel.detect.rules import Kind, Rule
from tokenotel.detect.worker import Rules, RulesStopped
from tokenotel.errors import StoreUnavailable
from tokenotel.store.client import ALERTS_TABLE, EVENTS_TABLE, Store

log = logging.getLogger(__name__)

#: The investigation dashboard (grafana/dashboards/token-investigation.json).
INVESTIGATION_PATH = "/d/tokenotel-investigation/tokenotel-token-investigation"
#: Inserts waiting for the rules; past this the oldest waits are dropped, and counted.
QUEUE_INSERTS = 256
#: How often, without inserts, the alerts whose condition cleared are looked for.
RESOLVE_EVERY_S = 1.0
#: How often at most, while inserts come, the alerts raised are written to ``token_alerts``.
STORE_EVERY_S = 1.0

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
        separate_process: bool = False,
        nice: int = 0,
    ) -> None:
        """``separate_process``: the rules run in a process of their own (``worker``),
        ``nice`` below the service's CPU priority."""
        self.store = store
        self.rules = list(rules)
        self.separate_process = separate_process
        self.nice = nice
        self.grafana_url = grafana_url
        self.notifiers = list(notifiers)
        self._clock = clock
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(QUEUE_INSERTS)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.alerts_raised = 0
        self.inserts_seen = 0
        self.inserts_skipped = 0
        self._unstored: list[RaisedAlert] = []
        #: The rules' process (None: they run in this one, or have not started).
        self.rules_pid: int | None = None
        self._stored_at = 0.0
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
        """Waits until every insert queued so far is evaluated and its alerts stored."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks or self._unstored:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

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
        rules = self._warm_until_done(started_ms)
        while rules is not None:
            try:
                batch = self._queue.get(timeout=RESOLVE_EVERY_S)
            except queue.Empty:
                if self._stopping.is_set():
                    break
                rules = self._evaluate(rules, None)
                self._store(now=True)
                continue
            try:
                if batch is None:
                    break
                self.inserts_seen += 1
                rules = self._evaluate(rules, batch)
                self._store()
            finally:
                self._queue.task_done()
        self._store(now=True)
        if rules is not None:
            rules.close()

    def _evaluate(self, rules: Rules, batch: pa.Table | None) -> Rules | None:
        """The rules on an insert (None: only the alerts that cleared by now); the rules to go
        on with: learnt again from the store when their process stopped (None: stopping)."""
        now = self._clock()
        try:
            raised, cleared = rules.evaluate(None if batch is None else frame(batch), now)
            self._raise(raised)
            self._resolve(cleared, now)
        except RulesStopped as e:
            rules.close()
            # (the inserts committed but still queued now are counted twice)
            log.warning("%s; the rules learn the store's state again", e)
            self._store(now=True)  # (what they raised, not to be raised again)
            return self._warm_until_done(now // 1_000_000)
        except Exception:  # a bug: this insert's alerts are lost, detection goes on
            log.exception("detection failed on a committed insert")
        return rules

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

    def _resolve(self, cleared: list[tuple[Alert, int]], now: int) -> None:
        """Resolved notices for the alerts whose condition cleared."""
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

    def _warm_until_done(self, started_ms: int) -> Rules | None:
        """The rules, having learnt the store's state before ``started_ms`` (None: stopped
        before the store answered)."""
        delay = 1.0
        while not self._stopping.is_set():
            detector = Detector(self.rules)
            try:
                warm(detector, self.store, started_ms, self._clock())
            except StoreUnavailable as e:
                log.warning("detection waits for the store to learn its state: %s", e)
                self._stopping.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            except Exception:
                log.exception("detection could not learn the store's state; it starts afresh")
                detector = Detector(self.rules)
            rules = Rules(detector, self.separate_process, self.nice)
            self.rules_pid = rules.pid
            self.ready.set()
            return rules
        return None

    def _raise(self, alerts: list[Alert]) -> None:
        """Logs the alerts, hands them to the notifiers, and keeps them to be stored."""
        if not alerts:
            return
        now = self._clock()
        names = self._token_names({a.labels["token"] for a in alerts if a.labels.get("token")})
        raised = []
        for alert in alerts:
            name, principal = names.get(alert.labels.get("token", ""), ("", ""))
            raised.append(
                RaisedAlert(
                    alert, now, link(self.grafana_url, alert), "firing", None, name, principal
                )
            )
        self.alerts_raised += len(raised)
        for item in raised:
            labels = " ".join(f"{k}={v}" for k, v in item.alert.labels.items())
            log.warning(
                "alert %s (%s): %s; %d events", item.alert.rule.id,
                item.alert.rule.severity.value, labels, item.alert.count,
            )  # fmt: skip
        for notifier in self.notifiers:
            notifier.send(raised)
        self._unstored += raised

    def _store(self, now: bool = False) -> None:
        """Writes the alerts raised since the last write to ``token_alerts``: at most every
        ``STORE_EVERY_S`` while inserts come (each write of the store has a fixed cost of
        milliseconds), at once when ``now``."""
        due = time.monotonic() - self._stored_at >= STORE_EVERY_S
        if not self._unstored or not (now or due):
            return
        try:
            self.store.insert_arrow(ALERTS_TABLE, alert_rows(self._unstored))
        except StoreUnavailable as e:
            log.warning("%d alerts not stored (they were sent): %s", len(self._unstored), e)
        except Exception:  # a bug: these alerts are not stored, detection goes on
            log.exception("%d alerts not stored (they were sent)", len(self._unstored))
        self._unstored = []
        self._stored_at = time.monotonic()


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
            # (an hour's quiet after an event near the end of nanosecond time stops there)
            "quiet_until": pa.array([min(r.alert.quiet_until_ns, 2**63 - 1) for r in raised], ns),
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
    sql = VALUES_SQL.format(fields=", ".join(FIELD_SQL[field] for field in fields))
    for *key, value, at_ns in store.query(sql, params, settings={"max_threads": 1}).result_rows:
        if all(key) and value:
            detector.remember_value(rule, tuple(key), value, at_ns)
