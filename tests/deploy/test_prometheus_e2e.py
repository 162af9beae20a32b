#!/usr/bin/python3
"""The metrics guide's monitoring, end to end: the real daemon, scraped every
second by a real Prometheus (Debian's, temporary storage, loopback) that runs
the shipped prometheus.yml (intervals and target changed) and alerts.yml.
Traffic goes in phases with known counts; the guide's example queries,
asked through Prometheus' HTTP API, must return what the traffic implies.

Exactness: every counter series (and the cost summary's _sum) is created at 0
before Prometheus' first scrape, and queries are evaluated at the timestamp of
the latest scrape, so rate(x[5m]) is exactly (count sent) / 300 and
rate(x[1h]) * 3600 exactly the dollars sent: there is nothing to extrapolate.
Histograms cannot be created empty over StatsD (one priming observation
each), so quantiles of rate()d buckets are checked against bucket bounds and
the quantile of the raw buckets exactly."""

import os
import shutil
import sys
import tempfile
import time
import traceback

from promhelper import DEPLOY, Prometheus, dump_yaml, load_yaml, run_tests
import amtest  # noqa: E402,I100  (promhelper puts tests/ on sys.path)

BOUNDS = [.005, .01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10]
S = {"lines": 0}  # the daemon, Prometheus, scrape times, lines sent

# Request series: (provider, model, operation, status)
A = ("openai", "gpt-4", "text", "success")
B = ("openai", "gpt-4", "text", "error")
C = ("anthropic", "claude-3", "text", "success")
D = ("anthropic", "claude-3", "text", "error")
E = ("fal.ai", "flux-schnell", "image", "success")
F = ("fal.ai", "flux-schnell", "image", "error")
REQUESTS = {k: 0 for k in (A, B, C, D, E, F)}
# Duration observations in seconds, by (provider, model, operation).
DURATIONS = {("openai", "gpt-4", "text"): [], ("anthropic", "claude-3", "text"): [],
             ("fal.ai", "flux-schnell", "image"): []}
COST = {("openai", "gpt-4"): [], ("anthropic", "claude-3"): []}


# ------------------------------------------------------------------ traffic
def req_line(key, n):
    return ("alice_api_requests_total:%d|c|#provider:%s,model:%s,operation:%s,status:%s"
            % ((n,) + key))


def requests(key, n):
    """n requests as n lines of 1 (a 0 creates the series)."""
    REQUESTS[key] += n
    return [req_line(key, 1)] * n if n else [req_line(key, 0)]


def durations(key, seconds, n, unit="h"):
    DURATIONS[key] += [seconds] * n
    value = seconds * 1000 if unit == "ms" else seconds
    return ["alice_api_request_duration_seconds:%g|%s|#provider:%s,model:%s,operation:%s"
            % ((value, unit) + key)] * n


def cost(key, dollars, n):
    COST[key] += [dollars] * n
    return ["alice_api_request_cost_dollars:%g|h|#provider:%s,model:%s" % ((dollars,) + key)] * n


def gauge(name, value, provider=None):
    return "%s:%g|g%s" % (name, value, "|#provider:" + provider if provider else "")


def other_families():
    """One round of every other guide family (dashboard panels need data)."""
    return [
        "alice_provider_error_rate:0.33|g|#provider:openai",
        "alice_provider_error_rate:0|g|#provider:anthropic",
        "alice_db_query_duration_seconds:0.004|h|#query_type:select",
        "alice_db_query_duration_seconds:1.5|h|#query_type:insert",
        "alice_assets_processed_total:1|c|#media_type:image,source:fal.ai,status:success",
        "alice_assets_processed_total:1|c|#media_type:image,source:fal.ai,status:error",
        "alice_asset_quality_score:0.8|h|#media_type:image,quality_type:brisque",
        "alice_asset_quality_score:72|h|#media_type:image,quality_type:claude",
        "alice_events_published_total:1|c|#event_type:asset.processed",
        "alice_events_published_total:1|c|#event_type:asset.discovered",
    ]


def send(lines, transport="udp"):
    """Packs lines into datagrams, sends them and waits until the daemon has
    counted every line (accepted or rejected)."""
    d = S["daemon"]
    batch = []
    for line in lines + [None]:
        if line is None or sum(len(x) + 1 for x in batch) + len(line) > 8000:
            if batch:
                d.send("\n".join(batch) + "\n", transport)
            batch = []
        if line is not None:
            batch.append(line)
    S["lines"] += len(lines)
    d.wait_samples(S["lines"], timeout=10)


