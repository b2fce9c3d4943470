"""The provisioning files under grafana/, loaded, and every query they hold with the time
range, interval and variables Grafana would run it with."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
RULES_FILE = PROVISIONING_DIR / "alerting" / "tokenotel-rules.yaml"
CONTACT_POINTS_FILE = PROVISIONING_DIR / "alerting" / "contact-points.yaml"
POLICIES_FILE = PROVISIONING_DIR / "alerting" / "notification-policies.yaml"
DATASOURCE_FILE = PROVISIONING_DIR / "datasources" / "tokenotel.yaml"
PROVIDER_FILE = PROVISIONING_DIR / "dashboards" / "tokenotel.yaml"

PLUGIN_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "tokenotel-clickhouse"
EXPRESSION_UID = "__expr__"
UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
#: The data source's ``format``: 0 time series, 1 table, 2 logs, 3 traces.
FORMAT_OF_PANEL = {
    "timeseries": 0,
    "table": 1,
    "stat": 1,
    "barchart": 1,
    "piechart": 1,
    "geomap": 1,
    "logs": 2,
    "traces": 3,
}
QUERY_TYPE_OF_FORMAT = {0: "timeseries", 1: "table", 2: "logs", 3: "traces"}
#: Grafana's default panel width (in pixels) stands in for maxDataPoints.
MAX_DATA_POINTS = 1000

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_RELATIVE = re.compile(r"^now-(\d+)([smhdwMy])$")
_RELATIVE_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,
    "y": 365 * 86400,
}
#: Intervals Grafana rounds a computed interval to (a subset of rangeutil's table).
_NICE_INTERVALS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200)
_NICE_INTERVALS += (10800, 21600, 43200, 86400, 7 * 86400, 30 * 86400)


def parse_duration(text: str) -> timedelta:
    """A Prometheus duration (Grafana's ``for``, ``interval``: ``1m``, ``1h30m``, ``0s``)."""
    match = _DURATION.match(text)
    if text == "0":
        return timedelta(0)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h")
    seconds = sum(
        int(n) * unit for n, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if n
    )
    return timedelta(seconds=seconds)


def relative_seconds(text: str) -> int:
    """``now-6h`` as 21600."""
    match = _RELATIVE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a relative time such as now-6h")
    return int(match.group(1)) * _RELATIVE_UNITS[match.group(2)]


def panel_interval(range_s: int, minimum: str | None) -> timedelta:
    """The interval Grafana gives a panel: range / max data points, rounded up to a nice
    value, and never below the panel's minimum interval."""
    raw = range_s / MAX_DATA_POINTS
    nice = next((n for n in _NICE_INTERVALS if n >= raw), _NICE_INTERVALS[-1])
    floor = parse_duration(minimum).total_seconds() if minimum else 0
    return timedelta(seconds=max(nice, floor))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def dashboards() -> dict[str, dict[str, Any]]:
    """File name (without .json) -> dashboard."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_by_uid(uid: str) -> dict[str, Any] | None:
    return next((d for d in dashboards().values() if d.get("uid") == uid), None)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES_FILE)["groups"] for rule in group["rules"]]


def default_variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's value on first load (its ``current``)."""
    return {v["name"]: v["current"]["value"] for v in dashboard["templating"]["list"]}


@dataclass
class Query:
    """One query as Grafana sends it: SQL, format, time range and interval."""

    origin: str
    sql: str
    format: int
    range_s: int
    interval: timedelta
    dashboard: dict[str, Any] | None = None
    panel: dict[str, Any] | None = None
    rule: dict[str, Any] | None = None
    variable: dict[str, Any] | None = None
    #: Seconds before "now" the range ends (an alert query's relativeTimeRange.to).
    to_s: int = 0

    def __str__(self) -> str:
        return self.origin


def panel_queries() -> Iterator[Query]:
    for name, dashboard in dashboards().items():
        range_s = relative_seconds(dashboard["time"]["from"])
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield Query(
                    origin=f"{name}:{panel['title']}:{target['refId']}",
                    sql=target["rawSql"],
                    format=target["format"],
                    range_s=range_s,
                    interval=panel_interval(range_s, panel.get("interval")),
                    dashboard=dashboard,
                    panel=panel,
                )


def variable_queries() -> Iterator[Query]:
    for name, dashboard in dashboards().items():
        range_s = relative_seconds(dashboard["time"]["from"])
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                yield Query(
                    origin=f"{name}:${variable['name']}",
                    sql=variable["query"],
                    format=1,
                    range_s=range_s,
                    interval=panel_interval(range_s, None),
                    dashboard=dashboard,
                    variable=variable,
                )


def alert_queries() -> Iterator[Query]:
    for rule in alert_rules():
        for data in rule["data"]:
            if data["datasourceUid"] == EXPRESSION_UID:
                continue
            model = data["model"]
            yield Query(
                origin=f"{rule['uid']}:{data['refId']}",
                sql=model["rawSql"],
                format=model["format"],
                range_s=data["relativeTimeRange"]["from"] - data["relativeTimeRange"]["to"],
                interval=timedelta(milliseconds=model.get("intervalMs", 1000)),
                rule=rule,
                to_s=data["relativeTimeRange"]["to"],
            )
