"""The state file against the real daemon: restarts keep every series
exactly (SIGTERM loses nothing), kill -9 loses at most the last interval,
bad files exit 2 naming the file (or are moved aside with
--state-discard-bad), and it works with --workers 2 and from the config
file and the environment."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import ALICE_BIN, Daemon, clean_env, run_tests, sample_value, sum_values  # noqa: E402,E501

TMP = tempfile.mkdtemp(prefix="alice-state-")


def path(name):
    return os.path.join(TMP, name)


def lines_for(round_):
    """One round of lines: counters, a gauge, a histogram, a set."""
    return ["st.jobs:%d|c|#q:a" % (round_ + 1), "st.jobs:2|c|#q:b", "st.level:%d|g" % round_,
            "st.lat:%d|ms" % (100 * (round_ + 1)), "st.users:u%d|s" % round_]


def created(d, name, **labels):
    """The OpenMetrics _created sample of a series."""
    _, _, om = d.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    return sample_value(om.decode() if isinstance(om, bytes) else om, name + "_created", **labels)


def test_restarts_keep_every_series_exactly():
    state = path("loop.state")
    for workers in ("1", "2"):
        if os.path.exists(state):
            os.unlink(state)
        total_a = total_b = 0
        born = {}
        for round_ in range(4):
            with Daemon(args=["--state-file", state, "--workers", workers]) as d:
                m = d.metrics()
                if round_:
                    assert sample_value(m, "st_jobs_total", q="a") == total_a, (round_, m)
                    assert sample_value(m, "st_users") == round_, m
                    assert sample_value(m, "st_lat_count") == round_, m
                    # _created comes back too: no new series for Prometheus
                    assert created(d, "st_jobs", q="a") == born["jobs"], (round_, born)
                    assert created(d, "st_lat") == born["lat"], (round_, born)
                d.send("\n".join(lines_for(round_)))
                d.wait_samples(5)
                if not round_:
                    born = {"jobs": created(d, "st_jobs", q="a"), "lat": created(d, "st_lat")}
                    assert abs(born["jobs"] - time.time()) < 60, born
                total_a += round_ + 1
                total_b += 2
            # SIGTERM (the context manager): every accepted line is in the file
        with Daemon(args=["--state-file", state, "--workers", workers]) as d:
            m = d.metrics()
            assert sample_value(m, "st_jobs_total", q="a") == total_a, m
            assert sample_value(m, "st_jobs_total", q="b") == total_b, m
            assert sample_value(m, "st_level") == 3.0, m
            assert sample_value(m, "st_users") == 4.0, m
            assert sample_value(m, "st_lat_sum") == 1.0, m
            assert sample_value(m, "st_lat_bucket", le="0.25") == 2.0, m
            assert d.wait_log(r"event=state_restored .* restored=\d+ skipped=0"), d.log


def test_kill_9_loses_at_most_the_last_interval():
    state = path("kill.state")
    d = Daemon(args=["--state-file", state, "--state-interval", "1"])
    try:
        d.send("st.kill:5|c")
        d.wait_samples(1)
        time.sleep(2.5)  # two writes since
        d.send("st.kill:1|c")  # may or may not make it: the last interval
        d.wait_samples(2)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
    finally:
        d.stop()
    assert not [f for f in os.listdir(TMP) if f.startswith("kill.state.tmp")], os.listdir(TMP)
    with Daemon(args=["--state-file", state]) as d2:
        assert sample_value(d2.metrics(), "st_kill_total") in (5.0, 6.0)


def start_fails(state, *extra):
    r = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0",
                        "--state-file", state] + list(extra),
                       capture_output=True, text=True, timeout=20, env=clean_env())
    return r


def test_bad_files_exit_2_naming_the_file():
    good = path("good.state")
    with Daemon(args=["--state-file", good]) as d:
        d.send("st.good:1|c|#k:v")
        d.wait_samples(1)
    with open(good, "rb") as f:
        data = f.read()
    cases = {
        "truncated": data[:len(data) // 2],
        "flipped": data[:40] + bytes([data[40] ^ 1]) + data[41:],
        "json": b'{"limits": {"max_series": 5}}',
        "empty": b"",
        "future": None,
    }
    import zlib
    fut = bytearray(data)
    fut[8] = 9
    fut[28:32] = zlib.crc32(bytes(fut[:28])).to_bytes(4, "little")
    cases["future"] = bytes(fut)
    for name, content in cases.items():
        p = path("bad-%s.state" % name)
        with open(p, "wb") as f:
            f.write(content)
        r = start_fails(p)
        assert r.returncode == 2, (name, r)
        assert p in r.stderr and "event=state_invalid" in r.stderr, (name, r.stderr)
        if name == "future":
            assert "format version 9" in r.stderr, r.stderr
    r = start_fails(TMP)  # a directory
    assert r.returncode == 2 and "not a regular file" in r.stderr, r
    fifo = path("fifo.state")  # never waited on (a blocking open would hang the start)
    os.mkfifo(fifo)
    r = start_fails(fifo)
    os.unlink(fifo)
    assert r.returncode == 2 and "not a regular file" in r.stderr, r
    r = start_fails("/dev/zero")
    assert r.returncode == 2 and "not a regular file" in r.stderr, r
    # no permission: as an unprivileged user (root reads anything)
    locked = path("locked.state")
    with open(locked, "wb") as f:
        f.write(data)
    os.chmod(locked, 0o000)
    os.chmod(TMP, 0o755)
    setpriv = "/usr/bin/setpriv"
    if os.path.exists(setpriv) and os.geteuid() == 0:
        r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                            ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0",
                            "--state-file", locked], capture_output=True, text=True,
                           timeout=20, env=clean_env())
        assert r.returncode == 2 and "Permission denied" in r.stderr, r
    # --state-discard-bad: moved aside, started empty, written anew at stop
    p = path("bad-flipped.state")
    with Daemon(args=["--state-file", p, "--state-discard-bad"]) as d:
        assert d.wait_log(r"level=warn event=state_discarded"), d.log
        assert sample_value(d.metrics(), "st_good_total", k="v") is None
    aside = [f for f in os.listdir(TMP) if f.startswith("bad-flipped.state.bad-")]
    assert len(aside) == 1, os.listdir(TMP)
    with Daemon(args=["--state-file", p], env={"ALICE_STATE_DISCARD_BAD": "0"}) as d:
        pass  # the file written at the last stop is good


def test_config_and_environment():
    state = path("cfg.state")
    cfg = path("state.json")
    with open(cfg, "w") as f:
        json.dump({"server": {"state_file": state, "state_interval": 1}}, f)
    with Daemon(args=["--config", cfg]) as d:
        d.send("st.cfg:3|c")
        d.wait_samples(1)
        time.sleep(1.6)
        assert os.path.exists(state)
    env_state = path("env.state")
    with Daemon(env={"ALICE_STATE_FILE": env_state}) as d:
        d.send("st.env:4|c")
        d.wait_samples(1)
    with Daemon(env={"ALICE_STATE_FILE": env_state}) as d:
        assert sample_value(d.metrics(), "st_env_total") == 4.0


def test_sighup_while_state_writes_run():
    """SIGHUP storms while the state file is being copied (every second, of
    20,000 series): the reload finishes the copy first, every write
    succeeds, and a restart restores every count exactly, with one worker
    and with two."""
    cfg = path("hup.json")
    for workers in ("1", "2"):
        state = path("hup-%s.state" % workers)
        sock = path("hup-%s.sock" % workers)
        with open(cfg, "w") as f:
            json.dump({"limits": {"max_series_per_family": 200000},
                       "families": [{"name": "hup_kept", "type": "gauge"}]}, f)
        with Daemon(args=["--state-file", state, "--state-interval", "1", "--config", cfg,
                          "--workers", workers], unix=sock) as d:
            n = 20000
            for k in range(0, n, 50):
                d.send("\n".join("hup.big:1|c|#id:%d" % i for i in range(k, k + 50)), "unix")
            d.wait_samples(n, timeout=60)
            sent = 0
            end = time.monotonic() + 2.0
            flips = 0
            while time.monotonic() < end and flips < 80:  # bounded both ways
                # a change of help: a real reload each time (written aside
                # and renamed, so the daemon never reads a file half written)
                # hup_shape changes its label each time: its series are
                # freed while the copy may still be reading them
                label = "ab"[flips % 2]
                with open(cfg + ".tmp", "w") as f:
                    json.dump({"limits": {"max_series_per_family": 200000},
                               "families": [{"name": "hup_kept", "type": "gauge",
                                             "help": "Round %d." % flips},
                                            {"name": "hup_shape", "type": "gauge",
                                             "labels": [label]}]}, f)
                os.rename(cfg + ".tmp", cfg)
                d.signal(signal.SIGHUP)
                d.send("hup.ticks:1|c\nhup_kept:%d|g" % flips, "unix")
                d.send("\n".join("hup_shape:1|g|#%s:%d" % (label, i) for i in range(300)),
                       "unix")
                sent += 1
                flips += 1
                time.sleep(0.05)
            d.wait_samples(n + 302 * sent, timeout=30)
            m = d.metrics()
            assert sample_value(m, "alice_metricsd_state_writes_total", result="failure") == 0
            assert sample_value(m, "alice_metricsd_state_writes_total", result="success") >= 2, m
            assert sample_value(m, "alice_metricsd_config_reloads_total",
                                result="failure") == 0, [ln for ln in d.log if "reload" in ln]
        with Daemon(args=["--state-file", state, "--config", cfg, "--workers", workers]) as d:
            m = d.metrics()
            assert sample_value(m, "hup_ticks_total") == sent, (workers, sent)
            assert sample_value(m, "hup_kept") == sent - 1, workers
            assert sum_values(m, "hup_big_total") == n, workers
            assert sample_value(m, "alice_metricsd_series", family="hup_big_total") == n


run_tests(globals())
