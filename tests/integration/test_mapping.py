"""--mapping-config: statsd_exporter mapping files with the real daemon.

Mapped counters, gauges and timers into labelled families (the guide's
catalogued ones and auto-created ones), action: drop and
alice_metricsd_mapping_dropped_total, SIGHUP reload of a good and a bad
file, a bad file at start, the env and config ways to name the file,
`alice check-config --mapping` exits and messages, Debian's python3-statsd
client into the guide's families, and a mapping's ttl expiring a series."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import ALICE_BIN, Daemon, Skip, clean_env, run_tests, sample_value  # noqa: E402

TMP = tempfile.mkdtemp(prefix="alice-map-")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY_MAPPING = os.path.join(ROOT, "deploy", "mapping", "statsd-mapping.yml")

# Written the way statsd_exporter's README shows mapping files.
GUIDE = """\
mappings:
- match: "api.*.*.*.*"
  match_metric_type: counter
  name: "alice_api_requests"
  labels:
    provider: "$1"
    model: "$2"
    operation: "$3"
    status: "$4"
- match: "api.*.*.*"
  match_metric_type: observer
  name: "alice_api_request_duration_seconds"
  labels:
    provider: "$1"
    model: "$2"
    operation: "$3"
- match: "test.dispatcher.*.*.*"
  name: "dispatcher_events_total"
  labels:
    processor: "$1"
    action: "$2"
    outcome: "$3"
    job: "test_dispatcher"
- match: "queue.*.depth"
  name: "queue_depth"
  help: "Jobs waiting, by queue."
  labels:
    queue: "$1"
- match: "render.*.seconds"
  name: "render_seconds"
  observer_type: histogram
  histogram_options:
    buckets: [0.5, 1, 2]
  labels:
    kind: "$1"
- match: '(.*)\\.debug\\.(.*)'
  match_type: regex
  action: drop
  name: "dropped"
