"""A token's expiry is kept to the millisecond, to the year 2299: the query API reads one after
April 2262 (past which nanoseconds do not fit in an Int64) as the query layer does."""

from __future__ import annotations

from pathlib import Path

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.api.messages import from_message
from tokenotel.api.rows import committed_events, search_events, token_page
from tokenotel.query.search import Cursor, EventFilter, newest_stamp, search
from tokenotel.query.tokens import TokenFilter, list_tokens
from tokenotel.v1 import audit_pb2


def test_an_expiry_after_2262_is_read_as_messages_too(tmp_path: Path) -> None:
    ingest = InProcessIngest(tmp_path / "data")
    try:
        far = {"token.id": "far_1", "token.expires_at": "2290-01-01T00:00:00.250Z"}
        assert ingest.send(export_request(log_record("token.created", far))).stored == 1
        store = ingest.pipeline.store
        up_to = newest_stamp(store)
        [event] = search(store, EventFilter(), limit=10)
        assert event["expires_at"] == "2290-01-01T00:00:00.250Z"
        answer = search_events(
            store, EventFilter(), limit=10, offset=0, up_to_stamp=up_to, settings={}
        )
        assert [from_message(e) for e in answer.events] == [event]
        _, body = committed_events(store, EventFilter(), Cursor(0), up_to, limit=10)
        tail = audit_pb2.TailEventsResponse.FromString(body)
        assert [from_message(e) for e in tail.events] == [event]
        [token] = list_tokens(store, TokenFilter(), limit=10)
        assert token["expires_at"] == "2290-01-01T00:00:00.250Z"
        tokens = token_page(store, TokenFilter(), limit=10, after_key="", settings={})
        assert [from_message(t) for t in tokens] == [token]
    finally:
        ingest.close()
