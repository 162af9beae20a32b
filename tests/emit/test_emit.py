"""EmitIntegration: alice-emit against the real daemon, read back from
/metrics over HTTP; UDP and the Unix socket; `time` with failing and killed
commands; stdin bulk mode; refused input; an absent daemon.

Run with /usr/bin/python3; ALICE_BIN and ALICE_EMIT_BIN name the binaries."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import (ALICE_BIN, Daemon, Skip, built_program, clean_env,  # noqa: E402
                    free_udp_port, run_tests, sample_value, sum_values)

EMIT = os.environ.get("ALICE_EMIT_BIN") or built_program("alice-emit")

TMP = tempfile.mkdtemp(prefix="alice-emit-test-")
SOCK = os.path.join(TMP, "metrics.sock")
D = Daemon(unix=SOCK)


def emit(*args, env=None, stdin=None, timeout=20, prog=None):
    """Runs alice-emit at the test daemon's UDP port (unless args say otherwise)."""
    full_env = clean_env({"ALICE_METRICS_ADDR": "127.0.0.1:%d" % D.udp_port})
    if env is not None:
        full_env.update(env)
        full_env = {k: v for k, v in full_env.items() if v is not None}
    cmd = (prog or [EMIT]) + list(args)
    return subprocess.run(cmd, input=stdin, capture_output=True, env=full_env, timeout=timeout)


def value(name, **labels):
    return sample_value(D.metrics(), name, **labels)


