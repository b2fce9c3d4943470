"""OTLP-aware mutations for the ingest fuzzer: it changes requests, not only their bytes.

Byte mutations alone rarely get past a compressed body or a JSON parser, and almost never put
``token.value`` next to a scopes array. So a fuzz input is opened (header, decompressed body,
request as an OTLP/JSON tree), changed as a request (attributes from the column registry, values
of every AnyValue kind, times and severities at their limits, records copied or dropped, the
format switched) and sealed again in its format. Byte mutations of the body and of the raw
input remain, for the decoders' and the decompressor's sake.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import zlib
from collections.abc import Callable
from typing import Any

import atheris
from google.protobuf import json_format
from ingest_input import FORMATS, MAX_REQUEST_BYTES, compress
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from seeds import BASIC, SECRETS

from tokenotel.mapping.decode import JSON
from tokenotel.model import COLUMNS, KNOWN_EVENTS

Tree = dict[str, Any]

#: Attribute keys mapping reads (from the column registry, so new columns get fuzzed too), and
#: some it treats as extra attributes.
KEYS = (
    *sorted({key for c in COLUMNS for key in (*c.attributes, *c.resource_attributes)}),
    "event.name",
    "http.request.header.authorization",
    "X-Upstream-Authorization",
    "labels",
    "",
)
EVENT_NAMES = (*KNOWN_EVENTS, "token.", "token.custom", "TOKEN.used", "http.request", "")
TEXTS = (
    *SECRETS,
    *(f"{scheme} {secret}" for scheme in ("Bearer", "bearer", "Basic") for secret in SECRETS[:2]),
    f"Basic {BASIC}",
    "Bearer short",
    "203.0.113.7",
    "2001:db8::1",
    "[2001:db8::2]:443",
    "::ffff:192.0.2.1",
    "fe80::1%eth0",
    "1.2.3.4.5",
    "2026-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-14:00",
    "1749999000",
    "1749999000000000000",
    "-1",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: str.isdigit() and int() take them
    "\u00b2",  # a digit to str.isdigit(), not to int()
    "9" * 40,
    "success",
    "FAILURE",
    "read write,admin",
    " , ,",
    "",
)
INTS = (0, 1, -1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, -(2**63), 10**11, 10**14)
INTS += (10**17, 1_749_999_000, 1_749_999_000_000_000_000, 2**64 - 1)
DOUBLES = (0.0, -0.0, 1.5, 1e308, 1.75e9, 1.75e12, "NaN", "Infinity", "-Infinity")  # proto3 JSON
TIMES = (0, 1, 1_749_999_000_000_000_000, 2**63 - 1, 2**63, 2**64 - 1, 10**15)
SEVERITIES = (0, 1, 9, 24, 255, 256, -1, 2**31 - 1, -(2**31))
#: Most records a mutation lets a request grow to. Coverage comes from the kinds of records, not
#: their number, and every run of an input made from a large request pays for all of them (the
#: corpus filled with requests of 100+ records, and the runs per second fell fourfold).
MAX_RECORDS = 16
#: How the secrets redaction looks for starts (redact.SECRET_RE): texts made to resemble them.
SECRET_PREFIXES = ("ghp_", "github_pat_", "glpat-", "xoxb-", "sk_live_", "sk-", "eyJ", "hvs.")
SECRET_PREFIXES += ("AKIA", "npm_", "AIza", "Bearer ", "Basic ")
#: Larger payloads than this go compressed: libFuzzer's inputs are at most about this size.
PLAIN_MAX_BYTES = 4096
# A deep JSON list stands where _nest left this marker (as json.dumps writes it).
_NESTED = re.compile(r'"\\u0000nest(\d+)"')


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's custom mutator: ``data`` changed, at most ``max_size`` bytes."""
    rng = random.Random(seed)
    mutated = _mutate(data, max_size, rng)
    if len(mutated) > max_size:
        return atheris.Mutate(data, max_size)
    return mutated


