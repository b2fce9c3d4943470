"""The Kubernetes audit log: OpenShift's documented Events and the project's own (TokenRequests,
requests made with a service-account token), field by field."""

from __future__ import annotations

import orjson
import pytest
from source_samples import fixture_lines, kept, mapped

from tokenotel.errors import SourceRecordError
from vendor_samples import vendor_lines

SAMPLES = vendor_lines("k8s-audit.jsonl")
NODE_LOGS = vendor_lines("k8s-audit-oc-node-logs.log")
OWN = fixture_lines("kubernetes", "audit.jsonl")


def account(name: str, legacy: bool = False) -> dict:
    """A request made by a service account whose token the server does not name: the
    account stands for its token."""
    attributes = {
        "token.id": f"system:serviceaccount:{name}",
        "token.type": "service_account",
        "token.principal.type": "service_account",
    }
    if legacy:
        attributes["kubernetes.legacy_token"] = "true"
    attributes["user.id"] = f"system:serviceaccount:{name}"
    return attributes


def request(audit_id: str, address: str, agent: str, uri: str, verb: str, code: int) -> dict:
    return {
        "token.source": "kubernetes",
        "token.request.id": audit_id,
        "client.address": address,
        "user_agent.original": agent,
        "url.path": uri,
        "kubernetes.verb": verb,
        "http.response.status_code": code,
    }


OPERATOR = "(linux/amd64) kubernetes/$Format"
VENDOR_EXPECTED = [
    [
        (
            "token.used",
            1585816040200962000,
            {
                "log.record.uid": "kubernetes:ad209ce1-fec7-4130-8192-c4cc63f1d8cd",
                **account("openshift-kube-controller-manager:localhost-recovery-client"),
                **request(
                    "ad209ce1-fec7-4130-8192-c4cc63f1d8cd",
                    "::1",
                    f"cluster-kube-controller-manager-operator/v0.0.0 {OPERATOR}",
                    "/api/v1/namespaces/openshift-kube-controller-manager/configmaps/"
                    "cert-recovery-controller-lock?timeout=35s",
                    "update",
                    200,
                ),
            },
        )
    ],
    [
        (
            "token.used",
            1615226524086545000,
            {
                "log.record.uid": "kubernetes:381acf6d-5f30-4c7d-8175-c9c317ae5893",
                **account("openshift-monitoring:prometheus-k8s"),
                **request(
                    "381acf6d-5f30-4c7d-8175-c9c317ae5893",
                    "10.129.2.6",
                    "Prometheus/2.23.0",
                    "/metrics",
                    "get",
                    200,
                ),
            },
        )
    ],
    [
        (
            "token.used",
            1615226802512619000,
            {
                "log.record.uid": "kubernetes:cfce8a0b-b5f5-4365-8c9f-79c1227d10f9",
                # authentication.k8s.io/legacy-token: a secret-based token of the account.
                **account(
                    "openshift-kube-scheduler-operator:openshift-kube-scheduler-operator",
                    legacy=True,
                ),
                **request(
                    "cfce8a0b-b5f5-4365-8c9f-79c1227d10f9",
                    "10.128.0.8",
                    f"cluster-kube-scheduler-operator/v0.0.0 {OPERATOR}",
                    "/api/v1/namespaces/openshift-kube-scheduler/serviceaccounts/"
                    "openshift-kube-scheduler-sa",
                    "get",
                    200,
                ),
            },
        )
    ],
    [
        (
            "token.used",
            1615225663653187000,
            {
                "log.record.uid": "kubernetes:dd4c44e2-3ea1-4830-9ab7-c91a5f1388d6",
                **account("openshift-monitoring:prometheus-k8s"),
                **request(
                    "dd4c44e2-3ea1-4830-9ab7-c91a5f1388d6",
                    "10.0.32.4",  # the first of sourceIPs
                    f"dockerregistry/v0.0.0 {OPERATOR}",
                    "/apis/user.openshift.io/v1/users/~",
                    "get",
                    200,
                ),
            },
        )
    ],
    [],  # an anonymous login to OpenShift's OAuth server: no token
]

