"""A generated quarter (2026-Q3) of token events whose report is known: the events, the OTLP
requests that carry them (a day a request, in time order, as the service would have received
them), and the answers the report must give, case by case.

Five sources: a gateway that reports every 45 minutes (but for one silence of six hours), and
github, vault, an identity provider and two application services that report now and then.
Some events fall before the quarter and after it: they count in the inventory as of the end
(those before it) and in the retention section, never in the period's figures.

The cases, each with its answer below:

- rotation: a token 120 days old never rotated; one rotated 100 days after creation (its
  successor is 50 days old, with no expiry); one rotated after 30 days; a token exactly 90
  days old (not older than the policy); one valid exactly 90 days (not long-lived); one
  without expiry and one valid for a year;
- dormant: a token last used 120 days before the end, one never used and issued 95 days
  before it, and one last used exactly 90 days before it (not dormant);
- revocation: a leak revoked 30 hours later (late), a refresh-token reuse revoked after two
  hours, a leak retired by a rotation, a leak revoked exactly 24 hours later, leaks never
  revoked (one of them revoked only after the end), a leak on a token revoked before it, a
  leak on a token disabled and enabled again before it, detections before and after the
  quarter, an owner removed with two tokens (one revoked six hours later, one never), and an
  owner removed after her token's leak;
- uses after the end of a token: revoked (from an address and without one), rotated,
  expired and disabled tokens used successfully, and a failed use of a revoked token;
- privilege: admin, write:*, the literal scope '*'; a scope change on a privileged token, one
  that withdraws a broad scope, one on a token the trail never saw created, one on a
  read-only token, and one before the quarter;
- failures: reasons, a burst, a spray, a brute force from an IPv6 address, a failure without
  an address, access denied and refresh failures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otlp_builders import key_values, log_record

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MS = 1_000_000

PERIOD = "2026-Q3"


def at(text: str) -> int:
    """``2026-08-10T09:00`` (UTC) in ns."""
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * SECOND


def rfc3339(ns: int | None) -> str | None:
    """A time as the report writes it: RFC 3339 UTC to the second."""
    if ns is None:
        return None
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ns // SECOND)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


SINCE = at("2026-07-01T00:00")
UNTIL = at("2026-10-01T00:00")

# -- sources and services ---------------------------------------------------------------------

SERVICES = {
    "gateway": ("api-gateway", "edge-proxy"),
    "github": ("github-audit",),
    "vault": ("vault-audit",),
    "idp": ("auth-server",),
    "app": ("billing-api", "orders-api"),
}
#: The gateway reports every 45 minutes; it is silent from GAP_FROM to GAP_UNTIL.
GATEWAY_EVERY = 45 * MINUTE
GATEWAY_FROM = at("2026-06-28T00:00")
GATEWAY_UNTIL = at("2026-10-03T00:00")
GAP_FROM = at("2026-08-15T12:00")
GAP_UNTIL = GAP_FROM + 6 * HOUR
GATEWAY_IPS = ("198.51.100.20", "198.51.100.21", "198.51.100.22", "198.51.100.23")

# -- the tokens -------------------------------------------------------------------------------

#: Six service tokens the gateway sees, created before the quarter, valid 90 days and rotated
#: in time (54 days later) into ``<id>b``.
SLOTS = ("billing", "orders", "search", "reports", "ingest", "deploy")


def slot_token(i: int, rotated: bool = False) -> str:
    return f"tok-svc-{i:02d}" + ("b" if rotated else "")


def slot_created(i: int) -> int:
    return at("2026-06-27T00:00") + i * HOUR


def slot_rotated(i: int) -> int:
    return at("2026-08-20T00:07") + i * HOUR


def slot_scopes(i: int) -> list[str]:
    return ["read:api", "write:api"] if i in (2, 5) else ["read:api"]


CI_LEGACY_CREATED = UNTIL - 120 * DAY  # 2026-06-03
DEPLOY_V1_CREATED = UNTIL - 150 * DAY  # 2026-05-04
DEPLOY_ROTATED = DEPLOY_V1_CREATED + 100 * DAY  # 2026-08-12: late
WEB_V1_CREATED = UNTIL - 100 * DAY  # 2026-06-23
WEB_ROTATED = WEB_V1_CREATED + 30 * DAY  # 2026-07-23: in time
AGE_90_CREATED = UNTIL - 90 * DAY  # 2026-07-03: exactly the policy's age
DORMANT_CREATED = UNTIL - 200 * DAY  # 2026-03-15: the oldest event
DORMANT_LAST_USED = UNTIL - 120 * DAY  # 2026-06-03
NEVER_USED_CREATED = UNTIL - 95 * DAY  # 2026-06-28
IDLE_90_LAST_USED = UNTIL - 90 * DAY  # 2026-07-03: exactly the policy's idle time
PARTNER_CREATED = at("2026-07-10T00:00")
OPS_NOEXP_CREATED = at("2026-08-01T00:00")

LEAK_AT = at("2026-08-10T09:00")
LEAK_REVOKED = LEAK_AT + 30 * HOUR
REUSE_AT = at("2026-08-20T14:00")
REUSE_REVOKED = REUSE_AT + 2 * HOUR
LEAK_OPEN_AT = at("2026-09-05T12:00")
LEAK_ROTATED_AT = at("2026-07-15T08:00")
LEAK_24H_AT = at("2026-09-12T00:00")
LEAK_LATE_END_AT = UNTIL - 30 * HOUR
LEAK_FRESH_AT = UNTIL - 10 * HOUR
REENABLED_LEAK_AT = at("2026-08-01T00:00")
ALREADY_REVOKED_AT = at("2026-07-10T00:00")
ALREADY_LEAK_AT = at("2026-07-12T06:00")
OWNER_REMOVED_AT = at("2026-09-08T17:00")

SPRAY_IP, SPRAY_TOKENS = "203.0.113.99", 16
BRUTE_IP, BRUTE_TOKEN, BRUTE_FAILURES = "2001:db8::5", "tok-ops-noexp", 22
BURST_TOKEN, BURST_IP, BURST_FAILURES = "tok-svc-03b", "198.51.100.23", 12
ATTACKER_IP = "203.0.113.77"

# -- the answers ------------------------------------------------------------------------------

SOURCES = sorted(SERVICES)
SERVICE_NAMES = sorted(s for names in SERVICES.values() for s in names)
#: Section 1: the one silence of a source that usually reports.
SOURCE_GAPS = [["gateway", rfc3339(GAP_FROM), rfc3339(GAP_UNTIL), 6.0]]

#: The service's own counters (service_minutes, docs/schema.md) as services running in the
#: quarter wrote them: (minute, instance, requests, refused, stored, ignored, rejected, inserts,
#: failed inserts, workers replaced). Two instances in one minute; three failing minutes in a
#: row (rejections, then a failed insert, then a refusal and a worker replaced), a minute that
#: failed at nothing after them, a failing minute alone, and one after the quarter.
SERVICE_MINUTES = [
    (at("2026-08-03T10:00"), "node-a", 40, 0, 900, 3, 5, 4, 0, 0),
    (at("2026-08-03T10:00"), "node-b", 10, 0, 300, 0, 2, 1, 0, 0),
    (at("2026-08-03T10:01"), "node-a", 35, 0, 800, 0, 0, 3, 2, 0),
    (at("2026-08-03T10:02"), "node-a", 50, 7, 950, 0, 0, 4, 0, 1),
    (at("2026-08-03T10:03"), "node-a", 20, 0, 500, 0, 0, 2, 0, 0),
    (at("2026-09-14T23:59"), "node-b", 5, 0, 0, 0, 0, 0, 3, 0),
    (at("2026-10-01T00:00"), "node-a", 5, 0, 0, 0, 9, 0, 0, 0),
]
#: Section 1: the stretches in which the service failed (from, until, records rejected,
#: inserts failed, requests refused, workers replaced), and the minutes it wrote counters for.
SERVICE_FAILING = [
    [rfc3339(at("2026-08-03T10:00")), rfc3339(at("2026-08-03T10:03")), 7, 2, 7, 1],
    [rfc3339(at("2026-09-14T23:59")), rfc3339(at("2026-09-15T00:00")), 0, 3, 0, 0],
]
SERVICE_MINUTES_RECORDED = 5

#: Section 2: the status of each token as it stood at the end.
STATUS_AT_END = {
    "tok-ci-legacy": "active",
    "tok-deploy-v1": "rotated",
    "tok-deploy-v2": "active",
    "tok-web-v1": "rotated",
    "tok-web-v2": "active",
    "tok-svc-01": "rotated",
    "tok-svc-01b": "active",
    "tok-leaked": "revoked",
    "rt-mobile-7": "revoked",
    "tok-leak-open": "active",
    "tok-leak-rotated": "rotated",
    "tok-leak-rotated-2": "active",
    "tok-leak-24h": "revoked",
    "tok-leak-late-end": "active",  # revoked two hours after the end
    "tok-nora-ci": "revoked",
    "tok-nora-cli": "active",  # its owner was removed
    "tok-reenabled": "active",
    "tok-revoked-then-leaked": "revoked",
    "tok-pre-leak": "revoked",
    "tok-after-leak": "active",
    "tok-root-star": "revoked",
    "tok-temp-debug": "expired",  # its expiry passed; no token.expired event
    "tok-expired-evt": "expired",  # a token.expired event
    "rt-web-3": "expired",
    "rt-web-2": "expired",
    "tok-contractor": "disabled",
    "tok-dormant": "active",
    "tok-never-used": "active",
    "tok-legacy-admin": "active",
}

#: Section 3: rows of the rotation table (token, owner, issued, age in days, rotated in,
#: expires, findings) for the known cases; the successor of a rotation in time, valid exactly
#: 90 days, has no finding.
ROTATION_ROWS = {
    "tok-ci-legacy": [
        "tok-ci-legacy", "ci-runner", rfc3339(CI_LEGACY_CREATED), 120.0, None,
        rfc3339(CI_LEGACY_CREATED + 180 * DAY), "older than the policy, never rotated, long-lived",
    ],
    "tok-deploy-v2": [
        "tok-deploy-v2", "deploy-bot", rfc3339(DEPLOY_ROTATED), 50.0, rfc3339(DEPLOY_ROTATED),
        None, "no expiry",
    ],
    "tok-age-90": [
        "tok-age-90", "svc-batch", rfc3339(AGE_90_CREATED), 90.0, None,
        rfc3339(AGE_90_CREATED + 91 * DAY), "never rotated, long-lived",
    ],
    "tok-ops-noexp": [
        "tok-ops-noexp", "alice", rfc3339(OPS_NOEXP_CREATED), 61.0, None, None,
        "never rotated, no expiry",
    ],
    "tok-partner-1y": [
        "tok-partner-1y", "partner-co", rfc3339(PARTNER_CREATED), 83.0, None,
        rfc3339(PARTNER_CREATED + 365 * DAY), "never rotated, long-lived",
    ],
}  # fmt: skip
NO_ROTATION_FINDING = ("tok-web-v2", "tok-svc-01b", "tok-svc-06b")

#: Section 4: the dormant tokens (token, owner, issued, last used, idle days).
DORMANT_ROWS = [
    ["tok-dormant", "svc-legacy-sync", rfc3339(DORMANT_CREATED), rfc3339(DORMANT_LAST_USED),
     120.0],
    ["tok-never-used", "svc-report", rfc3339(NEVER_USED_CREATED), None, 95.0],
]  # fmt: skip

#: Section 5: every detection and owner's removal of the quarter (token, started by, started,
#: revoked, how, hours, verdict). A token disabled and enabled again before its leak was not
#: revoked when the leak was found.
REVOCATION_ROWS = [
    ["tok-leaked", "token.leak_detected", rfc3339(LEAK_AT), rfc3339(LEAK_REVOKED),
     "token.revoked", 30.0, "late"],
    ["rt-mobile-7", "token.reuse_detected", rfc3339(REUSE_AT), rfc3339(REUSE_REVOKED),
     "token.revoked", 2.0, "within SLA"],
    ["tok-leak-rotated", "token.leak_detected", rfc3339(LEAK_ROTATED_AT),
     rfc3339(LEAK_ROTATED_AT + 5 * HOUR), "token.rotated", 5.0, "within SLA"],
    ["tok-leak-24h", "token.leak_detected", rfc3339(LEAK_24H_AT),
     rfc3339(LEAK_24H_AT + 24 * HOUR), "token.revoked", 24.0, "within SLA"],
    ["tok-leak-open", "token.leak_detected", rfc3339(LEAK_OPEN_AT), None, "", 612.0,
     "not revoked (overdue)"],
    ["tok-leak-late-end", "token.leak_detected", rfc3339(LEAK_LATE_END_AT), None, "", 30.0,
     "not revoked (overdue)"],
    ["tok-leak-fresh", "token.leak_detected", rfc3339(LEAK_FRESH_AT), None, "", 10.0,
     "not revoked"],
    ["tok-reenabled", "token.leak_detected", rfc3339(REENABLED_LEAK_AT), None, "", 1464.0,
     "not revoked (overdue)"],
    ["tok-revoked-then-leaked", "token.leak_detected", rfc3339(ALREADY_LEAK_AT),
     rfc3339(ALREADY_REVOKED_AT), "token.revoked", None, "already revoked"],
    ["tok-nora-ci", "token.owner_removed", rfc3339(OWNER_REMOVED_AT),
     rfc3339(OWNER_REMOVED_AT + 6 * HOUR), "token.revoked", 6.0, "within SLA"],
    ["tok-nora-cli", "token.owner_removed", rfc3339(OWNER_REMOVED_AT), None, "", 535.0,
     "not revoked (overdue)"],
]  # fmt: skip
REVOCATION_FIGURES = {
    "detections": 9, "owner_removals": 2, "within_sla": 5, "late": 1, "not_revoked": 5,
}  # fmt: skip

#: Section 5: successful uses after revocation or expiry (token, status at use, uses, first,
#: last, addresses); a use without an address adds no address.
USED_AFTER_END_ROWS = [
    ["tok-leaked", "revoked", 2, rfc3339(at("2026-08-12T08:00")),
     rfc3339(at("2026-08-12T09:30")), 1],
    ["tok-svc-01", "rotated", 1, rfc3339(at("2026-08-21T10:10")),
     rfc3339(at("2026-08-21T10:10")), 1],
    ["tok-temp-debug", "expired", 3, rfc3339(at("2026-09-03T10:00")),
     rfc3339(at("2026-09-03T12:00")), 1],
    ["tok-contractor", "disabled", 1, rfc3339(at("2026-09-15T10:00")),
     rfc3339(at("2026-09-15T10:00")), 1],
]  # fmt: skip

#: Section 6: the tokens carrying a broad scope (admin, write:*, the scope '*'), and whether
#: active at the end.
PRIVILEGED = {
    "tok-admin-ops": True,
    "tok-legacy-admin": True,
    "tok-deploy-v2": True,
    "tok-partner-1y": True,
    "tok-svc-02b": True,
    "tok-svc-05b": True,
    "tok-root-star": False,
    "tok-deploy-v1": False,
    "tok-leaked": False,
    "tok-svc-02": False,
    "tok-svc-05": False,
}
#: Created by: the actor of its creation, else of the rotation that issued it, else unknown.
CREATED_BY = {
    "tok-admin-ops": "alice",
    "tok-deploy-v2": "bob",
    "tok-svc-02b": "ci-bot",
    "tok-legacy-admin": "",  # never created in the trail; an update names another actor
}
#: Scope changes in the quarter that touch privilege (time, token, actor, event, added,
#: removed); the change on a read-only token and the one before the quarter are not.
SCOPE_CHANGES = [
    [rfc3339(at("2026-08-05T09:00")), "tok-legacy-admin", "dave", "token.updated", "write:org",
     ""],
    [rfc3339(at("2026-08-18T11:00")), "tok-admin-ops", "carol", "token.updated", "write:org",
     "read:user"],
    [rfc3339(at("2026-09-02T15:00")), "tok-ci-legacy", "carol", "token.updated", "",
     "write:org"],
]  # fmt: skip

# -- the events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    time_ns: int
    name: str
    source: str
    service: str
    attributes: dict[str, Any]


def iso(ns: int) -> str:
    return rfc3339(ns) or ""


class Quarter:
    """The events of the scenario, added case by case."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(
        self, time_ns: int, name: str, source: str, token: str, service: str = "", **attrs: Any
    ) -> None:
        attributes = {"token.id": token, "token.source": source}
        for key, value in attrs.items():
            if value is not None:
                attributes[_ATTRIBUTE[key]] = value
        self.events.append(Event(time_ns, name, source, service or SERVICES[source][0], attributes))

    def created(
        self,
        time_ns: int,
        source: str,
        token: str,
        owner: str,
        actor: str,
        kind: str,
        scopes: list[str],
        expires_ns: int | None,
        name: str = "",
    ) -> None:
        self.add(
            time_ns, "token.created", source, token, user=owner, actor=actor, type=kind,
            token_name=name or f"{token} ({kind})", scopes=scopes,
            expires=iso(expires_ns) if expires_ns is not None else None,
        )  # fmt: skip

    def rotated(
        self,
        time_ns: int,
        source: str,
        old: str,
        new: str,
        owner: str,
        actor: str,
        kind: str,
        scopes: list[str],
        expires_ns: int | None,
    ) -> None:
        self.add(
            time_ns, "token.rotated", source, new, previous=old, user=owner, actor=actor,
            type=kind, token_name=f"{new} ({kind})", scopes=scopes,
            expires=iso(expires_ns) if expires_ns is not None else None,
        )  # fmt: skip

    def uses(
        self,
        token: str,
        owner: str,
        first_ns: int,
        last_ns: int,
        every_days: int,
        ips: tuple[str, ...],
        service: str = "billing-api",
    ) -> None:
        """Successful uses from ``first_ns`` every ``every_days`` up to ``last_ns``."""
        n = 0
        while first_ns + n * every_days * DAY <= last_ns:
            self.add(
                first_ns + n * every_days * DAY, "token.used", "app", token, service,
                user=owner, ip=ips[n % len(ips)], route="/v1/orders",
            )  # fmt: skip
            n += 1


