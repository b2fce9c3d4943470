"""Realistic token traffic for the demo: a day of normal use with an attack hidden in it.

Events are generated first (deterministic for a seed), then sent through the real
OpenTelemetry SDK: LoggerProvider + BatchLogRecordProcessor + OTLPLogExporter over gRPC.
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

HOUR_NS = 3_600_000_000_000
MINUTE_NS = 60_000_000_000

ATTACKER_IP = "198.51.100.23"
REVOKED_USER_IP = "203.0.113.99"
CLIENTS = [
    ("10.20.1.15", "octokit.js/21.1.1"),
    ("10.20.1.16", "octokit.js/21.1.1"),
    ("192.0.2.44", "python-requests/2.32.3"),
    ("2001:db8:4::21", "curl/8.9.1"),
    ("2001:db8:4::22", "terraform-provider/5.70.0"),
    ("172.16.9.3", "Go-http-client/2.0"),
    ("2001:db8:77::1", "github-actions-runner/2.320"),
]
ROUTES = [
    ("GET", "/repos/{owner}/{repo}", 200),
    ("GET", "/orgs/{org}/members", 200),
    ("POST", "/repos/{owner}/{repo}/issues", 201),
    ("GET", "/invoices/{id}", 200),
    ("PUT", "/deployments/{id}", 200),
]


@dataclass
class DemoToken:
    token_id: str
    secret: str
    token_type: str
    name: str
    owner: str
    scopes: list[str]
    service: str
    expires_in_h: float


@dataclass
class Emit:
    service: str
    time_ns: int
    event_name: str
    attributes: dict[str, Any]
    body: str = ""


@dataclass
class Scenario:
    """What the demo sends, and the facts a reader should find again in the summary."""

    emits: list[Emit] = field(default_factory=list)
    burst_token: str = ""
    revoked_token: str = ""
    expired_token: str = ""


def _secret(rng: random.Random, prefix: str, length: int = 36) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


def _tokens(rng: random.Random) -> list[DemoToken]:
    return [
        DemoToken(
            "pat_alice_laptop",
            _secret(rng, "ghp_"),
            "pat",
            "alice laptop",
            "alice",
            ["repo", "read:org"],
            "github-proxy",
            24 * 90,
        ),
        DemoToken(
            "pat_bob_cli",
            _secret(rng, "ghp_"),
            "pat",
            "bob cli",
            "bob",
            ["repo"],
            "github-proxy",
            24 * 30,
        ),
        DemoToken(
            "ci_deploy",
            _secret(rng, "glpat-", 20),
            "service_account",
            "ci deploy",
            "ci-bot",
            ["api", "write_repository"],
            "deploy-api",
            24 * 365,
        ),
        DemoToken(
            "billing_ci",
            _secret(rng, "sk_live_", 24),
            "api_key",
            "billing ci",
            "billing-svc",
            ["invoices:read", "invoices:write"],
            "billing-api",
            24 * 180,
        ),
        DemoToken(
            "pat_carol_old",
            _secret(rng, "ghp_"),
            "pat",
            "carol old laptop",
            "carol",
            ["repo", "admin:org"],
            "github-proxy",
            24 * 60,
        ),
        DemoToken(
            "contractor_dave",
            _secret(rng, "ghp_"),
            "pat",
            "contractor",
            "dave",
            ["repo"],
            "github-proxy",
            4,
        ),
        DemoToken(
            "oauth_erin",
            _secret(rng, "gho_"),
            "oauth_access",
            "erin oauth app",
            "erin",
            ["read:user", "repo"],
            "github-proxy",
            24 * 7,
        ),
    ]


def build_scenario(total: int, now_ns: int, seed: int = 7) -> Scenario:
    """About ``total`` events over the last 24 hours, oldest first."""
    rng = random.Random(seed)
    tokens = _tokens(rng)
    start = now_ns - 24 * HOUR_NS
    scenario = Scenario(
        burst_token="billing_ci", revoked_token="pat_carol_old", expired_token="contractor_dave"
    )
    emits = scenario.emits

    def attrs(token: DemoToken, **extra: Any) -> dict[str, Any]:
        return {
            "token.id": token.token_id,
            "token.type": token.token_type,
            "user.id": token.owner,
            "token.source": "app",
            **extra,
        }

    for i, token in enumerate(tokens):
        created = start + i * 5 * MINUTE_NS
        expires_ns = created + int(token.expires_in_h * HOUR_NS)
        emits.append(
            Emit(
                token.service,
                created,
                "token.created",
                attrs(
                    token,
                    **{
                        "token.value": token.secret,
                        "token.name": token.name,
                        "token.scopes": token.scopes,
                        "token.expires_at": expires_ns // 1_000_000,
                        "token.issued_at": created // 1_000_000,
                        "token.actor.id": token.owner,
                        "token.hint": token.secret[:4] + "…" + token.secret[-4:],
                        "client.address": CLIENTS[i % len(CLIENTS)][0],
                    },
                ),
                f"token {token.token_id} created for {token.owner}",
            )
        )

    carol, dave, billing = tokens[4], tokens[5], tokens[3]
    revoked_at = start + 15 * HOUR_NS
    dave_expiry = start + 35 * MINUTE_NS + int(dave.expires_in_h * HOUR_NS)
    burst_at = start + 20 * HOUR_NS
    special = 60  # lifecycle, attack and misuse events added below
    normal = max(total - len(tokens) - special, 50)

    for _ in range(normal):
        token = rng.choice(tokens[:5] + tokens[6:])
        t = start + HOUR_NS + rng.randrange(22 * HOUR_NS)
        if token is carol and t > revoked_at:
            t = revoked_at - rng.randrange(1, 10 * HOUR_NS)
        ip, agent = rng.choice(CLIENTS)
        method, route, status = rng.choice(ROUTES)
        failed = rng.random() < 0.02
        emits.append(
            Emit(
                token.service,
                t,
                "token.auth_failed" if failed else "token.used",
                attrs(
                    token,
                    **{
                        "token.value": token.secret,
                        "client.address": ip,
                        "user_agent.original": agent,
                        "http.request.method": method,
                        "http.route": route,
                        "url.path": route.replace("{", "").replace("}", ""),
                        "http.response.status_code": 403 if failed else status,
                        "token.scopes": token.scopes,
                        "token.request.id": f"req-{rng.randrange(16**8):08x}",
                        **({"token.failure_reason": "insufficient_scope"} if failed else {}),
                    },
                ),
            )
        )

    for t_offset in range(8):  # dave's contractor token: used, then expired, then used again
        t = start + 40 * MINUTE_NS + t_offset * 20 * MINUTE_NS
        emits.append(
            Emit(
                dave.service,
                t,
                "token.used",
                attrs(
                    dave,
                    **{
                        "token.value": dave.secret,
                        "client.address": "192.0.2.44",
                        "token.expires_at": dave_expiry // 1_000_000,
                    },
                ),
            )
        )
    emits.append(Emit(dave.service, dave_expiry, "token.expired", attrs(dave)))
    for k in range(3):
        emits.append(
            Emit(
                dave.service,
                dave_expiry + (k + 1) * 30 * MINUTE_NS,
                "token.auth_failed",
                attrs(
                    dave,
                    **{
                        "token.value": dave.secret,
                        "client.address": "192.0.2.44",
                        "token.failure_reason": "expired",
                        "http.response.status_code": 401,
                        "token.expires_at": dave_expiry // 1_000_000,
                    },
                ),
            )
        )

    emits.append(
        Emit(
            carol.service,
            revoked_at - 30 * MINUTE_NS,
            "token.leak_detected",
            attrs(
                carol,
                **{
                    "token.leak.detector": "secret-scanning",
                    "token.leak.location": "public gist",
                    "token.actor.id": "secret-scanner",
                },
            ),
            f"leaked secret found: {carol.secret}",
        )
    )
    emits.append(
        Emit(
            carol.service,
            revoked_at,
            "token.revoked",
            attrs(carol, **{"token.reason": "leak", "token.actor.id": "security-team"}),
        )
    )
    for k in range(4):  # the leaked token, used again from an unknown address
        emits.append(
            Emit(
                carol.service,
                revoked_at + (k + 1) * 7 * MINUTE_NS,
                "token.auth_failed",
                attrs(
                    carol,
                    **{
                        "token.value": carol.secret,
                        "client.address": REVOKED_USER_IP,
                        "token.failure_reason": "revoked",
                        "user_agent.original": "python-requests/2.25.0",
                        "http.response.status_code": 401,
                        "http.request.header.authorization": [f"Bearer {carol.secret}"],
                    },
                ),
            )
        )

    for k in range(40):  # brute force against the billing key from one address
        emits.append(
            Emit(
                billing.service,
                burst_at + k * 4_000_000_000,
                "token.auth_failed",
                attrs(
                    billing,
                    **{
                        "token.value": _secret(rng, "sk_live_", 24),
                        "token.id": billing.token_id,
                        "client.address": ATTACKER_IP,
                        "token.failure_reason": "invalid_secret",
                        "user_agent.original": "Go-http-client/1.1",
                        "http.response.status_code": 401,
                    },
                ),
            )
        )

    bob = tokens[1]
    emits.append(
        Emit(
            bob.service,
            start + 6 * HOUR_NS,
            "token.updated",
            attrs(
                bob,
                **{
                    "token.scopes": ["repo", "workflow"],
                    "token.scopes_added": ["workflow"],
                    "token.actor.id": "bob",
                },
            ),
        )
    )
    erin = tokens[6]
    for k in range(3):
        emits.append(Emit(erin.service, start + (9 + k) * HOUR_NS, "token.refreshed", attrs(erin)))
    emits.append(
        Emit(
            erin.service,
            start + 13 * HOUR_NS,
            "token.refresh_failed",
            attrs(erin, **{"token.failure_reason": "invalid_grant"}),
        )
    )
    ci = tokens[2]
    emits.append(
        Emit(
            ci.service,
            start + 12 * HOUR_NS,
            "token.rotated",
            attrs(ci, **{"token.previous_id": "ci_deploy_2025", "token.actor.id": "ci-bot"}),
        )
    )

    emits.sort(key=lambda e: e.time_ns)
    return scenario


def send(emits: list[Emit], endpoint: str, on_sent: Callable[[int], None] | None = None) -> None:
    """Sends every event through the OpenTelemetry SDK, one LoggerProvider per service."""
    providers: dict[str, LoggerProvider] = {}
    for service in sorted({e.service for e in emits}):
        provider = LoggerProvider(
            resource=Resource.create(
                {
                    "service.name": service,
                    "deployment.environment.name": "demo",
                    "service.instance.id": secrets.token_hex(4),
                }
            )
        )
        exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, max_export_batch_size=512, schedule_delay_millis=200)
        )
        providers[service] = provider
    loggers = {s: p.get_logger("tokenotel.demo") for s, p in providers.items()}
    for chunk in _chunks(emits, 100):
        for e in chunk:
            loggers[e.service].emit(
                timestamp=e.time_ns,
                event_name=e.event_name,
                attributes=e.attributes,
                body=e.body or None,
            )
        if on_sent:
            on_sent(len(chunk))
    for provider in providers.values():
        provider.force_flush()
        provider.shutdown()


def _chunks(items: list[Emit], size: int) -> Iterator[list[Emit]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
