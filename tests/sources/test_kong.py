"""Kong's log plugins: the entries of Kong's documentation (an old one that logged the API key
itself) and the project's own (keys in headers and query string, bearer tokens, 401 and 403),
field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("kong-file-log.jsonl")
OWN = fixture_lines("kong", "file-log.jsonl")
OLD_KEY = "2b64e2f0193851d4135a2e885cd08a65"  # the API key Kong's old entry logged

VENDOR_EXPECTED = [
    [
        (
            "token.used",
            1433209822425000000,
            {
                "log.record.uid": "kong:d2f9eaca0e735ef92eb42e75d1130bc6",
                "token.source": "kong",
                "token.id": "eaa330c0-4cff-47f5-c79e-b2e4f355207e",
                "user.id": "80f74eef-31b8-45d5-c525-ae532297ea8e",  # consumer_id
                "token.value": OLD_KEY,  # only here: fingerprinted, never stored
                "token.type": "api_key",
                "client.address": "127.0.0.1",
                "user_agent.original": "curl/7.37.1",
                "http.request.method": "GET",
                "url.path": "/get",
                "http.response.status_code": 200,
            },
        )
    ],
    [
        (
            "token.used",
            1614232668342000000,
            {
                "log.record.uid": "kong:76d758990e41c9c4516da1d02f2fe495",
                "token.source": "kong",
                "token.id": "c62c1455-9b1d-4f2d-8797-509ba83b8ae8",
                "user.id": "foo",
                "kong.consumer.id": "ae974d6c-0f8a-4dc5-b701-fa0aa38592bd",
                "token.type": "kong_credential",
                "client.address": "192.168.144.1",
                "user_agent.original": "HTTPie/2.4.0",
                "http.request.method": "GET",
                "url.path": "/log",
                "token.tenant": "default",
                "http.response.status_code": 200,
            },
        )
    ],
]

BILLING = {"user.id": "billing-app", "kong.consumer.id": "ae974d6c-0f8a-4dc5-b701-fa0aa38592bd"}
ORDERS = {"token.tenant": "default", "kong.service": "orders", "kong.route": "orders-route"}
OWN_EXPECTED = [
    # key-auth, the key also in the apikey header (hide_credentials off).
    [
        (
            "token.used",
            1714644000123000000,
            {
                "log.record.uid": "kong:c886da54f06c667a15f17db68c10446b",
                "token.source": "kong",
                "token.id": "c62c1455-9b1d-4f2d-8797-509ba83b8ae8",
                **BILLING,
                "token.value": "kong-fake-api-key-0000000000000001",
                "token.type": "api_key",
                "client.address": "198.51.100.80",
                "user_agent.original": "curl/8.5.0",
                "http.request.method": "GET",
                "url.path": "/orders/42",
                "token.request.id": "5b1f0e8d2c4a6b8e0f1a2c3d4e5f6a7b",
                **ORDERS,
                "http.response.status_code": 200,
            },
        )
    ],
    # A key Kong does not know, in the query string: 401, known by its secret alone.
    [
        (
            "token.auth_failed",
            1714644060000000000,
            {
                "log.record.uid": "kong:8cd191a72012506c674051ad961c3a90",
                "token.source": "kong",
                "token.value": "kong-fake-invalid-key-00000000000002",
                "token.type": "api_key",
                "client.address": "203.0.113.99",
                "user_agent.original": "curl/8.5.0",
                "http.request.method": "GET",
                "url.path": "/orders",  # (without the query string, where the key was)
                **ORDERS,
                "http.response.status_code": 401,
                "token.outcome": "failure",
                "token.failure_reason": "unknown",
            },
        )
    ],
    # A JWT credential refused the route (an ACL): 403.
    [
        (
            "token.access_denied",
            1714644120000000000,
            {
                "log.record.uid": "kong:53253bd7d1282cea68b7e9d4ec3428a4",
                "token.source": "kong",
                "token.id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                **BILLING,
                "token.value": "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJmYWtlLWlzc3VlciJ9."
                "ZmFrZS1zaWduYXR1cmU",
                "token.type": "bearer",
                "client.address": "198.51.100.80",
                "user_agent.original": "curl/8.5.0",
                "http.request.method": "GET",
                "url.path": "/orders/admin",
                **ORDERS,
                "http.response.status_code": 403,
                "token.outcome": "failure",
                "token.failure_reason": "permission_denied",
            },
        )
    ],
    [],  # a public route, no credential
]


@pytest.mark.parametrize("line", range(1, len(VENDOR_EXPECTED) + 1))
def test_each_entry_of_kongs_documentation(line: int) -> None:
    assert len(SAMPLES) == len(VENDOR_EXPECTED)
    assert mapped("kong", SAMPLES[line - 1]) == VENDOR_EXPECTED[line - 1]


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_entry(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("kong", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_a_logged_key_is_kept_only_as_its_placeholder() -> None:
    [old] = kept("kong", SAMPLES[0])
    assert old["authenticated_entity"]["key"] == "[token.value]"
    [query] = kept("kong", OWN[1])
    assert query["request"]["querystring"]["apikey"] == "[token.value]"
    assert query["request"]["uri"] == "/orders?apikey=[token.value]"
    [bearer] = kept("kong", OWN[2])
    assert bearer["request"]["headers"]["authorization"] == "Bearer [token.value]"
    assert kept("kong", SAMPLES[1]) == [orjson.loads(SAMPLES[1])]
    for line in SAMPLES + OWN:
        assert mapped("kong", orjson.loads(line)) == mapped("kong", line)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"request": {}}', "kong record has no started_at or request"),
        ('{"request": {}, "started_at": "soon"}', "kong record has no valid time in started_at"),
    ],
)
def test_a_malformed_entry_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("kong", raw)