_ATTRIBUTE = {
    "user": "user.id",
    "actor": "token.actor.id",
    "type": "token.type",
    "token_name": "token.name",
    "scopes": "token.scopes",
    "expires": "token.expires_at",
    "previous": "token.previous_id",
    "ip": "client.address",
    "reason": "token.reason",
    "failure": "token.failure_reason",
    "outcome": "token.outcome",
    "added": "token.scopes_added",
    "removed": "token.scopes_removed",
    "route": "http.route",
}


def build() -> Quarter:
    q = Quarter()
    _service_tokens(q)
    _rotation_cases(q)
    _dormant_cases(q)
    _revocation_cases(q)
    _dead_uses(q)
    _privilege_cases(q)
    _failures(q)
    return q


def _service_tokens(q: Quarter) -> None:
    for i, slot in enumerate(SLOTS, 1):
        owner = f"svc-{slot}"
        q.created(
            slot_created(i), "vault", slot_token(i), owner, "ci-bot", "service_account",
            slot_scopes(i), slot_created(i) + 90 * DAY,
        )  # fmt: skip
        q.rotated(
            slot_rotated(i), "vault", slot_token(i), slot_token(i, True), owner, "ci-bot",
            "service_account", slot_scopes(i), slot_rotated(i) + 90 * DAY,
        )  # fmt: skip
    k = 0
    while GATEWAY_FROM + k * GATEWAY_EVERY < GATEWAY_UNTIL:
        t = GATEWAY_FROM + k * GATEWAY_EVERY
        k += 1
        if GAP_FROM < t < GAP_UNTIL:
            continue
        i = k % len(SLOTS) + 1
        token = slot_token(i, t >= slot_rotated(i))
        service = SERVICES["gateway"][k % 2]
        q.add(
            t, "token.used", "gateway", token, service, user=f"svc-{SLOTS[i - 1]}",
            ip=GATEWAY_IPS[k % len(GATEWAY_IPS)], route="/v1/search",
        )  # fmt: skip


