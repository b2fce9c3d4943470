"""Every dashboard, variable and alert query, expanded as the plugin expands it, run on the
real schema in the embedded engine against generated token traffic.

The scenarios go through the real ingest path (OTLP request → mapping → batching writer →
ClickHouse, with its materialized views), so token status, rollups and inventory are what a
running service would have stored. One embedded store holds the three scenarios as three
databases: a process can open only one chDB data directory at a time, so the store is closed
at the end of this module for the next test module to open its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grafana_files as files
import grafana_scenarios as scenarios
import grafana_variables as variables
import macros
import pytest

from tokenotel.config import load_settings
from tokenotel.pipeline import Pipeline
from tokenotel.store.client import Store

SCENARIOS = ("benign", "attack", "stalled")
SCENARIO_SECOND_OF_HOUR = 45 * 60 + 30
#: The scenario each alert rule must fire on ("attack" unless listed); every rule must stay
#: quiet on "benign".
FIRES_ON = {"tokenotel-no-events": "stalled"}
DETECTION_PANELS = (
    "Failure bursts by token",
    "Failure bursts by IP",
    "One IP failing across many tokens (spray)",
    "Revoked, expired, rotated or disabled tokens used",
    "First use from a new IP",
    "Dormant tokens reactivated",
    "Call-rate spikes against the token's own baseline",
)
_UNWRAP = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
_NUMERIC = re.compile(r"^(?:U?Int\d+|Float\d+|Decimal(?:\d+)?\(.*\))$")
_TIME = re.compile(r"^(?:DateTime|DateTime64|Date|Date32)(?:\(.*\))?$")
_TEXT = re.compile(r"^(?:String|FixedString\(\d+\)|Enum\d*\(.*\)|UUID|Bool)$")


@dataclass
class Traffic:
    now: datetime
    stores: dict[str, Store]
    fingerprint: Any  # the service's Fingerprinter: secret -> fingerprint


@dataclass
class Result:
    columns: list[tuple[str, str]]  # (name, ClickHouse type)
    rows: list[tuple[Any, ...]]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def column(self, name: str) -> list[Any]:
        index = self.names.index(name)
        return [row[index] for row in self.rows]


def kind(clickhouse_type: str) -> str:
    """time, number or text — what the plugin hands Grafana — or the type itself when it is
    none of these (arrays, maps, aggregate states render badly or not at all)."""
    while match := _UNWRAP.match(clickhouse_type):
        clickhouse_type = match.group(1)
    for name, pattern in (("time", _TIME), ("number", _NUMERIC), ("text", _TEXT)):
        if pattern.match(clickhouse_type):
            return name
    return clickhouse_type


def scenario_now(wall_ns: int) -> int:
    """The latest instant not after ``wall_ns`` at minute 45, second 30 of an hour: the
    scenarios' "now", so that hour and minute buckets fall alike on every run (and late
    enough in the hour that a bucket floored in a half-hour time zone would differ)."""
    seconds = wall_ns // 1_000_000_000
    return (seconds - (seconds % 3600 - SCENARIO_SECOND_OF_HOUR) % 3600) * 1_000_000_000


async def _ingest(pipeline: Pipeline, scenario: scenarios.Scenario) -> None:
    await pipeline.start()
    try:
        for request in scenario.requests():
            result = await pipeline.export(request.SerializeToString(), "application/x-protobuf")
            assert not result.rejected, result
    finally:
        await pipeline.stop()


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    data_dir = tmp_path_factory.mktemp("grafana-store")
    now_ns = scenario_now(time.time_ns())
    pipelines: list[Pipeline] = []
    try:
        with pytest.MonkeyPatch.context() as env:
            for key in [k for k in os.environ if k.startswith("TOKENOTEL_")]:
                env.delenv(key)  # the developer's settings must not redirect the store
            for name in SCENARIOS:
                settings = load_settings(data_dir=data_dir, database=name, mapping_workers=0)
                pipeline = Pipeline(settings)
                pipelines.append(pipeline)
                asyncio.run(_ingest(pipeline, scenarios.build(name, now_ns)))
        # Stopped pipelines: their stores open again for the queries.
        yield Traffic(
            now=datetime.fromtimestamp(now_ns / 1e9, UTC),
            stores={name: p.store for name, p in zip(SCENARIOS, pipelines, strict=True)},
            fingerprint=pipelines[0].fingerprint,
        )
    finally:
        for pipeline in pipelines:
            pipeline.store.close()


def run(
    traffic: Traffic,
    scenario: str,
    query: files.Query,
    values: Mapping[str, str | Sequence[str]] | None = None,
    *,
    timezone: str | None = None,
) -> Result:
    """The query as Grafana would send it at the scenario's "now", with ``values`` over the
    dashboard's defaults, on a server whose time zone is ``timezone`` (default: the engine's);
    returns the result columns (even when there are no rows) and rows."""
    if query.dashboard is not None:
        values = {**files.default_variables(query.dashboard), **(values or {})}
    to = traffic.now - timedelta(seconds=query.to_s)
    ctx = macros.QueryContext(to - timedelta(seconds=query.range_s), to, query.interval)
    sql = macros.expand(variables.substitute(query.sql, values or {}), ctx)
    if timezone is not None:
        sql += f"\nSETTINGS session_timezone = '{timezone}'"
    store = traffic.stores[scenario]
    described = store.query(f"DESCRIBE TABLE ({sql})").result_rows
    return Result([(row[0], row[1]) for row in described], store.query(sql).result_rows)


def panel_query(dashboard: str, title: str) -> files.Query:
    for query in files.panel_queries():
        if query.dashboard is files.dashboards()[dashboard] and query.panel["title"] == title:
            return query
    raise LookupError(f"no panel {title!r} in {dashboard}")


def panel_fields(panel: dict[str, Any]) -> set[str]:
    """Fields a panel's configuration names: overrides, data links, the bar chart's x, the
    label a series is named after."""
    names = set(re.findall(r"\$\{__field\.labels\.(\w+)\}", json.dumps(panel["fieldConfig"])))
    for override in panel["fieldConfig"]["overrides"]:
        if override["matcher"]["id"] == "byName":
            names.add(override["matcher"]["options"])
        for prop in override["properties"]:
            if prop["id"] == "links":
                for link in prop["value"]:
                    names |= set(re.findall(r"\$\{__data\.fields\.(\w+)", link["url"]))
    if "xField" in panel["options"]:
        names.add(panel["options"]["xField"])
    return names


def check_panel_shape(query: files.Query, result: Result) -> None:
    panel = query.panel
    kinds = [kind(t) for _, t in result.columns]
    assert result.columns, "no columns"
    unusable = [
        (n, t)
        for (n, t), k in zip(result.columns, kinds, strict=True)
        if k not in ("time", "number", "text")
    ]
    assert not unusable, f"columns Grafana cannot show as they are: {unusable}"
    assert len(set(result.names)) == len(result.names), f"duplicate columns: {result.names}"
    assert panel_fields(panel) <= set(result.names), f"{panel_fields(panel)} not in {result.names}"
    if panel["type"] == "timeseries":
        assert kinds[0] == "time", f"a time series starts with its time column: {result.columns}"
        assert "number" in kinds[1:], "a time series needs a numeric column"
        assert set(kinds[1:]) <= {"number", "text"}, "one time column only"
        times = [row[0] for row in result.rows]
        assert times == sorted(times), "long time series must come sorted by time"
    elif panel["type"] == "stat":
        assert set(kinds) == {"number"}, f"a stat shows numbers: {result.columns}"
        assert len(result.rows) == 1
    elif panel["type"] == "barchart":
        assert kinds.count("text") + kinds.count("time") >= 1 and "number" in kinds


PANEL_QUERIES = list(files.panel_queries())
VARIABLE_QUERIES = list(files.variable_queries())
ALERT_QUERIES = list(files.alert_queries())


def realistic_values(traffic: Traffic) -> list[dict[str, str]]:
    """Investigation variables as people fill them in, and as the Security links set them."""
    return [
        {"token": scenarios.BURST_TOKEN},
        {"token": traffic.fingerprint(scenarios.GATEWAY_SECRET)},
        {"token": scenarios.ONBOARDED_TOKEN},
        {"principal": "svc-payments"},
        {"ip": scenarios.SPRAY_IP},
        {"ip": "203.0.113.0/24"},
        {"token": scenarios.NEW_IP_TOKEN, "ip": scenarios.NEW_IP},
    ]


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=str)
def test_panel_query_runs_and_has_the_shape_of_its_panel(
    traffic: Traffic, query: files.Query
) -> None:
    investigation = query.dashboard["uid"] == "tokenotel-investigation"
    value_sets = [{}] + (realistic_values(traffic) if investigation else [])
    shown = 0
    for scenario in SCENARIOS:
        for values in value_sets:
            result = run(traffic, scenario, query, values)
            check_panel_shape(query, result)
            shown += bool(result.rows)
    assert shown, "the panel shows nothing in any scenario"


@pytest.mark.parametrize("query", VARIABLE_QUERIES, ids=str)
def test_variable_query_returns_values_and_texts(traffic: Traffic, query: files.Query) -> None:
    result = run(traffic, "attack", query)
    assert len(result.columns) in (1, 2), "the plugin reads (value) or (value, text)"
    assert {kind(t) for _, t in result.columns} == {"text"}
    first_value = result.rows[0][0]
    assert first_value == query.variable["current"]["value"], "the default is the first option"
    assert "svc-payments" in result.column(result.names[0])
    empty = run(traffic, "stalled", query)
    assert empty.rows[0][0] == query.variable["current"]["value"]


#: The labels of each rule's alert instances: the text columns its query returns before value.
INSTANCE_LABELS = {
    "tokenotel-failure-burst": ["token"],
    "tokenotel-token-spray": ["ip"],
    "tokenotel-dead-token-used": ["token"],
    "tokenotel-new-ip": ["token", "ip"],
    "tokenotel-dormant-token": ["token"],
    "tokenotel-call-rate-spike": ["token"],
    "tokenotel-no-events": [],
}


@pytest.mark.parametrize("query", ALERT_QUERIES, ids=str)
def test_alert_query_returns_a_number_per_token_or_ip(traffic: Traffic, query: files.Query) -> None:
    """Grafana makes each row of a table with text columns and one number an alert instance
    labelled with the text columns: the labels must tell the rows apart."""
    labels = INSTANCE_LABELS[query.rule["uid"]]
    for scenario in SCENARIOS:
        result = run(traffic, scenario, query)
        assert result.names == [*labels, "value"]
        assert [kind(t) for _, t in result.columns] == ["text"] * len(labels) + ["number"]
        keys = [row[:-1] for row in result.rows]
        assert len(set(keys)) == len(keys), "two instances with the same labels"
        assert all(all(key) for key in keys), "an instance with an empty label"
        if not labels:
            assert len(result.rows) == 1


def evaluate(rule: dict[str, Any], value: float) -> bool:
    """The rule's expressions (reduce, then threshold) on the one number its query returns."""
    data = {d["refId"]: d["model"] for d in rule["data"]}
    condition = data[rule["condition"]]
    reduced = data[condition["expression"]]
    assert reduced["type"] == "reduce"  # of a single number, any reducer is that number
    evaluator = condition["conditions"][0]["evaluator"]
    params = evaluator["params"]
    return {
        "gt": lambda: value > params[0],
        "lt": lambda: value < params[0],
        "within_range": lambda: params[0] < value < params[1],
        "outside_range": lambda: value < params[0] or value > params[1],
    }[evaluator["type"]]()