def wait_value(name, want, timeout=5.0, **labels):
    """Polls /metrics until name{labels} == want; returns the last value."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = value(name, **labels)
        if got is not None and abs(got - want) < 1e-9:
            return got
        time.sleep(0.02)
    raise AssertionError("%s%r: want %r, got %r" % (name, labels, want, got))


def accepted():
    return sample_value(D.metrics(), "alice_metricsd_samples_total") or 0


def rejected():
    return sum_values(D.metrics(), "alice_metricsd_samples_rejected_total")


def marker(name):
    """Sends a good line and waits for it: everything sent before it
    (same socket path, in order) has been processed."""
    r = emit("counter", name)
    assert r.returncode == 0, r.stderr
    wait_value(name + "_total", 1)


def test_help_and_version():
    r = emit("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for needle in ("TYPE NAME [VALUE] [key=value ...]", "time NAME", "--count COUNTER",
                   "-- COMMAND", "alice-emit [options] -", "--host", "--port", "--unix",
                   "--strict", "--set", "ALICE_METRICS_ADDR", "udp://", "unix://",
                   "counter", "gauge", "histogram", "timer", "set", "examples:",
                   "alice-emit time", "| alice-emit -", "exit status"):
        assert needle in out, needle
    r = emit("--version")
    assert r.returncode == 0 and r.stdout.decode().startswith("alice-emit "), r


def test_counter_udp():
    for args in (["counter", "alice_emit_jobs", "queue=a", "status=ok"],
                 ["c", "alice_emit_jobs", "2", "queue=a", "status=ok"],
                 ["--strict", "counter", "alice_emit_jobs", "status=ok", "queue=a"]):
        r = emit(*args)
        assert r.returncode == 0 and not r.stderr, r
    wait_value("alice_emit_jobs_total", 4, queue="a", status="ok")


def test_builtin_families():
    labels = ["provider=openai", "model=gpt-4", "operation=emit"]
    assert emit("counter", "alice_api_requests_total", *labels, "status=success").returncode == 0
    assert emit("histogram", "alice_api_request_duration_seconds", "0.3", *labels).returncode == 0
    assert emit("timer", "alice_api_request_duration_seconds", "7000", *labels).returncode == 0
    sel = dict(provider="openai", model="gpt-4", operation="emit")
    wait_value("alice_api_requests_total", 1, status="success", **sel)
    wait_value("alice_api_request_duration_seconds_count", 2, **sel)
    wait_value("alice_api_request_duration_seconds_sum", 7.3, **sel)
    wait_value("alice_api_request_duration_seconds_bucket", 1, le="5.0", **sel)


def test_gauge_forms():
    steps = [(["gauge", "alice_emit_level", "7"], 7),
             (["gauge", "alice_emit_level", "-2"], 5),       # delta
             (["g", "alice_emit_level", "+1.5"], 6.5),       # delta
             (["--set", "gauge", "alice_emit_level", "-5"], -5),
             (["gauge", "--set", "alice_emit_level", "+3"], 3),
             (["gauge", "alice_emit_level", "0"], 0)]
    for args, want in steps:
        r = emit(*args)
        assert r.returncode == 0, r
        wait_value("alice_emit_level", want)


def test_timer_set_distribution():
    assert emit("timer", "alice_emit_query_seconds", "250").returncode == 0
    assert emit("ms", "alice_emit_query_seconds", "750").returncode == 0
    wait_value("alice_emit_query_seconds_sum", 1.0)
    wait_value("alice_emit_query_seconds_count", 2)
    for member in ("u1", "u2", "u1"):
        assert emit("set", "alice_emit_users", member).returncode == 0
    wait_value("alice_emit_users", 2)
    assert emit("distribution", "alice_emit_size", "512").returncode == 0
    assert emit("d", "alice_emit_size", "2").returncode == 0
    wait_value("alice_emit_size_sum", 514)


def test_unix_socket():
    r = emit("--unix", SOCK, "counter", "alice_emit_unix", "via=flag")
    assert r.returncode == 0 and not r.stderr, r
    r = emit("--strict", "counter", "alice_emit_unix", "via=env",
             env={"ALICE_METRICS_ADDR": "unix://" + SOCK})
    assert r.returncode == 0 and not r.stderr, r
    wait_value("alice_emit_unix_total", 1, via="flag")
    wait_value("alice_emit_unix_total", 1, via="env")
    before = sample_value(D.metrics(), "alice_metricsd_datagrams_received_total",
                          transport="unix")
    assert before and before >= 2, before


def test_address_forms():
    port = D.udp_port
    forms = [({"ALICE_METRICS_ADDR": "udp://127.0.0.1:%d" % port}, []),
             ({"ALICE_METRICS_ADDR": None}, ["--port", str(port)]),
             ({"ALICE_METRICS_ADDR": "unix:///nonexistent"}, ["--host", "127.0.0.1",
                                                              "--port=%d" % port]),
             # "localhost" may resolve to ::1 first; the refused address is skipped
             ({"ALICE_METRICS_ADDR": "localhost:%d" % port}, ["--strict"])]
    for i, (env, args) in enumerate(forms):
        r = emit(*args, "counter", "alice_emit_addr", "form=%d" % i, env=env)
        assert r.returncode == 0 and not r.stderr, (i, r)
        wait_value("alice_emit_addr_total", 1, form=str(i))
    r = emit("counter", "x", env={"ALICE_METRICS_ADDR": "tcp://127.0.0.1:1"})
    assert r.returncode == 2 and b"ALICE_METRICS_ADDR" in r.stderr, r
    r = emit("--port", "70000", "counter", "x")
    assert r.returncode == 2, r


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def test_ipv6():
    if not ipv6_loopback():
        raise Skip("no IPv6 loopback on this machine")
    port = free_udp_port()
    with Daemon(args=["--statsd-host", "::1", "--statsd-port", str(port)], udp=False) as d6:
        assert d6.wait_log(r"transport=udp addr=::1"), d6.log
        for i, env in enumerate(({"ALICE_METRICS_ADDR": "[::1]:%d" % port},
                                 {"ALICE_METRICS_ADDR": "udp://[::1]:%d" % port})):
            r = emit("--strict", "counter", "alice_emit_v6", "form=%d" % i, env=env)
            assert r.returncode == 0, r
        r = emit("--host", "::1", "--port", str(port), "--strict", "counter", "alice_emit_v6",
                 "form=2")
        assert r.returncode == 0, r
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            body = d6.metrics()
            if sum_values(body, "alice_emit_v6_total") == 3:
                break
            time.sleep(0.02)
        assert sum_values(d6.metrics(), "alice_emit_v6_total") == 3


def test_refused_nothing_sent():
    ok_before, rej_before = accepted(), rejected()
    bad = [(["counter", "alice emit bad"], b"bad_name"),
           (["counter", "alice_emit_bad:5"], b"bad_name"),
           (["counter", "alice_emit_bad", "-1"], b"negative_counter"),
           (["gauge", "alice_emit_bad", "abc"], b"bad_value"),
           (["gauge", "alice_emit_bad"], b"missing VALUE"),
           (["counter", "alice_emit_bad", "k=a,b"], b"bad_label"),
           (["counter", "alice_emit_bad", "__k=v"], b"bad_label"),
           (["counter", "alice_emit_bad", "k=v", "k=w"], b"bad_label"),
           (["counter", "alice_emit_bad", "k=\xff".encode("latin-1").decode("utf-8",
                                                                              "surrogateescape")],
            b"bad_label"),
           (["bogus", "alice_emit_bad"], b"unknown TYPE"),
           (["--nope", "counter", "alice_emit_bad"], b"unknown option"),
           (["time", "alice_emit_bad", "status=x", "--count", "c", "--", "true"], b"bad_label")]
    for args, why in bad:
        r = emit(*args)
        assert r.returncode == 2, (args, r)
        assert why in r.stderr, (args, r.stderr)
    marker("alice_emit_refused_marker")
    assert rejected() == rej_before, "a refused line reached the daemon"
    assert accepted() == ok_before + 1
    assert value("alice_emit_bad_total") is None


def test_time_success_and_failure():
    base = ["time", "alice_api_request_duration_seconds", "provider=shell", "model=sh",
            "operation=time", "--count", "alice_api_requests_total", "--"]
    r = emit(*base, "sh", "-c", "sleep 0.2; exit 0")
    assert r.returncode == 0, r
    r = emit(*base, "sh", "-c", "sleep 0.1; echo out; echo err >&2; exit 3")
    assert r.returncode == 3, r
    assert r.stdout == b"out\n" and r.stderr == b"err\n", r
    sel = dict(provider="shell", model="sh", operation="time")
    wait_value("alice_api_requests_total", 1, status="success", **sel)
    wait_value("alice_api_requests_total", 1, status="error", **sel)
    wait_value("alice_api_request_duration_seconds_count", 2, **sel)
    total = value("alice_api_request_duration_seconds_sum", **sel)
    assert 0.3 <= total < 5, total
    # without --count: only the histogram
    r = emit("time", "alice_emit_timed_seconds", "job=x", "--", "true")
    assert r.returncode == 0, r
    wait_value("alice_emit_timed_seconds_count", 1, job="x")


def test_time_exit_codes():
    r = emit("time", "alice_emit_t2_seconds", "--count", "alice_emit_t2", "--",
             "/nonexistent/command")
    assert r.returncode == 127 and b"/nonexistent/command" in r.stderr, r
    r = emit("time", "alice_emit_t2_seconds", "--count", "alice_emit_t2", "--",
             "sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + signal.SIGKILL, r
    wait_value("alice_emit_t2_total", 2, status="error")


def wait_child(pid, depth=1, timeout=5.0):
    """Waits until pid has a child (depth 1) or grandchild (depth 2): then
    alice-emit has forked with its handlers installed, and a shell has run
    everything before its first command."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = f.read().split()
        except OSError:
            kids = []
        if kids and depth == 1:
            return
        if kids:
            try:
                wait_child(int(kids[0]), depth - 1, max(0.0, deadline - time.monotonic()))
                return
            except AssertionError:
                pass
        time.sleep(0.01)
    raise AssertionError("command not started")