def _rotation_cases(q: Quarter) -> None:
    # 120 days old at the end, never rotated; a broad scope withdrawn during the quarter.
    q.created(
        CI_LEGACY_CREATED, "github", "tok-ci-legacy", "ci-runner", "alice", "pat",
        ["read:repo"], CI_LEGACY_CREATED + 180 * DAY, "legacy CI",
    )  # fmt: skip
    q.uses("tok-ci-legacy", "ci-runner", at("2026-06-05T02:00"), at("2026-09-30T02:00"), 3,
           ("10.0.4.20",))  # fmt: skip
    # Rotated 100 days after creation; the successor has no expiry.
    q.created(
        DEPLOY_V1_CREATED, "github", "tok-deploy-v1", "deploy-bot", "bob", "pat",
        ["write:packages"], DEPLOY_V1_CREATED + 365 * DAY,
    )  # fmt: skip
    q.uses("tok-deploy-v1", "deploy-bot", at("2026-05-06T04:00"), at("2026-08-11T04:00"), 7,
           ("10.0.5.30",), "orders-api")  # fmt: skip
    q.rotated(DEPLOY_ROTATED, "github", "tok-deploy-v1", "tok-deploy-v2", "deploy-bot", "bob",
              "pat", ["write:packages"], None)  # fmt: skip
    q.uses("tok-deploy-v2", "deploy-bot", at("2026-08-13T04:00"), at("2026-10-02T04:00"), 7,
           ("10.0.5.30", "10.0.5.31"), "orders-api")  # fmt: skip
    # Rotated after 30 days into a token valid exactly 90 days.
    q.created(
        WEB_V1_CREATED, "github", "tok-web-v1", "web-team", "web-team", "pat", ["read:api"],
        WEB_V1_CREATED + 90 * DAY,
    )  # fmt: skip
    q.uses("tok-web-v1", "web-team", at("2026-06-24T05:00"), at("2026-07-22T05:00"), 4,
           ("10.0.6.40",))  # fmt: skip
    q.rotated(WEB_ROTATED, "github", "tok-web-v1", "tok-web-v2", "web-team", "web-team", "pat",
              ["read:api"], WEB_ROTATED + 90 * DAY)  # fmt: skip
    q.uses("tok-web-v2", "web-team", at("2026-07-24T05:00"), at("2026-10-02T05:00"), 4,
           ("10.0.6.40",))  # fmt: skip
    # Exactly 90 days old, valid 91 days.
    q.created(AGE_90_CREATED, "vault", "tok-age-90", "svc-batch", "alice", "api_key",
              ["read:api"], AGE_90_CREATED + 91 * DAY)  # fmt: skip
    q.uses("tok-age-90", "svc-batch", at("2026-07-04T06:00"), at("2026-09-30T06:00"), 10,
           ("10.0.8.8",))  # fmt: skip
    # No expiry; valid a year.
    q.created(OPS_NOEXP_CREATED, "vault", "tok-ops-noexp", "alice", "alice", "api_key",
              ["read:api"], None)  # fmt: skip
    q.uses("tok-ops-noexp", "alice", at("2026-08-02T07:00"), at("2026-09-30T07:00"), 6,
           ("192.0.2.10",))  # fmt: skip
    q.created(PARTNER_CREATED, "github", "tok-partner-1y", "partner-co", "bob", "pat",
              ["write:org", "read:org"], PARTNER_CREATED + 365 * DAY)  # fmt: skip
    q.uses("tok-partner-1y", "partner-co", at("2026-07-11T08:00"), at("2026-10-02T08:00"), 7,
           ("192.0.2.44",), "orders-api")  # fmt: skip


