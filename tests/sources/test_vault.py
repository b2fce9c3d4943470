"""Vault's audit device: each entry of Vault's own documentation and of the project's fixtures,
and what it becomes, field by field. Only responses are mapped (a request entry is repeated,
with its outcome, by its response); the HMAC'd accessor is the token's id."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("vault-audit.jsonl")
OWN = fixture_lines("vault", "audit.jsonl")


def hmac(digits: str) -> str:
    return "hmac-sha256:" + digits


# Vault's documentation: "Creation of a new token" (request, response), "Permission denied"
# (request, response), "Use of a root token" (a request), a read of secret/data/cli (a
# response), a failed login (a request), a userpass login (a response).
OIDC_ACCESSOR = hmac("5473cc64458f840d6105a4b11a8d2a9e61b4ebd21d1c327fb6436ae4651ace52")
OIDC_TOKEN = hmac("0c325431c703c842731fdfd1d4cdcea2c2312e3cf735c5132c3f61b20d02d079")
OIDC_ENTITY = "eaaa1d84-ddb8-046e-af99-2c7adf3c7b64"

VENDOR_EXPECTED = [
    # L1: the request of auth/token/create: its response (L2) says it all.
    [],
    # L2: auth/token/create answered: a token issued, with its TTL.
    [
        (
            "token.created",
            1646680494644516885,
            {
                "log.record.uid": "vault:54a36184-b0e8-ab29-c685-0d4b10eface8:response",
                "token.source": "vault",
                "token.request.id": "54a36184-b0e8-ab29-c685-0d4b10eface8",
                "client.address": "192.168.105.22",
                "url.path": "auth/token/create",
                "vault.operation": "update",
                "token.tenant": "root",
                "token.id": hmac(
                    "e79a6f5e9b34505bceb11db435dec4ad244b32e2884018e5516a49d93725f9e0"
                ),
                "token.hash": hmac(
                    "85c226446bb2b82d9426ea8b561b46decaefd6fa999becd0608a408e6145208e"
                ),
                "user.id": OIDC_ENTITY,
                "token.name": "token",
                "token.type": "vault_service",
                "token.scopes": ["admin", "default"],
                "token.actor.id": OIDC_ENTITY,
                "token.issued_at": 1646680494644,
                "token.expires_at": 1646680494644 + 2764800 * 1000,
            },
        )
    ],
    # L3: the request of a revoke that is denied.
    [],
    # L4: the denial: about the token that asked (the OIDC user's), not the one to revoke.
    [
        (
            "token.access_denied",
            1646680532766296494,
            {
                "log.record.uid": "vault:64026a53-97b9-3f8e-5b21-3048df903ca9:response",
                "token.source": "vault",
                "token.request.id": "64026a53-97b9-3f8e-5b21-3048df903ca9",
                "client.address": "192.168.105.22",
                "url.path": "auth/token/revoke",
                "vault.operation": "update",
                "token.tenant": "root",
                "vault.error": "1 error occurred:\n\t* permission denied\n\n",
                "token.id": OIDC_ACCESSOR,
                "token.hash": OIDC_TOKEN,
                "user.id": OIDC_ENTITY,
                "token.name": "oidc-user@email.com",
                "token.type": "vault_service",
                "token.scopes": ["admin", "default"],
                "token.outcome": "failure",
                "token.failure_reason": "permission_denied",
            },
        )
    ],
    # L5: a request made with the root token; its response is not in the sample.
    [],
    # L6: a read of secret/data/cli with a token: a use.
    [
        (
            "token.used",
            1581097504153356834,
            {
                "log.record.uid": "vault:39a6c39b-7dd0-8af5-da10-29e39559638c:response",
                "token.source": "vault",
                "token.request.id": "39a6c39b-7dd0-8af5-da10-29e39559638c",
                "client.address": "127.0.0.1",
                "url.path": "secret/data/cli",
                "vault.operation": "read",
                "token.tenant": "root",
                "token.id": hmac(
                    "edf259322ac1a3ae99f3d47148b0e2e0206a75b5c00f9ce90e430259f29f6716"
                ),
                "token.hash": hmac(
                    "7a3d335ebb428910b8540a364365a972f7106aacd2da085c931a689f70c77b1b"
                ),
                "user.id": "token",  # no entity: Vault's display name stands for the owner
                "token.name": "token",
                "token.type": "vault_service",
                "token.scopes": ["root"],
            },
        )
    ],
    # L7: a login request without a token.
    [],
    # L8: a userpass login answered (under the key " response", the page's typo): a token
    # issued to the user who logged in.
    [
        (
            "token.created",
            1581037688477388575,
            {
                "log.record.uid": "vault:ee8630c6-d78e-4299-b542-1c129f392fdb:response",
                "token.source": "vault",
                "token.request.id": "ee8630c6-d78e-4299-b542-1c129f392fdb",
                "client.address": "127.0.0.1",
                "url.path": "auth/userpass/login/mitchellh",
                "vault.operation": "update",
                "token.tenant": "root",
                "token.id": hmac(
                    "9ccf9ae5955fb4ab816bf872dfe2fcf330e647802639c22474efd8951da26d9d"
                ),
                "token.hash": hmac(
                    "db6971124ea5572cb81fd607ed4abd3e3711f8d2f9a646c32c81a1e50d2a3e03"
                ),
                "user.id": "9fb72b4e-aeb1-a4c9-2290-0b807468f48f",
                "token.name": "userpass-mitchellh",
                "token.type": "vault_service",
                "token.scopes": ["admins", "default"],
                "token.actor.id": "9fb72b4e-aeb1-a4c9-2290-0b807468f48f",
                "token.issued_at": 1581037688477,
            },
        )
    ],
]

ADMIN = {
    "token.id": hmac("b" * 64),
    "token.hash": hmac("a" * 64),
    "user.id": "7d2e3f4a-1111-2222-3333-444455556666",
    "token.name": "oidc-admin@example.com",
    "token.type": "vault_service",
    "token.scopes": ["admin", "default"],
}
CI = {
    "token.id": hmac("d" * 64),
    "token.hash": hmac("c" * 64),
    "user.id": "0b9c8d7e-aaaa-bbbb-cccc-ddddeeeeffff",
    "token.name": "approle",
    "token.type": "vault_service",
    "token.scopes": ["ci", "default"],
}


def common(request_id: str, path: str, operation: str = "update", address: str = "10.0.0.5"):
    return {
        "log.record.uid": f"vault:{request_id}:response",
        "token.source": "vault",
        "token.request.id": request_id,
        "client.address": address,
        "url.path": path,
        "vault.operation": operation,
        "token.tenant": "root",
    }


OWN_EXPECTED = [
    # renew-self: the token renews itself; its new TTL counts from now.
    [
        (
            "token.refreshed",
            1714644000123456789,
            {
                **common("5f0c2a1e-0001-4a6b-8c1d-000000000001", "auth/token/renew-self"),
                "user_agent.original": "vault-agent/1.16.2",
                **CI,
                "token.actor.id": CI["user.id"],
                "token.expires_at": 1714644000123 + 3600 * 1000,
            },
        )
    ],
    # revoke-accessor: the admin revokes the CI token by its (HMAC'd) accessor.
    [
        (
            "token.revoked",
            1714647600500000000,
            {
                **common("5f0c2a1e-0002-4a6b-8c1d-000000000002", "auth/token/revoke-accessor"),
                "token.id": CI["token.id"],
                "token.actor.id": ADMIN["user.id"],
            },
        )
    ],
    # A token Vault does not know: "permission denied" and no accessor resolved.
    [
        (
            "token.auth_failed",
            1714647900000000000,
            {
                **common(
                    "5f0c2a1e-0003-4a6b-8c1d-000000000003", "secret/data/app", "read", "203.0.113.9"
                ),
                "vault.error": "permission denied",
                "token.id": hmac("e" * 64),
                "token.hash": hmac("e" * 64),
                "token.outcome": "failure",
                "token.failure_reason": "unknown",
            },
        )
    ],
    # log_raw=true, hmac_accessor=false: the raw token goes to token.value alone.
    [
        (
            "token.used",
            1714651200000000000,
            {
                **common(
                    "5f0c2a1e-0004-4a6b-8c1d-000000000004", "secret/data/deploy", "read", "10.0.0.7"
                ),
                "token.value": "hvs.CAESIFakeRawVaultTokenForTests0000000000000000",
                "token.id": "FakeAccessor0000000000001",
                "user.id": "token-deploy",
                "token.name": "token-deploy",
                "token.type": "vault_service",
                "token.scopes": ["deploy", "default"],
                "token.issued_at": "2024-05-01T00:00:00Z",
            },
        )
    ],
    # A use that failed for a reason other than the token or its policies.
    [
        (
            "token.used",
            1714653000000000000,
            {
                **common("5f0c2a1e-0005-4a6b-8c1d-000000000005", "sekret/data/x", "read"),
                "vault.error": '1 error occurred:\n\t* no handler for route "sekret/data/x". '
                "route entry not found.\n\n",
                **ADMIN,
                "token.outcome": "failure",
                "token.failure_reason": "error",
            },
        )
    ],
    # auth/token/revoke names the token by itself (HMAC'd): that is its id here.
    [
        (
            "token.revoked",
            1714654800000000000,
            {
                **common("5f0c2a1e-0006-4a6b-8c1d-000000000006", "auth/token/revoke"),
                "token.id": hmac("f" * 64),
                "token.hash": hmac("f" * 64),
                "token.actor.id": ADMIN["user.id"],
            },
        )
    ],
    # A batch token (no accessor: its HMAC'd token is its id), created as an orphan.
    [
        (
            "token.created",
            1714658400000000000,
            {
                **common("5f0c2a1e-0007-4a6b-8c1d-000000000007", "auth/token/create-orphan"),
                "token.id": hmac("9" * 64),
                "token.hash": hmac("9" * 64),
                "user.id": ADMIN["user.id"],
                "token.name": "token-batch",
                "token.type": "vault_batch",
                "token.scopes": ["default", "reports"],
                "token.actor.id": ADMIN["user.id"],
                "token.issued_at": 1714658400000,
                "token.expires_at": 1714658400000 + 900 * 1000,
            },
        )
    ],
]


@pytest.mark.parametrize("line", range(1, len(VENDOR_EXPECTED) + 1))
def test_each_entry_of_vaults_documentation(line: int) -> None:
    assert len(SAMPLES) == len(VENDOR_EXPECTED)
    assert mapped("vault", SAMPLES[line - 1]) == VENDOR_EXPECTED[line - 1]


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_entry_of_the_own_fixtures(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("vault", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_the_whole_entry_is_kept_and_a_raw_token_in_it_replaced() -> None:
    assert kept("vault", SAMPLES[1]) == [orjson.loads(SAMPLES[1])]
    [entry] = kept("vault", OWN[3])
    original = orjson.loads(OWN[3])
    assert entry["auth"]["client_token"] == "[token.value]"
    assert entry["request"]["client_token"] == "[token.value]"
    assert "hvs." not in orjson.dumps(entry).decode()
    assert entry["request"]["path"] == original["request"]["path"]


def test_an_entry_already_parsed_maps_as_its_line() -> None:
    for line in SAMPLES + OWN:
        assert mapped("vault", orjson.loads(line)) == mapped("vault", line)
        assert mapped("vault", line.encode()) == mapped("vault", line)


def test_the_typo_key_is_read_only_when_there_is_no_response() -> None:
    entry = orjson.loads(SAMPLES[7])
    entry["response"] = {}  # a real response (issuing nothing) wins over the typo
    [(event_name, _, _)] = mapped("vault", entry)
    assert event_name == "token.used"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "vault record is not JSON"),
        ("[1, 2]", "vault record is JSON but not an object (a list)"),
        ('{"time": "2024-01-01T00:00:00Z"}', "vault record has no type request or response"),
        ('{"type": "response", "request": {}}', "vault response has no request.id"),
        (
            '{"type": "response", "time": "yesterday", "request": {"id": "x"}}',
            "vault record has no valid time in time",
        ),
    ],
)
def test_a_malformed_entry_says_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(
        SourceRecordError, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        mapped("vault", line)


def test_a_response_without_any_token_is_no_token_event() -> None:
    entry = {
        "time": "2024-01-01T00:00:00Z",
        "type": "response",
        "auth": {"token_type": "default"},
        "request": {"id": "1", "path": "auth/userpass/login/x", "remote_address": "127.0.0.1"},
        "error": "invalid username or password",
    }
    assert mapped("vault", entry) == []
