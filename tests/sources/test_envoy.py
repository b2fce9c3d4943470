"""Envoy JSON access logs: the project's own entries (Envoy publishes none with a credential)
in the json_format docs/sources.md gives, field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError

OWN = fixture_lines("envoy", "access.jsonl")

OWN_EXPECTED = [
    # The key id an ext_authz service set in a header (%REQ(X-API-KEY-ID)%).
    [
        (
            "token.used",
            1714644000250000000,
            {
                "log.record.uid": "envoy:0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e",
                "token.source": "envoy",
                "token.id": "key-2f81",
                "token.type": "api_key",
                "client.address": "198.51.100.70",  # (%DOWNSTREAM_REMOTE_ADDRESS%: no port)
                "user_agent.original": "okhttp/4.12.0",
                "http.request.method": "GET",
                "url.path": "/api/v2/items",
                "token.request.id": "0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e",
                "envoy.upstream_cluster": "items",
                "http.response.status_code": 200,
            },
        )
    ],
    # A JWT jwt_authn verified (its jti and sub), refused by RBAC: 403, over IPv6.
    [
        (
            "token.access_denied",
            1714644060000000000,
            {
                "log.record.uid": "envoy:1c0d9e8f-7a6b-4c5d-8e3f-2a1b0c9d8e7f",
                "token.source": "envoy",
                "token.id": "6f1e2d3c-jti-0001",
                "user.id": "user-8812",
                "token.type": "jwt",
                "client.address": "2001:db8::17",
                "user_agent.original": "curl/8.5.0",
                "http.request.method": "DELETE",
                "url.path": "/api/v2/items/7",
                "token.request.id": "1c0d9e8f-7a6b-4c5d-8e3f-2a1b0c9d8e7f",
                "http.response.status_code": 403,
                "token.outcome": "failure",
                "token.failure_reason": "permission_denied",
            },
        )
    ],
    # The Authorization header logged (%REQ(AUTHORIZATION)%): the bearer token is the secret,
    # refused by ext_authz (response flag UAEX): 401.
    [
        (
            "token.auth_failed",
            1714644120000000000,
            {
                "log.record.uid": "envoy:2d1e0f9a-8b7c-4d6e-9f4a-3b2c1d0e9f8a",
                "token.source": "envoy",
                "token.value": "envoy-fake-bearer-token-00000000000004",
                "token.type": "bearer",
                "client.address": "203.0.113.120",
                "user_agent.original": "python-requests/2.31.0",
                "http.request.method": "GET",
                "url.path": "/api/v2/items",
                "token.request.id": "2d1e0f9a-8b7c-4d6e-9f4a-3b2c1d0e9f8a",
                "envoy.response_flags": "UAEX",
                "http.response.status_code": 401,
                "token.outcome": "failure",
                "token.failure_reason": "unknown",
            },
        )
    ],
    [],  # a probe without a credential
]


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_entry(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("envoy", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_the_authorization_header_is_kept_only_as_its_placeholder() -> None:
    [entry] = kept("envoy", OWN[2])
    assert entry["authorization"] == "[token.value]"
    assert kept("envoy", OWN[0]) == [orjson.loads(OWN[0])]
    for line in OWN:
        assert mapped("envoy", orjson.loads(line)) == mapped("envoy", line)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"path": "/"}', r"envoy record has no start_time \(%START_TIME%\)"),
        ('{"start_time": "-1"}', "envoy record has no valid time in start_time"),
        ("[]", "envoy record is JSON but not an object"),
    ],
)
def test_a_malformed_entry_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("envoy", raw)