def _dormant_cases(q: Quarter) -> None:
    q.created(DORMANT_CREATED, "vault", "tok-dormant", "svc-legacy-sync", "ci-bot", "api_key",
              ["read:api"], DORMANT_CREATED + 365 * DAY)  # fmt: skip
    for t in (at("2026-04-01T09:00"), at("2026-05-01T09:00"), DORMANT_LAST_USED):
        q.add(t, "token.used", "app", "tok-dormant", "billing-api", user="svc-legacy-sync",
              ip="10.0.9.9")  # fmt: skip
    q.created(NEVER_USED_CREATED, "vault", "tok-never-used", "svc-report", "alice", "api_key",
              ["read:api"], NEVER_USED_CREATED + 180 * DAY)  # fmt: skip
    q.created(at("2026-05-01T00:00"), "vault", "tok-idle-90", "svc-archive", "alice",
              "api_key", ["read:api"], at("2026-12-01T00:00"))  # fmt: skip
    for t in (at("2026-05-02T00:00"), at("2026-06-02T00:00"), IDLE_90_LAST_USED):
        q.add(t, "token.used", "app", "tok-idle-90", "billing-api", user="svc-archive",
              ip="10.0.9.10")  # fmt: skip


#: Scopes a store and a report must keep exactly, whatever characters they hold.
LEAK_OPEN_SCOPES = ["read:repo", "it's", 'say "hi"', "back\\slash", "[a, b]", "tab\there", "ü"]