# ------------------------------------------------------------------ queries
def prom():
    assert "prom" in S, "no Prometheus (setup failed)"
    return S["prom"]


def at(expr, t, *keys):
    """{label values tuple for keys: value} of an instant query at time t."""
    out = {}
    for r in prom().query(expr, t):
        k = tuple(r["metric"].get(x, "") for x in keys)
        assert k not in out, "duplicate %r in %s" % (k, expr)
        out[k] = float(r["value"][1])
    return out


def one(expr, t):
    res = at(expr, t)
    assert len(res) == 1, "%s -> %r" % (expr, res)
    return res[()]


def close(got, want, rel=1e-9, what=""):
    assert abs(got - want) <= rel * max(abs(want), 1e-12) + 1e-12, \
        "%s: got %r, want %r" % (what, got, want)


def latest_scrape():
    return one('timestamp(up{job="alice"})', None)


def wait_scraped(what):
    """Waits until Prometheus' latest scrape shows every request count and
    every duration observation sent; returns that scrape's timestamp."""
    want_total = sum(REQUESTS.values())
    want_obs = sum(len(v) for v in DURATIONS.values())

    def ok():
        got = prom().values('sum(alice_api_requests_total{job="alice"})')
        obs = prom().values('sum(alice_api_request_duration_seconds_count{job="alice"})')
        return (list(got.values()) == [want_total] and list(obs.values()) == [want_obs])
    prom().wait(ok, "%s scraped (%d requests, %d observations)" % (what, want_total, want_obs),
                timeout=15)
    return latest_scrape()


def bucket_quantile(q, obs):
    """Prometheus' histogram_quantile over the default buckets of obs."""
    counts = [sum(1 for o in obs if o <= b) for b in BOUNDS] + [len(obs)]
    rank = q * len(obs)
    i = next(i for i, c in enumerate(counts) if c >= rank)
    if i == len(BOUNDS):
        return BOUNDS[-1]
    lo, below = (0.0, 0) if i == 0 else (BOUNDS[i - 1], counts[i - 1])
    return lo + (BOUNDS[i] - lo) * (rank - below) / (counts[i] - below)


def bucket_of(value):
    """(lower, upper] bounds of the bucket holding value."""
    for i, b in enumerate(BOUNDS):
        if value <= b:
            return (0.0 if i == 0 else BOUNDS[i - 1], b)
    return (BOUNDS[-1], float("inf"))


def error_pct_by_provider():
    out = {}
    for p in ("openai", "anthropic", "fal.ai"):
        tot = sum(v for k, v in REQUESTS.items() if k[0] == p)
        err = sum(v for k, v in REQUESTS.items() if k[0] == p and k[3] == "error")
        out[(p,)] = 100.0 * err / tot
    return out


def wait_alerts(alertname, label, want, what):
    """Waits until the ALERTS series of alertname carry exactly the `label`
    values in want (pending or firing), evaluated by Prometheus' rule manager."""
    def ok():
        got = {k[0] for k in at('ALERTS{alertname="%s"}' % alertname, None, label)}
        return got == want or None
    prom().wait(ok, "%s alerts for %s = %s" % (alertname, label, sorted(want)), timeout=15)


# ------------------------------------------------------------------ setup
def setup():
    tmp = tempfile.mkdtemp(prefix="alice-e2e-")
    S["tmp"] = tmp
    S["daemon"] = amtest.Daemon(unix=os.path.join(tmp, "metrics.sock"))
    # Prime: every counter series at 0, the cost _sum at 0, one observation
    # per duration series, the gauges' starting values.
    lines = []
    for k in REQUESTS:
        lines += requests(k, 0)
    lines += durations(("openai", "gpt-4", "text"), 0.2, 1)
    lines += durations(("anthropic", "claude-3", "text"), 0.3, 1, unit="ms")
    lines += durations(("fal.ai", "flux-schnell", "image"), 1.5, 1)
    lines += cost(("openai", "gpt-4"), 0, 1) + cost(("anthropic", "claude-3"), 0, 1)
    for p in ("openai", "anthropic", "fal.ai"):
        lines += [gauge("alice_provider_health_status", 1, p),
                  gauge("alice_provider_circuit_breaker_state", 0, p)]
    lines += [gauge("alice_db_connections_active", 5)] + other_families()
    send(lines)

    # The shipped prometheus.yml and alerts.yml, with a 1 s cadence and the
    # daemon's loopback port as the target.
    cfg = load_yaml(os.path.join(DEPLOY, "prometheus", "prometheus.yml"))
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "alice"]
    job["static_configs"] = [{"targets": ["127.0.0.1:%d" % S["daemon"].http_port]}]
    with open(os.path.join(DEPLOY, "prometheus", "alerts.yml")) as f:
        rules = f.read()
    S["prom"] = Prometheus(dump_yaml(cfg), files={"alerts.yml": rules})
    S["T0"] = prom().wait(lambda: prom().values('up{job="alice"}') and latest_scrape(),
                          "the first scrape", timeout=15)


