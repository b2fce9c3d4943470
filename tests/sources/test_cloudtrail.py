"""AWS CloudTrail: the records of AWS's documentation (and three of Elastic's for the key
lifecycle), the project's own log file, field by field."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("cloudtrail.jsonl")
THIRD_PARTY = vendor_lines("cloudtrail.elastic-thirdparty.jsonl")
[OWN_FILE] = fixture_lines("cloudtrail", "log-file.json")


def ns(iso_seconds: str) -> int:
    return int(datetime.fromisoformat(iso_seconds.replace("Z", "+00:00")).timestamp()) * 10**9


def call(name: str, source: str, address: str, agent: str, tenant: str, request_id=None):
    attributes = {
        "token.source": "cloudtrail",
        "cloudtrail.event_name": name,
        "cloudtrail.event_source": source,
        "client.address": address,
        "user_agent.original": agent,
    }
    if request_id:
        attributes["token.request.id"] = request_id
    attributes["token.tenant"] = tenant
    return attributes


def key(key_id: str, user: str | None, key_type: str = "aws_access_key") -> dict:
    attributes = {"token.id": key_id, "token.type": key_type}
    if user:
        attributes["user.id"] = user
    attributes["token.principal.type"] = "IAMUser"
    return attributes


ALICE_ARN = "arn:aws:iam::0123456789012:user/Alice"
ELASTIC_CALL = {
    "client.address": "127.0.0.1",
    "user_agent.original": "signin.amazonaws.com",
    "token.tenant": "0123456789012",
}

VENDOR_EXPECTED = [
    # L1 GetUserPolicy, signed with JaneDoe's key (from the console: the address is a
    # service name, which the mapping keeps as an attribute).
    [
        (
            "token.used",
            ns("2014-07-15T21:40:14Z"),
            {
                "log.record.uid": "cloudtrail:cEXAMPLE-127e-4632-980d-505a4EXAMPLE",
                **key("AKIAI44QH8DHBEXAMPLE", "JaneDoe"),
                **call(
                    "GetUserPolicy",
                    "iam.amazonaws.com",
                    "signin.amazonaws.com",
                    "signin.amazonaws.com",
                    "444455556666",
                    "9EXAMPLE-0c68-11e4-a24e-d5e16EXAMPLE",
                ),
            },
        )
    ],
    # L2 AssumeRole: JohnDoe's key used, and session credentials issued to the role session.
    [
        (
            "token.used",
            ns("2014-07-18T15:07:39Z"),
            {
                "log.record.uid": "cloudtrail:dEXAMPLE-ac7f-466c-a608-4ac8dEXAMPLE:used",
                **key("AKIAQRSTUVWXYZEXAMPLE", "JohnDoe"),
                **(
                    JOHN := call(
                        "AssumeRole",
                        "sts.amazonaws.com",
                        "192.0.2.101",
                        "aws-cli/1.11.10 Python/2.7.8 Linux/3.2.45-0.6.wd.865.49.315.metal1.x86_64 "
                        "botocore/1.4.67",
                        "111122223333",
                        "4EXAMPLE-0e8d-11e4-96e4-e55c0EXAMPLE",
                    )
                ),
            },
        ),
        (
            "token.created",
            ns("2014-07-18T15:07:39Z"),
            {
                "token.id": "AKIAQRSTUVWXYZEXAMPLE",
                "token.type": "aws_session",
                "user.id": "arn:aws:sts::111122223333:assumed-role/EC2-dev/JohnDoe-EC2-dev",
                "token.expires_at": 1689696459000,  # Jul 18, 2023, 4:07:39 PM UTC
                "token.value": "<encoded session token blob>",  # the session token is secret
                "log.record.uid": "cloudtrail:dEXAMPLE-ac7f-466c-a608-4ac8dEXAMPLE",
                "token.actor.id": "arn:aws:iam::777788889999:user/JohnDoe",
                **JOHN,
            },
        ),
    ],
    # L3 CreateUser: no eventID in the sample, so the id is the record's digest.
    [
        (
            "token.used",
            ns("2014-03-24T21:11:59Z"),
            {
                "log.record.uid": "cloudtrail:9480589fac584bf2ad80febcb66b6728",
                **key("EXAMPLE_KEY_ID", "Alice"),
                **call(
                    "CreateUser",
                    "iam.amazonaws.com",
                    "127.0.0.1",
                    "aws-cli/1.3.2 Python/2.7.5 Windows/7",
                    "123456789012",
                ),
            },
        )
    ],
    # L4 StartInstances (no eventID either).
    [
        (
            "token.used",
            ns("2014-03-06T21:22:54Z"),
            {
                "log.record.uid": "cloudtrail:5009ea767f47b945049974bb76eb7dd1",
                **key("EXAMPLE_KEY_ID", "Alice"),
                **call(
                    "StartInstances",
                    "ec2.amazonaws.com",
                    "205.251.233.176",
                    "ec2-api-tools 1.6.12.2",
                    "123456789012",
                ),
            },
        )
    ],
    # L5 UpdateTrail failed for a reason of its own: a use that failed, with AWS's code.
    [
        (
            "token.used",
            ns("2016-07-14T19:15:45Z"),
            {
                "log.record.uid": "cloudtrail:b7d4398e-b2f0-4faa-9c76-e2d316a8d67f",
                **key("EXAMPLE_KEY_ID", "Alice"),
                "token.outcome": "failure",
                "cloudtrail.error_message": "Unknown trail: myTrail2 for the user: 123456789012",
                "token.failure_reason": "TrailNotFoundException",
                **call(
                    "UpdateTrail",
                    "cloudtrail.amazonaws.com",
                    "205.251.233.182",
                    "aws-cli/1.10.32 Python/2.7.9 Windows/7 botocore/1.4.22",
                    "123456789012",
                    "5d40662a-49f7-11e6-97e4-d9cb6ff7d6a3",
                ),
            },
        )
    ],
    # L6 DeleteStateMachine denied.
    [
        (
            "token.access_denied",
            ns("2016-10-28T01:17:37Z"),
            {
                "log.record.uid": "cloudtrail:4a622d5c-e9cf-4051-90f2-4cdb69792cd8",
                **key("AKIAJA2ELRVCPEXAMPLE", "test-user"),
                "token.outcome": "failure",
                "cloudtrail.error_message": "User: arn:aws:iam::123456789012:user/graphene/tests/"
                "test-user is not authorized to perform: states:DeleteStateMachine on resource: "
                "arn:aws:states:us-east-1:123456789012:stateMachine:testUser.2016-10-27-18-16-38"
                ".ec6e261f-1323-4555-9fa",
                "token.failure_reason": "permission_denied",
                **call(
                    "DeleteStateMachine",
                    "states.amazonaws.com",
                    "10.61.88.189",
                    "Coral/Netty",
                    "123456789012",
                    "2cf23f3c-9cac-11e6-aed5-5b57d226e9ef",
                ),
            },
        )
    ],
    # L7 StartExecution.
    [
        (
            "token.used",
            ns("2016-10-28T01:17:25Z"),
            {
                "log.record.uid": "cloudtrail:30a20c8e-a3a1-4b07-9139-cd9cd73b5eb8",
                **key("AKIAJL5C75K4ZEXAMPLE", "test-user"),
                **call(
                    "StartExecution",
                    "states.amazonaws.com",
                    "10.61.88.189",
                    "Coral/Netty",
                    "123456789012",
                    "264c6f08-9cac-11e6-aed5-5b57d226e9ef",
                ),
            },
        )
    ],
]


def lifecycle(event: str, time: str, event_id: str, key_id: str, request_id: str, name: str):
    return (
        event,
        ns(time),
        {
            "token.id": key_id,
            "token.type": "aws_access_key",
            "user.id": "Bob",
            "log.record.uid": f"cloudtrail:{event_id}",
            "token.actor.id": ALICE_ARN,
            "token.source": "cloudtrail",
            "cloudtrail.event_name": name,
            "cloudtrail.event_source": "iam.amazonaws.com",
            **ELASTIC_CALL,
            "token.request.id": request_id,
        },
    )


def alices_call(time: str, event_id: str, key_id: str, request_id: str, name: str):
    return (
        "token.used",
        ns(time),
        {
            "log.record.uid": f"cloudtrail:{event_id}:used",
            **key(key_id, "Alice"),
            "token.source": "cloudtrail",
            "cloudtrail.event_name": name,
            "cloudtrail.event_source": "iam.amazonaws.com",
            **ELASTIC_CALL,
            "token.request.id": request_id,
        },
    )


THIRD_PARTY_EXPECTED = [
    # CreateAccessKey for Bob, by Alice (console session): her key used, Bob's key created.
    [
        alices_call(
            "2020-01-08T20:43:06Z",
            "EXAMPLE-3cab-40f8-938b-EXAMPLE",
            "EXAMPLE_KEY",
            "EXAMPLE-823a-48dc-8fa9-EXAMPLE",
            "CreateAccessKey",
        ),
        lifecycle(
            "token.created",
            "2020-01-08T20:43:06Z",
            "EXAMPLE-3cab-40f8-938b-EXAMPLE",
            "EXAMPLE_KEY_ID",
            "EXAMPLE-823a-48dc-8fa9-EXAMPLE",
            "CreateAccessKey",
        ),
    ],
    # UpdateAccessKey to Inactive: the key disabled.
    [
        alices_call(
            "2020-01-10T15:01:23Z",
            "EXAMPLE-0ef0-42cd-8551-EXAMPLE",
            "EXAMPLE_KEY_ID",
            "EXAMPLE-7d0c-45f4-b25b-EXAMPLE",
            "UpdateAccessKey",
        ),
        lifecycle(
            "token.disabled",
            "2020-01-10T15:01:23Z",
            "EXAMPLE-0ef0-42cd-8551-EXAMPLE",
            "EXAMPLE_KEY_ID",
            "EXAMPLE-7d0c-45f4-b25b-EXAMPLE",
            "UpdateAccessKey",
        ),
    ],
    # DeleteAccessKey: the key revoked (the call, made first, is no use after revocation).
    [
        alices_call(
            "2020-01-08T19:09:36Z",
            "EXAMPLE-0698-46bd-998d-EXAMPLE",
            "EXAMPLE_ID",
            "EXAMPLE-3bea-41fa-a0b4-EXAMPLE",
            "DeleteAccessKey",
        ),
        lifecycle(
            "token.revoked",
            "2020-01-08T19:09:36Z",
            "EXAMPLE-0698-46bd-998d-EXAMPLE",
            "EXAMPLE_ID",
            "EXAMPLE-3bea-41fa-a0b4-EXAMPLE",
            "DeleteAccessKey",
        ),
    ],
]

CLI = "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64"


def own(n: int, name: str, source: str, address: str = "198.51.100.7", agent: str = CLI):
    return {
        "token.source": "cloudtrail",
        "cloudtrail.event_name": name,
        "cloudtrail.event_source": source,
        "client.address": address,
        "user_agent.original": agent,
        "token.request.id": f"0000000{n}-aaaa-4bbb-8ccc-ddddeeeeffff",
        "token.tenant": "111122223333",
    }


def uid(n: int, suffix: str = "") -> str:
    return f"cloudtrail:e000000{n}-1111-4222-8333-444455556666{suffix}"


ALICE_KEY = key("AKIAEXAMPLEALICE0001", "alice")
SESSION_KEY = key("ASIAEXAMPLESESSION01", "alice", "aws_session")
ALICE = "arn:aws:iam::111122223333:user/alice"

OWN_EXPECTED = [
    # 1 GetSessionToken: alice's key used, a session key issued (expiring in an hour).
    ("token.used", ns("2024-05-02T09:00:00Z"),
     {"log.record.uid": uid(1, ":used"), **ALICE_KEY,
      **own(1, "GetSessionToken", "sts.amazonaws.com")}),
    ("token.created", ns("2024-05-02T09:00:00Z"),
     {"token.id": "ASIAEXAMPLESESSION01", "token.type": "aws_session", "user.id": "alice",
      "token.expires_at": 1714644000000, "log.record.uid": uid(1), "token.actor.id": ALICE,
      **own(1, "GetSessionToken", "sts.amazonaws.com")}),
    # 2 the session key used.
    ("token.used", ns("2024-05-02T09:05:00Z"),
     {"log.record.uid": uid(2), **SESSION_KEY, **own(2, "ListBuckets", "s3.amazonaws.com")}),
    # 3 UpdateAccessKey to Active: bob's key enabled.
    ("token.used", ns("2024-05-02T09:10:00Z"),
     {"log.record.uid": uid(3, ":used"), **ALICE_KEY,
      **own(3, "UpdateAccessKey", "iam.amazonaws.com")}),
    ("token.enabled", ns("2024-05-02T09:10:00Z"),
     {"token.id": "AKIAEXAMPLEBOB000001", "token.type": "aws_access_key", "user.id": "bob",
      "log.record.uid": uid(3), "token.actor.id": ALICE,
      **own(3, "UpdateAccessKey", "iam.amazonaws.com")}),
    # 4 a key AWS does not know.
    ("token.auth_failed", ns("2024-05-02T09:15:00Z"),
     {"log.record.uid": uid(4), "token.id": "AKIAEXAMPLEUNKNOWN01", "token.type": "aws_access_key",
      "token.principal.type": "IAMUser", "token.outcome": "failure",
      "cloudtrail.error_message": "The security token included in the request is invalid.",
      "token.failure_reason": "unknown",
      **own(4, "GetCallerIdentity", "sts.amazonaws.com", "203.0.113.66",
            "python-requests/2.31.0")}),
    # 5 the session key after it expired.
    ("token.auth_failed", ns("2024-05-02T10:30:00Z"),
     {"log.record.uid": uid(5), **SESSION_KEY, "token.outcome": "failure",
      "cloudtrail.error_message": "The provided token has expired.",
      "token.failure_reason": "expired", **own(5, "ListBuckets", "s3.amazonaws.com")}),
    # 6 ConsoleLogin: no key, no event.
    # 7 CreateAccessKey refused: only the caller's key, denied; no key created.
    ("token.access_denied", ns("2024-05-02T11:30:00Z"),
     {"log.record.uid": uid(7), **SESSION_KEY, "token.outcome": "failure",
      "cloudtrail.error_message": "User: arn:aws:iam::111122223333:user/alice is not authorized "
      "to perform: iam:CreateAccessKey on resource: user bob",
      "token.failure_reason": "permission_denied",
      **own(7, "CreateAccessKey", "iam.amazonaws.com")}),
    # 8 CreateAccessKey without userName: a key of the caller's own.
    ("token.used", ns("2024-05-02T12:00:00Z"),
     {"log.record.uid": uid(8, ":used"), **ALICE_KEY,
      **own(8, "CreateAccessKey", "iam.amazonaws.com")}),
    ("token.created", ns("2024-05-02T12:00:00Z"),
     {"token.id": "AKIAEXAMPLEALICE0002", "token.type": "aws_access_key", "user.id": "alice",
      "log.record.uid": uid(8), "token.actor.id": ALICE,
      **own(8, "CreateAccessKey", "iam.amazonaws.com")}),
]  # fmt: skip


@pytest.mark.parametrize("line", range(1, len(VENDOR_EXPECTED) + 1))
def test_each_record_of_aws_documentation(line: int) -> None:
    assert len(SAMPLES) == len(VENDOR_EXPECTED)
    assert mapped("cloudtrail", SAMPLES[line - 1]) == VENDOR_EXPECTED[line - 1]


@pytest.mark.parametrize("line", range(1, len(THIRD_PARTY_EXPECTED) + 1))
def test_each_key_lifecycle_record(line: int) -> None:
    assert len(THIRD_PARTY) == len(THIRD_PARTY_EXPECTED)
    assert mapped("cloudtrail", THIRD_PARTY[line - 1]) == THIRD_PARTY_EXPECTED[line - 1]


def test_a_whole_log_file_gives_the_events_of_its_records_in_order() -> None:
    assert mapped("cloudtrail", OWN_FILE) == OWN_EXPECTED


def test_each_event_keeps_its_own_record_not_the_file() -> None:
    records = orjson.loads(OWN_FILE)["Records"]
    assert kept("cloudtrail", OWN_FILE)[:3] == [records[0], records[0], records[1]]


def test_the_session_token_is_the_secret_and_kept_nowhere_else() -> None:
    [used, created] = kept("cloudtrail", SAMPLES[1])
    assert used == created
    assert used["responseElements"]["credentials"]["sessionToken"] == "[token.value]"
    assert "encoded session token blob" not in orjson.dumps(used).decode()


def test_a_record_parsed_maps_as_its_line() -> None:
    for line in SAMPLES + THIRD_PARTY:
        assert mapped("cloudtrail", orjson.loads(line)) == mapped("cloudtrail", line)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"Records": {}}', "cloudtrail file's Records is not a list"),
        ('{"Records": [1]}', r"cloudtrail file's Records\[0\] is not an object"),
        ('{"eventTime": "2024-01-01T00:00:00Z"}', "cloudtrail record has no eventName"),
        ('{"eventName": "ListBuckets"}', "cloudtrail record has no valid time in eventTime"),
    ],
)
def test_a_malformed_record_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("cloudtrail", raw)