def _revocation_cases(q: Quarter) -> None:
    def pat(t: int, token: str, owner: str, scopes: list[str], days: int | None = 60) -> None:
        q.created(t, "github", token, owner, owner, "pat", scopes,
                  None if days is None else t + days * DAY)  # fmt: skip

    def leak(t: int, token: str, owner: str) -> None:
        q.add(t, "token.leak_detected", "github", token, user=owner)

    def revoke(t: int, token: str, reason: str, name: str = "token.revoked") -> None:
        q.add(t, name, "github", token, actor="sec-team", reason=reason)

    # Late: 30 hours; a second scanner reports it 40 minutes after the first.
    pat(at("2026-07-02T09:00"), "tok-leaked", "alice", ["repo", "write:repo"])
    q.uses("tok-leaked", "alice", at("2026-07-03T10:00"), at("2026-08-09T10:00"), 5,
           ("192.0.2.10",))  # fmt: skip
    leak(LEAK_AT, "tok-leaked", "alice")
    leak(LEAK_AT + 40 * MINUTE, "tok-leaked", "alice")
    revoke(LEAK_REVOKED, "tok-leaked", "leak")
    # A refresh token replayed, revoked two hours later.
    q.add(at("2026-08-01T00:00"), "token.created", "idp", "rt-mobile-7", user="bob",
          actor="bob", type="oauth_refresh", expires=iso(at("2026-11-01T00:00")))  # fmt: skip
    for n in range(6):
        q.add(at("2026-08-02T06:00") + n * 3 * DAY, "token.refreshed", "idp", "rt-mobile-7",
              user="bob", ip="198.51.100.150")  # fmt: skip
    q.add(REUSE_AT, "token.reuse_detected", "idp", "rt-mobile-7", user="bob", ip="203.0.113.200")
    q.add(REUSE_REVOKED, "token.revoked", "idp", "rt-mobile-7", actor="auth-server", reason="reuse")
    # Never revoked.
    pat(at("2026-07-20T00:00"), "tok-leak-open", "erin", LEAK_OPEN_SCOPES, None)
    q.uses("tok-leak-open", "erin", at("2026-07-21T11:00"), at("2026-09-30T11:00"), 6,
           ("192.0.2.11",))  # fmt: skip
    leak(LEAK_OPEN_AT, "tok-leak-open", "erin")
    # Retired by a rotation five hours later.
    pat(at("2026-07-01T10:00"), "tok-leak-rotated", "frank", ["read:repo"])
    q.uses("tok-leak-rotated", "frank", at("2026-07-02T12:00"), at("2026-07-14T12:00"), 3,
           ("192.0.2.12",))  # fmt: skip
    leak(LEAK_ROTATED_AT, "tok-leak-rotated", "frank")
    q.rotated(LEAK_ROTATED_AT + 5 * HOUR, "github", "tok-leak-rotated", "tok-leak-rotated-2",
              "frank", "frank", "pat", ["read:repo"], LEAK_ROTATED_AT + 80 * DAY)  # fmt: skip
    q.uses("tok-leak-rotated-2", "frank", at("2026-07-16T12:00"), at("2026-09-30T12:00"), 6,
           ("192.0.2.12",))  # fmt: skip
    # Revoked exactly 24 hours later: within the SLA.
    pat(at("2026-08-01T00:00"), "tok-leak-24h", "gina", ["read:repo"])
    q.uses("tok-leak-24h", "gina", at("2026-08-02T13:00"), at("2026-09-11T13:00"), 5,
           ("192.0.2.13",))  # fmt: skip
    leak(LEAK_24H_AT, "tok-leak-24h", "gina")
    revoke(LEAK_24H_AT + 24 * HOUR, "tok-leak-24h", "leak")
    # Revoked two hours after the end of the quarter: not revoked as of the end.
    pat(at("2026-09-01T00:00"), "tok-leak-late-end", "hank", ["read:repo"])
    q.uses("tok-leak-late-end", "hank", at("2026-09-02T14:00"), at("2026-09-29T14:00"), 4,
           ("192.0.2.14",))  # fmt: skip
    leak(LEAK_LATE_END_AT, "tok-leak-late-end", "hank")
    revoke(UNTIL + 2 * HOUR, "tok-leak-late-end", "leak")
    # Found ten hours before the end: open, not overdue yet.
    pat(at("2026-09-20T00:00"), "tok-leak-fresh", "ivan", ["read:repo"])
    leak(LEAK_FRESH_AT, "tok-leak-fresh", "ivan")
    # Disabled, enabled again, then leaked and never revoked.
    pat(at("2026-07-05T00:00"), "tok-reenabled", "judy", ["read:repo"], None)
    q.uses("tok-reenabled", "judy", at("2026-07-06T15:00"), at("2026-07-19T15:00"), 3,
           ("192.0.2.15",))  # fmt: skip
    revoke(at("2026-07-20T00:00"), "tok-reenabled", "suspicious", "token.disabled")
    revoke(at("2026-07-25T00:00"), "tok-reenabled", "cleared", "token.enabled")
    q.uses("tok-reenabled", "judy", at("2026-07-26T15:00"), at("2026-09-30T15:00"), 7,
           ("192.0.2.15",))  # fmt: skip
    leak(REENABLED_LEAK_AT, "tok-reenabled", "judy")
    # Revoked two days before its leak was found.
    pat(at("2026-06-15T00:00"), "tok-revoked-then-leaked", "kate", ["read:repo"])
    revoke(ALREADY_REVOKED_AT, "tok-revoked-then-leaked", "user")
    leak(ALREADY_LEAK_AT, "tok-revoked-then-leaked", "kate")
    # Detections before and after the quarter: not the quarter's.
    pat(at("2026-06-01T00:00"), "tok-pre-leak", "leo", ["read:repo"])
    leak(at("2026-06-25T00:00"), "tok-pre-leak", "leo")
    revoke(at("2026-07-02T00:00"), "tok-pre-leak", "leak")
    pat(at("2026-09-15T00:00"), "tok-after-leak", "mia", ["read:repo"])
    leak(at("2026-10-02T00:00"), "tok-after-leak", "mia")
    # Their owner removed: one token revoked six hours later, one never.
    for token, created in (
        ("tok-nora-ci", "2026-08-03T00:00"),
        ("tok-nora-cli", "2026-08-04T00:00"),
    ):
        pat(at(created), token, "nora", ["read:repo"], 90)
        q.uses(token, "nora", at(created) + HOUR, OWNER_REMOVED_AT - HOUR, 4, ("192.0.2.16",))
        q.add(OWNER_REMOVED_AT, "token.owner_removed", "idp", token, user="nora", actor="hr-sync")
    revoke(OWNER_REMOVED_AT + 6 * HOUR, "tok-nora-ci", "admin")
    # The owner of a leaked token removed after the leak: the leak started its clock.
    q.add(at("2026-09-20T00:00"), "token.owner_removed", "idp", "tok-leak-open", user="erin",
          actor="hr-sync")  # fmt: skip