"""


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def wait_value(d, name, want, timeout=5.0, **labels):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = sample_value(d.metrics(), name, **labels)
        if got == want:
            return got
        time.sleep(0.02)
    raise AssertionError("%s%r: %r, want %r" % (name, labels, got, want))


def check_config(*args):
    p = subprocess.run([ALICE_BIN, "check-config"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=clean_env(), timeout=10)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_mapped_counters_gauges_timers():
    path = write("guide.yml", GUIDE)
    with Daemon(args=["--mapping-config", path]) as d:
        d.send("api.openai.gpt-4.chat.success:1|c\n"
               "api.openai.gpt-4.chat.success:2|c\n"
               "api.openai.gpt-4.chat:250|ms\n"
               "test.dispatcher.FooProcessor.send.success:1|c\n"
               "queue.mail.depth:7|g\n"
               "render.pdf.seconds:1.5|h\n"
               "plain.counter:1|c")
        d.wait_samples(7)
        m = d.metrics()
        labels = dict(provider="openai", model="gpt-4", operation="chat")
        assert sample_value(m, "alice_api_requests_total", status="success", **labels) == 3.0, m
        assert sample_value(m, "alice_api_request_duration_seconds_sum", **labels) == 0.25, m
        assert sample_value(m, "alice_api_request_duration_seconds_bucket", le="0.25",
                            **labels) == 1.0, m
        assert sample_value(m, "dispatcher_events_total", processor="FooProcessor",
                            action="send", outcome="success", job="test_dispatcher") == 1.0, m
        assert sample_value(m, "queue_depth", queue="mail") == 7.0, m
        assert "# HELP queue_depth Jobs waiting, by queue.\n" in m, m
        assert sample_value(m, "render_seconds_bucket", kind="pdf", le="1.0") == 0.0, m
        assert sample_value(m, "render_seconds_bucket", kind="pdf", le="2.0") == 1.0, m
        # no mapping matches: the usual rules
        assert sample_value(m, "plain_counter_total") == 1.0, m
        # the line cache answers repeats with the mapped series
        d.send("\n".join(["api.openai.gpt-4.chat.success:1|c"] * 50))
        wait_value(d, "alice_api_requests_total", 53.0, status="success", **labels)


def test_drop_counts_apart_from_rejects():
    path = write("drop.yml", GUIDE)
    with Daemon(args=["--mapping-config", path]) as d:
        for _ in range(3):
            d.send("web.debug.cache_hit:1|c\nweb.debug.size:5|g")
        wait_value(d, "alice_metricsd_mapping_dropped_total", 6.0)
        m = d.metrics()
        assert "web_debug" not in m, m
        assert "# TYPE alice_metricsd_mapping_dropped_total counter" in m, m
        rejected = [ln for ln in m.splitlines()
                    if ln.startswith("alice_metricsd_samples_rejected_total")
                    and not ln.endswith(" 0.0")]
        assert rejected == [], rejected


def test_tags_and_mapping_labels():
    path = write("tags.yml", "mappings:\n"
                 "- match: svc.*.hits\n  name: svc_hits\n  labels: {env: \"$1\"}\n"
                 "- match: own.*.hits\n  name: own_hits\n  honor_labels: true\n"
                 "  labels: {env: \"$1\"}\n")
    with Daemon(args=["--mapping-config", path]) as d:
        d.send("svc.prod.hits:1|c|#env:dev,zone:eu\nown.prod.hits:1|c|#env:dev")
        d.wait_samples(2)
        m = d.metrics()
        # honor_labels false (the default): the mapping's label wins
        assert sample_value(m, "svc_hits_total", env="prod", zone="eu") == 1.0, m
        assert sample_value(m, "own_hits_total", env="dev") == 1.0, m


def test_sighup_reload_good_then_bad():
    path = write("reload.yml", "mappings:\n- match: a.*\n  name: first\n  labels: {k: \"$1\"}\n")
    with Daemon(args=["--mapping-config", path]) as d:
        d.send("a.x:1|c")
        d.wait_samples(1)
        assert sample_value(d.metrics(), "first_total", k="x") == 1.0
        write("reload.yml", "mappings:\n- match: a.*\n  name: second\n  labels: {k: \"$1\"}\n")
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"event=mapping_reloaded .*mappings=1"), d.log
        d.send("a.x:1|c")  # the same bytes: the cache must not keep the old mapping
        d.wait_samples(2)
        m = d.metrics()
        assert sample_value(m, "second_total", k="x") == 1.0, m
        assert sample_value(m, "alice_metricsd_config_reloads_total", result="success") == 1.0
        write("reload.yml", "mappings:\n- match: a.*\n  name: \"x_$3\"\n")
        d.signal(signal.SIGHUP)
        line = d.wait_log(r"level=error event=reload_failed")
        assert line and "reload.yml:3: name" in line and "kept the old mapping" in line, d.log
        d.send("a.x:1|c")
        d.wait_samples(3)
        m = d.metrics()
        assert sample_value(m, "second_total", k="x") == 2.0, m
        assert sample_value(m, "alice_metricsd_config_reloads_total", result="failure") == 1.0


def test_bad_file_at_start_exits_2():
    path = write("bad.yml", "mappings:\n- match: a.b\n  name: ok\n- match: 'a(b'\n"
                 "  match_type: regex\n  name: x\n")
    p = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0",
                        "--mapping-config", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=clean_env(), timeout=10)
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert "event=mapping_invalid" in err and "bad.yml:4: match: regex" in err, err
    assert "listening" not in err, err
    p = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0",
                        "--mapping-config", os.path.join(TMP, "missing.yml")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
                       timeout=10)
    assert p.returncode == 2 and "No such file" in p.stderr.decode(), p.stderr


def test_env_and_config_file_name_the_mapping():
    path = write("env.yml", "mappings:\n- match: e.*\n  name: from_env\n")
    with Daemon(env={"ALICE_MAPPING_CONFIG": path}) as d:
        d.send("e.x:1|g")
        d.wait_samples(1)
        assert sample_value(d.metrics(), "from_env") == 1.0
    other = write("cfg.yml", "mappings:\n- match: e.*\n  name: from_config\n")
    cfg = write("cfg.json", json.dumps({"server": {"mapping_config": other}}))
    with Daemon(args=["--config", cfg]) as d:
        d.send("e.x:1|g")
        d.wait_samples(1)
        assert sample_value(d.metrics(), "from_config") == 1.0
    # the flag beats the variable, which beats the file
    with Daemon(args=["--config", cfg, "--mapping-config", path],
                env={"ALICE_MAPPING_CONFIG": other}) as d:
        d.send("e.x:1|g")
        d.wait_samples(1)
        assert sample_value(d.metrics(), "from_env") == 1.0


def test_check_config_mapping():
    rc, out, err = check_config("--mapping", write("good.yml", GUIDE))
    assert rc == 0 and "ok (6 mappings)" in out, (rc, out, err)
    rc, out, err = check_config("--mapping", DEPLOY_MAPPING)
    assert rc == 0, (rc, out, err)
    unused = write("unused.yml", "mappings:\n- match: a.*\n  name: a\n"
                   "  summary_options:\n    quantiles: [{quantile: 0.5, error: 0.05}]\n")
    rc, out, err = check_config("--mapping", unused)
    assert rc == 0, (rc, out, err)
    assert "unused.yml:4: summary_options: accepted, not used" in err, err
    bad = write("bad2.yml", "mappings:\n- match: a.*\n  name: a\n  ttl: 10\n")
    rc, out, err = check_config("--mapping", bad)
    assert rc == 1 and "bad2.yml:4: ttl: \"10\" is not a Go duration" in err, (rc, err)
    rc, out, err = check_config("--mapping", write("yaml.yml", "mappings: [\n"))
    assert rc == 1 and "yaml.yml:2: YAML:" in err, (rc, err)
    rc, out, err = check_config("--mapping")
    assert rc == 2, (rc, err)


def test_python3_statsd_client_into_guide_families():
    py = "/usr/bin/python3"
    probe = subprocess.run([py, "-c", "import statsd"], stderr=subprocess.PIPE)
    if probe.returncode != 0:
        raise Skip("Debian's python3-statsd is not installed")
    with Daemon(args=["--mapping-config", DEPLOY_MAPPING]) as d:
        script = (
            "import statsd\n"
            "c = statsd.StatsClient('127.0.0.1', %d)\n"
            "c.incr('api.openai.gpt-4.chat.success')\n"
            "c.incr('api.openai.gpt-4.chat.error', 2)\n"
            "c.timing('api.openai.gpt-4.chat', 1200)\n"
            "c.gauge('provider.openai.health', 1)\n"
            "c.gauge('provider.anthropic.error_rate', 0.25)\n"
            "c.timing('db.query.select', 8)\n"
            "c.incr('assets.image.upload.success')\n"
            "c.incr('events.user_signup')\n"
            "c.incr('web.debug.noise')\n" % d.udp_port)
        subprocess.run([py, "-c", script], check=True, timeout=10)
        d.wait_samples(8)
        wait_value(d, "alice_metricsd_mapping_dropped_total", 1.0)
        m = d.metrics()
        api = dict(provider="openai", model="gpt-4", operation="chat")
        assert sample_value(m, "alice_api_requests_total", status="success", **api) == 1.0, m
        assert sample_value(m, "alice_api_requests_total", status="error", **api) == 2.0, m
        assert sample_value(m, "alice_api_request_duration_seconds_bucket", le="2.5",
                            **api) == 1.0, m
        assert sample_value(m, "alice_api_request_duration_seconds_bucket", le="1.0",
                            **api) == 0.0, m
        assert sample_value(m, "alice_provider_health_status", provider="openai") == 1.0, m
        assert sample_value(m, "alice_provider_error_rate", provider="anthropic") == 0.25, m
        assert sample_value(m, "alice_db_query_duration_seconds_count",
                            query_type="select") == 1.0, m
        assert sample_value(m, "alice_assets_processed_total", media_type="image",
                            source="upload", status="success") == 1.0, m
        assert sample_value(m, "alice_events_published_total",
                            event_type="user_signup") == 1.0, m


def test_mapping_ttl_expires_a_series():
    path = write("ttl.yml", "mappings:\n- match: brief.*\n  name: brief_jobs\n  ttl: 1s\n"
                 "  labels: {q: \"$1\"}\n- match: long.*\n  name: long_jobs\n"
                 "  labels: {q: \"$1\"}\n")
    with Daemon(args=["--mapping-config", path]) as d:
        d.send("brief.a:5|c\nlong.a:1|c")
        d.wait_samples(2)
        assert sample_value(d.metrics(), "brief_jobs_total", q="a") == 5.0
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            m = d.metrics()
            if sample_value(m, "brief_jobs_total", q="a") is None:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("brief_jobs_total did not expire")
        assert sample_value(m, "long_jobs_total", q="a") == 1.0, m  # no ttl: kept
        d.send("brief.a:2|c")  # starts afresh
        d.wait_samples(3)
        assert sample_value(d.metrics(), "brief_jobs_total", q="a") == 2.0


def test_workers_share_the_mapping():
    path = write("workers.yml", GUIDE)
    with Daemon(args=["--mapping-config", path, "--workers", "2"]) as d:
        import socket
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        for s in socks:  # several source ports: the kernel spreads them over workers
            s.sendto(b"queue.mail.depth:1|g\nweb.debug.x:1|c\ntest.dispatcher.p.a.ok:1|c",
                     ("127.0.0.1", d.udp_port))
            s.close()
        wait_value(d, "alice_metricsd_mapping_dropped_total", 8.0)
        wait_value(d, "dispatcher_events_total", 8.0, processor="p", action="a", outcome="ok",
                   job="test_dispatcher")
        write("workers.yml", GUIDE.replace("dispatcher_events_total", "dispatched_total"))
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"event=mapping_reloaded"), d.log
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"test.dispatcher.p.a.ok:1|c", ("127.0.0.1", d.udp_port))
        s.close()
        wait_value(d, "dispatched_total", 1.0, processor="p", action="a", outcome="ok",
                   job="test_dispatcher")


run_tests(globals())
