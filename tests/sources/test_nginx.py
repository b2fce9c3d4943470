"""nginx access logs: the project's own lines (nginx publishes none with a credential) in the
JSON log_format docs/sources.md gives and in the default combined format, field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from tokenotel.mapping.fingerprint import github_hashed_token

OWN = fixture_lines("nginx", "access.log")
HASHED = "v1bcDELa36X/er0pyH/XWbGV+lk7bwfLIbUcT2NhRxA="

OWN_EXPECTED = [
    # JSON: the key id an auth_request subrequest returned, and its owner.
    [
        (
            "token.used",
            1714644000123000000,  # $msec
            {
                "log.record.uid": "nginx:7f3c9a1b2d4e6f8091a2b3c4d5e6f708",
                "token.source": "nginx",
                "token.id": "key_7Hq2",
                "user.id": "reporting-svc",
                "token.type": "api_key",
                "client.address": "198.51.100.90",
                "user_agent.original": "python-requests/2.31.0",
                "http.request.method": "GET",
                "url.path": "/v1/reports/9",
                "token.request.id": "7f3c9a1b2d4e6f8091a2b3c4d5e6f708",
                "http.response.status_code": 200,
            },
        )
    ],
    # JSON: a key nginx hashed (njs, base64 SHA-256) that the checker refused: 401.
    [
        (
            "token.auth_failed",
            1714644060500000000,
            {
                "log.record.uid": "nginx:8a4d0b2c3e5f7a9102b3c4d5e6f7a819",
                "token.source": "nginx",
                "token.hash": HASHED,
                "token.type": "api_key",
                "client.address": "203.0.113.45",
                "user_agent.original": "curl/8.5.0",
                "http.request.method": "POST",
                "url.path": "/v1/reports",
                "token.request.id": "8a4d0b2c3e5f7a9102b3c4d5e6f7a819",
                "token.id": HASHED,  # the hash is its only name
                "http.response.status_code": 401,
                "token.outcome": "failure",
                "token.failure_reason": "unknown",
            },
        )
    ],
    # combined, with HTTP basic authentication: the user is the credential.
    [
        (
            "token.used",
            1714644120000000000,
            {
                "log.record.uid": "nginx:45195d9b894d134daad63287fd1e2369",
                "token.source": "nginx",
                "token.id": "nginx:basic:alice",
                "token.type": "basic",
                "user.id": "alice",
                "client.address": "192.0.2.10",
                "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) "
                "Gecko/20100101 Firefox/125.0",
                "http.request.method": "GET",
                "url.path": "/admin/status",
                "http.response.status_code": 200,
            },
        )
    ],
    # combined, a key in the query string (the secret itself), refused: 403. The local time
    # 12:03 +0200 is 10:03 UTC.
    [
        (
            "token.access_denied",
            1714644180000000000,
            {
                "log.record.uid": "nginx:31df490d876549e9e9e286935b4d4223",
                "token.source": "nginx",
                "client.address": "192.0.2.11",
                "user_agent.original": "Go-http-client/1.1",
                "http.request.method": "GET",
                "url.path": "/v1/export",
                "token.value": "nginx-fake-query-key-000000000003",
                "token.type": "api_key",
                "http.response.status_code": 403,
                "token.outcome": "failure",
                "token.failure_reason": "permission_denied",
            },
        )
    ],
    [],  # combined, no credential: what counts is a user or a key; a probe has neither
]


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_line(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("nginx", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_the_hash_is_the_one_tokenotel_fingerprint_prints() -> None:
    assert github_hashed_token("nginx-fake-hashed-key-0000000000000002") == HASHED


def test_what_is_kept_of_each_line() -> None:
    assert kept("nginx", OWN[0]) == [orjson.loads(OWN[0])]
    assert kept("nginx", OWN[2]) == [OWN[2]]  # a text line is kept as a JSON string
    [line] = kept("nginx", OWN[3])
    assert "GET /v1/export?api_key=[token.value]&since=7d HTTP/1.1" in line
    assert "nginx-fake-query-key" not in line
    assert mapped("nginx", orjson.loads(OWN[0])) == mapped("nginx", OWN[0])
    assert mapped("nginx", OWN[2].encode()) == mapped("nginx", OWN[2])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("GET / HTTP/1.1", "nginx line is neither JSON nor in the combined format"),
        ('{"request_uri": "/"}', "nginx record has no time"),
        ('{"msec": "12.3e4"}', "nginx record has no valid time in msec"),
        (
            '1.2.3.4 - bob [31/Foo/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "x"',
            "nginx line has no valid time",
        ),
    ],
)
def test_a_malformed_line_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("nginx", raw)
