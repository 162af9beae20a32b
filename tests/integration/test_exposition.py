"""/metrics checked by real third-party tools: promtool check metrics and
Debian's python3-prometheus-client parsers (text 0.0.4 and OpenMetrics), plus
gzip and content negotiation."""

import gzip
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import Daemon, run_tests, sample_value  # noqa: E402

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as parse_om  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families as parse_text  # noqa: E402

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,"
                     "application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

TRAFFIC = "\n".join([
    "alice_api_requests_total:1|c|#provider:openai,model:gpt-4,operation:text,status:success",
    "alice_api_requests_total:1|c|@0.1|#provider:anthropic,model:claude-3,operation:text,status:error",
    "alice_api_request_duration_seconds:1200|ms|#provider:openai,model:gpt-4,operation:text",
    "alice_api_request_duration_seconds:0.3|h|@0.3|#provider:openai,model:gpt-4,operation:text",
    "alice_api_request_cost_dollars:0.05|h|#provider:openai,model:gpt-4",
    "alice_provider_health_status:1|g|#provider:openai",
    "alice_provider_circuit_breaker_state:2|g|#provider:fal.ai",
    "alice_provider_error_rate:0.125|g|#provider:fal.ai",
    "alice_db_connections_active:7|g",
    "alice_db_query_duration_seconds:12|ms|#query_type:select",
    "alice_assets_processed_total:3|c|#media_type:image,source:fal.ai,status:success",
    "alice_asset_quality_score:0.83|h|#media_type:image,quality_type:brisque",
    "alice_asset_quality_score:71|h|#media_type:image,quality_type:claude",
    "alice_events_published_total:1|c|#event_type:asset.created",
    # label values that need escaping, and raw UTF-8
    'custom.escapes:1|c|#path:C:\\temp\\x,quote:say "hi",emoji:caf\u00e9 \u2615',
    "custom.big:123456789|g",
    "custom.tiny:0.000001|g",
    "custom.set:a|s",
])
N_LINES = TRAFFIC.count("\n") + 1

GUIDE_FAMILIES = [
    ("alice_api_requests_total", "counter"),
    ("alice_api_request_duration_seconds", "histogram"),
    ("alice_api_request_cost_dollars", "summary"),
    ("alice_provider_health_status", "gauge"),
    ("alice_provider_circuit_breaker_state", "gauge"),
    ("alice_provider_error_rate", "gauge"),
    ("alice_db_connections_active", "gauge"),
    ("alice_db_query_duration_seconds", "histogram"),
    ("alice_assets_processed_total", "counter"),
    ("alice_asset_quality_score", "histogram"),
    ("alice_events_published_total", "counter"),
]


def loaded():
    d = Daemon()
    d.send(TRAFFIC.encode("utf-8"))
    d.wait_samples(N_LINES)
    return d


def test_all_guide_families_have_help_and_type_when_empty():
    with Daemon() as d:
        m = d.metrics()
        for name, typ in GUIDE_FAMILIES:
            assert "# HELP %s " % name in m, name
            assert "# TYPE %s %s\n" % (name, typ) in m, name
        for name in ["alice_metricsd_datagrams_received_total", "alice_metricsd_samples_total",
                     "alice_metricsd_samples_rejected_total", "alice_metricsd_series",
                     "alice_metricsd_build_info", "process_resident_memory_bytes",
                     "process_cpu_seconds_total", "process_start_time_seconds",
                     "process_open_fds"]:
            assert "# TYPE %s " % name in m, name


def test_promtool_check_metrics():
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert os.path.exists(promtool), "promtool missing: apt-get install prometheus"
    with loaded() as d:
        body = d.metrics()
        r = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        # promtool's linter prints problems on stdout/stderr even at exit 0
        out = (r.stdout + r.stderr).decode()
        assert "error" not in out.lower(), out


