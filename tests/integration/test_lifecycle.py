"""Series lifecycle against the real daemon: TTL (flag, environment, config
top level and per family), expiry timing, limits freed, restart from zero,
and with --workers 2 a series fed through two workers expires only when
both stopped updating it (a merged counter never drops)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import ALICE_BIN, Daemon, clean_env, run_tests, sample_value, samples  # noqa: E402

TMP = tempfile.mkdtemp(prefix="alice-lifecycle-")


def write(name, obj):
    p = os.path.join(TMP, name)
    with open(p, "w") as f:
        json.dump(obj, f)
    return p


def wait_gone(d, name, deadline_s, **labels):
    """Polls until series name{labels} is gone; returns when (monotonic)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if sample_value(d.metrics(), name, **labels) is None:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError("%s%s still there after %.1fs" % (name, labels, deadline_s))


def test_ttl_flag_expires_within_a_second_and_restarts_from_zero():
    with Daemon(args=["--ttl", "1"]) as d:
        born = time.time()
        d.send("life.jobs:5|c|#q:a\nlife.keep:1|g")
        d.wait_samples(2)
        t_last = time.monotonic()
        assert sample_value(d.metrics(), "life_jobs_total", q="a") == 5.0
        # keep one series alive meanwhile: a line before its TTL renews it
        for _ in range(3):
            time.sleep(0.4)
            d.send("life.keep:2|g")
        gone = wait_gone(d, "life_jobs_total", 3.0, q="a")
        assert 1.0 <= gone - t_last <= 2.0 + 0.3, gone - t_last
        m = d.metrics()
        assert sample_value(m, "life_keep") == 2.0, m
        assert sample_value(m, "alice_metricsd_series_expired_total") >= 1.0
        assert sample_value(m, "alice_metricsd_series", family="life_jobs_total") == 0.0
        pause = sample_value(m, "alice_metricsd_longest_pause_seconds", cause="expiry")
        assert pause is not None and pause < 0.1, pause
        d.send("life.jobs:2|c|#q:a")  # the same bytes: the line cache must not revive it
        d.wait_samples(2 + 3 + 1)
        assert sample_value(d.metrics(), "life_jobs_total", q="a") == 2.0
        # a new series for Prometheus: its _created is the time it came back
        _, _, om = d.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        om = om.decode() if isinstance(om, bytes) else om
        assert sample_value(om, "life_jobs_created", q="a") >= born + 1.0, (born, om)


def test_family_ttl_beats_the_default_and_zero_means_never():
    cfg = write("fam.json", {"ttl": 1, "families": [
        {"name": "life_never", "type": "gauge", "help": "h", "ttl": 0},
        {"name": "life_slow", "type": "gauge", "help": "h", "ttl": 3}]})
    with Daemon(args=["--config", cfg]) as d:
        d.send("life_never:1|g\nlife_slow:1|g\nlife_auto:1|g")
        d.wait_samples(3)
        t0 = time.monotonic()
        wait_gone(d, "life_auto", 3.0)
        gone = wait_gone(d, "life_slow", 5.0)
        assert gone - t0 >= 2.9, gone - t0
        assert sample_value(d.metrics(), "life_never") == 1.0


def test_environment_and_flag_beat_the_config():
    cfg = write("top.json", {"ttl": 100})
    with Daemon(args=["--config", cfg], env={"ALICE_METRICS_TTL": "1"}) as d:
        d.send("life.env:1|g")
        d.wait_samples(1)
        wait_gone(d, "life_env", 3.0)
    with Daemon(args=["--config", cfg, "--ttl", "0"], env={"ALICE_METRICS_TTL": "1"}) as d:
        d.send("life.flag:1|g")
        d.wait_samples(1)
        time.sleep(1.6)
        assert sample_value(d.metrics(), "life_flag") == 1.0


def test_expired_series_free_their_place_under_the_limits():
    cfg = write("lim.json", {"limits": {"max_series_per_family": 2}})
    with Daemon(args=["--config", cfg, "--ttl", "1"]) as d:
        d.send("life.full:1|c|#k:a\nlife.full:1|c|#k:b\nlife.full:1|c|#k:c")
        d.wait_samples(3)
        m = d.metrics()
        assert sample_value(m, "alice_metricsd_samples_rejected_total", reason="cardinality") == 1
        wait_gone(d, "life_full_total", 3.0, k="a")
        d.send("life.full:1|c|#k:c\nlife.full:1|c|#k:d")
        d.wait_samples(5)
        m = d.metrics()
        assert sample_value(m, "life_full_total", k="c") == 1.0, m
        assert sample_value(m, "life_full_total", k="d") == 1.0, m


def test_bad_ttl_values_exit_2():
    for args in (["--ttl", "-1"], ["--ttl", "x"], ["--ttl", "99999999999"]):
        r = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0"] +
                           args, capture_output=True, text=True, timeout=10, env=clean_env())
        assert r.returncode == 2 and "--ttl" in r.stderr, (args, r)
    for bad in ({"ttl": -1}, {"ttl": "1m"}, {"families": [{"name": "x", "type": "gauge",
                                                            "ttl": 1.5}]}):
        p = write("bad.json", bad)
        r = subprocess.run([ALICE_BIN, "check-config", p], capture_output=True, text=True,
                           timeout=10, env=clean_env())
        assert r.returncode == 1 and "ttl" in r.stderr, (bad, r)


def test_workers_merged_counter_never_drops():
    """Two senders hashed to different workers feed one counter; one stops:
    the merged counter keeps both contributions for as long as the other
    sends, and goes only when both stopped for the TTL."""
    with Daemon(args=["--workers", "2", "--ttl", "1"]) as d:
        socks = []
        for i in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        dest = ("127.0.0.1", d.udp_port)
        # every socket once: with 16 source ports both workers are fed (the
        # kernel spreads ports over the SO_REUSEPORT group)
        for s in socks:
            s.sendto(b"life.merged:1|c", dest)
        d.wait_samples(16)
        m = d.metrics()
        workers = [l["worker"] for n, l, v in samples(m)
                   if n == "alice_metricsd_worker_datagrams_total" and v > 0]
        assert len(workers) == 2, m
        # only the first socket goes on sending, for 2.5 s (past the TTL)
        last = 16.0
        end = time.monotonic() + 2.5
        sent = 16
        while time.monotonic() < end:
            socks[0].sendto(b"life.merged:1|c", dest)
            sent += 1
            time.sleep(0.1)
            v = sample_value(d.metrics(), "life_merged_total")
            assert v is not None and v >= last, (v, last)
            last = v
        d.wait_samples(sent)
        assert sample_value(d.metrics(), "life_merged_total") == float(sent)
        wait_gone(d, "life_merged_total", 3.0)
        for s in socks:
            s.close()


run_tests(globals())