def test_scenarios_have_the_same_volume(traffic: Traffic) -> None:
    counts = {
        name: store.query("SELECT count() FROM token_events").result_rows[0][0]
        for name, store in traffic.stores.items()
    }
    assert len(set(counts.values())) == 1 and counts["attack"] > 5000, counts


@pytest.mark.parametrize("query", ALERT_QUERIES, ids=str)
def test_annotations_name_the_instance_by_its_own_labels(query: files.Query) -> None:
    """Each annotation speaks of labels its query returns, and every instance's summary says
    which token or address it is about; the investigation link selects it."""
    labels = INSTANCE_LABELS[query.rule["uid"]]
    annotations = query.rule["annotations"]
    used = set(re.findall(r"\.Labels\.(\w+)", " ".join(annotations.values())))
    assert used == set(labels)
    assert all(f".Labels.{label}" in annotations["summary"] for label in labels)
    if labels:
        link = annotations["investigate"].replace(" ", "")
        assert link.startswith("/d/tokenotel-investigation/")
        for label in labels:
            assert f"var-{label}={{{{urlquery.Labels.{label}}}}}" in link


def firing(traffic: Traffic, scenario: str, query: files.Query) -> dict[tuple[Any, ...], float]:
    """The rule's alert instances that fire in ``scenario``: their labels → the value."""
    return {
        tuple(row[:-1]): row[-1]
        for row in run(traffic, scenario, query).rows
        if evaluate(query.rule, row[-1])
    }


