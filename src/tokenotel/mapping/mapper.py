"""Turns an OTLP logs request into token event rows: picks token events, maps attributes, redacts.

This is the hot path of ingest: one pass over each record's attributes, a dict lookup per key,
no per-record allocation beyond the row itself.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from tokenotel.errors import SourceRecordError
from tokenotel.mapping import wire
from tokenotel.mapping.expand import (
    SOURCE_ATTRIBUTE,
    SOURCE_ATTRIBUTE_PREFIX,
    expanded_id,
    source_of,
    units,
)
from tokenotel.mapping.redact import redact
from tokenotel.mapping.values import to_epoch_ms, to_ip, to_python, to_string_list, to_text
from tokenotel.model import (
    COLUMN_BY_NAME,
    COLUMNS,
    EVENT_PREFIX,
    KNOWN_EVENTS,
    ROW_COLUMNS,
    Outcome,
    Read,
    default_outcome,
)
from tokenotel.sources import SOURCES, TokenRecord

log = logging.getLogger(__name__)

_I = {name: i for i, name in enumerate(ROW_COLUMNS)}

# Shortest secret any pattern of redact.SECRET_RE matches: shorter strings skip the regex.
_MIN_SECRET_LEN = 15
_OUTCOMES = frozenset(o.value for o in Outcome)
_DEFAULT_OUTCOMES = {name: default_outcome(name).value for name in KNOWN_EVENTS}
_UNKNOWN = Outcome.UNKNOWN.value

# Attribute key -> (column, how its value is read), from the column registry.
_CLAIMED: dict[str, tuple[int, Read]] = {
    key: (_I[c.name], c.read) for c in COLUMNS for key in c.attributes
}
_RESOURCE_CLAIMED: dict[str, int] = {
    key: _I[c.name] for c in COLUMNS for key in c.resource_attributes
}
# A row before its record is read: every column's default.
_TEMPLATE: list[Any] = [COLUMN_BY_NAME[name].default for name in ROW_COLUMNS]
# The largest number each integer column holds.
_INT_LIMITS = {_I[c.name]: (1 << c.arrow_type.bit_width) - 1 for c in COLUMNS if c.read is Read.INT}
_EVENT_TIME, _OBSERVED_DELAY = _I["event_time"], _I["observed_delay_ns"]
_EVENT_NAME = _I["event_name"]
_SCOPE_NAME, _SEVERITY_TEXT = _I["scope_name"], _I["severity_text"]
_SEVERITY_NUMBER, _TRACE_ID, _SPAN_ID = _I["severity_number"], _I["trace_id"], _I["span_id"]
_BODY, _OUTCOME, _ATTRIBUTES = _I["body"], _I["outcome"], _I["attributes"]
_RESOURCE_ATTRIBUTES = _I["resource_attributes"]
_FINGERPRINT, _TOKEN_ID, _EVENT_ID = _I["token_fingerprint"], _I["token_id"], _I["event_id"]
# How many distinct secret-free texts to remember (user agents, routes, paths repeat a lot).
_CLEAN_CACHE_SIZE = 100_000
# How many distinct encoded attributes to remember the effect of.
_EFFECT_CACHE_SIZE = 50_000
# The longest text, or encoded attribute, remembered: repeats are short (agents, routes,
# scopes); a long one rarely comes again, and a cap on entries alone would let a stream of
# distinct long ones take a worker's memory (100,000 distinct 10 KB bodies: 1 GB).
_MAX_REMEMBERED_BYTES = 1024
# Effects on a row other than setting a column (see Mapper._attribute).
_EXTRA, _OUTCOME_OF_RECORD, _AUTHORIZATION, _SKIP, _RECORD_UID = -1, -2, -3, -4, -5
_SKIP_EFFECT = (_SKIP, None)
# Attributes of a source's token event that are its record's own (its id, its request's id, the
# record itself, ~1 KB): each comes once, so it is neither looked up nor remembered (a text a
# cache never finds again only costs hashing it and pushes out what does repeat).
_RECORD_OWN_KEYS = frozenset(
    {"log.record.uid", "token.request.id", *(f"{name}.record" for name in SOURCES)}
)
# Latest time a DateTime64(9) column holds (2262-04-11), in ns since the epoch.
_MAX_TIME_NS = 2**63 - 1


@dataclass
class MappedBatch:
    """Rows (in ``ROW_COLUMNS`` order) taken from one request, and what was left out and why."""

    rows: list[list[Any]] = field(default_factory=list)
    ignored: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    #: Raw records of each source (``tokenotel.source``): what came of them, counted at the
    #: places RECORDS, EVENTS, NOT_TOKEN_EVENTS and REJECTED.
    sources: dict[str, list[int]] = field(default_factory=dict)


#: The places of a source's tally: raw records, token events mapped from them, records that
#: hold no token event, records rejected (malformed, or of an unknown source).
RECORDS, EVENTS, NOT_TOKEN_EVENTS, REJECTED = range(4)


class Mapper:
    """Maps OTLP log records to token event rows, replacing every secret by its fingerprint."""

    def __init__(self, fingerprint: Callable[[str], str]) -> None:
        self._fingerprint = fingerprint
        self._clean_texts: set[str] = set()
        self._effects: dict[bytes, tuple[int, Any]] = {}
        #: The same for the attributes of source mappings' token events, by key and value.
        self._value_effects: dict[tuple[str, type, Any], tuple[int, Any]] = {}
        self._redactions = 0  # how many secrets were found: a changed count means "forget"
        #: Texts with secrets redacted in this request: a source's record is kept whole in each
        #: of its events (a CloudTrail call with a key and the key it created: two), and found
        #: again here. Forgotten when the request is mapped: no secret outlives its request.
        self._redacted_in_request: dict[str, str] = {}
        #: The same for fingerprints: a key id or a token comes back in many records of a
        #: request (CloudTrail names its access keys in every record: an HMAC each, 1 µs).
        self._fingerprints_in_request: dict[str, str] = {}

    def map(self, request: ExportLogsServiceRequest, received_ns: int) -> MappedBatch:
        try:
            return self._map(request, received_ns)
        finally:
            self._forget_request()

    def map_lines(self, name: str, lines: Sequence[bytes], received_ns: int) -> MappedBatch:
        """The token events in lines of source ``name`` read from files (``tokenotel import``):
        the rows ``map`` gives for a request of one log record a line (its body the line, its
        attribute ``tokenotel.source`` the source, no time of its own), without the request:
        encoding it, decoding it and walking it again cost a quarter of mapping its lines."""
        batch = MappedBatch()

        @functools.cache
        def request_key() -> bytes:  # (only for an event without an id of its own)
            data = name.encode() + b"\n" + b"\n".join(lines)
            return hashlib.blake2b(data, digest_size=16).digest()

        try:
            for index, line in enumerate(lines):
                self._expand_body(
                    batch, name, _line_body(line), index, received_ns, request_key, "", []
                )
        finally:
            self._forget_request()
        return batch

    def _map(self, request: ExportLogsServiceRequest, received_ns: int) -> MappedBatch:
        batch = MappedBatch()
        index = -1
        data = request.SerializeToString()
        request_key = hashlib.blake2b(data, digest_size=16).digest()
        for resource_logs in wire.resource_logs(data):
            resource_values = self._resource(resource_logs.resource)
            for scope_logs in resource_logs.scopes:
                scope_name = InstrumentationScope.FromString(scope_logs.scope).name
                for start, end in scope_logs.records:
                    index += 1
                    record = wire.log_record(data, start, end)
                    event_name = record.event_name.decode(errors="replace")
                    if not event_name:
                        for encoded in record.attributes:
                            if encoded.startswith(wire.EVENT_NAME_ATTRIBUTE):
                                event_name = KeyValue.FromString(encoded).value.string_value
                                break
                    if not event_name.startswith(EVENT_PREFIX):
                        for encoded in record.attributes:
                            if encoded.startswith(SOURCE_ATTRIBUTE_PREFIX):
                                source = KeyValue.FromString(encoded).value.string_value
                                self._expand(
                                    batch,
                                    source,
                                    record,
                                    index,
                                    lambda: request_key,
                                    received_ns,
                                    scope_name,
                                    resource_values,
                                )
                                break
                        else:
                            batch.ignored += 1
                        continue
                    if max(record.time_unix_nano, record.observed_time_unix_nano) > _MAX_TIME_NS:
                        batch.rejected += 1
                        batch.errors.append(
                            f"log record {index} ({event_name}) has a time after 2262: "
                            "send time_unix_nano in nanoseconds since the Unix epoch"
                        )
                        continue
                    row = self._row(record, event_name, received_ns, scope_name, resource_values)
                    if not row[_TOKEN_ID] and not row[_FINGERPRINT]:
                        batch.rejected += 1
                        batch.errors.append(
                            f"log record {index} ({event_name}) has no token identity: "
                            "set token.id or token.value"
                        )
                        continue
                    if not row[_EVENT_ID]:  # (no id of its own)
                        row[_EVENT_ID] = position_id(request_key, index)
                    batch.rows.append(row)
        return batch

    def _resource(self, encoded: bytes) -> list[tuple[int, Any]]:
        values: list[tuple[int, Any]] = []
        extra: list[tuple[str, str]] = []
        for kv in Resource.FromString(encoded).attributes:
            column = _RESOURCE_CLAIMED.get(kv.key)
            text = self._clean(to_text(to_python(kv.value)))
            if column is not None:
                values.append((column, text))
            else:
                extra.append((kv.key, text))
        if extra:
            values.append((_RESOURCE_ATTRIBUTES, extra))
        return values

    def _forget_request(self) -> None:
        self._redacted_in_request.clear()
        self._fingerprints_in_request.clear()

    def _fingerprint_of(self, secret: str) -> str:
        fingerprint = self._fingerprints_in_request.get(secret)
        if fingerprint is None:
            fingerprint = self._fingerprints_in_request[secret] = self._fingerprint(secret)
        return fingerprint

    def _clean(self, text: str, remember: bool = True) -> str:
        """``text`` with secrets replaced; texts seen clean before skip the regex (and this
        one is remembered clean, unless ``remember`` is False: it will not come again)."""
        if len(text) < _MIN_SECRET_LEN or text in self._clean_texts:
            return text
        redacted = self._redacted_in_request.get(text)
        if redacted is None:
            redacted, first = redact(text, self._fingerprint_of)
            if first is None:
                if remember and len(text) <= _MAX_REMEMBERED_BYTES:
                    if len(self._clean_texts) >= _CLEAN_CACHE_SIZE:
                        self._clean_texts.clear()
                    self._clean_texts.add(text)
                return text
            self._redacted_in_request[text] = redacted
        self._redactions += 1
        return redacted

    def _attribute(self, encoded: bytes) -> tuple[int, Any]:
        """What one attribute does to its row: (column, value), or (_EXTRA, (key, text)),
        (_OUTCOME_OF_RECORD, outcome), (_AUTHORIZATION, ((key, text), fingerprint)), or
        (_SKIP, None). Remembered for the next time the same bytes come, unless a secret was
        in them: no secret is kept in memory longer than its request."""
        redactions = self._redactions
        kv = KeyValue.FromString(encoded)
        effect = self._effect(kv.key, to_python(kv.value))
        # (An authorization with a secret counts as a redaction too; a record's own id is
        # unique, and so is a long attribute most likely: remembering them would only push
        # out what repeats.)
        if (
            self._redactions == redactions
            and effect[0] != _RECORD_UID
            and len(encoded) <= _MAX_REMEMBERED_BYTES
        ):
            if len(self._effects) >= _EFFECT_CACHE_SIZE:
                self._effects.clear()
            self._effects[encoded] = effect
        return effect

    def _clean_once(self, text: str) -> str:
        return self._clean(text, remember=False)

    def _effect(
        self, key: str, value: Any, clean: Callable[[str], str] | None = None
    ) -> tuple[int, Any]:
        """What an attribute ``key`` with ``value`` (as ``to_python`` gives it) does to a row;
        ``clean``: how its texts are cleaned (``_clean``)."""
        clean = clean or self._clean
        claimed = _CLAIMED.get(key)
        if claimed is None:
            if key == "event.name":
                return _SKIP_EFFECT
            text = value if type(value) is str else to_text(value)
            if "authorization" in key.lower():
                text, fingerprint = redact(text, self._fingerprint_of)
                if fingerprint is not None:
                    self._redactions += 1
                    return _AUTHORIZATION, ((key, text), fingerprint)
                return _EXTRA, (key, text)
            return _EXTRA, (key, clean(text))
        column, read = claimed
        if read is Read.TEXT:
            return column, clean(value if type(value) is str else to_text(value))
        if read is Read.SECRET:
            self._redactions += 1  # the fingerprint of a secret: never remembered
            return (column, self._fingerprint_of(to_text(value))) if value else _SKIP_EFFECT
        if read is Read.SCOPES:
            scopes = value if type(value) is list else to_string_list(value)
            return column, tuple(clean(to_text(s)) for s in scopes if s is not None and s != "")
        if read is Read.IP:
            packed = to_ip(value)
            return (_EXTRA, (key, clean(to_text(value)))) if packed is None else (column, packed)
        if read is Read.TIME:
            ms = to_epoch_ms(value)
            return (_EXTRA, (key, clean(to_text(value)))) if ms is None else (column, ms)
        if read is Read.UID:
            uid = clean(value if type(value) is str else to_text(value))
            return (_RECORD_UID, uid_id(uid)) if uid else _SKIP_EFFECT
        if read is Read.INT:
            number = _to_int(value)
            if number is None or not 0 <= number <= _INT_LIMITS[column]:
                return _EXTRA, (key, clean(to_text(value)))
            return column, number
        text = to_text(value).lower()  # Read.OUTCOME
        if text in _OUTCOMES:
            return _OUTCOME_OF_RECORD, text
        return _EXTRA, (key, clean(to_text(value)))

    def _row(
        self,
        record: wire.LogRecord,
        event_name: str,
        received_ns: int,
        scope_name: str,
        resource_values: list[tuple[int, Any]],
    ) -> list[Any]:
        row = _TEMPLATE.copy()
        for column, value in resource_values:
            row[column] = value
        observed = record.observed_time_unix_nano or received_ns
        event_time = record.time_unix_nano or observed
        row[_EVENT_TIME] = event_time
        row[_OBSERVED_DELAY] = observed - event_time
        row[_EVENT_NAME] = event_name
        row[_SCOPE_NAME] = scope_name
        if record.severity_text:
            row[_SEVERITY_TEXT] = record.severity_text.decode(errors="replace")
        severity = record.severity_number
        extra: list[tuple[str, str]] = []
        if 0 <= severity <= 0xFF:
            row[_SEVERITY_NUMBER] = severity
        else:  # an open enum: any int32 may come, the column holds a byte
            extra.append(("severity_number", str(severity)))
        trace_id = record.trace_id
        if trace_id and trace_id.strip(b"\0"):
            row[_TRACE_ID] = trace_id.hex()
        span_id = record.span_id
        if span_id and span_id.strip(b"\0"):
            row[_SPAN_ID] = span_id.hex()
        if record.body is not None:
            row[_BODY] = self._clean(to_text(to_python(AnyValue.FromString(record.body))))

        auth_fingerprint: str | None = None
        outcome: str | None = None
        effects = self._effects
        for encoded in record.attributes:
            # Attributes repeat (token ids, addresses, user agents, routes, scopes): the effect
            # of each encoded attribute is remembered, so a repeat costs one lookup.
            effect = effects.get(encoded)
            if effect is None:
                effect = self._attribute(encoded)
            target, value = effect
            if target >= 0:
                row[target] = value
            elif target == _EXTRA:
                extra.append(value)
            elif target == _OUTCOME_OF_RECORD:
                outcome = value
            elif target == _AUTHORIZATION:
                extra.append(value[0])
                if auth_fingerprint is None:
                    auth_fingerprint = value[1]
            elif target == _RECORD_UID:
                row[_EVENT_ID] = value
        row[_OUTCOME] = outcome or _DEFAULT_OUTCOMES.get(event_name, _UNKNOWN)
        if auth_fingerprint and not row[_FINGERPRINT]:
            row[_FINGERPRINT] = auth_fingerprint
        if extra:
            row[_ATTRIBUTES] = extra
        return row

    # -- raw records of a source (mapping/expand.py) -------------------------------------------

    def _expand(
        self,
        batch: MappedBatch,
        name: str,
        record: wire.LogRecord,
        index: int,
        request_key: Callable[[], bytes],
        received_ns: int,
        scope_name: str,
        resource_values: list[tuple[int, Any]],
    ) -> None:
        """Maps the token events of one raw record of source ``name`` like records an SDK sent
        (their attributes, name and time; the raw record's resource and scope). A record that
        cannot be read is rejected, with a message naming it; one that holds no token event is
        ignored. Never raises: one bad record does not fail its request."""
        body = None if record.body is None else to_python(AnyValue.FromString(record.body))
        observed = record.observed_time_unix_nano or received_ns
        self._expand_body(
            batch, name, body, index, observed, request_key, scope_name, resource_values
        )

    def _expand_body(
        self,
        batch: MappedBatch,
        name: str,
        body: Any,
        index: int,
        observed: int,
        request_key: Callable[[], bytes],
        scope_name: str,
        resource_values: list[tuple[int, Any]],
    ) -> None:
        """``_expand`` of the record's body (as ``to_python`` gives it), observed at
        ``observed``; ``request_key`` gives the request's digest (see ``expanded_id``)."""
        key = name if name in SOURCES else "(unknown)"
        tally = batch.sources.get(key)
        if tally is None:
            tally = batch.sources[key] = [0, 0, 0, 0]
        problems: list[str] = []
        try:
            source = source_of(name)
            raws = units(name, body)
        except SourceRecordError as e:
            tally[RECORDS] += 1
            tally[REJECTED] += 1
            batch.rejected += 1
            batch.errors.append(f"log record {index} ({SOURCE_ATTRIBUTE} {name[:40]!r}): {e}")
            return
        sub = 0
        for number, raw in enumerate(raws):
            tally[RECORDS] += 1
            try:
                token_records = source.records(raw)
            except SourceRecordError as e:
                problems.append(f"{_where(index, name, number, raws)}: {e}")
                tally[REJECTED] += 1
                continue
            except Exception as e:  # a mapping's bug: this record is lost, not the request
                log.warning(
                    "the %s mapping failed on a record (%s): rejected", name, type(e).__name__
                )
                problems.append(
                    f"{_where(index, name, number, raws)}: the {name} mapping failed on this "
                    f"record ({type(e).__name__})"
                )
                tally[REJECTED] += 1
                continue
            if not token_records:
                tally[NOT_TOKEN_EVENTS] += 1
                continue
            for token in token_records:
                if token.time_unix_nano > _MAX_TIME_NS or not token.event_name.startswith(
                    EVENT_PREFIX
                ):
                    problems.append(
                        f"{_where(index, name, number, raws)}: the {name} mapping gave an event "
                        f"with a time after 2262 or a name outside token.* "
                        f"({token.event_name[:40]!r})"
                    )
                    continue
                row = self._token_row(token, observed, scope_name, resource_values)
                if not row[_TOKEN_ID] and not row[_FINGERPRINT]:
                    problems.append(
                        f"{_where(index, name, number, raws)} ({token.event_name}) has no token "
                        "identity"
                    )
                    continue
                if not row[_EVENT_ID]:
                    row[_EVENT_ID] = expanded_id(request_key(), index, sub)
                sub += 1
                batch.rows.append(row)
                tally[EVENTS] += 1
        if problems:
            batch.rejected += 1  # (a log record: the OTLP count is of the request's records)
            batch.errors += problems
        elif not sub:
            batch.ignored += 1

    def _token_row(
        self,
        token: TokenRecord,
        observed: int,
        scope_name: str,
        resource_values: list[tuple[int, Any]],
    ) -> list[Any]:
        """A source mapping's token event as the row of the record an SDK would have sent:
        the same columns from the same attributes (see ``_row``). The loop that applies the
        effects is ``_row``'s, written twice on purpose: one function applying a list of effects
        for both made mapping an SDK's records 2 to 6% slower (a second pass, a list a record)."""
        row = _TEMPLATE.copy()
        for column, value in resource_values:
            row[column] = value
        event_time = token.time_unix_nano or observed
        row[_EVENT_TIME] = event_time
        row[_OBSERVED_DELAY] = observed - event_time
        row[_EVENT_NAME] = token.event_name
        row[_SCOPE_NAME] = scope_name
        auth_fingerprint: str | None = None
        outcome: str | None = None
        extra: list[tuple[str, str]] = []
        effects = self._value_effects
        for key, value in token.attributes.items():
            if key in _RECORD_OWN_KEYS:
                target, mapped = self._effect(key, value, self._clean_once)
            else:
                try:
                    cache_key = (key, type(value), tuple(value) if type(value) is list else value)
                    effect = effects.get(cache_key)
                except TypeError:  # an unhashable value: not remembered
                    cache_key, effect = None, None
                if effect is None:
                    effect = self._value_effect(key, value, cache_key)
                target, mapped = effect
            if target >= 0:
                row[target] = mapped
            elif target == _EXTRA:
                extra.append(mapped)
            elif target == _OUTCOME_OF_RECORD:
                outcome = mapped
            elif target == _AUTHORIZATION:
                extra.append(mapped[0])
                if auth_fingerprint is None:
                    auth_fingerprint = mapped[1]
            elif target == _RECORD_UID:
                row[_EVENT_ID] = mapped
        row[_OUTCOME] = outcome or _DEFAULT_OUTCOMES.get(token.event_name, _UNKNOWN)
        if auth_fingerprint and not row[_FINGERPRINT]:
            row[_FINGERPRINT] = auth_fingerprint
        if extra:
            row[_ATTRIBUTES] = extra
        return row

    def _value_effect(
        self, key: str, value: Any, cache_key: tuple[str, type, Any] | None
    ) -> tuple[int, Any]:
        """``_attribute`` for a value not encoded: remembered under ``cache_key`` likewise."""
        redactions = self._redactions
        effect = self._effect(key, value)
        if (
            cache_key is not None
            and self._redactions == redactions
            and effect[0] != _RECORD_UID
            and not (type(value) is str and len(value) > _MAX_REMEMBERED_BYTES)
        ):
            if len(self._value_effects) >= _EFFECT_CACHE_SIZE:
                self._value_effects.clear()
            self._value_effects[cache_key] = effect
        return effect


def _where(index: int, name: str, number: int, raws: list[Any]) -> str:
    """Which record a problem is in: the log record, and the record in it when it holds many."""
    return f"log record {index}" + (f", {name} record {number}" if len(raws) > 1 else "")


def _line_body(line: bytes) -> str | bytes:
    """A line as a log record's body holds it (``to_python``): text when it is UTF-8, else its
    bytes (how history/requests.py sends it)."""
    try:
        return line.decode()
    except UnicodeDecodeError:
        return line


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        try:  # isdigit() also admits digits int() refuses (superscripts), and huge numbers
            return int(value)
        except ValueError:
            return None
    return None


def position_id(request_key: bytes, index: int) -> int:
    """The id of the ``index``-th record of a request (its ``request_key``: a digest of the
    request's canonical encoding). A request sent again has the same ids; any other request,
    even one with equal records in it, has others (docs/event-identity.md)."""
    digest = hashlib.blake2b(index.to_bytes(4, "little"), digest_size=8, key=request_key)
    return int.from_bytes(digest.digest(), "little")


def uid_id(uid: str) -> int:
    """The id of a record that names itself (``log.record.uid``): the same in any request."""
    digest = hashlib.blake2b(uid.encode(), digest_size=8, person=b"log.record.uid")
    return int.from_bytes(digest.digest(), "little")