def teardown():
    if "prom" in S:
        S["prom"].stop()
    if "daemon" in S:
        S["daemon"].stop()
    if "tmp" in S:
        shutil.rmtree(S["tmp"], ignore_errors=True)


# ------------------------------------------------------------------ phase 0
def test_target_up_and_series_primed():
    t = S["T0"]
    assert one('up{job="alice"}', t) == 1
    got = at("alice_api_requests_total", t, "provider", "model", "operation", "status")
    assert got == {k: 0.0 for k in REQUESTS}, \
        "counter series should exist at 0 before any traffic (a `:0|c` line): %r" % got
    assert at("alice_api_request_cost_dollars_sum", t, "provider") == \
        {("openai",): 0.0, ("anthropic",): 0.0}


# ------------------------------------------------------------------ phase 1
# openai 5% errors; anthropic and fal.ai none. fal.ai unhealthy, its breaker
# open; the DB pool at 19 of 20.
def test_phase1_traffic_scraped():
    lines = requests(A, 95) + requests(B, 5) + requests(C, 50) + requests(E, 20)
    lines += durations(("openai", "gpt-4", "text"), 0.2, 90)
    lines += durations(("openai", "gpt-4", "text"), 3.0, 10)
    lines += durations(("fal.ai", "flux-schnell", "image"), 1.5, 20)
    lines += cost(("openai", "gpt-4"), 0.05, 100) + cost(("anthropic", "claude-3"), 0.02, 50)
    lines += [gauge("alice_provider_health_status", 0, "fal.ai"),
              gauge("alice_provider_circuit_breaker_state", 1, "fal.ai"),
              gauge("alice_db_connections_active", 19)] + other_families()
    send(lines)
    # anthropic over the Unix socket, timers in milliseconds.
    send(durations(("anthropic", "claude-3", "text"), 0.3, 100, unit="ms"), "unix")
    S["T1"] = wait_scraped("phase 1")


def check_request_rate(t):
    # rate(alice_api_requests_total[5m]): one series per label set.
    got = at("rate(alice_api_requests_total[5m])", t, "provider", "model", "operation", "status")
    assert set(got) == set(REQUESTS), got
    for k, n in REQUESTS.items():
        close(got[k], n / 300.0, what="rate %s" % (k,))
    # sum by (model) (rate(alice_api_requests_total[5m]))
    got = at("sum by (model) (rate(alice_api_requests_total[5m]))", t, "model")
    for model in ("gpt-4", "claude-3", "flux-schnell"):
        close(got[(model,)], sum(v for k, v in REQUESTS.items() if k[1] == model) / 300.0,
              what="rate of %s" % model)


def check_error_pct(t):
    total = sum(REQUESTS.values())
    errors = sum(v for k, v in REQUESTS.items() if k[3] == "error")
    got = one('100 * sum(rate(alice_api_requests_total{status="error"}[5m])) '
              '/ sum(rate(alice_api_requests_total[5m]))', t)
    close(got, 100.0 * errors / total, what="error percentage")
    # The expression of the corrected HighErrorRate rule, without its threshold.
    got = at('100 * sum by (provider) (rate(alice_api_requests_total{status="error"}[5m])) '
             '/ (sum by (provider) (rate(alice_api_requests_total[5m])) > 0)', t, "provider")
    # Every provider has an error series (created at 0), so each has a value.
    want = error_pct_by_provider()
    assert set(got) == set(want), (got, want)
    for k, v in want.items():
        close(got[k], v, what="error percentage of %s" % k)