#: Who each rule must name on the attack: the labels of the one instance that fires.
NAMED = {
    "tokenotel-failure-burst": (scenarios.BURST_TOKEN,),
    "tokenotel-token-spray": (scenarios.SPRAY_IP,),
    "tokenotel-dormant-token": (scenarios.DORMANT_TOKEN,),
    "tokenotel-call-rate-spike": (scenarios.SPIKE_TOKEN,),
    "tokenotel-no-events": (),
}


@pytest.mark.parametrize("query", ALERT_QUERIES, ids=lambda q: q.rule["title"])
def test_alert_fires_on_the_attack_naming_it_and_not_on_ordinary_traffic(
    traffic: Traffic, query: files.Query
) -> None:
    uid = query.rule["uid"]
    attack = FIRES_ON.get(uid, "attack")
    fired = firing(traffic, attack, query)
    assert fired, f"quiet on {attack}"
    if uid in NAMED:
        assert list(fired) == [NAMED[uid]], f"names {list(fired)}"
    assert firing(traffic, "benign", query) == {}, "fires on benign traffic"


def test_the_rules_measure_what_the_attack_did_to_each_token_and_ip(traffic: Traffic) -> None:
    fired = {
        q.rule["uid"]: firing(traffic, FIRES_ON.get(q.rule["uid"], "attack"), q)
        for q in ALERT_QUERIES
    }
    assert fired["tokenotel-failure-burst"] == {(scenarios.BURST_TOKEN,): scenarios.BURST_FAILURES}
    assert fired["tokenotel-token-spray"] == {(scenarios.SPRAY_IP,): scenarios.SPRAY_TOKENS}
    assert fired["tokenotel-dead-token-used"] == {  # two revoked uses, one expired
        (scenarios.REVOKED_TOKEN,): 2,
        (scenarios.EXPIRED_TOKEN,): 1,
    }
    assert set(fired["tokenotel-new-ip"]) == {
        (scenarios.BURST_TOKEN, scenarios.BURST_IP),
        (scenarios.NEW_IP_TOKEN, scenarios.NEW_IP),
        (scenarios.REVOKED_TOKEN, scenarios.DEAD_TOKEN_IP),
        (scenarios.EXPIRED_TOKEN, scenarios.DEAD_TOKEN_IP),
    }
    ((days,),) = [fired["tokenotel-dormant-token"].values()]
    assert 44.9 < days <= 45
    ((spike,),) = [fired["tokenotel-call-rate-spike"].values()]
    assert spike > scenarios.SPIKE_CALLS / 10
    assert fired["tokenotel-no-events"] == {(): 0}


