#!/usr/bin/python3
"""deploy/grafana: the dashboard JSON (panels, units, data source variable,
layout) and its provisioning; every panel expression is checked as PromQL by a
real Prometheus server (a parse error is a 400 "bad_data")."""

import json
import os
import re

from promhelper import DEPLOY, Prometheus, load_yaml, run_tests

GRAFANA = os.path.join(DEPLOY, "grafana")
DASHBOARD = os.path.join(GRAFANA, "dashboards", "alice.json")

# Every family of the metrics guide must be on the dashboard.
GUIDE_FAMILIES = [
    "alice_api_requests_total", "alice_api_request_duration_seconds",
    "alice_api_request_cost_dollars", "alice_provider_health_status",
    "alice_provider_circuit_breaker_state", "alice_provider_error_rate",
    "alice_db_connections_active", "alice_db_query_duration_seconds",
    "alice_assets_processed_total", "alice_asset_quality_score",
    "alice_events_published_total",
]
# The guide's four panels and the unit each must have.
GUIDE_PANELS = {
    "API Request Rate": ("reqps", "alice_api_requests_total"),
    "API Error Rate": ("reqps", 'status="error"'),
    "API Latency (p95)": ("s", "histogram_quantile(0.95, "),
    "Cost per Hour": ("currencyUSD", "[1h]) * 3600"),
}
# The dashboard's panels beyond the guide's four, each with its unit (title: unit).
MORE_PANELS = {
    "Provider Health": "none", "Circuit Breakers": "none",
    "API Error Percentage": "percent", "Provider Error Rate": "percentunit",
    "DB Pool Usage": "percent", "DB Query Latency by Type": "s",
    "Asset Throughput": "opm", "Asset Quality Score": "none",
    "Events Published by Type": "ops",
}


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(d=None):
    return [p for p in (d or dashboard())["panels"] if p["type"] != "row"]


def substitute(expr):
    """Grafana template variables -> what they expand to with "All"."""
    return expr.replace("$provider", ".*")


def all_exprs():
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_json_is_a_dashboard_model():
    d = dashboard()
    assert d["title"] == "AliceMultiverse Monitoring"
    assert d["uid"] == "alice-metrics"
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 30
    # Importable by file provisioning and the UI: the bare model, no
    # {"dashboard": ...} API wrapper and no fixed numeric id.
    assert "dashboard" not in d and d.get("id") is None
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_datasource_variable():
    var = {v["name"]: v for v in dashboard()["templating"]["list"]}
    ds = var["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus", ds
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    prov = var["provider"]
    assert prov["datasource"]["uid"] == "${datasource}"
    assert prov["includeAll"] and prov["allValue"] == ".*"


def test_guide_panels_present_with_units():
    by_title = {p["title"]: p for p in panels()}
    for title, (unit, fragment) in GUIDE_PANELS.items():
        assert title in by_title, "missing guide panel %r" % title
        p = by_title[title]
        assert p["fieldConfig"]["defaults"]["unit"] == unit, (title, p["fieldConfig"])
        assert any(fragment in t["expr"] for t in p["targets"]), (title, fragment)


def test_more_panels_present_with_units():
    by_title = {p["title"]: p for p in panels()}
    for title, unit in MORE_PANELS.items():
        assert title in by_title, "missing panel %r" % title
        assert by_title[title]["fieldConfig"]["defaults"]["unit"] == unit, title


def test_every_panel_has_a_unit_and_targets():
    for p in panels():
        assert p["fieldConfig"]["defaults"].get("unit"), "no unit: %s" % p["title"]
        assert p["targets"], "no targets: %s" % p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_every_guide_family_is_shown():
    text = " ".join(e for _, e in all_exprs())
    missing = [f for f in GUIDE_FAMILIES if not re.search(re.escape(f) + r"(_bucket|_sum|_count)?\b", text)]
    assert not missing, missing


def test_state_mappings():
    by_title = {p["title"]: p for p in panels()}
    health = by_title["Provider Health"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert health["0"]["text"] == "unhealthy" and health["1"]["text"] == "healthy"
    breaker = by_title["Circuit Breakers"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert [breaker[k]["text"] for k in "012"] == ["closed", "open", "half-open"]


def test_layout_fits_and_does_not_overlap():
    cells = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "overlap at %s: %s" % ((x, y), p["title"])
                cells.add((x, y))


def test_provisioning_files():
    ds = load_yaml(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml"))
    assert ds["apiVersion"] == 1
    (src,) = ds["datasources"]
    assert src["type"] == "prometheus" and src["url"] == "http://prometheus:9090", src
    assert src["isDefault"] is True
    dp = load_yaml(os.path.join(GRAFANA, "provisioning", "dashboards", "alice.yml"))
    (prov,) = dp["providers"]
    assert prov["type"] == "file"
    # The compose file mounts deploy/grafana/dashboards at this path.
    compose = load_yaml(os.path.join(DEPLOY, "docker-compose.yml"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./grafana/dashboards:%s:ro" % prov["options"]["path"] in mounts, mounts
    assert "./grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro" in mounts
    assert "./grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro" in mounts


def test_every_expression_is_valid_promql():
    exprs = all_exprs()
    var = {v["name"]: v for v in dashboard()["templating"]["list"]}
    exprs.append(("$provider variable", var["provider"]["query"]["query"]
                  .replace("label_values(alice_api_requests_total, provider)",
                           "group by (provider) (alice_api_requests_total)")))
    assert len(exprs) >= 30, len(exprs)
    with Prometheus("global:\n  scrape_interval: 15s\nscrape_configs: []\n") as prom:
        # Control: a broken expression is refused.
        status, body = prom.api("query", query="rate(alice_api_requests_total[5m]")
        assert status == 400 and body["errorType"] == "bad_data", (status, body)
        bad = []
        for title, expr in exprs:
            e = substitute(expr)
            assert "$" not in e, "unsubstituted variable in %r: %s" % (title, e)
            status, body = prom.api("query", query=e)
            if status != 200 or body.get("status") != "success":
                bad.append("%s: %s -> %s %s" % (title, e, status, body.get("error")))
        assert not bad, "\n".join(bad)


if __name__ == "__main__":
    run_tests(globals())
