"""GitHub's audit log: the entries of GitHub's documentation (none of them a token event), GHES
syslog lines, and the project's own token entries, field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("github-audit.jsonl")
GHES_SAMPLES = vendor_lines("github-ghes-audit-syslog.log")
OWN = fixture_lines("github", "audit-log.jsonl")
OWN_GHES = fixture_lines("github", "ghes-syslog.log")

# base64(SHA-256) of the fixtures' tokens, as GitHub writes hashed_token.
CLASSIC_HASH = "9eGCnSLh7SLfgAygUnAUGOLNWLa0PLmaXhE1InCkE8E="
FINE_HASH = "PGPYX/nCVQBtEo8Av81OJFsI10K5xNi1oguBA4+HsAo="
T0 = 1714644000000  # ms


def ns(ms: int) -> int:
    return ms * 1_000_000


def head(document_id: str, action: str, token_id: str) -> dict:
    return {
        "log.record.uid": f"github:{document_id}",
        "token.source": "github",
        "github.action": action,
        "token.id": token_id,
    }


RELEASE_BOT = {"token.name": "release-bot", "token.type": "pat_fine_grained"}
MONALISA = {"client.address": "198.51.100.20"}
OCTOCAT_IN_ORG = {"token.actor.id": "octocat", "client.address": "203.0.113.5"}
RELEASE_BOT_PERMISSIONS = {"token.scopes": ["contents:write", "metadata:read"]}

OWN_EXPECTED = [
    [
        (
            "token.created",
            ns(T0),
            {
                **head("fgpat-create-0001", "personal_access_token.create", "github:4100"),
                **RELEASE_BOT,
                "user.id": "monalisa",
                "token.actor.id": "monalisa",
                **MONALISA,
                "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) "
                "Gecko/20100101 Firefox/125.0",
                "github.operation_type": "create",
            },
        )
    ],
    [
        (
            "token.access_requested",
            ns(T0 + 1000),
            {
                **head(
                    "fgpat-request-0002", "personal_access_token.request_created", "github:4100"
                ),
                **RELEASE_BOT,
                "user.id": "monalisa",
                "token.actor.id": "monalisa",
                **MONALISA,
                "token.tenant": "octo-org",
                **RELEASE_BOT_PERMISSIONS,
                "github.operation_type": "create",
            },
        )
    ],
    [
        (
            "token.access_approved",
            ns(T0 + 60000),
            {
                **head("fgpat-granted-0003", "personal_access_token.access_granted", "github:4100"),
                **RELEASE_BOT,
                "user.id": "monalisa",  # the requester owns the token; the owner approved
                **OCTOCAT_IN_ORG,
                "token.tenant": "octo-org",
                **RELEASE_BOT_PERMISSIONS,
                "github.operation_type": "access",
            },
        )
    ],
    [
        (
            "token.access_denied",
            ns(T0 + 120000),
            {
                **head("fgpat-denied-0004", "personal_access_token.request_denied", "github:4200"),
                "token.name": "scratch",
                "token.type": "pat_fine_grained",
                "user.id": "hubot",
                **OCTOCAT_IN_ORG,
                "token.tenant": "octo-org",
                "token.scopes": ["administration:write"],
                "github.operation_type": "access",
                "token.failure_reason": "request_denied",
            },
        )
    ],
    [
        (
            "token.rotated",
            ns(T0 + 3600000),
            {
                **head(
                    "fgpat-regen-0005",
                    "personal_access_token.credential_regenerated",
                    "github:4100",
                ),
                **RELEASE_BOT,
                "user.id": "monalisa",
                "token.actor.id": "monalisa",
                **MONALISA,
                "github.operation_type": "modify",
                "token.previous_id": "github:4100",
            },
        )
    ],
    [
        (
            "token.revoked",
            ns(T0 + 7200000),
            {
                **head("fgpat-revoked-0006", "personal_access_token.access_revoked", "github:4100"),
                **RELEASE_BOT,
                "user.id": "monalisa",
                **OCTOCAT_IN_ORG,
                "token.tenant": "octo-org",
                **RELEASE_BOT_PERMISSIONS,
                "github.operation_type": "remove",
            },
        )
    ],
    [
        (
            "token.revoked",
            ns(T0 + 7300000),
            {
                **head("fgpat-destroy-0007", "personal_access_token.destroy", "github:4100"),
                **RELEASE_BOT,
                "user.id": "monalisa",
                "token.actor.id": "monalisa",
                **MONALISA,
                "github.operation_type": "remove",
            },
        )
    ],
    [
        (
            "token.created",
            ns(T0 + 10000),
            {
                **head("classic-create-0008", "oauth_authorization.create", "github:5300"),
                "token.type": "pat_classic",  # an authorization naming no OAuth app
                "user.id": "hubot",
                "token.actor.id": "hubot",
                "client.address": "192.0.2.44",
                "token.scopes": ["repo", "read:org", "workflow"],
                "github.operation_type": "create",
            },
        )
    ],
    [
        (
            "token.used",
            ns(T0 + 20000),
            {
                **head("classic-use-0009", "repo.download_zip", "github:5300"),
                "token.hash": CLASSIC_HASH,
                "token.type": "pat_classic",
                "user.id": "hubot",
                "client.address": "192.0.2.44",
                "user_agent.original": "curl/8.5.0",
                "token.tenant": "octo-org",
                "token.request.id": "C4D2:3A1F:9B2C10:A1B2C3:663D2A40",
                "token.scopes": ["repo", "read:org", "workflow"],
                "github.repo": "octo-org/deploy-scripts",
                "github.operation_type": "access",
            },
        )
    ],
    [
        (
            "token.used",
            ns(T0 + 30000),
            {
                # No token_id: the hash GitHub keeps is the token's only name.
                **head("fg-git-0010", "git.clone", FINE_HASH),
                "token.hash": FINE_HASH,
                "token.type": "pat_fine_grained",
                "user.id": "monalisa",
                **MONALISA,
                "user_agent.original": "git/2.44.0",
                "token.tenant": "octo-org",
                "github.repo": "octo-org/app",
                "github.operation_type": "access",
            },
        )
    ],
    [
        (
            "token.revoked",
            ns(T0 + 86400000),
            {
                **head("classic-destroy-0011", "oauth_authorization.destroy", "github:5300"),
                "token.type": "pat_classic",
                "user.id": "hubot",
                "token.actor.id": "hubot",
                "client.address": "192.0.2.44",
                "github.operation_type": "remove",
            },
        )
    ],
    # An organisation's token policy: no token of its own.
    [],
]


def test_the_entries_of_githubs_documentation_are_no_token_events() -> None:
    # team.add_member, org.create, repo.destroy: no token data in them.
    assert [mapped("github", line) for line in SAMPLES] == [[], [], []]


def test_a_ghes_syslog_line_in_ruby_hash_form_is_refused_with_its_reason() -> None:
    with pytest.raises(SourceRecordError, match=r"Ruby hash form \(\{:key=>value\}\), not JSON"):
        mapped("github", GHES_SAMPLES[0])


def test_a_ghes_git_push_line_is_read_and_is_no_token_event() -> None:
    # JSON after "github_audit: ", but a git entry with no action and no token data.
    assert mapped("github", GHES_SAMPLES[1]) == []


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_entry(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("github", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_a_ghes_syslog_line_with_token_data() -> None:
    [line] = OWN_GHES
    payload = orjson.loads(line.split("github_audit: ", 1)[1])
    [(event_name, time_ns, attributes)] = mapped("github", line)
    uid = attributes.pop("log.record.uid")
    assert (event_name, time_ns, attributes) == (
        "token.used",
        ns(T0 + 50000),
        {
            "token.source": "github",
            "github.action": "repo.download_zip",
            "token.id": "github:5300",
            "token.hash": CLASSIC_HASH,
            "token.type": "pat_classic",
            "user.id": "hubot",
            "client.address": "10.0.0.51",
            "user_agent.original": "curl/8.5.0",
            "token.scopes": ["repo"],
            "github.repo": "some-org/some-repository",
        },
    )
    # No _document_id in GHES's syslog: the id is the entry's digest, the same for the line,
    # its bytes and the entry parsed.
    assert uid.startswith("github:") and len(uid) == len("github:") + 32
    assert mapped("github", payload)[0][2]["log.record.uid"] == uid
    assert mapped("github", line.encode())[0][2]["log.record.uid"] == uid
    assert kept("github", line) == [payload]


def test_an_entry_parsed_or_as_bytes_maps_as_its_line() -> None:
    for line in OWN:
        assert mapped("github", orjson.loads(line)) == mapped("github", line)
        assert mapped("github", line.encode()) == mapped("github", line)
    assert kept("github", OWN[8]) == [orjson.loads(OWN[8])]


def test_an_oauth_app_authorization_is_an_oauth_token() -> None:
    entry = orjson.loads(OWN[7]) | {"oauth_application_id": 77, "oauth_application_name": "ci"}
    [(_, _, attributes)] = mapped("github", entry)
    assert attributes["token.type"] == "oauth_access"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("Oct 26 01:42:08 github-ent sshd: hello", "neither a JSON object nor a GHES syslog"),
        ('{"action": "git.clone", "hashed_token": "x"}', "no valid time in @timestamp"),
        ('{"action": "git.clone"', "github record is not JSON"),
    ],
)
def test_a_malformed_entry_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("github", raw)