@pytest.mark.parametrize("timezone", ["Asia/Kolkata", "America/St_Johns"])
def test_results_do_not_depend_on_the_server_time_zone(traffic: Traffic, timezone: str) -> None:
    """Rollups are bucketed in UTC; a server in a zone with a half-hour offset must not shift
    the buckets a query reads (the plugin sets none on its queries)."""
    for query in [*ALERT_QUERIES, *PANEL_QUERIES]:
        if query.dashboard is not None and query.dashboard["uid"] == "tokenotel-investigation":
            continue
        utc = run(traffic, "attack", query, timezone="UTC")
        elsewhere = run(traffic, "attack", query, timezone=timezone)
        assert [n for n, _ in elsewhere.columns] == utc.names, query
        assert len(elsewhere.rows) == len(utc.rows), query
        if query.rule is not None or query.panel["type"] == "stat":
            assert elsewhere.rows == utc.rows, query


# ------------------------------------------------------------------ what people see


def test_security_panels_point_at_each_attack_and_stay_empty_on_ordinary_traffic(
    traffic: Traffic,
) -> None:
    def rows(title: str, scenario: str) -> Result:
        return run(traffic, scenario, panel_query("security", title))

    for title in DETECTION_PANELS:
        assert rows(title, "benign").rows == [], title
    assert rows("Failure bursts by token", "attack").column("token") == [scenarios.BURST_TOKEN]
    assert set(rows("Failure bursts by IP", "attack").column("ip")) == {
        scenarios.BURST_IP,
        scenarios.SPRAY_IP,
    }
    spray = rows("One IP failing across many tokens (spray)", "attack")
    assert spray.rows == [spray.rows[0]] and spray.column("ip") == [scenarios.SPRAY_IP]
    assert spray.column("tokens") == [scenarios.SPRAY_TOKENS]
    dead = rows("Revoked, expired, rotated or disabled tokens used", "attack")
    assert sorted(zip(dead.column("token"), dead.column("status"), strict=True)) == [
        (scenarios.REVOKED_TOKEN, "revoked"),
        (scenarios.REVOKED_TOKEN, "revoked"),
        (scenarios.EXPIRED_TOKEN, "expired"),
    ]
    new_ip = rows("First use from a new IP", "attack")
    pairs = set(zip(new_ip.column("token"), new_ip.column("ip"), strict=True))
    assert (scenarios.NEW_IP_TOKEN, scenarios.NEW_IP) in pairs
    assert (scenarios.BURST_TOKEN, scenarios.BURST_IP) in pairs
    assert scenarios.ONBOARDED_TOKEN not in new_ip.column("token")  # its first use is no news
    dormant = rows("Dormant tokens reactivated", "attack")
    assert dormant.column("token") == [scenarios.DORMANT_TOKEN]
    assert dormant.column("idle_days") == [45.0]
    spike = rows("Call-rate spikes against the token's own baseline", "attack")
    assert spike.column("token") == [scenarios.SPIKE_TOKEN]
    for scenario in ("benign", "attack"):
        escalations = rows("Scope escalations", scenario)
        assert escalations.column("token") == [scenarios.ESCALATED_TOKEN]
        assert escalations.column("added") == ["admin"]
        leaks = rows("Leaks and refresh-token reuse", scenario)
        assert leaks.column("token") == [scenarios.REUSED_REFRESH_TOKEN]
    # What the service's own rules raised as the scenario arrived: the attack, named.
    raised = rows("Alerts raised by tokenotel", "attack")
    about = set(
        zip(raised.column("rule"), raised.column("token"), raised.column("ip"), strict=True)
    )
    assert ("failure-burst", scenarios.BURST_TOKEN, "") in about
    assert ("token-spray", "", scenarios.SPRAY_IP) in about
    quiet = rows("Alerts raised by tokenotel", "benign")
    assert "failure-burst" not in quiet.column("rule") and "token-spray" not in quiet.column("rule")


