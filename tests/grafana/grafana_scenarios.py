"""Token traffic for the Grafana tests, as OTLP requests relative to "now".

Three scenarios of the same volume:

- benign: a week of steady service-token traffic with lifecycle changes, occasional
  failures, a dormant, a revoked, an expired and a never-used token — and nothing the alert
  rules should fire on;
- attack: the same history, but the last minutes hold one of each detection (failure burst,
  spray, revoked and expired tokens used, a new IP, a dormant token woken up, a call-rate
  spike) instead of the benign scenario's extra ordinary traffic;
- stalled: the benign scenario ending 20 minutes before now, as if the pipeline stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otlp_builders import key_values

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

SERVICE_TOKENS = 30
ADMIN_IP = "192.0.2.10"
GATEWAY_IP = "198.51.100.200"

# What the attack scenario holds and the Security dashboard must show.
BURST_TOKEN, BURST_IP, BURST_FAILURES = "tok-svc-05", "203.0.113.66", 15
SPRAY_IP, SPRAY_TOKENS = "203.0.113.99", 20
REVOKED_TOKEN, EXPIRED_TOKEN, DEAD_TOKEN_IP = "tok-old-deploy", "tok-temp-debug", "203.0.113.50"
NEW_IP_TOKEN, NEW_IP = "tok-svc-06", "192.0.2.200"
DORMANT_TOKEN = "tok-legacy-ci"
SPIKE_TOKEN, SPIKE_CALLS = "tok-svc-07", 300
# Present in both scenarios.
EXPIRING_TOKEN, NO_EXPIRY_TOKEN, UNUSED_TOKEN = "tok-svc-01", "tok-svc-02", "tok-unused-report"
ESCALATED_TOKEN = "tok-svc-03"
ROTATED_FROM, ROTATED_TO = "tok-ci-old", "tok-ci-new"
ONBOARDED_TOKEN, ONBOARDED_IP = "tok-search-onboarded", "198.51.100.60"
REUSED_REFRESH_TOKEN = "rt-mobile-42"
#: A token-shaped secret, replaced by its fingerprint at ingest.
GATEWAY_SECRET = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2


def service_token(i: int) -> str:
    return f"tok-svc-{i:02d}"


def service_principal(i: int) -> str:
    return f"svc-{['billing', 'payments', 'search', 'reports', 'ingest', 'deploy'][i % 6]}"


def home_ip(i: int) -> str:
    return f"198.51.100.{10 + i}"


@dataclass
class Scenario:
    """Events as (time ns, event name, attributes); ``requests`` turns them into OTLP."""

    name: str
    now_ns: int
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, ago_ns: int, event_name: str, attributes: dict[str, Any]) -> None:
        self.events.append((self.now_ns - ago_ns, event_name, attributes))

    def requests(self, per_request: int = 2000) -> list[ExportLogsServiceRequest]:
        """The events in time order, ``per_request`` to an Export request (one resource)."""
        ordered = sorted(self.events, key=lambda e: e[0])
        result = []
        for start in range(0, len(ordered), per_request):
            request = ExportLogsServiceRequest()
            resource_logs = request.resource_logs.add()
            resource_logs.resource.attributes.extend(
                key_values({"service.name": "api-gateway", "deployment.environment.name": "prod"})
            )
            scope_logs = resource_logs.scope_logs.add()
            scope_logs.scope.name = "tokenotel.tests.grafana"
            for n, (time_ns, event_name, attributes) in enumerate(
                ordered[start : start + per_request], start
            ):
                record = LogRecord(
                    time_unix_nano=time_ns,
                    observed_time_unix_nano=time_ns,
                    event_name=event_name,
                    attributes=key_values({**attributes, "token.request.id": f"req-{n}"}),
                    trace_id=(n + 1).to_bytes(16, "big"),
                    span_id=(n + 1).to_bytes(8, "big"),
                )
                scope_logs.log_records.append(record)
            result.append(request)
        return result


def build(name: str, now_ns: int) -> Scenario:
    """``benign``, ``attack`` or ``stalled`` (benign, ending 20 minutes before ``now_ns``)."""
    if name == "stalled":
        scenario = Scenario(name, now_ns)
        scenario.events = build("benign", now_ns - 20 * MINUTE).events
        return scenario
    scenario = Scenario(name, now_ns)
    _history(scenario)
    if name == "attack":
        _attacks(scenario)
    elif name == "benign":
        _ordinary_traffic(scenario, ATTACK_EVENTS)
    else:
        raise ValueError(f"unknown scenario {name!r}")
    return scenario


def home_asn(i: int) -> int:
    """The network a service token is used from (ASNs for documentation, RFC 5398)."""
    return 64496 + i % 15


#: The network the new address of NEW_IP_TOKEN belongs to: none of the service tokens'.
NEW_ASN = 64511
#: Where the service tokens are used from, and the new address of NEW_IP_TOKEN.
HOME_COUNTRY = "DE"
NEW_COUNTRY = "BR"


def _use(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "token.id": service_token(i),
        "user.id": service_principal(i),
        "token.type": "api_key",
        "client.address": home_ip(i),
        "token.client.asn": home_asn(i),
        "geo.country.iso_code": HOME_COUNTRY,
        "user_agent.original": f"{service_principal(i)}/2.{i % 4}",
        "token.scopes": ["read:orders", "write:orders"] if i % 3 else ["read:reports"],
        "http.route": "/v1/orders" if i % 3 else "/v1/reports",
        "http.request.method": "GET",
        "http.response.status_code": 200,
        **extra,
    }


def _created(token: str, owner: str, expires_ns: int | None, scopes: list[str]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "token.id": token,
        "user.id": owner,
        "token.type": "api_key",
        "token.name": f"{token} key",
        "token.actor.id": "admin-1",
        "client.address": ADMIN_IP,
        "token.scopes": scopes,
    }
    if expires_ns is not None:
        attributes["token.expires_at"] = expires_ns // 1_000_000  # epoch ms
    return attributes


def _history(s: Scenario) -> None:
    """What both scenarios share: 60 days of token life, a week of traffic."""
    now = s.now_ns
    for i in range(SERVICE_TOKENS):
        token = service_token(i)
        expires = now + 90 * DAY
        if token == EXPIRING_TOKEN:
            expires = now + 3 * DAY
        s.add(
            60 * DAY + i * MINUTE,
            "token.created",
            _created(
                token,
                service_principal(i),
                None if token == NO_EXPIRY_TOKEN else expires,
                _use(i)["token.scopes"],
            ),
        )
        # Hourly for a week, then every five minutes in the last hour.
        for hour in range(7 * 24, 0, -1):
            s.add(hour * HOUR + i * 7 * SECOND, "token.used", _use(i))
        for slot in range(12):
            s.add(slot * 5 * MINUTE + 30 * SECOND + i * SECOND, "token.used", _use(i))
    # Occasional failures: one token every two hours, for a reason the owner will fix.
    for n, hour in enumerate(range(7 * 24, 0, -2)):
        i = n % SERVICE_TOKENS
        s.add(
            hour * HOUR + 17 * MINUTE,
            "token.auth_failed",
            _use(
                i,
                **{"token.failure_reason": "insufficient_scope", "http.response.status_code": 403},
            ),
        )
    # A scope escalation, twenty hours ago.
    s.add(
        20 * HOUR,
        "token.updated",
        {
            "token.id": ESCALATED_TOKEN,
            "user.id": service_principal(3),
            "token.actor.id": "admin-2",
            "client.address": ADMIN_IP,
            "token.scopes": ["read:reports", "admin"],
            "token.scopes_added": ["admin"],
        },
    )
    # A rotation five days ago; the new id carries the traffic since.
    s.add(70 * DAY, "token.created", _created(ROTATED_FROM, "svc-ci", now + 200 * DAY, ["ci"]))
    for day in range(70, 5, -1):
        s.add(day * DAY, "token.used", _ci_use(ROTATED_FROM))
    s.add(
        5 * DAY,
        "token.rotated",
        {
            "token.id": ROTATED_TO,
            "token.previous_id": ROTATED_FROM,
            "user.id": "svc-ci",
            "token.actor.id": "admin-1",
            "client.address": ADMIN_IP,
            "token.scopes": ["ci"],
            "token.expires_at": (now + 200 * DAY) // 1_000_000,
        },
    )
    for hour in range(5 * 24 - 1, 0, -6):
        s.add(hour * HOUR, "token.used", _ci_use(ROTATED_TO))
    # A CI token last used 45 days ago.
    s.add(120 * DAY, "token.created", _created(DORMANT_TOKEN, "svc-ci", None, ["ci", "deploy"]))
    for day in (50, 48, 45):
        s.add(day * DAY, "token.used", _ci_use(DORMANT_TOKEN))
    # A deploy token revoked two days ago after a leak, and a debug token that expired.
    s.add(60 * DAY, "token.created", _created(REVOKED_TOKEN, "bob", now + 300 * DAY, ["deploy"]))
    for day in range(30, 2, -1):
        s.add(day * DAY, "token.used", _ci_use(REVOKED_TOKEN, user="bob"))
    s.add(
        2 * DAY,
        "token.revoked",
        {
            "token.id": REVOKED_TOKEN,
            "user.id": "bob",
            "token.actor.id": "admin-1",
            "token.reason": "leak",
            "client.address": ADMIN_IP,
        },
    )
    s.add(10 * DAY, "token.created", _created(EXPIRED_TOKEN, "alice", now - 2 * DAY, ["debug"]))
    for day in range(9, 2, -1):
        s.add(day * DAY, "token.used", _ci_use(EXPIRED_TOKEN, user="alice"))
    # Created for a report that never ran.
    s.add(40 * DAY, "token.created", _created(UNUSED_TOKEN, "carol", None, ["admin:org"]))
    # A token created two hours ago, in use since.
    s.add(
        2 * HOUR,
        "token.created",
        _created(ONBOARDED_TOKEN, "svc-search", now + 90 * DAY, ["read:search"]),
    )
    for slot in range(23, 0, -1):
        s.add(
            slot * 5 * MINUTE + 20 * SECOND,
            "token.used",
            {**_ci_use(ONBOARDED_TOKEN, user="svc-search"), "client.address": ONBOARDED_IP},
        )
    # A replayed refresh token, three hours ago.
    s.add(
        3 * HOUR,
        "token.reuse_detected",
        {
            "token.id": REUSED_REFRESH_TOKEN,
            "user.id": "dave",
            "token.type": "oauth_refresh",
            "client.address": "203.0.113.80",
            "token.reason": "reuse",
            "token.source": "idp",
        },
    )
    # A personal access token seen only by its secret, through the gateway.
    for hour in range(48, 0, -3):
        s.add(
            hour * HOUR + 11 * MINUTE,
            "token.used",
            {
                "token.value": GATEWAY_SECRET,
                "user.id": "alice",
                "token.type": "pat",
                "client.address": GATEWAY_IP,
                "user_agent.original": "git/2.45",
                "token.scopes": ["repo"],
            },
        )


def _ci_use(token: str, user: str = "svc-ci") -> dict[str, Any]:
    return {
        "token.id": token,
        "user.id": user,
        "token.type": "api_key",
        "client.address": "198.51.100.150",
        "user_agent.original": "ci-runner/1.0",
        "token.scopes": ["ci"],
        "http.route": "/v1/deploy",
        "http.response.status_code": 200,
    }


def _attacks(s: Scenario) -> None:
    """One of each detection, in the last five minutes."""
    for n in range(BURST_FAILURES):
        s.add(
            4 * MINUTE - n * 10 * SECOND,
            "token.auth_failed",
            {
                "token.id": BURST_TOKEN,
                "token.failure_reason": "invalid_secret",
                "client.address": BURST_IP,
                "user_agent.original": "python-requests/2.31",
                "http.response.status_code": 401,
            },
        )
    for n in range(SPRAY_TOKENS):
        s.add(
            3 * MINUTE - n * 5 * SECOND,
            "token.auth_failed",
            {
                "token.value": f"ghp_sprayed{n:04d}" + "x" * 28,
                "token.failure_reason": "unknown",
                "client.address": SPRAY_IP,
                "user_agent.original": "curl/8.5",
                "http.response.status_code": 401,
            },
        )
    for n, token in enumerate((REVOKED_TOKEN, REVOKED_TOKEN, EXPIRED_TOKEN)):
        attributes = _ci_use(token, user="bob" if token == REVOKED_TOKEN else "alice")
        s.add(
            2 * MINUTE + n * SECOND, "token.used", {**attributes, "client.address": DEAD_TOKEN_IP}
        )
    for n in range(3):
        new_place = {
            "client.address": NEW_IP,
            "token.client.asn": NEW_ASN,
            "geo.country.iso_code": NEW_COUNTRY,
        }
        s.add(3 * MINUTE - n * SECOND, "token.used", _use(6, **new_place))
    for n in range(2):
        s.add(2 * MINUTE - n * SECOND, "token.used", _ci_use(DORMANT_TOKEN))
    spike = int(SPIKE_TOKEN[-2:])
    for n in range(SPIKE_CALLS):
        s.add(5 * MINUTE - n * SECOND, "token.used", _use(spike))


ATTACK_EVENTS = BURST_FAILURES + SPRAY_TOKENS + 3 + 3 + 2 + SPIKE_CALLS


def _ordinary_traffic(s: Scenario, count: int) -> None:
    """``count`` more ordinary uses, spread over the six hours before the last quarter hour."""
    span = 6 * HOUR - 15 * MINUTE
    for n in range(count):
        s.add(15 * MINUTE + n * span // count, "token.used", _use(n % SERVICE_TOKENS))
