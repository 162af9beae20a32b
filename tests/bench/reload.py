#!/usr/bin/python3
"""Config size against validation and reload time: generates configs of N
families (counters, gauges, histograms with buckets and summaries, labels
and help on each), then measures, for each N:

  check-config  wall time of `alice check-config FILE` (median of --repeat);
  start         from exec to the daemon's "started" line, the config applied;
  reload        SIGHUP with the same families, each with a new help text (so
                every one is redefined) to the daemon's "event=reloaded"
                line (median of --repeat);
  /health max   the slowest /health answer seen by a client asking every
                10 ms (a fresh connection each time) from just before the
                first SIGHUP to just after the last reload: how long the loop
                was held.

    /usr/bin/python3 tests/bench/reload.py --alice build-bench/src/alice
    /usr/bin/python3 tests/bench/reload.py --alice ... --families 1000,8000 --json out.json

Every loop is bounded: the daemon's log lines are awaited with deadlines
(--timeout), the /health poller stops with the run."""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import amtest  # noqa: E402

TYPES = ("counter", "gauge", "histogram", "summary")


def config_text(n, generation):
    """n families whose sample names never clash: f<i>_<type>."""
    fams = []
    for i in range(n):
        t = TYPES[i % 4]
        f = {"name": "bench_f%d_%s" % (i, t), "type": t,
             "help": "Family %d, generation %d." % (i, generation),
             "labels": ["queue", "status"][: 1 + i % 2]}
        if t == "histogram":
            f["buckets"] = [0.01, 0.1, 1, 10]
        fams.append(f)
    return json.dumps({"limits": {"max_series": 1000000}, "families": fams}, indent=1)


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def check_config_time(alice, path, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.monotonic()
        r = subprocess.run([alice, "check-config", path], capture_output=True, text=True,
                           timeout=600)
        times.append(time.monotonic() - t0)
        if r.returncode != 0:
            raise RuntimeError("check-config failed: " + r.stderr)
    return statistics.median(times)


class HealthPoller(threading.Thread):
    """Asks /health every 10 ms; keeps the slowest answer's time."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url + "/health"
        self.stop = threading.Event()
        self.worst = 0.0
        self.count = 0
        self.failures = 0

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=60) as r:
                    r.read()
            except OSError:
                self.failures += 1
            self.worst = max(self.worst, time.monotonic() - t0)
            self.count += 1
            self.stop.wait(0.01)


def measure(alice, n, repeat, timeout, tmp):
    path = os.path.join(tmp, "families-%d.json" % n)
    write(path, config_text(n, 0))
    out = {"families": n, "bytes": os.path.getsize(path)}
    out["check_config_s"] = check_config_time(alice, path, repeat)
    amtest.ALICE_BIN = alice
    t0 = time.monotonic()
    d = amtest.Daemon(args=["--config", path], timeout=timeout)
    out["start_s"] = time.monotonic() - t0
    try:
        poller = HealthPoller(d.url)
        poller.start()
        reloads = []
        for gen in range(1, repeat + 1):
            write(path, config_text(n, gen))
            time.sleep(0.05)
            t0 = time.monotonic()
            d.signal(signal.SIGHUP)
            # the log keeps no earlier reloaded line (dropped below)
            if d.wait_log(r"event=reloaded .*families=%d\b" % n, timeout=timeout) is None:
                raise RuntimeError("no reload within %s s" % timeout)
            reloads.append(time.monotonic() - t0)
            d.log = [x for x in d.log if "event=reloaded" not in x]  # await the next one
        time.sleep(0.05)
        poller.stop.set()
        poller.join(timeout=120)
        out["reload_s"] = statistics.median(reloads)
        out["health_max_s"] = poller.worst
        out["health_asked"] = poller.count
        out["health_failed"] = poller.failures
    finally:
        d.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alice", default=amtest.ALICE_BIN)
    ap.add_argument("--families", default="1000,2000,4000,8000,20000",
                    help="comma-separated family counts")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds to wait for a start or a reload")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="alice-reload-") as tmp:
        print("%9s %9s %14s %9s %9s %12s" % ("families", "KiB", "check-config s", "start s",
                                            "reload s", "/health max s"))
        for n in (int(x) for x in a.families.split(",")):
            r = measure(a.alice, n, a.repeat, a.timeout, tmp)
            rows.append(r)
            print("%9d %9d %14.3f %9.3f %9.3f %12.3f" % (n, r["bytes"] // 1024,
                                                         r["check_config_s"], r["start_s"],
                                                         r["reload_s"], r["health_max_s"]),
                  flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