def test_time_passes_signals():
    """SIGTERM to alice-emit reaches the command; its death is counted."""
    env = clean_env({"ALICE_METRICS_ADDR": "127.0.0.1:%d" % D.udp_port})
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        p = subprocess.Popen([EMIT, "time", "alice_emit_sig_seconds", "--count", "alice_emit_sig",
                              "--", "sleep", "30"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        wait_child(p.pid)
        time.sleep(0.05)  # from fork to exec
        p.send_signal(sig)
        rc = p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()
        assert rc == 128 + sig, (sig, rc)
    # a command that handles the signal and exits 0 on its own
    p = subprocess.Popen([EMIT, "time", "alice_emit_sig_seconds", "--count", "alice_emit_sig",
                          "--", "sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_child(p.pid, depth=2)  # sh has set its trap and started sleep
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=10)
    p.stdout.close()
    p.stderr.close()
    assert rc == 0, rc
    wait_value("alice_emit_sig_total", 3, status="error")
    wait_value("alice_emit_sig_total", 1, status="success")


def bulk(transport, n=10000):
    name = "alice_emit_bulk_" + transport
    lines = "".join("%s:1|c|#shard:s%d\n" % (name, i % 10) for i in range(n))
    before = accepted()
    args = ["--unix", SOCK] if transport == "unix" else []
    r = emit(*args, "--strict", "-", stdin=lines.encode())
    assert r.returncode == 0 and not r.stderr, r
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum_values(D.metrics(), name + "_total") < n:
        time.sleep(0.05)
    assert sum_values(D.metrics(), name + "_total") == n
    assert accepted() - before == n


def test_stdin_bulk_udp():
    bulk("udp")


def test_stdin_bulk_unix():
    bulk("unix")


def test_stdin_invalid_lines():
    rej_before = rejected()
    text = ("alice_emit_mixed:1|c\n"
            "bad line\n"
            "\n"
            "alice_emit_mixed:2|c\r\n"
            "alice_emit_mixed:-1|c\n"
            "alice_emit_mixed:3|c")  # no final newline
    r = emit("-", stdin=text.encode())
    assert r.returncode == 2, r
    err = r.stderr.decode()
    assert "line 2" in err and "syntax" in err, err
    assert "line 5" in err and "negative_counter" in err, err
    assert "2 of 6 lines refused" in err, err
    wait_value("alice_emit_mixed_total", 6)
    marker("alice_emit_mixed_marker")
    assert rejected() == rej_before


def test_absent_daemon():
    port = free_udp_port()
    env = {"ALICE_METRICS_ADDR": "127.0.0.1:%d" % port}
    r = emit("counter", "alice_emit_nobody", env=env)
    assert r.returncode == 0 and not r.stderr, r
    r = emit("--strict", "counter", "alice_emit_nobody", env=env)
    assert r.returncode == 1 and b"no daemon" in r.stderr, r
    missing = os.path.join(TMP, "missing.sock")
    r = emit("--unix", missing, "counter", "alice_emit_nobody")
    assert r.returncode == 0 and not r.stderr, r
    r = emit("--unix", missing, "--strict", "gauge", "alice_emit_nobody", "1")
    assert r.returncode == 1 and b"no daemon" in r.stderr, r
    r = emit("-", stdin=b"a:1|c\n", env=env)
    assert r.returncode == 0, r
    r = emit("--strict", "-", stdin=b"a:1|c\n", env=env)
    assert r.returncode == 1, r
    r = emit("time", "t", "--", "true", env=env)
    assert r.returncode == 0, r
    r = emit("--strict", "time", "t", "--", "sh", "-c", "exit 4", env=env)
    assert r.returncode == 4, r  # the command's status wins
    r = emit("--strict", "time", "t", "--", "true", env=env)
    assert r.returncode == 1, r
    # a host that does not resolve: a warning, still exit 0 unless --strict
    env = {"ALICE_METRICS_ADDR": "no-such-host.invalid:8125"}
    r = emit("counter", "x", env=env)
    assert r.returncode == 0 and b"warning" in r.stderr, r
    r = emit("--strict", "counter", "x", env=env)
    assert r.returncode == 1, r


def test_alice_emit_subcommand():
    """`alice emit ...` is the same program."""
    r = emit("emit", "--help", prog=[ALICE_BIN])
    assert r.returncode == 0 and b"time NAME" in r.stdout, r
    r = emit("emit", "counter", "alice_emit_sub", "via=alice", prog=[ALICE_BIN])
    assert r.returncode == 0, r
    wait_value("alice_emit_sub_total", 1, via="alice")
    r = emit("emit", "counter", "bad name", prog=[ALICE_BIN])
    assert r.returncode == 2, r


try:
    run_tests(globals())
finally:
    D.stop()
    for f in os.listdir(TMP):
        os.unlink(os.path.join(TMP, f))
    os.rmdir(TMP)