def test_overview_shows_volume_top_talkers_expiries_and_liveness(traffic: Traffic) -> None:
    def rows(title: str, scenario: str = "attack") -> Result:
        return run(traffic, scenario, panel_query("overview", title))

    assert rows("Top tokens").column("token")[0] == scenarios.SPIKE_TOKEN
    top_ips = rows("Top client IPs")
    spray_row = top_ips.rows[top_ips.column("ip").index(scenarios.SPRAY_IP)]
    assert spray_row[top_ips.names.index("tokens")] == scenarios.SPRAY_TOKENS
    assert rows("Tokens expiring within 7 days").column("token") == [scenarios.EXPIRING_TOKEN]
    assert rows("Uses of revoked or expired tokens").rows == [(3,)]
    assert rows("Uses of revoked or expired tokens", "benign").rows == [(0,)]
    assert rows("Minutes since last event").rows[0][0] <= 1
    assert rows("Minutes since last event", "stalled").rows[0][0] >= 20
    created = rows("Tokens created, rotated, revoked and expired")
    assert created.column("event") == ["token.created"]  # the token onboarded 2 hours ago
    events = rows("Events").rows[0][0]
    assert events == rows("Events", "benign").rows[0][0]  # same volume, different shape


def test_investigation_finds_a_token_by_id_fingerprint_principal_or_address(
    traffic: Traffic,
) -> None:
    def rows(title: str, **values: str) -> Result:
        return run(traffic, "attack", panel_query("token-investigation", title), values)

    by_id = rows("Tokens", token=scenarios.BURST_TOKEN)
    assert by_id.column("token") == [scenarios.BURST_TOKEN]
    failures = rows("Failures", token=scenarios.BURST_TOKEN)
    assert len(failures.rows) == scenarios.BURST_FAILURES
    assert set(failures.column("reason")) == {"invalid_secret"}
    assert set(failures.column("ip")) == {scenarios.BURST_IP}
    fingerprint = traffic.fingerprint(scenarios.GATEWAY_SECRET)
    assert rows("Tokens", token=fingerprint).column("token") == [fingerprint]
    assert rows("Timeline", token=fingerprint).rows
    assert set(rows("Tokens", principal="svc-payments").column("owner")) == {"svc-payments"}
    spray = rows("Failures", ip=scenarios.SPRAY_IP)
    assert len(spray.rows) == scenarios.SPRAY_TOKENS
    assert set(spray.column("ip")) == {scenarios.SPRAY_IP}
    ranged = rows("IP addresses and user agents", ip="203.0.113.0/24")
    assert ranged.rows and all(ip.startswith("203.0.113.") for ip in ranged.column("ip"))
    lifecycle = rows("Lifecycle events", token=scenarios.ONBOARDED_TOKEN)
    assert lifecycle.column("event") == ["token.created"]
    assert rows("Tokens", token="no-such-token").rows == []