def check_latency(t, phase_obs):
    """p95 of the guide's query within the right bucket; the raw-bucket
    quantile exact; the guide's average duration close."""
    got = at("histogram_quantile(0.95, rate(alice_api_request_duration_seconds_bucket[5m]))",
             t, "provider", "model", "operation")
    assert set(got) == set(DURATIONS), got
    for k, obs in DURATIONS.items():
        # rate() sees the observations after the first scrape (the priming
        # one at most partly, through extrapolation): the p95 of those must
        # land in the bucket of the p95 of everything sent since.
        lo, hi = bucket_of(bucket_quantile(0.95, phase_obs[k]))
        assert lo < got[k] <= hi, "p95 %s = %r, want in (%s, %s]" % (k, got[k], lo, hi)
    got = at("histogram_quantile(0.95, alice_api_request_duration_seconds_bucket)",
             t, "provider", "model", "operation")
    for k, obs in DURATIONS.items():
        close(got[k], bucket_quantile(0.95, obs), what="raw p95 %s" % (k,))
    got = at("rate(alice_api_request_duration_seconds_sum[5m]) "
             "/ rate(alice_api_request_duration_seconds_count[5m])", t,
             "provider", "model", "operation")
    for k, obs in phase_obs.items():
        close(got[k], sum(obs) / len(obs), rel=0.03, what="average duration %s" % (k,))
    # alice_api_request_duration_seconds_bucket{le="5.0"}: the guide's selector.
    got = at('alice_api_request_duration_seconds_bucket{le="5.0"}', t,
             "provider", "model", "operation")
    for k, obs in DURATIONS.items():
        assert got[k] == sum(1 for o in obs if o <= 5.0), (k, got[k])


def check_cost(t):
    got = at("rate(alice_api_request_cost_dollars_sum[1h]) * 3600", t, "provider", "model")
    assert set(got) == set(COST), got
    for k, c in COST.items():
        close(got[k], sum(c), what="cost per hour %s" % (k,))
    got = at("sum by (provider) (rate(alice_api_request_cost_dollars_sum[1h]) * 3600)", t,
             "provider")
    for k, c in COST.items():
        close(got[(k[0],)], sum(c), what="cost of %s" % k[0])
    got = at("alice_api_request_cost_dollars_sum / alice_api_request_cost_dollars_count", t,
             "provider", "model")
    for k, c in COST.items():
        close(got[k], sum(c) / len(c), what="average cost %s" % (k,))


def test_phase1_request_rate():
    check_request_rate(S["T1"])


def test_phase1_error_rate_percentage():
    check_error_pct(S["T1"])


def test_phase1_p95_latency():
    first = {k: v[1:] for k, v in DURATIONS.items()}  # less the priming observation
    check_latency(S["T1"], first)


def test_phase1_cost_per_hour():
    check_cost(S["T1"])


def test_phase1_unhealthy_providers_and_open_breakers():
    t = S["T1"]
    assert at("alice_provider_health_status == 0", t, "provider") == {("fal.ai",): 0.0}
    assert at("alice_provider_circuit_breaker_state == 1", t, "provider") == {("fal.ai",): 1.0}
    assert one("alice_db_connections_active / 20 * 100", t) == 95.0


def test_phase1_alerts_pending():
    # The rules file as shipped, evaluated every second: the `for:` clauses
    # keep them pending.
    wait_alerts("ProviderDown", "provider", {"fal.ai"}, "phase 1")
    wait_alerts("DatabasePoolExhausted", "alertstate", {"pending"}, "phase 1")
    # openai at 5% stays under the 10% threshold: the guide's rule (each
    # error series divided by itself, 100%) would be pending here.
    wait_alerts("HighErrorRate", "provider", set(), "phase 1")
    wait_alerts("HighAPICost", "alertstate", set(), "phase 1")


# ------------------------------------------------------------------ phase 2
# openai errors spike (50 of 150) and its breaker opens; fal.ai recovers, its
# breaker half-open; spend passes $10 in all (no single series does); the DB
# pool drains to 12.
def test_phase2_traffic_scraped():
    S["before2"] = {k: len(v) for k, v in DURATIONS.items()}
    lines = requests(A, 5) + requests(B, 45) + requests(E, 10) + requests(F, 10)
    lines += durations(("openai", "gpt-4", "text"), 8.0, 50)
    lines += durations(("fal.ai", "flux-schnell", "image"), 1.5, 20)
    lines += cost(("openai", "gpt-4"), 0.05, 50) + cost(("anthropic", "claude-3"), 0.05, 100)
    lines += [gauge("alice_provider_health_status", 1, "fal.ai"),
              gauge("alice_provider_circuit_breaker_state", 2, "fal.ai"),
              gauge("alice_provider_health_status", 0, "openai"),
              gauge("alice_provider_circuit_breaker_state", 1, "openai"),
              gauge("alice_db_connections_active", 12)] + other_families()
    send(lines)
    send(requests(C, 0) + durations(("anthropic", "claude-3", "text"), 0.3, 10, unit="ms"),
         "unix")
    S["T2"] = wait_scraped("phase 2")


