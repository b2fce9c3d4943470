"""The rules over one committed insert at once, with Arrow compute.

Each rule picks out the events it matches together; a new-value or dormant rule reads the
events of one key and value as the first of them standing for all up to the last, which says
all such a rule can tell within an insert (``observations``); a spike rule reads counts a
minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from operator import itemgetter

import pyarrow as pa
import pyarrow.compute as pc

from tokenotel.detect.engine import NS_PER_MINUTE, NS_PER_S, Alert, Detector, Reading, counted
from tokenotel.detect.rules import Kind, Match, Rule
from tokenotel.query.readable import ip_to_text

#: The stored column of each field a rule groups by or counts.
_COLUMNS = {
    "token": "token_key",
    "ip": "client_ip",
    "principal": "principal_id",
    "actor": "actor_id",
    "asn": "asn",
    "country": "country",
}
#: The last millisecond whose nanoseconds fit in an Int64 (April 2262). An expiry after it
#: (expiries are kept to 2299) is read as that moment: as far beyond any rule's window.
LAST_NS_MS = (2**63 - 1) // 1_000_000


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
            "country": batch.column("country"),
            "expires_at": pc.multiply(
                pc.min_element_wise(
                    batch.column("expires_at").cast(pa.int64()), LAST_NS_MS, skip_nulls=False
                ),
                1_000_000,
            ),
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


@lru_cache(maxsize=1 << 16)
def _ip_text(value: bytes) -> str:
    return ip_to_text(value)


def _text(field: str, value: object) -> str:
    if field == "ip":
        return _ip_text(value) if isinstance(value, bytes) else ""
    if field == "asn":
        return str(value) if value else ""
    return str(value) if value is not None else ""


def _fields(rule: Rule) -> list[str]:
    value = rule.new_of or rule.distinct_of
    return [*rule.group_by, *([value] if value and value not in rule.group_by else [])]


def _readings(
    rule: Rule, rows: pa.Table, times: str, weights: str | None = None, until: str | None = None
) -> list[Reading]:
    """What the rule reads (``Reading``) of each row of ``rows``: its time (column ``times``),
    the values of the fields it groups by and counts, and what it stands for (column
    ``weights``, else one event; column ``until``, else up to its own time)."""
    texts: dict[str, list[str]] = {}
    for field in _fields(rule):
        column = rows[_COLUMNS[field]]
        if field in ("ip", "asn") or column.null_count:  # each distinct value as text, once
            encoded = column.combine_chunks().dictionary_encode()
            distinct = [_text(field, value) for value in encoded.dictionary.to_pylist()]
            column = pc.fill_null(pa.array(distinct, pa.string()).take(encoded.indices), "")
        texts[field] = column.to_pylist()
    keys = zip(*(texts[field] for field in rule.group_by), strict=True)
    weight = rows[weights].to_pylist() if weights else [1] * rows.num_rows
    at = rows[times].to_pylist()
    last = rows[until].to_pylist() if until else at
    return list(zip(at, keys, texts[counted(rule)], weight, last, strict=True))


def observations(rule: Rule, events: pa.Table) -> list[Reading]:
    """The events of ``events`` (a ``frame``) that ``rule`` matches, as the rule reads them,
    oldest first. A new-value or a dormant rule learns no more of the events of one key and
    value (of one key) within less than its window than whether the first is new (or the
    gap before it) and the time of the last: when the insert spans less than the window, it
    reads the first standing for all of them up to the last (``Reading``). A spike rule reads
    counts a minute.
    """
    return _read(rule, _told(_fields(rule), _matching(rule.match, events)))


def _matching(match: Match, events: pa.Table) -> pa.Table:
    mask = _mask(match, events)
    return events if mask is None else events.filter(mask)


def _read(rule: Rule, chosen: pa.Table) -> list[Reading]:
    """``observations`` of the events a rule matches that tell its fields (``_told``)."""
    if not chosen.num_rows:
        return []
    if rule.kind in (Kind.EVENT, Kind.COUNT, Kind.DISTINCT):
        observed = _readings(rule, chosen, "time")
    elif rule.kind is Kind.SPIKE:
        observed = _by_minute(rule, chosen)
    else:
        span_ns = int(rule.window.total_seconds() * NS_PER_S)
        first, last = pc.min_max(chosen["time"]).values()
        if last.as_py() - first.as_py() >= span_ns:  # (a backfill, most likely)
            observed = _readings(rule, chosen, "time")
        else:
            columns = [_COLUMNS[field] for field in _fields(rule)]
            groups = chosen.group_by(columns, use_threads=False).aggregate(
                [("time", "min"), ("time", "max")]
            )
            observed = _readings(rule, groups, "time_min", until="time_max")
    observed.sort(key=itemgetter(0))  # (by time)
    return observed


#: A stored address that is none (``::``: the source gave none).
_NO_ADDRESS = b"\0" * 16


def _told(fields: Iterable[str], events: pa.Table) -> pa.Table:
    """The events that tell every one of ``fields`` (those a rule groups by or counts): one
    that lacks any of them is no key's, or has no value to count, and changes nothing a rule
    holds (``Detector.apply_all`` passes it by), so it is left out before it is read."""
    if not events.num_rows:
        return events
    told = None
    for field in fields:
        column = events[_COLUMNS[field]]
        if field == "ip":
            test = pc.not_equal(column, pa.scalar(_NO_ADDRESS, column.type))
        elif field == "asn":
            test = pc.not_equal(column, 0)
        else:
            test = pc.not_equal(column, "")
        if column.null_count:
            test = pc.fill_null(test, False)
        told = test if told is None else pc.and_(told, test)
    if told is None or pc.all(told).as_py():
        return events
    return events.filter(told)


def _by_minute(rule: Rule, events: pa.Table) -> list[Reading]:
    """A spike rule's events: one for each key and minute, the count of its events, at the
    last of them."""
    columns = [_COLUMNS[field] for field in _fields(rule)]
    with_minute = events.append_column(
        "minute", pc.multiply(pc.divide(events["time"], NS_PER_MINUTE), NS_PER_MINUTE)
    )
    groups = with_minute.group_by([*columns, "minute"], use_threads=False).aggregate(
        [("time", "max"), ("time", "count")]
    )
    return _readings(rule, groups, "time_max", "time_count")


def evaluate(detector: Detector, events: pa.Table) -> list[Alert]:
    """Every rule of ``detector`` on one committed insert (its ``frame``): the alerts raised."""
    alerts = []
    # Rules that match alike share the filtering, and those that read the same fields too.
    matching: dict[Match, pa.Table] = {}
    told: dict[tuple[Match, tuple[str, ...]], pa.Table] = {}
    for rule in detector.rules:
        fields = tuple(_fields(rule))
        chosen = told.get((rule.match, fields))
        if chosen is None:
            within = matching.get(rule.match)
            if within is None:
                within = matching[rule.match] = _matching(rule.match, events)
            chosen = told[rule.match, fields] = _told(fields, within)
        alerts += detector.apply_readings(rule, _read(rule, chosen))
    return alerts