def test_grown_label_set_passes_promtool_and_parsers():
    """An auto family whose label set grew: each series written with the
    labels it has, accepted by promtool and both prometheus_client parsers."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    with Daemon() as d:
        d.send("grow.me:1|c|#a:x\n"
               "grow.me:2|c|#a:x,b:y\n"
               "grow.me:4|c|#b:z,c:\n"
               "grow.me:8|c|#a:x,b:\n"
               "grow.me:16|c\n"
               "grow.lat:5|ms|#a:x\n"
               "grow.lat:5|ms|#op:w,a:x\n")
        d.wait_samples(7)
        body = d.metrics()
        assert 'grow_me_total{a="x"} 9.0' in body, body
        assert 'grow_me_total{a="x",b="y"} 2.0' in body, body
        assert 'grow_me_total{b="z"} 4.0' in body, body
        assert 'grow_me_total 16.0' in body, body
        assert 'grow_lat_bucket{a="x",op="w",le="+Inf"} 1.0' in body, body
        r = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           capture_output=True, timeout=30)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 0 and "error" not in out.lower(), out
        fams = {f.name: f for f in parse_text(body)}
        got = sorted((tuple(sorted(s.labels.items())), s.value)
                     for s in fams["grow_me"].samples if s.name == "grow_me_total")
        assert got == [((), 16.0), ((("a", "x"),), 9.0), ((("a", "x"), ("b", "y")), 2.0),
                       ((("b", "z"),), 4.0)], got
        _, _, om = d.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        fams = {f.name: f for f in parse_om(om.decode())}
        assert len([s for s in fams["grow_me"].samples if s.name == "grow_me_total"]) == 4


def test_python_text_parser_values():
    with loaded() as d:
        status, headers, body = d.get("/metrics")
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        fams = {f.name: f for f in parse_text(body.decode())}
        req = fams["alice_api_requests"]  # the parser drops _total from counter families
        assert req.type == "counter"
        vals = {s.labels["provider"]: s.value for s in req.samples}
        assert vals == {"openai": 1.0, "anthropic": 10.0}, vals
        esc = fams["custom_escapes"].samples[0]
        assert esc.labels["path"] == "C:\\temp\\x", esc.labels
        assert esc.labels["quote"] == 'say "hi"'
        assert esc.labels["emoji"] == "caf\u00e9 \u2615"
        assert fams["custom_big"].samples[0].value == 123456789
        assert fams["custom_tiny"].samples[0].value == 0.000001
        hist = fams["alice_api_request_duration_seconds"]
        buckets = [(s.labels["le"], s.value) for s in hist.samples if s.name.endswith("_bucket")]
        les = [le for le, _ in buckets]
        assert les == ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75",
                       "1.0", "2.5", "5.0", "7.5", "10.0", "+Inf"], les
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "cumulative"
        assert dict(buckets)["0.5"] == 1 / 0.3 and dict(buckets)["+Inf"] == 1 + 1 / 0.3


def test_guide_le_selector_matches():
    with loaded() as d:
        m = d.metrics()
        assert sample_value(m, "alice_api_request_duration_seconds_bucket", le="5.0",
                            provider="openai") is not None
        assert sample_value(m, "alice_db_query_duration_seconds_bucket", le="1.0",
                            query_type="select") == 1.0
        q = [le for le in ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0",
                           "10.0", "20.0", "30.0", "40.0", "50.0", "60.0", "70.0", "80.0",
                           "90.0", "100.0", "+Inf"]]
        for le in q:
            assert sample_value(m, "alice_asset_quality_score_bucket", le=le,
                                quality_type="brisque") is not None, le


def test_openmetrics_negotiation_and_parser():
    with loaded() as d:
        status, headers, body = d.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
        assert status == 200
        assert headers["Content-Type"] == \
            "application/openmetrics-text; version=1.0.0; charset=utf-8", headers
        text = body.decode()
        assert text.endswith("# EOF\n")
        assert "# TYPE alice_api_requests counter\n" in text
        assert "alice_api_requests_total{" in text
        fams = {f.name: f for f in parse_om(text)}
        assert fams["alice_api_requests"].type == "counter"
        assert fams["alice_api_request_duration_seconds"].type == "histogram"
        # OM: histogram counts are integers even with 1/rate weights
        for s in fams["alice_api_request_duration_seconds"].samples:
            if s.name.endswith(("_bucket", "_count")):
                assert float(s.value).is_integer(), s


def test_text_when_openmetrics_not_asked():
    with Daemon() as d:
        for accept in [None, "text/plain", "*/*", "application/json",
                       "application/openmetrics-text;version=9.9.9",
                       "application/openmetrics-text;q=0.1,text/plain;q=0.9"]:
            h = {"Accept": accept} if accept else {}
            _, headers, body = d.get("/metrics", headers=h)
            assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), accept
            assert not body.decode().endswith("# EOF\n")


def test_gzip():
    with loaded() as d:
        _, plain_h, plain = d.get("/metrics")
        status, headers, body = d.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers.get("Content-Encoding") == "gzip", headers
        assert int(headers["Content-Length"]) == len(body)
        unz = gzip.decompress(body).decode()
        assert len(body) < len(unz)
        fams = {f.name for f in parse_text(unz)}
        assert "alice_api_requests" in fams
        _, h2, b2 = d.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
        assert "Content-Encoding" not in h2
        _, h3, b3 = d.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT,
                                                "Accept-Encoding": "deflate, gzip"})
        assert gzip.decompress(b3).decode().endswith("# EOF\n")


def test_scrape_spreads_over_loop_turns():
    """A scrape of many families is rendered over several loop turns: the
    longest hold on ingest it reports is a fraction of its duration, every
    series is in it, and concurrent scrapes each get a whole body."""
    import socket
    import threading
    families, per_family = 40, 1500
    with Daemon() as d:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lines = ["spread.f%d:1|c|#k:v%d" % (f, i)
                 for f in range(families) for i in range(per_family)]
        for k in range(0, len(lines), 20):
            s.sendto("\n".join(lines[k:k + 20]).encode(), ("127.0.0.1", d.udp_port))
            if k % 2000 == 0:
                time.sleep(0.002)  # stay well inside the receive buffer
        s.close()
        d.wait_samples(len(lines), timeout=30)
        ratios = []
        for _ in range(4):
            body = d.metrics()
            assert sum(1 for ln in body.splitlines() if ln.startswith("spread_f")) == len(lines)
            dur = sample_value(body, "alice_metricsd_last_scrape_duration_seconds")
            pause = sample_value(body, "alice_metricsd_last_scrape_longest_pause_seconds")
            if dur:  # the first scrape reports the one before it (none)
                assert 0 < pause <= dur, (pause, dur)
                ratios.append(pause / dur)
        # One family of 1,500 series against 40: at least half the render
        # ran in other turns (the least noisy of three scrapes).
        print("pause/duration", ["%.3f" % r for r in ratios], file=sys.stderr)
        assert min(ratios) < 0.5, ratios

        results = []

        def scrape():
            results.append(d.get("/metrics", headers={"Accept-Encoding": "gzip"}))
        threads = [threading.Thread(target=scrape) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 6
        for status, headers, body in results:
            assert status == 200 and headers.get("Content-Encoding") == "gzip"
            text = gzip.decompress(body).decode()
            assert sum(1 for ln in text.splitlines() if ln.startswith("spread_f")) == len(lines)


def test_head_matches_get():
    with loaded() as d:
        _, gh, gb = d.get("/metrics")
        status, hh, hb = d.get("/metrics", method="HEAD")
        assert status == 200 and hb == b""
        assert hh["Content-Type"] == gh["Content-Type"]
        # the body may differ by a few bytes (self-metrics move between scrapes)
        assert abs(int(hh["Content-Length"]) - len(gb)) < 200


def test_health_and_landing():
    import json
    with loaded() as d:
        status, headers, body = d.get("/health")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        h = json.loads(body)
        assert h["status"] == "ok" and h["uptime_seconds"] >= 0
        assert h["samples_total"] == N_LINES and h["series"] >= 15
        status, headers, body = d.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'href="/metrics"' in body and b'href="/health"' in body


run_tests(globals())