def _dead_uses(q: Quarter) -> None:
    # The leaked token, used after its revocation: from an address, without one, and a
    # failed use that does not count.
    q.add(at("2026-08-12T08:00"), "token.used", "app", "tok-leaked", "billing-api",
          user="alice", ip=ATTACKER_IP)  # fmt: skip
    q.add(at("2026-08-12T09:30"), "token.used", "app", "tok-leaked", "billing-api",
          user="alice")  # fmt: skip
    q.add(at("2026-08-12T10:00"), "token.used", "app", "tok-leaked", "billing-api",
          user="alice", ip=ATTACKER_IP, outcome="failure")  # fmt: skip
    # A client still holding a rotated service token.
    q.add(at("2026-08-21T10:10"), "token.used", "gateway", slot_token(1), "api-gateway",
          user="svc-billing", ip="198.51.100.77")  # fmt: skip
    # Expired (its expiry passed; no event says so).
    q.created(at("2026-08-25T00:00"), "vault", "tok-temp-debug", "oncall", "oncall", "api_key",
              ["read:api"], at("2026-09-01T00:00"))  # fmt: skip
    q.add(at("2026-08-28T10:00"), "token.used", "app", "tok-temp-debug", "orders-api",
          user="oncall", ip="198.51.100.99")  # fmt: skip
    for hour in (10, 11, 12):
        q.add(at(f"2026-09-03T{hour}:00"), "token.used", "app", "tok-temp-debug", "orders-api",
              user="oncall", ip="198.51.100.99")  # fmt: skip
    q.created(at("2026-07-01T12:00"), "vault", "tok-expired-evt", "oncall", "oncall", "api_key",
              ["read:api"], None)  # fmt: skip
    q.add(at("2026-09-20T00:00"), "token.expired", "vault", "tok-expired-evt")
    # Disabled, then used.
    q.created(at("2026-07-15T00:00"), "vault", "tok-contractor", "contractor-x", "alice",
              "api_key", ["read:api"], at("2026-12-31T00:00"))  # fmt: skip
    q.uses("tok-contractor", "contractor-x", at("2026-07-16T16:00"), at("2026-09-09T16:00"), 6,
           ("192.0.2.99",))  # fmt: skip
    q.add(at("2026-09-10T00:00"), "token.disabled", "vault", "tok-contractor",
          actor="sec-team", reason="offboarded")  # fmt: skip
    q.add(at("2026-09-15T10:00"), "token.used", "app", "tok-contractor", "billing-api",
          user="contractor-x", ip="192.0.2.99")  # fmt: skip