def test_phase2_request_rate():
    check_request_rate(S["T2"])


def test_phase2_error_rate_percentage():
    check_error_pct(S["T2"])
    assert error_pct_by_provider()[("openai",)] > 10 and error_pct_by_provider()[("fal.ai",)] > 10


def test_phase2_p95_latency():
    since = {k: v[1:] for k, v in DURATIONS.items()}
    check_latency(S["T2"], since)
    # The 50 slow openai requests moved its p95 into (7.5, 10].
    got = at("histogram_quantile(0.95, rate(alice_api_request_duration_seconds_bucket[5m]))",
             S["T2"], "provider")
    assert 7.5 < got[("openai",)] <= 10, got


def test_phase2_cost_per_hour():
    check_cost(S["T2"])
    close(one("sum(rate(alice_api_request_cost_dollars_sum[1h])) * 3600", S["T2"]),
          sum(sum(c) for c in COST.values()), what="total cost per hour")


def test_phase2_unhealthy_providers_and_open_breakers():
    t = S["T2"]
    assert at("alice_provider_health_status == 0", t, "provider") == {("openai",): 0.0}
    assert at("alice_provider_circuit_breaker_state == 1", t, "provider") == {("openai",): 1.0}
    got = at("changes(alice_provider_circuit_breaker_state[1h])", t, "provider")
    assert got == {("fal.ai",): 2.0, ("openai",): 1.0, ("anthropic",): 0.0}, got
    got = at("avg_over_time(alice_provider_health_status[1h]) * 100", t, "provider")
    assert got[("anthropic",)] == 100 and 0 < got[("fal.ai",)] < 100 \
        and 0 < got[("openai",)] < 100, got
    assert one("alice_db_connections_active / 20 * 100", t) == 60.0
    assert one("max_over_time(alice_db_connections_active[5m])", t) == 19.0
    assert at("alice_provider_error_rate > 0.1", t, "provider") == {("openai",): 0.33}
    close(one("avg(alice_provider_error_rate)", t), 0.165)


def test_phase2_alerts_follow():
    wait_alerts("ProviderDown", "provider", {"openai"}, "phase 2")
    wait_alerts("DatabasePoolExhausted", "alertstate", set(), "phase 2")
    wait_alerts("HighErrorRate", "provider", {"openai", "fal.ai"}, "phase 2")
    # $7.50 + $6.00 in the last hour: over $10 in all, no series alone is.
    wait_alerts("HighAPICost", "alertstate", {"pending"}, "phase 2")


# ------------------------------------------------------------------ the rest
def test_other_guide_queries():
    t = S["T2"]
    got = at("avg by (query_type) (rate(alice_db_query_duration_seconds_sum[5m]) "
             "/ rate(alice_db_query_duration_seconds_count[5m]))", t, "query_type")
    close(got[("select",)], 0.004, rel=1e-6)
    close(got[("insert",)], 1.5, rel=1e-6)
    got = at('rate(alice_db_query_duration_seconds_bucket{le="1.0"}[5m])', t, "query_type")
    assert got[("insert",)] == 0 and got[("select",)] > 0, got
    got = at("topk(10, sum by (event_type) (alice_events_published_total))", t, "event_type")
    assert got == {("asset.processed",): 3.0, ("asset.discovered",): 3.0}, got
    got = at("alice_asset_quality_score_sum / alice_asset_quality_score_count", t,
             "quality_type")
    close(got[("brisque",)], 0.8)
    close(got[("claude",)], 72)