def test_compliance_lists_inventory_risks_and_retention(traffic: Traffic) -> None:
    def rows(title: str) -> Result:
        return run(traffic, "attack", panel_query("compliance", title))

    inventory = rows("Inventory").column("token")
    for token in (scenarios.REVOKED_TOKEN, scenarios.DORMANT_TOKEN, scenarios.UNUSED_TOKEN):
        assert token in inventory
    assert rows("Never-used tokens").column("token") == [scenarios.UNUSED_TOKEN]
    long_lived = rows("Long-lived tokens").column("token")
    assert scenarios.NO_EXPIRY_TOKEN in long_lived and scenarios.DORMANT_TOKEN in long_lived
    assert scenarios.EXPIRING_TOKEN not in long_lived  # 60 days old, expires in 3
    assert rows("Broad scopes").column("token") == [scenarios.UNUSED_TOKEN]
    per_month = rows("Events per month").column("events")
    total = traffic.stores["attack"].query("SELECT count() FROM token_events").result_rows[0][0]
    assert sum(per_month) == total
    assert rows("Months retained").rows[0][0] >= 3  # the dormant token was created 120 days ago
    changes = rows("Lifecycle change log")
    assert ("token.revoked", scenarios.REVOKED_TOKEN) in set(
        zip(changes.column("event"), changes.column("token"), strict=True)
    )
