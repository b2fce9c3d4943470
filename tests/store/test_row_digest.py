"""An insert's digest, taken from the rows the writer inserts, is the digest of the rows the
store gives back: every column of every type in the registry round-trips exactly into the
canonical form (docs/tamper-evidence.md, "What is hashed")."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.model import COLUMN_BY_NAME, COLUMNS, Filled, Read
from tokenotel.store.ledger import read_leaves, stored_groups
from tokenotel.store.row_digest import CANONICAL, DIGEST_COLUMNS, rows_digest

SEED = 20261130
#: Times the columns hold, at their edges too: DateTime64(9) from 1970 to 2262, DateTime64(3)
#: from 1900 to 2299 (as epoch milliseconds).
NS_LAST = 2**63 - 1
MS_FIRST, MS_LAST = -2_208_988_800_000, 10_413_791_999_999


def _text(rng: random.Random) -> str:
    alphabet = string.ascii_letters + "äé€🚀ключ \t\x00/:,"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 5, 40))))


def _value(column: str, read: Read, rng: random.Random) -> Any:
    if read is Read.INT:
        limit = {"UInt32": 2**32 - 1, "UInt16": 2**16 - 1}[COLUMN_BY_NAME[column].type]
        return rng.choice((0, 1, limit, rng.randrange(limit)))
    if read is Read.SCOPES:
        return rng.choice(([], [_text(rng) or "x" for _ in range(rng.randrange(5))], "a b,c"))
    if read is Read.TIME:
        return rng.choice(
            (MS_FIRST, MS_LAST, rng.randrange(MS_FIRST, MS_LAST), "2024-02-29T12:00:00.123+02:00")
        )
    if read is Read.IP:
        return rng.choice(("203.0.113.7", "2001:db8::1", "::", "not an address", "[::1]:443"))
    if read is Read.OUTCOME:
        return rng.choice(("success", "failure", "unknown", "other"))
    return _text(rng)


def _record(rng: random.Random, index: int) -> Any:
    attributes: dict[str, Any] = {}
    for column in COLUMNS:
        for key in column.attributes:
            if rng.random() < 0.7:
                attributes[key] = _value(column.name, column.read, rng)
    attributes["token.id"] = attributes.get("token.id") or f"tok{index % 7}"
    for extra in range(rng.randrange(4)):  # the attributes map, in the order sent
        attributes[f"extra.{extra}.{_text(rng)}"] = rng.choice(
            (_text(rng), 42, 1.5, True, ["a", 1])
        )
    event_time = rng.choice((1, NS_LAST - 1, rng.randrange(NS_LAST), 1_800_000_000_000_000_000))
    return log_record(
        rng.choice(("token.used", "token.created", "token.revoked", "token.custom_thing")),
        attributes,
        body=rng.choice((None, _text(rng), {"k": [1, "two"]})),
        time_unix_nano=event_time,
        observed_time_unix_nano=rng.choice((0, event_time, event_time + 5)),
        severity_number=rng.randrange(25),
        severity_text=rng.choice(("", "INFO", "ERROR")),
        trace_id=rng.randbytes(16) if rng.random() < 0.5 else b"",
        span_id=rng.randbytes(8) if rng.random() < 0.5 else b"",
    )


def test_every_registry_type_is_in_the_canonical_form() -> None:
    hashed = {c.type for c in COLUMNS if c.name in DIGEST_COLUMNS}
    written = {c.type for c in COLUMNS if c.filled is not Filled.STORE and c.name != "event_id"}
    assert hashed == written
    assert [f.name for f in CANONICAL] == list(DIGEST_COLUMNS)
    assert "event_id" not in DIGEST_COLUMNS  # set to 0 after a day by its TTL


@pytest.mark.parametrize("seed", [SEED, SEED + 1, SEED + 2])
def test_inserted_rows_digest_as_the_store_gives_them_back(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ingest = InProcessIngest(tmp_path / "data", retention_days=1_000_000)
    try:
        requests = [
            export_request(
                *(_record(rng, n * 100 + i) for i in range(rng.randrange(1, 60))),
                resource={
                    "service.name": _text(rng),
                    "deployment.environment": "prod",
                    "r": _text(rng),
                },
                scope=_text(rng),
            )
            for n in range(8)
        ]
        ingest.send_all(requests)
        ingest.send(requests[0])  # stored before: no insert
        assert ingest.pipeline.ledger is not None and ingest.pipeline.ledger.wait_sealed(30)
        store = ingest.pipeline.store
        leaves = read_leaves(store)
        stored = ingest.rows("SELECT count() FROM token_events")[0][0]
        assert sum(leaf.rows for leaf in leaves) == stored > 100
        assert len({leaf.partition for leaf in leaves}) > 3  # inserts spanning many months
        groups = dict(stored_groups(store, leaves[0].stamp_ms, leaves[-1].stamp_ms))
        assert len(groups) == len(leaves)
        for leaf in leaves:
            rows = groups[(leaf.stamp_ms, leaf.partition)]
            assert rows.num_rows == leaf.rows
            assert rows_digest(rows) == leaf.digest, f"leaf {leaf.sequence} does not round-trip"
    finally:
        ingest.close()


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CANONICAL)


def _row(i: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {name: COLUMN_BY_NAME[name].default for name in DIGEST_COLUMNS}
    row.update(event_time=1_700_000_000_000_000_000 + i, ingested_at=1_700_000_000_000)
    row.update(token_id=f"t{i}", scopes=["a"], attributes=[("k", str(i))])
    return row | values


def test_the_digest_ignores_row_order_and_sees_every_column_change() -> None:
    rows = [_row(i) for i in range(5)] + [_row(9, scopes=["b"]), _row(9, scopes=["a"])]
    digest = rows_digest(_table(rows))
    rng = random.Random(SEED)
    for _ in range(5):
        shuffled = rows[:]
        rng.shuffle(shuffled)
        assert rows_digest(_table(shuffled)) == digest  # ties broken by the lists too
    changes = {
        "event_time": 5,
        "observed_delay_ns": -1,
        "event_name": "token.other",
        "token_status": "revoked",
        "client_ip": bytes(15) + b"\x01",
        "asn": 7,
        "http_status": 404,
        "severity_number": 3,
        "scopes": ["a", "b"],
        "expires_at": 1,
        "attributes": [("k", "x")],
        "ingested_at": 1,
        "body": "changed",
    }
    for column, value in changes.items():
        changed = [rows[0] | {column: value}, *rows[1:]]
        assert rows_digest(_table(changed)) != digest, column
    assert rows_digest(_table(rows[1:])) != digest
    assert rows_digest(_table([*rows, rows[0]])) != digest
    # Lengths are hashed, not only bytes: moving a character between two values shows.
    moved = [rows[0] | {"token_id": "t0x", "token_name": ""}, *rows[1:]]
    other = [rows[0] | {"token_id": "t0", "token_name": "x"}, *rows[1:]]
    assert rows_digest(_table(moved)) != rows_digest(_table(other))
    # A null is not the column's default.
    assert rows_digest(_table([rows[0] | {"expires_at": 0}, *rows[1:]])) != digest