# Every PromQL example of the metrics guide, verbatim (line breaks included).
GUIDE_QUERIES = [
    "rate(alice_api_requests_total[5m])",
    '100 * rate(alice_api_requests_total{status="error"}[5m]) \n/ rate(alice_api_requests_total[5m])',
    "sum by (model) (rate(alice_api_requests_total[5m]))",
    "rate(alice_api_request_duration_seconds_sum[5m])\n/ rate(alice_api_request_duration_seconds_count[5m])",
    "histogram_quantile(0.95, rate(alice_api_request_duration_seconds_bucket[5m]))",
    'alice_api_request_duration_seconds_bucket{le="5.0"}',
    "rate(alice_api_request_cost_dollars_sum[1h]) * 3600",
    "alice_api_request_cost_dollars_sum / alice_api_request_cost_dollars_count",
    "sum by (provider) (rate(alice_api_request_cost_dollars_sum[1h]) * 3600)",
    "alice_provider_health_status == 0",
    "avg_over_time(alice_provider_health_status[1h]) * 100",
    "alice_provider_circuit_breaker_state == 1",
    "changes(alice_provider_circuit_breaker_state[1h])",
    "alice_provider_error_rate > 0.1",
    "avg(alice_provider_error_rate)",
    "alice_db_connections_active / 20 * 100",
    "max_over_time(alice_db_connections_active[5m])",
    'rate(alice_db_query_duration_seconds_bucket{le="1.0"}[5m])',
    "avg by (query_type) (\n  rate(alice_db_query_duration_seconds_sum[5m])\n"
    "  / rate(alice_db_query_duration_seconds_count[5m])\n)",
    "rate(alice_assets_processed_total[5m]) * 60",
    'alice_assets_processed_total{status="success"} \n/ alice_assets_processed_total',
    "alice_asset_quality_score_sum / alice_asset_quality_score_count",
    "histogram_quantile(0.5, alice_asset_quality_score_bucket)",
    "rate(alice_events_published_total[5m])",
    "topk(10, sum by (event_type) (alice_events_published_total))",
    # The guide's dashboard panels.
    "rate(alice_api_requests_total{status='error'}[5m])",
]


def test_every_guide_query_returns_data():
    empty = [q for q in GUIDE_QUERIES if not prom().query(q, S["T2"])]
    assert not empty, "guide queries without data:\n" + "\n".join(empty)


def test_every_dashboard_panel_has_data():
    import json
    with open(os.path.join(DEPLOY, "grafana", "dashboards", "alice.json")) as f:
        dash = json.load(f)
    empty = []
    for p in dash["panels"]:
        for tgt in p.get("targets", []):
            expr = tgt["expr"].replace("$provider", ".*")
            if not prom().query(expr, S["T2"]):
                empty.append("%s: %s" % (p["title"], expr))
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_auto_family_label_set_grows():
    """A worker release adds a tag to an auto-created family: nothing is
    rejected, Prometheus keeps the old series and gets the new one, and an
    empty tag value is the old series again."""
    def scraped(want):
        prom().wait(lambda: at("sum(grown_jobs_total)", None) == {(): want},
                    "grown_jobs_total at %s" % want, timeout=15)
        return latest_scrape()
    send(["grown.jobs:1|c|#queue:a"])
    scraped(1)
    send(["grown.jobs:2|c|#queue:a,region:eu", "grown.jobs:3|c|#queue:a,region:"])
    t = scraped(6)
    assert at("grown_jobs_total", t, "queue", "region") == {("a", ""): 4, ("a", "eu"): 2}
    assert at('count by (__name__) ({__name__="grown_jobs_total", region=""})', t) == {(): 1}
    assert one("resets(grown_jobs_total{region=\"\"}[5m])", t) == 0


def test_no_line_rejected_and_both_transports_counted():
    t = latest_scrape()
    assert one("sum(alice_metricsd_samples_rejected_total) or vector(0)", t) == 0
    got = at("alice_metricsd_datagrams_received_total", t, "transport")
    assert got.get(("udp",), 0) > 0 and got.get(("unix",), 0) > 0, got
    assert one("alice_metricsd_samples_total", t) == S["lines"]


if __name__ == "__main__":
    started = time.monotonic()
    try:
        try:
            setup()
        except Exception:  # noqa: BLE001 - reported like a test
            print("FAIL setup")
            traceback.print_exc()
            if "prom" in S:
                print(S["prom"].log_tail())
            if "daemon" in S:
                print("".join(S["daemon"].log))
            print("0 passed, 1 failed")
            sys.exit(1)
        try:
            run_tests(globals())
        except SystemExit as e:
            if e.code:
                print(S["prom"].log_tail(), file=sys.stderr)
            raise
    finally:
        teardown()
        print("(%.1fs)" % (time.monotonic() - started), file=sys.stderr)