def _privilege_cases(q: Quarter) -> None:
    q.created(at("2026-07-06T00:00"), "github", "tok-admin-ops", "alice", "alice", "pat",
              ["admin", "read:user"], at("2026-07-06T00:00") + 89 * DAY)  # fmt: skip
    q.uses("tok-admin-ops", "alice", at("2026-07-07T17:00"), at("2026-09-30T17:00"), 5,
           ("192.0.2.10", "192.0.2.16"))  # fmt: skip
    q.add(
        at("2026-08-18T11:00"),
        "token.updated",
        "github",
        "tok-admin-ops",
        actor="carol",
        added=["write:org"],
        removed=["read:user"],
        scopes=["admin", "write:org"],
    )
    # Known only from its uses (created before the trail began), then changed by dave.
    q.add(at("2026-06-10T18:00"), "token.used", "app", "tok-legacy-admin", "orders-api",
          user="ops-team", type="api_key", scopes="admin read:org", ip="10.0.7.7")  # fmt: skip
    q.uses("tok-legacy-admin", "ops-team", at("2026-06-17T18:00"), at("2026-09-28T18:00"), 7,
           ("10.0.7.7",), "orders-api")  # fmt: skip
    q.add(
        at("2026-08-05T09:00"),
        "token.updated",
        "vault",
        "tok-legacy-admin",
        actor="dave",
        added=["write:org"],
        scopes=["admin", "read:org", "write:org"],
    )
    # The ci token gained write:org before the quarter and lost it in it.
    q.add(
        at("2026-06-20T15:00"),
        "token.updated",
        "github",
        "tok-ci-legacy",
        actor="alice",
        added=["write:org"],
        scopes=["read:repo", "write:org"],
    )
    q.add(
        at("2026-09-02T15:00"),
        "token.updated",
        "github",
        "tok-ci-legacy",
        actor="carol",
        removed=["write:org"],
        scopes=["read:repo"],
    )
    # A read-only token gains another read scope: no privilege involved.
    q.created(at("2026-07-07T00:00"), "github", "tok-reader", "ann", "ann", "pat",
              ["read:repo"], at("2026-07-07T00:00") + 80 * DAY)  # fmt: skip
    q.uses("tok-reader", "ann", at("2026-07-08T19:00"), at("2026-09-24T19:00"), 5,
           ("192.0.2.30",))  # fmt: skip
    q.add(
        at("2026-08-22T10:00"),
        "token.updated",
        "github",
        "tok-reader",
        actor="ann",
        added=["read:packages"],
        scopes=["read:repo", "read:packages"],
    )
    # A root token (the scope '*'), revoked.
    q.created(at("2026-07-08T00:00"), "vault", "tok-root-star", "vault-admin", "vault-admin",
              "service_account", ["*"], None)  # fmt: skip
    q.add(at("2026-08-30T00:00"), "token.revoked", "vault", "tok-root-star", actor="vault-admin",
          reason="admin")  # fmt: skip