def crossover(data1: bytes, data2: bytes, max_size: int, seed: int) -> bytes:
    """libFuzzer's custom crossover: a resource's records of ``data2`` put in the request of
    ``data1``, beside its own or in place of one of its resources."""
    rng = random.Random(seed)
    try:
        crossed = _cross(data1, data2, rng)
    except Exception:
        crossed = None
    if crossed is None or len(crossed) > max_size:
        cut1, cut2 = rng.randint(0, len(data1)), rng.randint(0, len(data2))
        return (data1[:cut1] + data2[cut2:])[:max_size]
    return crossed


def _cross(data1: bytes, data2: bytes, rng: random.Random) -> bytes | None:
    """Works on protobuf messages where it can: converting whole requests to JSON trees and back
    made crossing over cost more than running an input."""
    index1, payload1 = _open(data1)
    index2, payload2 = _open(data2)
    if payload1 is None or payload2 is None:
        return None
    to_json = FORMATS[index1][0] == JSON
    resource = _resource_logs(payload2, FORMATS[index2][0] == JSON, to_json, rng)
    if resource is None:
        return None
    if to_json:
        tree = _tree(payload1, index1)
        if tree is None or not isinstance(tree.setdefault("resourceLogs", []), list):
            return None
        resources = tree["resourceLogs"]
        resources.append(resource)
        if len(resources) > 1 and len(_records(tree, create=False)) > MAX_RECORDS:
            del resources[rng.randrange(len(resources) - 1)]
        return _seal(index1, _payload(tree, index1), rng)
    request = ExportLogsServiceRequest.FromString(payload1)
    request.resource_logs.append(resource)
    records = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
    if len(request.resource_logs) > 1 and records > MAX_RECORDS:
        del request.resource_logs[rng.randrange(len(request.resource_logs) - 1)]
    return _seal(index1, request.SerializeToString(), rng)


def _resource_logs(payload: bytes, is_json: bool, to_json: bool, rng: random.Random) -> Any:
    """One ResourceLogs of the request in ``payload``: an OTLP/JSON dict with ``to_json``, else a
    message; None when the request has none."""
    if is_json:
        tree = json.loads(payload)
        resources = _dicts(tree.get("resourceLogs")) if isinstance(tree, dict) else []
        if not resources:
            return None
        resource = rng.choice(resources)
        if to_json:
            return resource
        _convert_ids([resource], lambda value: base64.b64encode(bytes.fromhex(value)).decode())
        return json_format.ParseDict(resource, ResourceLogs(), ignore_unknown_fields=True)
    request = ExportLogsServiceRequest.FromString(payload)
    if not request.resource_logs:
        return None
    message = rng.choice(request.resource_logs)
    if not to_json:
        return message
    resource = json_format.MessageToDict(message, use_integers_for_enums=True)
    _convert_ids([resource], lambda value: base64.b64decode(value).hex())
    return resource


def _mutate(data: bytes, max_size: int, rng: random.Random) -> bytes:
    index, payload = _open(data)
    choice = rng.random()
    if payload is None or choice < 0.1:  # garbage, or a broken compressed body, stays bytes
        return atheris.Mutate(data, max_size)
    if choice < 0.45 or (mutated := mutate_request(data, rng)) is None:
        # The bytes of the request: unknown fields, wire types, JSON syntax.
        return _seal(index, atheris.Mutate(payload, max(len(payload), max_size)), rng)
    return mutated


