"""How a report reads the trail (docs/report.md, "Cost"): a token's values come back exactly as
stored; the reads sent ahead of the sections are the ones they ask for, leave no thread or
connection behind, and a read that fails stops the report as any read does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from inprocess import embedded_store
from tokenotel.errors import StoreUnavailable
from tokenotel.report import sections
from tokenotel.report.build import Integrity, build_report
from tokenotel.report.model import Policy, Report
from tokenotel.store.client import Store

SINCE, UNTIL = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)

#: Scopes as a source may send them: spaces, commas, quotes, brackets, a backslash, a NUL, an
#: empty scope (kept when written to the store directly), none at all.
SCOPES = {
    "tok-plain": ["repo", "read:org"],
    "tok-punctuation": ["a b", "c,d", "it's", "[x]", "back\\slash", "ünïcode"],
    "tok-nul": ["left\0right", "other"],
    "tok-empty-scope": ["", "after"],
    "tok-none": [],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = embedded_store(tmp_path / "data")
    try:
        store.connect()
        for n, (key, scopes) in enumerate(SCOPES.items()):
            store.command(
                "INSERT INTO token_events (event_time, event_name, outcome, token_id, scopes) "
                "VALUES (toDateTime64('2026-08-01 00:00:00', 9, 'UTC') + {n:UInt32}, "
                "'token.created', 'success', {key:String}, {scopes:Array(String)})",
                {"n": n, "key": key, "scopes": scopes},
            )
        store.command(  # a leak: the revocation section reads its token's lifecycle
            "INSERT INTO token_events (event_time, event_name, outcome, token_id) VALUES "
            "(toDateTime64('2026-08-02 00:00:00', 9, 'UTC'), 'token.leak_detected', 'success', "
            "'tok-plain')"
        )
        yield store
    finally:
        store.close()


def build(store: Store) -> Report:
    return build_report(
        store, SINCE, UNTIL, Policy(), trail="test", integrity=Integrity(None), retention_days=None
    )


def reading_ahead() -> list[threading.Thread]:
    """The threads a report reads ahead with, still alive."""
    return [t for t in threading.enumerate() if t.name.startswith("report-reads")]


def test_a_tokens_scopes_come_back_exactly_as_stored(store: Store) -> None:
    tokens = sections.Builder(store, SINCE, UNTIL, Policy()).tokens()
    assert {t.key: t.scopes for t in tokens} == SCOPES


def test_the_reads_sent_ahead_end_with_the_report(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    unasked: list[int] = []
    close = sections.Builder.close

    def closing(builder: sections.Builder) -> None:
        unasked.append(len(builder._ahead))
        close(builder)

    monkeypatch.setattr(sections.Builder, "close", closing)
    build(store)
    readers = len(store._readers)  # this thread's, kept for its next read
    for _ in range(3):
        assert build(store).sections[1].figures["tokens"] == len(SCOPES)
    assert len(store._readers) == readers  # each report's second connection closed
    assert unasked == [0] * 4  # every read sent ahead was one a section asked for
    assert not reading_ahead()


def test_a_read_that_fails_ahead_stops_the_report(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    query = store.query

    def failing(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql == sections.INVENTORY_SQL:
            raise StoreUnavailable("the store went away", 1.0)
        return query(sql, *args, **kwargs)

    monkeypatch.setattr(store, "query", failing)
    with pytest.raises(StoreUnavailable, match="went away"):
        build(store)
    assert not reading_ahead()
