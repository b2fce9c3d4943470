"""Every raw secret the vendors' samples and the project's fixtures hold comes out in
``token.value`` alone: in no other attribute, not in the kept original record, not in the
event id."""

from __future__ import annotations

import pytest
from source_samples import FIXTURES, fixture_lines

from tokenotel.errors import SourceRecordError
from tokenotel.sources import SOURCES
from tokenotel.sources.record import TokenRecord
from vendor_samples import vendor_lines

#: Each source's records: vendor sample files, and the project's own fixture files.
RECORDS = {
    "vault": (["vault-audit.jsonl"], ["audit.jsonl"]),
    "github": (
        ["github-audit.jsonl", "github-ghes-audit-syslog.log"],
        ["audit-log.jsonl", "ghes-syslog.log"],
    ),
    "cloudtrail": (["cloudtrail.jsonl", "cloudtrail.elastic-thirdparty.jsonl"], ["log-file.json"]),
    "okta": (["okta-system-log.jsonl"], ["system-log.jsonl"]),
    "gitlab": (["gitlab-audit.jsonl"], ["audit-events.jsonl"]),
    "kubernetes": (["k8s-audit.jsonl", "k8s-audit-oc-node-logs.log"], ["audit.jsonl"]),
    "kong": (["kong-file-log.jsonl"], ["file-log.jsonl"]),
    "nginx": ([], ["access.log"]),
    "envoy": ([], ["access.jsonl"]),
}  # fmt: skip

#: The raw secrets in those records (every one made up, or a documentation placeholder).
SECRETS = [
    "hvs.CAESIFakeRawVaultTokenForTests0000000000000000",  # Vault with log_raw
    "<encoded session token blob>",  # CloudTrail's STS session token (AWS's placeholder)
    "2b64e2f0193851d4135a2e885cd08a65",  # the API key an old Kong logged
    "kong-fake-api-key-0000000000000001",
    "kong-fake-invalid-key-00000000000002",
    "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJmYWtlLWlzc3VlciJ9.ZmFrZS1zaWduYXR1cmU",
    "nginx-fake-query-key-000000000003",
    "envoy-fake-bearer-token-00000000000004",
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2UifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y2k6ZGVw"
    "bG95ZXIifQ.ZmFrZS1zaWduYXR1cmUtZm9yLXRlc3Rz",  # a Kubernetes TokenRequest's token
]


def events(source: str, line: str) -> list[TokenRecord]:
    try:
        return SOURCES[source].records(line)
    except SourceRecordError:
        return []  # (a record refused as malformed keeps nothing)


def all_records() -> list[tuple[str, str, str]]:
    records = []
    for source, (vendor_files, own_files) in RECORDS.items():
        for name in vendor_files:
            records += [(source, name, line) for line in vendor_lines(name)]
        for name in own_files:
            assert (FIXTURES / source / name).is_file(), f"{source}/{name}"
            records += [(source, name, line) for line in fixture_lines(source, name)]
    return records


RECORD_LINES = all_records()


def test_every_source_is_checked_and_every_secret_is_found() -> None:
    assert set(RECORDS) == set(SOURCES)
    values = {
        record.attributes.get("token.value")
        for source, _, line in RECORD_LINES
        for record in events(source, line)
    }
    assert set(SECRETS) <= values  # the list is of secrets the mappings do find


@pytest.mark.parametrize(("source", "name", "line"), RECORD_LINES)
def test_no_secret_outside_token_value(source: str, name: str, line: str) -> None:
    for record in events(source, line):
        for key, value in record.attributes.items():
            if key == "token.value":
                assert value in SECRETS
                continue
            texts = value if isinstance(value, list) else [str(value)]
            for text in texts:
                for secret in SECRETS:
                    assert secret not in text, f"{name}: {key} holds a secret"
