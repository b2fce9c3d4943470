"""GitLab audit events: the streamed git operations of GitLab's documentation and the
project's own access-token events, field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("gitlab-audit.jsonl")
OWN = fixture_lines("gitlab", "audit-events.jsonl")
PROJECT = "example-group/example-project"


def git(name: str, kind: str, protocol: str, time: str) -> dict:
    return {
        "token.id": f"gitlab:{kind}:{PROJECT}:{name}",
        "token.type": kind,
        "token.name": name,
        "user.id": PROJECT,
        "gitlab.protocol": protocol,
        "gitlab.git_action": "git-upload-pack",
        # Every streamed git event of the documentation has id 1: its time tells them apart.
        "log.record.uid": f"gitlab:1:repository_git_operation:{time}",
        "token.source": "gitlab",
        "gitlab.event_type": "repository_git_operation",
        "client.address": "127.0.0.1",
        "gitlab.entity_path": PROJECT,
    }


VENDOR_EXPECTED = [
    [],  # a user's SSH fetch: no token said
    [],  # a user's HTTP push: a password or a token, GitLab does not say which
    [
        (
            "token.used",
            1658814233662000000,
            git("deploy-key-name", "deploy_key", "ssh", "2022-07-26T05:43:53.662Z"),
        )
    ],
    [
        (
            "token.used",
            1658814385850000000,
            git("deploy-token-name", "deploy_token", "http", "2022-07-26T05:46:25.850Z"),
        )
    ],
    [],  # a user's download from the UI
]


def tail(n: int, event_type: str, time: str, entity: str, address: str = "198.51.100.50"):
    return {
        "log.record.uid": f"gitlab:5010{n}:{event_type}:{time}",
        "token.source": "gitlab",
        "gitlab.event_type": event_type,
        "client.address": address,
        "gitlab.entity_path": entity,
    }


PAT = {"token.id": "gitlab:7001", "token.type": "pat", "token.name": "ci-token"}
JDOE = {"user.id": "jdoe", "token.principal.type": "user"}
DEPLOY_BOT = {
    "token.id": "gitlab:3642271",
    "token.type": "project_access_token",
    "token.name": "deploy-bot",
    "user.id": PROJECT,
    "token.principal.type": "project",
    "token.actor.id": "Jane Doe",
}
RELEASE_BOT = {
    "token.id": "gitlab:3650001",
    "token.type": "group_access_token",
    "token.name": "release-bot",
    "user.id": "example-group",
    "token.principal.type": "group",
    "token.actor.id": "Group Owner",
}

OWN_EXPECTED = [
    [
        (
            "token.created",
            1714644000123000000,
            {
                **PAT,
                **JDOE,
                "token.actor.id": "Jane Doe",
                "token.expires_at": "2024-08-01",
                "gitlab.message": "Created personal access token with id 7001",
                **tail(1, "personal_access_token_created", "2024-05-02T10:00:00.123Z", "jdoe"),
            },
        )
    ],
    [
        (
            "token.revoked",
            1714725000000000000,
            {
                **PAT,
                **JDOE,
                "token.actor.id": "Administrator",
                "gitlab.message": "Revoked personal access token with id 7001",
                **tail(
                    2,
                    "personal_access_token_revoked",
                    "2024-05-03T08:30:00.000Z",
                    "jdoe",
                    "203.0.113.1",
                ),
            },
        )
    ],
    [
        (
            "token.created",
            1714647600000000000,
            {
                # The target is the token's bot user: the token's id is in the message.
                **DEPLOY_BOT,
                "token.scopes": ["api", "read_repository"],
                "gitlab.message": "Created project access token with token_id: 3642271 with "
                "scopes: [:api, :read_repository] and Maintainer access level.",
                **tail(3, "project_access_token_created", "2024-05-02T11:00:00.000Z", PROJECT),
            },
        )
    ],
    [
        (
            "token.revoked",
            1714813200000000000,
            {
                **DEPLOY_BOT,  # "deploy-bot (api, read_repository)": the name without scopes
                "gitlab.message": "Revoked project access token with token_id: 3642271",
                **tail(4, "project_access_token_deleted", "2024-05-04T09:00:00.000Z", PROJECT),
            },
        )
    ],
    [
        (
            "token.created",
            1714651200000000000,
            {
                **RELEASE_BOT,
                "token.scopes": ["read_api"],
                "gitlab.message": "Created group access token with token_id: 3650001 with "
                "scopes: [:read_api] and Developer access level.",
                **tail(
                    5, "group_access_token_created", "2024-05-02T12:00:00.000Z", "example-group"
                ),
            },
        )
    ],
    [
        (
            # A revocation that failed leaves the token as it was.
            "token.revoke_failed",
            1714910400000000000,
            {
                **RELEASE_BOT,
                "token.outcome": "failure",
                "token.failure_reason": "error",
                "gitlab.message": "Attempted to revoke group access token with token_id: "
                "3650001, but failed with message: Not permitted",
                **tail(
                    6,
                    "group_access_token_deletion_failed",
                    "2024-05-05T12:00:00.000Z",
                    "example-group",
                ),
            },
        )
    ],
    [
        (
            "token.created",
            1714654800000000000,
            {
                "token.id": "gitlab:311",
                "token.type": "deploy_token",
                "token.name": "registry-pull",
                "user.id": PROJECT,
                "token.principal.type": "project",
                "token.actor.id": "Jane Doe",
                "gitlab.message": "Created project deploy token",
                **tail(7, "deploy_token_created", "2024-05-02T13:00:00.000Z", PROJECT),
            },
        )
    ],
]


@pytest.mark.parametrize("line", range(1, len(VENDOR_EXPECTED) + 1))
def test_each_event_of_gitlabs_documentation(line: int) -> None:
    assert len(SAMPLES) == len(VENDOR_EXPECTED)
    assert mapped("gitlab", SAMPLES[line - 1]) == VENDOR_EXPECTED[line - 1]


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_event(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("gitlab", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_the_whole_event_is_kept_and_parsed_events_map_as_lines() -> None:
    assert kept("gitlab", SAMPLES[3]) == [orjson.loads(SAMPLES[3])]
    for line in SAMPLES + OWN:
        assert mapped("gitlab", orjson.loads(line)) == mapped("gitlab", line)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"id": 1}', "gitlab record has no event_type"),
        (
            '{"event_type": "personal_access_token_created", "target_type": '
            '"PersonalAccessToken", "target_id": 1}',
            "gitlab record has no valid time in created_at",
        ),
    ],
)
def test_a_malformed_event_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("gitlab", raw)
