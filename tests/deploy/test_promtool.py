#!/usr/bin/python3
"""promtool on deploy/prometheus: the configuration (with its rule file), the
alerting rules, and their unit tests (alerts_test.yml)."""

import os
import subprocess

from promhelper import DEPLOY, load_yaml, run_tests, tool

PROM_DIR = os.path.join(DEPLOY, "prometheus")


def promtool(*args):
    p = subprocess.run([tool("promtool")] + list(args), cwd=PROM_DIR,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, "promtool %s exited %d:\n%s" % (" ".join(args), p.returncode, out)
    return out


def test_check_config():
    # Also loads and checks every rule_files entry, relative to the config.
    out = promtool("check", "config", "prometheus.yml")
    assert "1 rule files found" in out, out


def test_config_matches_guide():
    cfg = load_yaml(os.path.join(PROM_DIR, "prometheus.yml"))
    assert cfg["global"]["scrape_interval"] == "15s"
    assert cfg["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["alice"]["static_configs"] == [{"targets": ["alice-metrics:9090"]}], jobs


def test_check_rules():
    out = promtool("check", "rules", "alerts.yml")
    assert "SUCCESS: 5 rules found" in out, out


def test_rules_are_the_guides_four_plus_daemon_down():
    rules = {r["alert"]: r for g in load_yaml(os.path.join(PROM_DIR, "alerts.yml"))["groups"]
             for r in g["rules"]}
    assert sorted(rules) == ["AliceMetricsDown", "DatabasePoolExhausted", "HighAPICost",
                             "HighErrorRate", "ProviderDown"], sorted(rules)
    want = {"HighErrorRate": ("5m", "warning"), "ProviderDown": ("5m", "critical"),
            "DatabasePoolExhausted": ("5m", "warning"), "HighAPICost": ("15m", "warning")}
    for name, (for_, severity) in want.items():
        assert rules[name]["for"] == for_, name
        assert rules[name]["labels"]["severity"] == severity, name
        assert rules[name]["annotations"]["summary"], name


def test_every_alert_has_unit_tests_firing_and_quiet():
    tests = load_yaml(os.path.join(PROM_DIR, "alerts_test.yml"))["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    for name in ("HighErrorRate", "ProviderDown", "DatabasePoolExhausted", "HighAPICost",
                 "AliceMetricsDown"):
        assert name in fired, "no test makes %s fire" % name
        assert name in quiet, "no test keeps %s quiet" % name


def test_rule_unit_tests():
    out = promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in out, out


if __name__ == "__main__":
    run_tests(globals())
