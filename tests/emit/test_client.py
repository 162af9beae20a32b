"""ClientIntegration: libalice (through tests/emit/client-driver.c and
src/client/examples/example-worker.c) against the real daemon, read back
from /metrics; UDP and the Unix socket; an absent daemon."""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import (Daemon, clean_env, free_udp_port, run_tests,  # noqa: E402
                    sample_value, sum_values)

DRIVER = os.environ["ALICE_CLIENT_DRIVER"]
WORKER = os.environ["ALICE_EXAMPLE_WORKER"]

TMP = tempfile.mkdtemp(prefix="alice-client-test-")
SOCK = os.path.join(TMP, "metrics.sock")
D = Daemon(unix=SOCK)
UDP = "127.0.0.1:%d" % D.udp_port
UNIX = "unix://" + SOCK


def run(prog, *args, env=None):
    r = subprocess.run([prog] + list(args), capture_output=True, env=clean_env(env), timeout=60)
    assert r.returncode == 0, r
    stats = {}
    for kv in r.stdout.decode().split():
        k, _, v = kv.partition("=")
        stats[k] = v
    return stats


def wait_value(name, want, timeout=5.0, **labels):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = sample_value(D.metrics(), name, **labels)
        if got is not None and abs(got - want) < 1e-9:
            return
        time.sleep(0.02)
    raise AssertionError("%s%r: want %r, got %r" % (name, labels, want, got))


def wait_sum(name, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = sum_values(D.metrics(), name)
        if got == want:
            return
        time.sleep(0.05)
    raise AssertionError("sum %s: want %r, got %r" % (name, want, got))


def basic(addr, via):
    rejected = sum_values(D.metrics(), "alice_metricsd_samples_rejected_total")
    st = run(DRIVER, addr, "basic")
    assert st["invalid"] == "2" and st["datagrams_dropped"] == "0", st
    sel = dict(provider="openai", model="gpt-4", operation="text")
    n = 1 if via == "udp" else 2
    wait_value("alice_lib_jobs_total", 5 * n, queue="a", status="success")
    wait_value("alice_api_requests_total", 2 * n, status="error", **sel)
    wait_value("alice_api_request_duration_seconds_count", 2 * n, **sel)
    wait_value("alice_api_request_duration_seconds_sum", 7.3 * n, **sel)
    wait_value("alice_db_connections_active", 5)
    wait_value("alice_lib_temperature", -5, room="lab")
    wait_value("alice_lib_users", 2)
    assert sum_values(D.metrics(), "alice_metricsd_samples_rejected_total") == rejected


def test_basic_udp():
    basic(UDP, "udp")


def test_basic_unix():
    basic(UNIX, "unix")


def test_bulk_udp():
    st = run(DRIVER, UDP, "bulk", "10000")
    assert st["calls"] == "10000" and st["datagrams_dropped"] == "0", st
    wait_sum("alice_lib_bulk_total", 10000)


def test_bulk_unix_from_env():
    """A burst of 10,000 lines in ~13 datagrams: the Unix socket queue of a
    busy daemon (net.unix.max_dgram_qlen, 10 by default) may overflow; the
    library then drops without waiting, and says so in its statistics."""
    before = sum_values(D.metrics(), "alice_lib_bulk_total")
    st = run(DRIVER, "-", "bulk", "10000", env={"ALICE_METRICS_ADDR": UNIX})
    sent, dropped = int(st["lines_sent"]), int(st["lines_dropped"])
    assert sent + dropped == 10000 and sent > 0, st
    wait_sum("alice_lib_bulk_total", before + sent)


def test_aggregate():
    before = sample_value(D.metrics(), "alice_metricsd_samples_total") or 0
    st = run(DRIVER, UDP, "aggregate", "100000")
    assert st["calls"] == str(300001), st
    assert int(st["lines_sent"]) <= 5, st  # 300,001 calls became a handful of lines
    wait_value("alice_lib_agg_total", 100000)
    wait_value("alice_lib_inflight", 0)
    wait_value("alice_lib_level", -3)
    after = sample_value(D.metrics(), "alice_metricsd_samples_total")
    assert after - before == int(st["lines_sent"]), (before, after, st)


def test_threads():
    st = run(DRIVER, UNIX, "threads", "40000")
    assert st["calls"] == "40000", st
    sent = int(st["lines_sent"])
    assert sent + int(st["lines_dropped"]) == 40000, st
    wait_value("alice_lib_threads_total", sent)


def test_example_worker():
    sel = dict(provider="openai", operation="text")
    body = D.metrics()
    base_err = sample_value(body, "alice_api_requests_total", model="gpt-4", status="error",
                            **sel) or 0
    base_ok = sample_value(body, "alice_api_requests_total", model="gpt-4", status="success",
                           **sel) or 0
    st = run(WORKER, "--addr", UDP, "--jobs", "20", "--fail-every", "5")
    assert st["invalid"] == "0", st
    wait_value("alice_api_requests_total", base_ok + 8, model="gpt-4", status="success", **sel)
    wait_value("alice_api_requests_total", base_err + 2, model="gpt-4", status="error", **sel)
    wait_value("alice_api_request_duration_seconds_count", 10, model="claude-3", **sel)
    wait_value("alice_worker_jobs_total", 16, queue="api", status="success")
    wait_value("alice_worker_jobs_in_flight", 0, queue="api")
    st = run(WORKER, "--addr", UNIX, "--jobs", "10", "--aggregate")
    wait_value("alice_worker_jobs_total", 24, queue="api", status="success")


def test_absent_daemon():
    port = free_udp_port()
    st = run(DRIVER, "127.0.0.1:%d" % port, "bulk", "1000")
    assert st["calls"] == "1000", st
    assert st["datagrams_sent"] == "0" and int(st["datagrams_dropped"]) >= 1, st
    st = run(DRIVER, "unix://" + os.path.join(TMP, "missing.sock"), "basic")
    assert st["datagrams_sent"] == "0" and int(st["datagrams_dropped"]) >= 1, st


try:
    run_tests(globals())
finally:
    D.stop()
    for f in os.listdir(TMP):
        os.unlink(os.path.join(TMP, f))
    os.rmdir(TMP)