JTI = "JTI=8d0e6b1a-5c4f-4a3e-9b2d-7f6e5d4c3b2a"
API_CLIENT = {
    "token.id": JTI,
    "token.type": "service_account_token",
    "token.principal.type": "service_account",
    "user.id": "system:serviceaccount:payments:api-client",
}
AGENT = "api-client/1.4.0 (linux/amd64)"
OWN_EXPECTED = [
    # The kubelet asks a token for a pod's service account (its own certificate is no token).
    [
        (
            "token.created",
            1714644000100000000,
            {
                "token.id": JTI,
                "token.type": "service_account_token",
                "user.id": "system:serviceaccount:payments:api-client",
                "token.principal.type": "service_account",
                "log.record.uid": "kubernetes:4f0b7a52-1d2e-4c3b-9a8d-000000000001",
                "token.actor.id": "system:node:worker-1",
                **request(
                    "4f0b7a52-1d2e-4c3b-9a8d-000000000001",
                    "10.0.1.21",
                    "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
                    "/api/v1/namespaces/payments/serviceaccounts/api-client/token",
                    "create",
                    201,
                ),
            },
        )
    ],
    # The pod reads a secret with that token.
    [
        (
            "token.used",
            1714644060000000000,
            {
                "log.record.uid": "kubernetes:4f0b7a52-1d2e-4c3b-9a8d-000000000002",
                **API_CLIENT,
                **request(
                    "4f0b7a52-1d2e-4c3b-9a8d-000000000002",
                    "10.244.1.17",
                    AGENT,
                    "/api/v1/namespaces/payments/secrets/db-credentials",
                    "get",
                    200,
                ),
            },
        )
    ],
    # And is forbidden to list kube-system's.
    [
        (
            "token.access_denied",
            1714644120000000000,
            {
                "log.record.uid": "kubernetes:4f0b7a52-1d2e-4c3b-9a8d-000000000003",
                **API_CLIENT,
                "token.outcome": "failure",
                "token.failure_reason": "permission_denied",
                **request(
                    "4f0b7a52-1d2e-4c3b-9a8d-000000000003",
                    "10.244.1.17",
                    AGENT,
                    "/api/v1/namespaces/kube-system/secrets",
                    "list",
                    403,
                ),
            },
        )
    ],
    [],  # the same request at stage RequestReceived
    # kubectl create token, audited at RequestResponse: the token is in the response.
    [
        (
            "token.created",
            1714647600000000000,
            {
                "token.id": "JTI=1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b",
                "token.type": "service_account_token",
                "user.id": "system:serviceaccount:ci:deployer",
                "token.principal.type": "service_account",
                "kubernetes.audiences": ["https://kubernetes.default.svc.cluster.local"],
                "token.expires_at": "2024-05-02T12:00:00Z",
                "token.value": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2UifQ.eyJzdWIiOiJzeXN0ZW06c2Vy"
                "dmljZWFjY291bnQ6Y2k6ZGVwbG95ZXIifQ.ZmFrZS1zaWduYXR1cmUtZm9yLXRlc3Rz",
                "log.record.uid": "kubernetes:4f0b7a52-1d2e-4c3b-9a8d-000000000005",
                "token.actor.id": "alice@example.com",
                **request(
                    "4f0b7a52-1d2e-4c3b-9a8d-000000000005",
                    "198.51.100.61",
                    "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
                    "/api/v1/namespaces/ci/serviceaccounts/deployer/token",
                    "create",
                    201,
                ),
            },
        )
    ],
]


@pytest.mark.parametrize("line", range(1, len(VENDOR_EXPECTED) + 1))
def test_each_event_of_the_documentation(line: int) -> None:
    assert len(SAMPLES) == len(VENDOR_EXPECTED)
    assert mapped("kubernetes", SAMPLES[line - 1]) == VENDOR_EXPECTED[line - 1]


def test_a_node_logs_line_is_read_after_its_node_name() -> None:
    # kube:admin with an OpenShift OAuth token the server does not name: no token event.
    [line] = NODE_LOGS
    assert line.startswith("ip-10-0-140-97.ec2.internal {")
    assert mapped("kubernetes", line) == []
    event = orjson.loads(line.split(" ", 1)[1])
    event["user"]["extra"]["authentication.kubernetes.io/credential-id"] = ["JTI=abc"]
    [(name, _, attributes)] = mapped("kubernetes", "node-1 " + orjson.dumps(event).decode())
    # A 404 is the request's failure, not the token's: a use, with its status.
    assert (name, attributes["token.id"], attributes["http.response.status_code"]) == (
        "token.used",
        "JTI=abc",
        404,
    )
    assert "token.outcome" not in attributes
    assert attributes["log.record.uid"] == "kubernetes:6e96c88b-ab6f-44d2-b62e-d1413efd676b"


@pytest.mark.parametrize("line", range(1, len(OWN_EXPECTED) + 1))
def test_each_own_event(line: int) -> None:
    assert len(OWN) == len(OWN_EXPECTED)
    assert mapped("kubernetes", OWN[line - 1]) == OWN_EXPECTED[line - 1]


def test_the_issued_token_is_kept_nowhere_but_token_value() -> None:
    [event] = kept("kubernetes", OWN[4])
    assert event["responseObject"]["status"]["token"] == "[token.value]"
    assert event["requestObject"]["status"]["token"] == ""
    assert kept("kubernetes", SAMPLES[0]) == [orjson.loads(SAMPLES[0])]
    for line in SAMPLES + OWN:
        assert mapped("kubernetes", orjson.loads(line)) == mapped("kubernetes", line)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"kind": "Pod"}', "kubernetes record is not an audit Event"),
        (
            '{"kind": "Event", "auditID": "a", "stage": "ResponseComplete"}',
            "kubernetes record has no valid time in requestReceivedTimestamp",
        ),
    ],
)
def test_a_malformed_event_says_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(SourceRecordError, match=message):
        mapped("kubernetes", raw)