def mutate_request(data: bytes, rng: random.Random) -> bytes | None:
    """The fuzz input ``data`` with its request changed as a request, or sent in another format;
    None when it holds no request to change, or the change made none (a JSON-only value in a
    protobuf request, a trace id that is not hex ...): the mutator only proposes inputs."""
    index, payload = _open(data)
    tree = _tree(payload, index)
    if tree is None:
        return None
    try:  # a JSON body may have any shape: the mutations expect OTLP's, and may fail
        if rng.random() < 0.2:
            index = rng.randrange(len(FORMATS))
        else:
            for _ in range(rng.randint(1, 3)):
                rng.choice(_TREE_MUTATIONS)(tree, rng)
        payload = _payload(tree, index)
    except Exception:
        return None
    content_type, encoding = FORMATS[index]
    if not encoding and len(payload) > PLAIN_MAX_BYTES:  # (a long run of text, see _repeat)
        index = FORMATS.index((content_type, "gzip"))
    return _seal(index, payload, rng)


def _open(data: bytes) -> tuple[int, bytes | None]:
    """The format index of a fuzz input and its body decompressed (None: it does not inflate)."""
    index = data[0] % len(FORMATS) if data else 0
    encoding = FORMATS[index][1]
    body = data[1:]
    if not encoding:
        return index, body
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    payload = bytearray()
    while body:
        inflater = zlib.decompressobj(wbits)
        try:
            payload += inflater.decompress(body, MAX_REQUEST_BYTES)
        except zlib.error:
            return index, None
        if not inflater.eof:
            return index, None
        body = inflater.unused_data
    return index, bytes(payload)


def _seal(index: int, payload: bytes, rng: random.Random) -> bytes:
    """A fuzz input of format ``index`` carrying ``payload``; now and then a gzip body is cut
    into two members, or a compressed body is cut short."""
    encoding = FORMATS[index][1]
    body = compress(payload, encoding)
    odd = rng.random()
    if encoding == "gzip" and odd < 0.05:
        cut = rng.randint(0, len(payload))
        body = compress(payload[:cut], encoding) + compress(payload[cut:], encoding)
    elif encoding and odd < 0.08:
        body = body[: rng.randint(0, len(body))]
    return bytes([index]) + body


def _tree(payload: bytes | None, index: int) -> Tree | None:
    """The request in ``payload`` as an OTLP/JSON document, or None when it is none."""
    if payload is None:
        return None
    if FORMATS[index][0] == JSON:
        try:
            tree = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        return tree if isinstance(tree, dict) else None
    try:
        request = ExportLogsServiceRequest.FromString(payload)
    except Exception:
        return None
    tree = json_format.MessageToDict(request, use_integers_for_enums=True)
    _convert_ids(_dicts(tree.get("resourceLogs")), lambda value: base64.b64decode(value).hex())
    return tree


