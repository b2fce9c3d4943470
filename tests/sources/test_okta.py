"""Okta's System Log: the events of Okta's documentation and the project's own (API token
revocation and use, OAuth grants that succeed and fail, refresh-token reuse), field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("okta-system-log.jsonl")
OWN = fixture_lines("okta", "system-log.jsonl")

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CLIENT = "0oaclient0000000000g4"
SAM = "00uuser00000000000g4"
REFRESH = "rt.Zx81fakeRefreshTokenIdForTests01"


def event(n: int, event_type: str, actor: str, address: str, agent: str, request: str) -> dict:
    return {
        "log.record.uid": f"okta:b1c2d3e4-000{n}-11ef-9a1b-0123456789ab",
        "token.source": "okta",
        "okta.event_type": event_type,
        "okta.actor.alternate_id": actor,
        "client.address": address,
        "user_agent.original": agent,
        "token.request.id": request,
    }


SUCCESS = {"token.outcome": "success"}

VENDOR_EXPECTED = [
    [],  # user.session.start: a sign-in, no token
    [
        (
            "token.created",
            1464377939031000000,
            {
                "token.id": "00T1pkSJOMoElZWVY0g3",
                "token.type": "api_token",  # its displayName "unknown" is no name
                "user.id": "00ujkqmCDIS4dRtaY0g3",
                "token.actor.id": "00ujkqmCDIS4dRtaY0g3",
                "log.record.uid": "okta:af4736fb-ef84-4cfb-bcfa-8f541ca99abf",
                "token.source": "okta",
                "okta.event_type": "system.api_token.create",
                "okta.actor.alternate_id": "administrator1@clouditude.net",
                "client.address": "127.0.0.1",
                "user_agent.original": "UNKNOWN-UNKNOWN",
                "token.request.id": "reqz_ADxMMoTSOd7TgdnbjUXw",
                **SUCCESS,
            },
        )
    ],
    [],  # system.operation.rate_limit.violation (three of them): no token
    [],
    [],
]

OWN_EXPECTED = [
    # An admin revokes the API token.
    [
        (
            "token.revoked",
            1714644000000000000,
            {
                "token.id": "00T1pkSJOMoElZWVY0g3",
                "token.type": "api_token",
                "token.name": "ci-provisioning",
                "token.actor.id": "00uadmin0000000000g4",
                **event(
                    1,
                    "system.api_token.revoke",
                    "admin@example.com",
                    "203.0.113.10",
                    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
                    "Safari/605.1.15",
                    "reqb1c2d3e4",
                ),
                **SUCCESS,
            },
        )
    ],
    # An access token granted to Sam (authorization code), expiring in an hour.
    [
        (
            "token.created",
            1714644300000000000,
            {
                "okta.client_id": CLIENT,
                "okta.grant_type": "authorization_code",
                "token.scopes": ["openid", "profile", "expenses.read"],
                "token.id": "AT.k2J9fakeAccessTokenIdForTests0001",
                "token.type": "oauth_access",
                "user.id": SAM,
                "token.expires_at": "2024-05-02T11:05:00.000Z",
                **event(
                    2,
                    "app.oauth2.as.token.grant.access_token",
                    "sam@example.com",
                    "198.51.100.30",
                    BROWSER,
                    "reqb1c2d3e4",
                ),
                **SUCCESS,
            },
        )
    ],
    # The refresh token granted with it.
    [
        (
            "token.created",
            1714644300001000000,
            {
                "okta.client_id": CLIENT,
                "okta.grant_type": "authorization_code",
                "token.scopes": ["offline_access", "expenses.read"],
                "token.id": REFRESH,
                "token.type": "oauth_refresh",
                "user.id": SAM,
                "token.expires_at": "2024-06-01T10:05:00.000Z",
                **event(
                    3,
                    "app.oauth2.as.token.grant.refresh_token",
                    "sam@example.com",
                    "198.51.100.30",
                    BROWSER,
                    "reqb1c2d3e4",
                ),
                **SUCCESS,
            },
        )
    ],
    # A refresh that failed: Okta names no token, so the client is the credential.
    [
        (
            "token.refresh_failed",
            1714651200000000000,
            {
                "okta.client_id": CLIENT,
                "okta.grant_type": "refresh_token",
                "token.id": CLIENT,
                "token.type": "oauth_client",
                "user.id": CLIENT,
                **event(
                    4,
                    "app.oauth2.as.token.grant.access_token",
                    "Expense Tracker",
                    "192.0.2.200",
                    "python-requests/2.31.0",
                    "reqb1c2d3e4",
                ),
                "token.outcome": "failure",
                "token.failure_reason": "invalid_grant",
            },
        )
    ],
    # Refresh-token reuse detected.
    [
        (
            "token.reuse_detected",
            1714651200500000000,
            {
                "okta.client_id": CLIENT,
                "okta.grant_type": "refresh_token",
                "token.id": REFRESH,
                "token.type": "oauth_refresh",
                "user.id": SAM,
                **event(
                    5,
                    "app.oauth2.as.token.detect_reuse",
                    "Expense Tracker",
                    "192.0.2.200",
                    "python-requests/2.31.0",
                    "reqb1c2d3e4",
                ),
                "token.outcome": "failure",
                "token.failure_reason": "Refresh token reuse detected",
            },
        )
    ],
    # A user deactivated through the API with the API token: a use of the token.
    [
        (
            "token.used",
            1714640400000000000,
            {
                "token.id": "00T1pkSJOMoElZWVY0g3",
                "token.type": "api_token",
                "user.id": "00uadmin0000000000g4",
                **event(
                    6,
                    "user.lifecycle.deactivate",
                    "admin@example.com",
                    "198.51.100.30",
                    "okta-sdk-python/2.9.5 python/3.11.8 Linux/6.5.0",
                    "reqApiTokenUse0006",
                ),
                **SUCCESS,
            },
        )
    ],
    # A client-credentials access token: the service app is its subject.
    [
        (
            "token.created",
            1714654800000000000,
            {
                "okta.client_id": "0oaservice000000000g4",
                "okta.grant_type": "client_credentials",
                "token.scopes": ["billing.sync"],
                "token.id": "AT.svcFakeAccessTokenIdForTests0007",
                "token.type": "oauth_access",
                "user.id": "0oaservice000000000g4",
                "token.expires_at": "2024-05-02T14:00:00.000Z",
                **event(
                    7,
                    "app.oauth2.as.token.grant.access_token",
                    "Billing Sync",
                    "10.20.30.40",
                    "Go-http-client/2.0",
                    "reqb1c2d3e4",
                ),
                **SUCCESS,
            },
        )
    ],
    # Sam's refresh token revoked.
    [
        (
            "token.revoked",
            1714651260000000000,
            {
                "okta.client_id": CLIENT,
                "token.id": REFRESH,
                "token.type": "oauth_refresh",
                "user.id": SAM,
                **event(
                    8,
                    "app.oauth2.as.token.revoke",
                    "sam@example.com",
                    "198.51.100.30",
                    BROWSER,
                    "reqb1c2d3e4",
                ),
                **SUCCESS,
            },
        )
    ],
]


@pytest.mark.parametrize("line", range(1, len(VENDOR_EXPECTED) + 1))
def test_each_event_of_oktas_documentation(line: int) -> None:
    assert len(SAMPLES) == len(VENDOR_EXPECTED)
    assert mapped("okta", SAMPLES[line - 1]) == VENDOR_EXPECTED[line - 1]


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_event(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("okta", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_the_whole_event_is_kept_and_parsed_events_map_as_lines() -> None:
    assert kept("okta", SAMPLES[1]) == [orjson.loads(SAMPLES[1])]
    for line in SAMPLES + OWN:
        assert mapped("okta", orjson.loads(line)) == mapped("okta", line)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"uuid": "x"}', "okta record has no eventType"),
        (
            '{"eventType": "system.api_token.create", "target": [{"type": "Token", "id": "t"}]}',
            "okta record has no valid time in published",
        ),
    ],
)
def test_a_malformed_event_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("okta", raw)