def _failures(q: Quarter) -> None:
    def fail(t: int, token: str, reason: str, ip: str | None, user: str | None = None,
             source: str = "app", service: str = "billing-api",
             name: str = "token.auth_failed") -> None:  # fmt: skip
        q.add(t, name, source, token, service, user=user, ip=ip, failure=reason)

    # Now and then, on tokens in use: four reasons, four addresses (one IPv6, one none).
    tokens = (("tok-ci-legacy", "ci-runner"), ("tok-legacy-admin", "ops-team"),
              ("tok-partner-1y", "partner-co"), ("tok-age-90", "svc-batch"))  # fmt: skip
    reasons = ("expired", "malformed", "insufficient_scope", "unknown")
    ips = ("10.0.4.20", "198.51.100.23", BRUTE_IP, None)
    for n in range(27):
        t = at("2026-07-12T21:00") + n * 3 * DAY + n * 7 * MINUTE
        token, owner = tokens[n % 4]
        fail(t, token, reasons[n % 3], ips[n % 4], owner if n % 5 else None,
             service=SERVICES["app"][n % 2])  # fmt: skip
    # Before and after the quarter.
    fail(at("2026-06-29T21:00"), "tok-ci-legacy", "expired", "10.0.4.20", "ci-runner")
    fail(at("2026-10-02T21:00"), "tok-ci-legacy", "unknown", "10.0.4.20", "ci-runner")
    # The revoked leaked token, tried twice more.
    for minute in (0, 5):
        fail(at(f"2026-08-13T08:{minute:02d}"), "tok-leaked", "revoked", ATTACKER_IP, "alice")
    # A vault login without an address.
    fail(at("2026-09-21T03:00"), "tok-ops-noexp", "unknown", None, None, "vault",
         "vault-audit")  # fmt: skip
    # A burst: twelve failures of one token in four minutes.
    for n in range(BURST_FAILURES):
        fail(at("2026-09-08T03:00") + n * 20 * SECOND, BURST_TOKEN, "expired", BURST_IP,
             "svc-search")  # fmt: skip
    # A spray: one address, sixteen guessed tokens.
    for n in range(SPRAY_TOKENS):
        fail(at("2026-08-27T02:00") + n * 10 * SECOND, f"tok-guess-{n + 1:02d}", "unknown",
             SPRAY_IP)  # fmt: skip
    # A brute force from an IPv6 address; the owner is named on the first ten only.
    for n in range(BRUTE_FAILURES):
        fail(at("2026-09-18T20:00") + n * 140 * SECOND, BRUTE_TOKEN, "malformed", BRUTE_IP,
             "alice" if n < 10 else None, service="orders-api")  # fmt: skip
    # Access denied, and failed refreshes.
    for day in range(24, 29):
        fail(at(f"2026-08-{day}T10:00"), "tok-reader", "insufficient_scope", "192.0.2.30",
             "ann", name="token.access_denied")  # fmt: skip
    fail(at("2026-10-02T10:00"), "tok-reader", "insufficient_scope", "192.0.2.30", "ann",
         name="token.access_denied")  # fmt: skip
    q.add(
        at("2026-07-03T00:00"),
        "token.created",
        "idp",
        "rt-web-3",
        user="web-team",
        actor="web-team",
        type="oauth_refresh",
        expires=iso(at("2026-08-02T00:00")),
    )
    for n in range(6):
        q.add(at("2026-07-05T06:30") + n * 5 * DAY, "token.refreshed", "idp", "rt-web-3",
              user="web-team", ip="198.51.100.160")  # fmt: skip
    for t, reason in ((at("2026-07-10T07:00"), "invalid_grant"),
                      (at("2026-07-20T07:00"), "invalid_grant"),
                      (at("2026-07-28T07:00"), "invalid_grant"),
                      (at("2026-08-05T07:00"), "expired"),
                      (at("2026-08-09T07:00"), "expired")):  # fmt: skip
        fail(t, "rt-web-3", reason, "198.51.100.160", "web-team", "idp", "auth-server",
             "token.refresh_failed")  # fmt: skip
    q.add(
        at("2026-05-01T00:00"),
        "token.created",
        "idp",
        "rt-web-2",
        user="web-team",
        actor="web-team",
        type="oauth_refresh",
        expires=iso(at("2026-06-30T00:00")),
    )
    fail(at("2026-06-29T07:00"), "rt-web-2", "invalid_grant", "198.51.100.160", "web-team",
         "idp", "auth-server", "token.refresh_failed")  # fmt: skip


# -- the requests -----------------------------------------------------------------------------


def requests(quarter: Quarter) -> list[tuple[int, ExportLogsServiceRequest]]:
    """A request a day, in time order (each service a resource), with the time the day ends:
    when the service would have stored them and raised their alerts."""
    days: dict[int, list[Event]] = defaultdict(list)
    for event in quarter.events:
        days[event.time_ns // DAY].append(event)
    result = []
    for day in sorted(days):
        by_service: dict[str, list[Event]] = defaultdict(list)
        for event in sorted(days[day], key=lambda e: e.time_ns):
            by_service[event.service].append(event)
        request = ExportLogsServiceRequest()
        for service, events in sorted(by_service.items()):
            resource_logs = request.resource_logs.add()
            resource_logs.resource.attributes.extend(key_values({"service.name": service}))
            scope_logs = resource_logs.scope_logs.add()
            scope_logs.scope.name = "scenario"
            scope_logs.log_records.extend(
                log_record(e.name, e.attributes, time_unix_nano=e.time_ns) for e in events
            )
        result.append(((day + 1) * DAY - MS, request))
    return result
