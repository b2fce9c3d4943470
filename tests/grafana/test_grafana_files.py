"""Every provisioning file under grafana/ held to the rules Grafana and the ClickHouse plugin
apply (no official schema checks them): required fields, uids, references, formats,
durations, layout, and macros that work where the query runs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import grafana_files as files
import grafana_variables as variables
import macros
import pytest

CTX = macros.QueryContext(
    macros.EPOCH + timedelta(days=20000),
    macros.EPOCH + timedelta(days=20001),
    timedelta(seconds=60),
)
TIME_MACROS = re.compile(
    r"\$__(timeFilter|timeFilter_ms|dateFilter|dateTimeFilter|dt|fromTime|toTime|fromTime_ms|toTime_ms)\b"
)
ENV_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*\}$")
DATA_LINK_FIELD = re.compile(r"\$\{__data\.fields\.(\w+)(?::percentencode)?\}")
DASHBOARD_LINK = re.compile(r"^/d/([^/?]+)(?:/[^?]*)?(?:\?(.*))?$")
PANEL_TYPES = set(files.FORMAT_OF_PANEL)
SEVERITIES = {"critical", "warning", "info"}

ALL_QUERIES = [*files.panel_queries(), *files.variable_queries(), *files.alert_queries()]


def walk(value: Any) -> Any:
    """Every dict key and scalar in a loaded file."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    else:
        yield value


def test_every_file_is_where_the_provisioning_expects_it() -> None:
    assert set(files.dashboards()) == {"overview", "token-investigation", "security", "compliance"}
    for path in (
        files.DATASOURCE_FILE,
        files.PROVIDER_FILE,
        files.RULES_FILE,
        files.CONTACT_POINTS_FILE,
        files.POLICIES_FILE,
    ):
        assert files.load_yaml(path)["apiVersion"] == 1, path
    assert sorted(p.name for p in (files.PROVISIONING_DIR / "alerting").iterdir()) == [
        "contact-points.yaml",
        "notification-policies.yaml",
        "tokenotel-rules.yaml",
    ]


# ------------------------------------------------------------------ data source, provider


