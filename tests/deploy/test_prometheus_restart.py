"""A daemon restarted with --state-file is no counter reset for a real
Prometheus: it scrapes the daemon every second, the daemon is stopped and
started again on the same port, and resets() over the window is 0 while
the counter goes on from where it was (and a histogram's buckets too)."""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promhelper import Prometheus, run_tests  # noqa: E402
import amtest  # noqa: E402,I100

TMP = tempfile.mkdtemp(prefix="alice-restart-")
STATE = os.path.join(TMP, "state")
PORT = amtest.free_tcp_port()

CONFIG = """
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: alice
    static_configs: [{targets: ["127.0.0.1:%d"]}]
""" % PORT


def daemon():
    return amtest.Daemon(args=["--state-file", STATE], http_flags=False,
                         env={"ALICE_METRICS_HOST": "127.0.0.1",
                              "ALICE_METRICS_PORT": str(PORT)})


def value(prom, expr):
    got = prom.values(expr)
    return list(got.values())[0] if got else None


def test_restart_is_not_a_counter_reset():
    prom = Prometheus(CONFIG)
    try:
        d = daemon()
        try:
            d.send("restart.jobs:5|c|#q:a\nrestart.lat:100|ms")
            d.wait_samples(2)
            prom.wait(lambda: value(prom, 'restart_jobs_total{q="a"}') == 5.0,
                      "the first value scraped", timeout=15)
        finally:
            assert d.stop() == 0
        time.sleep(1.5)  # a scrape or two find the port closed
        d = daemon()
        try:
            assert d.wait_log(r"event=state_restored .* restored=2 "), d.log
            d.send("restart.jobs:3|c|#q:a\nrestart.lat:100|ms")
            d.wait_samples(2)
            prom.wait(lambda: value(prom, 'restart_jobs_total{q="a"}') == 8.0,
                      "the value after the restart", timeout=15)
            prom.wait(lambda: value(prom, "restart_lat_count") == 2.0, "the histogram",
                      timeout=15)
        finally:
            d.stop()
        assert value(prom, 'resets(restart_jobs_total{q="a"}[2m])') == 0.0
        assert value(prom, 'resets(restart_lat_bucket{le="+Inf"}[2m])') == 0.0
        assert value(prom, 'resets(restart_lat_count[2m])') == 0.0
        assert value(prom, 'changes(up{job="alice"}[2m])') >= 2.0  # it was down between
    finally:
        prom.stop()


run_tests(globals())
