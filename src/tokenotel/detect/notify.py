"""Where alerts go besides ``token_alerts``: webhooks, in the JSON Alertmanager sends its own
receivers (most receivers of alerts read it), and an OpenTelemetry collector, each alert a log
record (event ``tokenotel.alert``) a collector routes on. Neither holds up detection: each sends
from its own thread, with a bounded backlog, retrying."""

from __future__ import annotations

import hashlib
import logging

import orjson
from opentelemetry._logs import SeverityNumber

from tokenotel.detect.rules import Severity
from tokenotel.detect.stream import RaisedAlert
from tokenotel.outbound import WebhookSender, otlp_logger
from tokenotel.query.readable import format_ns

log = logging.getLogger(__name__)

#: Alert groups waiting for a webhook before the oldest is dropped.
WEBHOOK_BACKLOG = 1000
OTLP_EVENT = "tokenotel.alert"
#: The log record's severity of each rule severity.
SEVERITY_NUMBERS = {
    Severity.INFO: SeverityNumber.INFO,
    Severity.WARNING: SeverityNumber.WARN,
    Severity.CRITICAL: SeverityNumber.ERROR,
}
#: Alertmanager's "no end known" for a firing alert.
NO_END = "0001-01-01T00:00:00Z"


def alert_labels(raised: RaisedAlert) -> dict[str, str]:
    """An alert's labels: ``alertname`` (the rule), ``severity``, and what it is about."""
    alert = raised.alert
    return {"alertname": alert.rule.id, "severity": alert.rule.severity.value, **alert.labels}


def alertmanager_message(raised: list[RaisedAlert], grafana_url: str) -> dict[str, object]:
    """Alerts of one rule and state (firing or resolved) as the body of an Alertmanager
    webhook (version 4)."""
    rule = raised[0].alert.rule
    state = raised[0].state
    alerts = []
    for item in raised:
        labels = alert_labels(item)
        summary = ", ".join(f"{k} {v}" for k, v in item.alert.labels.items())
        alerts.append(
            {
                "status": item.state,
                "labels": labels,
                "annotations": {
                    "summary": f"{rule.description} ({summary}; {item.alert.count} events)",
                    "description": rule.description,
                    "runbook": rule.runbook,
                    "first_event": format_ns(item.alert.first_ns),
                    "last_event": format_ns(item.alert.last_ns),
                    "count": str(item.alert.count),
                    **({"token_name": item.token_name} if item.token_name else {}),
                    **({"principal": item.principal} if item.principal else {}),
                },
                "startsAt": format_ns(item.alert.first_ns),
                "endsAt": NO_END if item.ends_ns is None else format_ns(item.ends_ns),
                "generatorURL": item.link,
                "fingerprint": _fingerprint(labels),
            }
        )
    common = {
        k: v
        for k, v in alert_labels(raised[0]).items()
        if all(alert_labels(item).get(k) == v for item in raised)
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{rule.id}"}}',
        "truncatedAlerts": 0,
        "status": state,
        "receiver": "tokenotel",
        "groupLabels": {"alertname": rule.id},
        "commonLabels": common,
        "commonAnnotations": {"description": rule.description, "runbook": rule.runbook},
        "externalURL": grafana_url,
        "alerts": alerts,
    }


def _fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's identity of an alert: a digest of its sorted labels (16 hex digits)."""
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class WebhookNotifier:
    """POSTs each rule's alerts of an insert, and its resolved notices, (Alertmanager's JSON)
    to a URL, in order, retrying with a growing delay."""

    def __init__(self, url: str, grafana_url: str) -> None:
        self.url = url
        self.grafana_url = grafana_url
        self._sender = WebhookSender(url, "application/json", WEBHOOK_BACKLOG)

    def send(self, alerts: list[RaisedAlert]) -> None:
        by_rule: dict[tuple[str, str], list[RaisedAlert]] = {}
        for item in alerts:
            by_rule.setdefault((item.alert.rule.id, item.state), []).append(item)
        for (rule_id, state), group in by_rule.items():
            body = orjson.dumps(alertmanager_message(group, self.grafana_url))
            self._sender.post(body, f"{len(group)} {state} alerts of {rule_id}")

    def close(self) -> None:
        """Sends what waits (for 20 s at most), then stops."""
        self._sender.close()


class OtlpNotifier:
    """Each alert as an OTLP log record to a collector, through the SDK's batching exporter
    (its own thread, queue and retries)."""

    def __init__(self, endpoint: str) -> None:
        self._provider, self._logger = otlp_logger(endpoint, "tokenotel.detect")

    def send(self, alerts: list[RaisedAlert]) -> None:
        for item in alerts:
            alert = item.alert
            attributes: dict[str, str | int] = {
                "tokenotel.alert.rule": alert.rule.id,
                "tokenotel.alert.severity": alert.rule.severity.value,
                "tokenotel.alert.state": item.state,
                "tokenotel.alert.count": alert.count,
                "tokenotel.alert.first_event": format_ns(alert.first_ns),
                "tokenotel.alert.last_event": format_ns(alert.last_ns),
                "tokenotel.alert.link": item.link,
                "tokenotel.alert.runbook": alert.rule.runbook,
            }
            for field, value in alert.labels.items():
                attributes[f"tokenotel.alert.{field}"] = value
            if item.ends_ns is not None:
                attributes["tokenotel.alert.resolved_at"] = format_ns(item.ends_ns)
            if item.token_name:
                attributes["tokenotel.alert.token_name"] = item.token_name
            if item.principal:
                attributes["tokenotel.alert.principal"] = item.principal
            self._logger.emit(
                event_name=OTLP_EVENT,
                body=alert.rule.description,
                timestamp=alert.last_ns,
                observed_timestamp=item.raised_ns,
                severity_number=SEVERITY_NUMBERS[alert.rule.severity],
                severity_text=alert.rule.severity.value.upper(),
                attributes=attributes,
            )

    def close(self) -> None:
        self._provider.shutdown()