def test_the_data_source_is_the_clickhouse_plugin_with_a_fixed_uid_and_settings_from_env() -> None:
    sources = files.load_yaml(files.DATASOURCE_FILE)["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert source["type"] == files.PLUGIN_TYPE
    assert source["uid"] == files.DATASOURCE_UID and files.UID.match(source["uid"])
    data = source["jsonData"]
    assert "database" not in data, "the plugin ignores `database`: use `defaultDatabase`"
    assert data["defaultDatabase"] == "tokenotel"
    for key in ("host", "port", "protocol", "secure", "username"):
        assert ENV_REFERENCE.match(str(data[key])), (
            f"jsonData.{key} should come from the environment"
        )
    assert set(source["secureJsonData"]) == {"password"}
    assert ENV_REFERENCE.match(source["secureJsonData"]["password"])
    assert "password" not in data


def test_the_dashboard_provider_reads_files_into_one_folder() -> None:
    providers = files.load_yaml(files.PROVIDER_FILE)["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    if provider["options"].get("foldersFromFilesStructure"):
        assert "folder" not in provider, "with foldersFromFilesStructure, set no folder"
    else:
        assert provider["folder"] == "tokenotel"


# ------------------------------------------------------------------ dashboards


@pytest.mark.parametrize("name", sorted(files.dashboards()))
def test_dashboard_has_the_fields_grafana_needs(name: str) -> None:
    dashboard = files.dashboards()[name]
    text = (files.DASHBOARD_DIR / f"{name}.json").read_text()
    assert "__inputs" not in dashboard and "__inputs" not in text
    assert "${DS_" not in text, "provisioning does not resolve ${DS_...} placeholders"
    assert dashboard["schemaVersion"] == 41
    assert dashboard["title"].startswith("tokenotel / ")
    assert files.UID.match(dashboard["uid"])
    assert dashboard["id"] is None
    files.relative_seconds(dashboard["time"]["from"])
    assert dashboard["time"]["to"] == "now"
    assert dashboard["panels"], "a dashboard without panels"
    assert "tokenotel" in dashboard["tags"]


def test_dashboard_uids_and_titles_are_unique() -> None:
    uids = [d["uid"] for d in files.dashboards().values()]
    titles = [d["title"] for d in files.dashboards().values()]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", sorted(files.dashboards()))
def test_panels_are_laid_out_on_the_grid_without_overlap(name: str) -> None:
    panels = files.dashboards()[name]["panels"]
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] <= 23 and 1 <= pos["w"] <= 24 and pos["x"] + pos["w"] <= 24, panel
        assert pos["h"] >= 1 and pos["y"] >= 0, panel
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(files.dashboards()))
def test_every_panel_queries_the_provisioned_source_in_the_format_its_type_needs(name: str) -> None:
    for panel in files.dashboards()[name]["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["datasource"] == {"type": files.PLUGIN_TYPE, "uid": files.DATASOURCE_UID}
        targets = panel["targets"]
        assert targets and len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == panel["datasource"]
            assert target["editorType"] == "sql" and target["rawSql"].strip()
            fmt = target["format"]
            assert type(fmt) is int, f"{panel['title']}: format must be an integer, not {fmt!r}"
            assert fmt == files.FORMAT_OF_PANEL[panel["type"]], panel["title"]
            assert target["queryType"] == files.QUERY_TYPE_OF_FORMAT[fmt]
            assert target["pluginVersion"].startswith("4.")
        if "interval" in panel:
            files.parse_duration(panel["interval"])


@pytest.mark.parametrize("name", sorted(files.dashboards()))
def test_variables_are_defined_once_and_every_reference_resolves(name: str) -> None:
    dashboard = files.dashboards()[name]
    defined = [v["name"] for v in dashboard["templating"]["list"]]
    assert len(set(defined)) == len(defined)
    for variable in dashboard["templating"]["list"]:
        assert re.match(r"^[a-z_][a-z0-9_]*$", variable["name"])
        assert variable["type"] in {"query", "custom", "textbox", "constant", "interval"}
        assert "value" in variable["current"]
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == files.DATASOURCE_UID
            assert variable["refresh"] in (1, 2), "query variables refresh on load or time change"
            assert variable["definition"] == variable["query"]
        if variable["type"] == "custom":
            options = [o["value"] for o in variable["options"]]
            assert options == variable["query"].split(",")
            assert variable["current"]["value"] in options
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= variables.references(target["rawSql"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            used |= variables.references(variable["query"])
    assert used <= set(defined), f"undefined variables: {used - set(defined)}"


def data_links(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], str, str]]:
    """(panel, field the link sits on, url) for every data link of a dashboard."""
    links = []
    for panel in dashboard["panels"]:
        config = panel["fieldConfig"]
        for link in config["defaults"].get("links", []):
            links.append((panel, "", link["url"]))
        for override in config["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "links":
                    links += [
                        (panel, override["matcher"]["options"], li["url"]) for li in prop["value"]
                    ]
    return links


def test_security_links_every_token_and_ip_to_the_investigation_dashboard() -> None:
    security = files.dashboards()["security"]
    investigation = files.dashboards()["token-investigation"]
    linked_panels = {panel["id"] for panel, _, _ in data_links(security)}
    assert linked_panels == {p["id"] for p in security["panels"]}
    targets = {v["name"] for v in investigation["templating"]["list"]}
    for panel, field, url in data_links(security):
        match = DASHBOARD_LINK.match(url)
        assert match and match.group(1) == investigation["uid"], url
        params = match.group(2).split("&")
        assert "${__url_time_range}" in params, f"{panel['title']}: keep the time range"
        linked_vars = {p.split("=")[0].removeprefix("var-") for p in params if p.startswith("var-")}
        assert linked_vars and linked_vars <= targets, url
        assert field in DATA_LINK_FIELD.findall(url), f"{panel['title']}: link on {field!r}"


@pytest.mark.parametrize("name", sorted(files.dashboards()))
def test_every_link_points_to_a_shipped_dashboard(name: str) -> None:
    dashboard = files.dashboards()[name]
    for panel, _, url in data_links(dashboard):
        match = DASHBOARD_LINK.match(url)
        assert match, f"{panel['title']}: {url}"
        target = files.dashboard_by_uid(match.group(1))
        assert target is not None, url
        names = {v["name"] for v in target["templating"]["list"]}
        for param in (match.group(2) or "").split("&"):
            if param.startswith("var-"):
                assert param.split("=")[0].removeprefix("var-") in names, url
    for link in dashboard["links"]:
        if link["type"] == "dashboards":
            assert any(set(link["tags"]) <= set(d["tags"]) for d in files.dashboards().values())


# ------------------------------------------------------------------ every query


@pytest.mark.parametrize("query", ALL_QUERIES, ids=str)
def test_every_query_is_bounded_by_the_time_range_and_expands_strictly(query: files.Query) -> None:
    assert TIME_MACROS.search(query.sql), f"{query}: bound the time with the plugin's macros"
    values = files.default_variables(query.dashboard) if query.dashboard else {}
    expanded = macros.expand(variables.substitute(query.sql, values), CTX)
    assert "$__" not in expanded and "${" not in expanded


# ------------------------------------------------------------------ alert rules


def test_alert_rules_are_one_group_in_the_tokenotel_folder() -> None:
    groups = files.load_yaml(files.RULES_FILE)["groups"]
    assert len(groups) == 1
    group = groups[0]
    assert group["orgId"] == 1 and group["name"] and group["folder"] == "tokenotel"
    assert files.parse_duration(group["interval"]) == timedelta(minutes=1)
    rules = group["rules"]
    uids = [r["uid"] for r in rules]
    titles = [r["title"] for r in rules]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    assert all(files.UID.match(uid) for uid in uids)
    assert len(rules) == 7


@pytest.mark.parametrize("rule", files.alert_rules(), ids=lambda r: r["uid"])
def test_alert_rule_is_complete_and_its_references_resolve(rule: dict[str, Any]) -> None:
    data = {d["refId"]: d for d in rule["data"]}
    assert len(data) == len(rule["data"])
    assert rule["condition"] in data
    assert rule["noDataState"] in {"Alerting", "NoData", "OK", "KeepLast"}
    assert rule["execErrState"] in {"Alerting", "Error", "OK", "KeepLast"}
    files.parse_duration(rule["for"])
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["labels"]["source"] == "tokenotel"
    for key in ("summary", "description", "runbook"):
        assert len(rule["annotations"][key]) > 20, f"annotation {key}"
    dashboard = files.dashboard_by_uid(rule["dashboardUid"])
    assert dashboard is not None
    assert rule["panelId"] in {p["id"] for p in dashboard["panels"]}
    queries = 0
    for ref, item in data.items():
        model = item["model"]
        assert model["refId"] == ref
        time_range = item["relativeTimeRange"]
        if item["datasourceUid"] == files.EXPRESSION_UID:
            assert model["datasource"] == {"type": "__expr__", "uid": "__expr__"}
            assert model["type"] in {"reduce", "threshold", "math", "resample"}
            if model["type"] in {"reduce", "threshold", "resample"}:
                assert model["expression"] in data and model["expression"] != ref
            else:
                assert set(re.findall(r"\$(\w+)", model["expression"])) <= set(data)
            if model["type"] == "threshold":
                (condition,) = model["conditions"]
                evaluator = condition["evaluator"]
                assert evaluator["type"] in {"gt", "lt", "within_range", "outside_range"}
                assert all(isinstance(p, int | float) for p in evaluator["params"])
            if model["type"] == "reduce":
                assert model["reducer"] in {"last", "mean", "max", "min", "sum", "count"}
        else:
            queries += 1
            assert item["datasourceUid"] == files.DATASOURCE_UID
            assert model["datasource"] == {"type": files.PLUGIN_TYPE, "uid": files.DATASOURCE_UID}
            assert type(model["format"]) is int and model["format"] == 1
            assert model["editorType"] == "sql" and model["queryType"] == "table"
            assert time_range["from"] > time_range["to"] >= 0
            assert not variables.references(model["rawSql"]), "alert rules have no variables"
    assert queries == 1
    # The condition is a threshold on a reduction of the query.
    condition = data[rule["condition"]]["model"]
    assert condition["type"] == "threshold"
    reduced = data[condition["expression"]]["model"]
    assert reduced["type"] == "reduce"
    assert data[reduced["expression"]]["datasourceUid"] == files.DATASOURCE_UID


def test_no_unescaped_dollar_outside_query_models() -> None:
    """Grafana expands environment variables in every string of the rules file except the
    query models: a `$` elsewhere must be written `$$`."""
    for rule in files.alert_rules():
        outside = {k: v for k, v in rule.items() if k != "data"}
        outside["data"] = [{k: v for k, v in d.items() if k != "model"} for d in rule["data"]]
        for value in walk(outside):
            text = str(value).replace("$$", "")
            assert "$" not in text, f"{rule['uid']}: {value!r}"
    text = files.RULES_FILE.read_text()
    assert "${DS_" not in text and "__inputs" not in text


def test_contact_point_and_policy_fit_together() -> None:
    points = files.load_yaml(files.CONTACT_POINTS_FILE)["contactPoints"]
    names = {p["name"] for p in points}
    receivers = [r for p in points for r in p["receivers"]]
    assert len({r["uid"] for r in receivers}) == len(receivers)
    assert all(files.UID.match(r["uid"]) for r in receivers)
    (webhook,) = receivers
    assert webhook["type"] == "webhook"
    assert ENV_REFERENCE.match(webhook["settings"]["url"])
    (policy,) = files.load_yaml(files.POLICIES_FILE)["policies"]
    assert policy["orgId"] == 1 and policy["receiver"] in names
    for key in ("group_wait", "group_interval", "repeat_interval"):
        files.parse_duration(policy[key])
    labels = {k: v for r in files.alert_rules() for k, v in r["labels"].items()}
    for route in policy["routes"]:
        assert route["receiver"] in names
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                files.parse_duration(route[key])
        for name, op, value in route["object_matchers"]:
            assert op in {"=", "!=", "=~", "!~"}
            assert name in labels, f"no rule has the label {name}"
            assert value in {r["labels"][name] for r in files.alert_rules()}


def test_durations_parse_as_grafana_parses_them() -> None:
    assert files.parse_duration("0s") == timedelta(0)
    assert files.parse_duration("1h30m") == timedelta(minutes=90)
    for bad in ("", "5 m", "1.5m", "m"):
        with pytest.raises(ValueError):
            files.parse_duration(bad)


# ------------------------------------------------------------------ documentation


def test_the_readme_documents_every_dashboard_rule_variable_and_the_grants() -> None:
    readme = (files.GRAFANA_DIR / "README.md").read_text()
    for dashboard in files.dashboards().values():
        assert dashboard["title"] in readme
    for rule in files.alert_rules():
        assert rule["title"] in readme
    source = files.load_yaml(files.DATASOURCE_FILE)["datasources"][0]
    for value in [*source["jsonData"].values(), *source["secureJsonData"].values()]:
        if ENV_REFERENCE.match(str(value)):
            assert str(value)[2:-1] in readme
    webhook = files.load_yaml(files.CONTACT_POINTS_FILE)["contactPoints"][0]["receivers"][0]
    assert webhook["settings"]["url"][2:-1] in readme
    assert "tokenotel migrate --print-grants --reader-password-file" in readme
    assert files.load_yaml(files.PROVIDER_FILE)["providers"][0]["options"]["path"] in readme
