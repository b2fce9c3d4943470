"""The query API's messages as ClickHouse serializes them hold what the query layer reads, field
for field: every field of an event set, times present and absent, addresses of every form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inprocess import InProcessIngest
from otlp_builders import RECENT_NS, export_request, log_record
from tokenotel.api.messages import from_message
from tokenotel.api.rows import committed_events, search_events, token_page
from tokenotel.query.readable import IP_TEXT_SQL, ip_to_text
from tokenotel.query.search import Cursor, EventFilter, committed, newest_stamp, search
from tokenotel.query.tokens import TokenFilter, list_tokens
from tokenotel.v1 import audit_pb2

EVERY_FIELD = {
    "token.id": "full_1", "token.value": "glpat-" + "x7Yq2Lm9Pw4Rt6Zb8Nc1", "token.type": "pat",
    "token.name": "deploy", "token.hint": "glpat-…Nc1", "token.previous_id": "full_0",
    "user.id": "dana", "token.principal.type": "user", "token.actor.id": "erin",
    "token.tenant": "acme", "client.address": "2001:db8::7", "user_agent.original": "curl/8.5",
    "geo.country.iso_code": "NL", "token.client.asn": 64500, "token.scopes": ["api", "read"],
    "token.scopes_added": ["read"], "token.scopes_removed": ["write"],
    "token.expires_at": "2099-01-01T00:00:00.250Z", "token.issued_at": "2025-01-01T00:00:00Z",
    "http.request.method": "POST", "http.route": "/v1/x", "url.path": "/v1/x?y",
    "http.response.status_code": 201, "token.request.id": "req-9", "token.reason": "because",
    "ci.job": "build", "ci.attempt": 3,
}  # fmt: skip
ADDRESSES = [
    "::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "::ffff:0:0", "2001:db8::1",
    "2001:db8:0:0:1:0:0:1", "64:ff9b::1.2.3.4", "fe80::1:2", "1::",
]  # fmt: skip


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessIngest]:
    ingest = InProcessIngest(tmp_path_factory.mktemp("rows") / "data")
    records = [
        log_record("token.updated", EVERY_FIELD, body="scopes changed", time_unix_nano=RECENT_NS,
                   observed_time_unix_nano=RECENT_NS + 7, severity_text="INFO",
                   severity_number=9, trace_id=bytes(range(16)), span_id=bytes(range(8))),
        log_record("token.used", {"token.id": "bare_1"}, time_unix_nano=RECENT_NS + 1),
    ]  # fmt: skip
    assert ingest.send(export_request(*records, resource={"host.name": "h1"})).stored == 2
    try:
        yield ingest
    finally:
        ingest.close()


def test_events_read_as_messages_hold_what_the_query_layer_reads(
    ingest: InProcessIngest,
) -> None:
    store = ingest.pipeline.store
    up_to = newest_stamp(store)
    expected = search(store, EventFilter(), limit=10)
    assert expected[0]["expires_at"] and not expected[1]["expires_at"]
    assert expected[0]["attributes"] and expected[0]["resource_attributes"]
    answer = search_events(store, EventFilter(), limit=10, offset=0, up_to_stamp=up_to, settings={})
    assert [from_message(event) for event in answer.events] == expected
    assert not answer.events[1].HasField("expires_at")  # unknown: unset, not the epoch

    read, body = committed_events(store, EventFilter(), Cursor(0), up_to, limit=10)
    tail = audit_pb2.TailEventsResponse.FromString(body)
    assert read.events == [len(tail.events[0].SerializeToString()) + 3, len(body)]
    assert [from_message(event) for event in tail.events] == expected
    assert read.stamps == committed(store, EventFilter(), Cursor(0), up_to, limit=10).stamps


def test_tokens_read_as_messages_hold_what_the_query_layer_reads(ingest: InProcessIngest) -> None:
    store = ingest.pipeline.store
    expected = list_tokens(store, TokenFilter(), limit=10)
    assert [t["token_key"] for t in expected] == ["bare_1", "full_1"]
    assert (
        expected[0]["last_used_at"] and not expected[0]["expires_at"] and expected[1]["expires_at"]
    )
    tokens = token_page(store, TokenFilter(), limit=10, after_key="", settings={})
    assert [from_message(token) for token in tokens] == expected


@pytest.mark.parametrize("address", ADDRESSES)
def test_clickhouse_writes_an_address_as_ip_to_text_does(
    ingest: InProcessIngest, address: str
) -> None:
    sql = f"SELECT {IP_TEXT_SQL.format('toIPv6({address:String})')}"
    written = ingest.pipeline.store.query(sql, {"address": address}).result_rows[0][0]
    assert written == ip_to_text(address)