def _payload(tree: Tree, index: int) -> bytes:
    """``tree`` encoded as the content type of format ``index``."""
    if FORMATS[index][0] == JSON:
        text = json.dumps(tree, separators=(",", ":"))
        return _NESTED.sub(lambda m: "[" * int(m[1]) + "0" + "]" * int(m[1]), text).encode()
    encode = lambda value: base64.b64encode(bytes.fromhex(value)).decode()  # noqa: E731
    _convert_ids(_dicts(tree.get("resourceLogs")), encode)  # (in place: the tree is done with)
    request = json_format.ParseDict(tree, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    return request.SerializeToString()


def _convert_ids(resources: list[dict[str, Any]], convert: Callable[[str], str]) -> None:
    """Trace and span ids are hex in OTLP/JSON and base64 in proto3 JSON."""
    for record in _records({"resourceLogs": resources}, create=False):
        for key in ("traceId", "spanId"):
            if isinstance(record.get(key), str):
                record[key] = convert(record[key])


# -- mutations of a request ------------------------------------------------------------------


def _records(tree: Tree, *, create: bool = True) -> list[dict[str, Any]]:
    """Every log record of the request (with ``create``, one is made if there is none)."""
    records = [
        record
        for resource_logs in _dicts(tree.get("resourceLogs"))
        for scope_logs in _dicts(resource_logs.get("scopeLogs"))
        for record in _dicts(scope_logs.get("logRecords"))
    ]
    if not records and create:
        record: dict[str, Any] = {"eventName": "token.used"}
        tree.setdefault("resourceLogs", []).append({"scopeLogs": [{"logRecords": [record]}]})
        records = [record]
    return records


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _attribute_lists(tree: Tree) -> list[list[Any]]:
    """The attribute lists of the records and the resources (each made if it is missing)."""
    lists = []
    for record in _records(tree):
        lists.append(record.setdefault("attributes", []))
    for resource_logs in _dicts(tree.get("resourceLogs")):
        resource = resource_logs.setdefault("resource", {})
        if isinstance(resource, dict):
            lists.append(resource.setdefault("attributes", []))
    return [attributes for attributes in lists if isinstance(attributes, list)]


def _any_values(node: Any) -> list[dict[str, Any]]:
    """Every AnyValue under ``node``: attribute values and bodies, nested ones too."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("value", "body") and isinstance(value, dict):
                found.append(value)
            found.extend(_any_values(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_any_values(item))
    return found


def _any_value(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A random AnyValue in OTLP/JSON form; nested up to a few levels."""
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind < 3:
        return {"stringValue": rng.choice(TEXTS) if kind else _text(rng)}
    if kind == 3:
        number = rng.choice(INTS)
        return {"intValue": str(number) if rng.random() < 0.5 else number}
    if kind == 4:
        return {"doubleValue": rng.choice(DOUBLES)}
    if kind == 5:
        return {"boolValue": rng.random() < 0.5}
    if kind == 6:
        return {"bytesValue": base64.b64encode(rng.randbytes(rng.randint(0, 40))).decode()}
    if kind == 7:
        return {
            "arrayValue": {"values": [_any_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]}
        }
    if kind == 8:
        values = [
            {"key": rng.choice(KEYS), "value": _any_value(rng, depth + 1)}
            for _ in range(rng.randint(0, 4))
        ]
        return {"kvlistValue": {"values": values}}
    return {}  # an AnyValue with no value


def _text(rng: random.Random) -> str:
    """Random text: ASCII, any code point, or a token prefix with random characters after it."""
    size = rng.randint(0, 60)
    alphabet = rng.choice(("ascii", "unicode", "secret"))
    if alphabet == "unicode":  # surrogates too: JSON can carry them, protobuf cannot
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(size))
    chars = "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(size))
    if alphabet == "secret":
        return rng.choice(SECRET_PREFIXES) + chars
    return chars


def _put_attribute(tree: Tree, rng: random.Random) -> None:
    attributes = rng.choice(_attribute_lists(tree))
    attribute = {"key": rng.choice(KEYS), "value": _any_value(rng)}
    if attributes and rng.random() < 0.5:
        attributes[rng.randrange(len(attributes))] = attribute
    else:
        attributes.insert(rng.randint(0, len(attributes)), attribute)


def _change_value(tree: Tree, rng: random.Random) -> None:
    values = _any_values(tree)
    if not values:
        return _put_attribute(tree, rng)
    value = rng.choice(values)
    value.clear()
    value.update(_any_value(rng))


def _rename_attribute(tree: Tree, rng: random.Random) -> None:
    attributes = [kv for kvs in _attribute_lists(tree) for kv in kvs if isinstance(kv, dict)]
    if not attributes:
        return _put_attribute(tree, rng)
    rng.choice(attributes)["key"] = rng.choice(KEYS) if rng.random() < 0.8 else _text(rng)


def _change_field(tree: Tree, rng: random.Random) -> None:
    record = rng.choice(_records(tree))
    field = rng.randrange(7)
    if field == 0:
        record["eventName"] = rng.choice(EVENT_NAMES)
    elif field == 1:
        record["timeUnixNano"] = str(rng.choice(TIMES))
    elif field == 2:
        record["observedTimeUnixNano"] = str(rng.choice(TIMES))
    elif field == 3:
        record["severityNumber"] = rng.choice(SEVERITIES)
        record["severityText"] = rng.choice(("INFO", "WARN", "", _text(rng)))
    elif field == 4:  # mostly the right length; sometimes not
        record["traceId"] = rng.randbytes(rng.choice((16, 16, 0, 8, 17))).hex()
    elif field == 5:
        record["spanId"] = rng.randbytes(rng.choice((8, 8, 0, 16, 7))).hex()
    else:
        record["body"] = _any_value(rng)


