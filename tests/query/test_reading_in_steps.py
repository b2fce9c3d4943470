"""Reads that go a step at a time: a tail hands on any prefix of what it read with the cursor
after it, and goes on from there with nothing lost or repeated, even in the middle of one big
insert; an inventory page sums up a range of tokens at a time, and a filter that leaves the
first range short reads the next ones."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.model import TokenStatus
from tokenotel.query.search import Cursor, EventFilter, committed, newest_stamp
from tokenotel.query.tokens import TokenFilter, list_tokens

NOW_NS = 1_764_500_000 * 10**9


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessIngest]:
    """300 tokens (every seventh revoked) in small inserts, then one insert of 2,500 uses."""
    ingest = InProcessIngest(tmp_path_factory.mktemp("steps") / "data")
    for first in range(0, 300, 100):
        records = [
            log_record("token.created", {"token.id": f"inv_{n:03d}"}, time_unix_nano=NOW_NS + n)
            for n in range(first, first + 100)
        ]
        records += [
            log_record("token.revoked", {"token.id": f"inv_{n:03d}"}, time_unix_nano=NOW_NS + 10**9)
            for n in range(first, first + 100)
            if n % 7 == 0
        ]
        assert ingest.send(export_request(*records)).rejected == 0
    try:
        yield ingest
    finally:
        ingest.close()


def test_a_tail_goes_on_from_any_prefix_of_a_big_insert(ingest: InProcessIngest) -> None:
    store = ingest.pipeline.store
    start = Cursor(newest_stamp(store))
    uses = [
        log_record("token.used", {"token.id": f"big_{i % 50}", "token.request.id": f"r{i}"},
                   time_unix_nano=NOW_NS + 2 * 10**9 + i % 97)
        for i in range(2_500)
    ]  # fmt: skip
    assert ingest.send(export_request(*uses)).stored == 2_500
    up_to = newest_stamp(store)
    everything = committed(store, EventFilter(), start, up_to, limit=10_000)
    assert everything.complete and len(everything.events) == 2_500
    assert len(set(everything.stamps)) == 1  # one insert

    # Read 400 at a time and hand on a random prefix of each read, as a tail splits its reads
    # into messages and a client may stop after any of them.
    chance = random.Random(7)
    after, handed_on = start, []
    while True:
        read = committed(store, EventFilter(), after, up_to, limit=400)
        n = len(read.events) if read.complete else chance.randint(1, len(read.events))
        handed_on += [e["request_id"] for e in read.events[:n]]
        after = read.cursor(n)
        if read.complete and n == len(read.events):
            break
    assert handed_on == [e["request_id"] for e in everything.events]
    assert after == Cursor(up_to)
    # From there on, nothing until something new is committed.
    assert committed(store, EventFilter(), after, up_to, limit=400).events == []


def test_inventory_pages_with_a_filter_read_on_until_the_page_is_full(
    ingest: InProcessIngest,
) -> None:
    store = ingest.pipeline.store
    revoked = [f"inv_{n:03d}" for n in range(300) if n % 7 == 0]
    pages, after = [], ""
    while True:
        page = list_tokens(store, TokenFilter(status=TokenStatus.REVOKED), limit=6, after_key=after)
        pages.append([t["token_key"] for t in page])
        if len(page) < 6:
            break
        after = page[-1]["token_key"]
    assert [key for page in pages for key in page] == revoked
    assert all(len(page) == 6 for page in pages[:-1])
    # Unfiltered pages cover every token once, in key order.
    keys, after = [], ""
    while page := list_tokens(store, TokenFilter(), limit=64, after_key=after):
        keys += [t["token_key"] for t in page]
        after = keys[-1]
    assert keys == sorted({f"inv_{n:03d}" for n in range(300)} | {f"big_{n}" for n in range(50)})
    # Named tokens: theirs alone.
    named = list_tokens(store, TokenFilter(keys=["inv_007", "inv_299"]), limit=10)
    assert [(t["token_key"], t["status"]) for t in named] == [
        ("inv_007", "revoked"),
        ("inv_299", "active"),
    ]