def _copy_record(tree: Tree, rng: random.Random) -> None:
    scopes = [
        scope_logs
        for resource_logs in _dicts(tree.get("resourceLogs"))
        for scope_logs in _dicts(resource_logs.get("scopeLogs"))
        if _dicts(scope_logs.get("logRecords"))
    ]
    if not scopes:
        return _change_field(tree, rng)
    records = rng.choice(scopes)["logRecords"]
    if len(_records(tree, create=False)) < MAX_RECORDS:
        records.append(copy.deepcopy(rng.choice(_dicts(records))))
    else:
        del records[rng.randrange(len(records))]


def _drop(tree: Tree, rng: random.Random) -> None:
    """Drops an attribute or a record."""
    attributes = [kvs for kvs in _attribute_lists(tree) if kvs]
    if attributes and rng.random() < 0.7:
        kvs = rng.choice(attributes)
        del kvs[rng.randrange(len(kvs))]
        return
    scopes = [
        scope_logs
        for resource_logs in _dicts(tree.get("resourceLogs"))
        for scope_logs in _dicts(resource_logs.get("scopeLogs"))
        if isinstance(scope_logs.get("logRecords"), list) and scope_logs["logRecords"]
    ]
    if scopes:
        records = rng.choice(scopes)["logRecords"]
        del records[rng.randrange(len(records))]


def _nest(tree: Tree, rng: random.Random) -> None:
    """Deep nesting, a classic for parsers and recursive code: an AnyValue array of arrays
    (protobuf and JSON), or in JSON a deep list where any value may be."""
    if rng.random() < 0.5:
        value: dict[str, Any] = {"stringValue": "leaf"}
        for _ in range(rng.choice((10, 50, 99, 101))):
            value = {"arrayValue": {"values": [value]}}
        attributes = rng.choice(_attribute_lists(tree))
        attributes.append({"key": rng.choice(KEYS), "value": value})
    else:  # json.dumps would refuse a list this deep: _payload writes it in place of a marker
        record = rng.choice(_records(tree))
        depth = rng.choice((100, 500, 1000, 2000))
        record[rng.choice(("body", "attributes", "timeUnixNano"))] = f"\0nest{depth}"


def _repeat(tree: Tree, rng: random.Random) -> None:
    """A long run of one short fragment as a text: what makes a backtracking regular expression
    or a quadratic loop show. Mostly the start of a token and a character its pattern could
    go on with; compressed, the run takes a few bytes of the input."""
    if rng.random() < 0.7:
        fragment = rng.choice(SECRET_PREFIXES) + rng.choice("-_.~+/= a0")
    else:
        fragment = _text(rng)[: rng.randint(1, 8)] or "a"
    text = fragment * (rng.choice((2_000, 20_000, 100_000, 200_000)) // len(fragment))
    if rng.random() < 0.5:
        value = rng.choice(_any_values(tree) or [rng.choice(_records(tree)).setdefault("body", {})])
        value.clear()
        value["stringValue"] = text
    else:
        attributes = rng.choice(_attribute_lists(tree))
        attributes.append({"key": rng.choice(KEYS), "value": {"stringValue": text}})


_TREE_MUTATIONS: tuple[Callable[[Tree, random.Random], None], ...] = (
    _put_attribute,
    _put_attribute,
    _change_value,
    _change_value,
    _rename_attribute,
    _change_field,
    _change_field,
    _copy_record,
    _drop,
    _nest,
    _repeat,
)
