#!/usr/bin/python3
"""bench.py: the alice-metrics ingest / scrape / memory benchmark.

Starts the real daemon pinned to one CPU, drives it with loadgen pinned
to another, and prints a markdown table:

  ingest   for 20 and 1 lines per datagram, over UDP and the Unix socket,
           DogStatsD-tagged counters on 1,000 series: lines sent, lines
           counted (from the scrape), lost, the kernel's UDP RcvbufErrors,
           server CPU seconds (utime+stime from /proc/PID/stat), lines per
           CPU-second and per wall second; nullrecv (the floor) runs the
           same scenarios in the same run, and our figure is reported as a
           fraction of it, which is the number that travels between machines.
  collectd where collectd-core (statsd + write_prometheus) is installed, the
           same UDP scenarios with plain names, side by side with us.
  loss     (--loss-run) a paced 1M lines/s, 20 lines/datagram run for 60 s,
           checking counted == sent for every series (loadgen --expect); then
           the same again with --loss-scrape-series (1M) more series loaded
           first and a gzip scrape of them all every --loss-scrape-every (5)
           seconds during the run: a scrape must not hold ingest long
           enough for the receive buffer to overflow.
  scrape   100k and 1M series loaded through the Unix socket (blocking sends:
           lossless), N scrapes of /metrics in text and gzip: median/max ms,
           body bytes, server CPU per scrape; RSS per series from VmRSS; the
           same with --workers 2 (--scrape-workers): the merge's longest
           hold on a worker.
  workers  1 vs 2 ingest workers when the daemon has --workers.
  remote write  (--remote-write-series) N series pushed every 2 s to a
           receiver that reads and discards the requests: encode + compress
           ns per series, server CPU per push, bytes per series, the
           longest ingest pause (alice_metricsd_longest_pause_seconds
           {cause="remote_write"}).

Lines per CPU-second = lines counted / the server's own CPU time over the run:
it holds still on a noisy machine, unlike lines per wall second.

Only loopback addresses are used; every wait is bounded; every child is
killed on the way out. Run with /usr/bin/python3 (stdlib only):

  tests/bench/bench.py --alice build/src/alice      # full run, 10 s scenarios
  tests/bench/bench.py --quick                      # 2 s scenarios
  tests/bench/bench.py --quick --smoke              # CI smoke: works end to end
  tests/bench/bench.py --loss-run --loss-seconds 60 --json out.json

loadgen and nullrecv are built with the tests (tests/bench/meson.build) into
<builddir>/tests/bench/; by default they are taken from the build directory
that holds --alice.
"""

import argparse
import contextlib
import gzip
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import amtest  # noqa: E402  (ports, startup waits, binaries: shared with the tests)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- processes


class Procs:
    """Every child we start, so that finally: can end them all."""

    def __init__(self):
        self.children = []

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, **kw)
        self.children.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=5.0):
        amtest.stop_process(p, timeout, sig)
        if p in self.children:
            self.children.remove(p)
        return p.returncode

    def stop_all(self):
        for p in list(self.children):
            try:
                self.stop(p, timeout=3.0)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


def cpu_times(pid):
    """(utime, stime) of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    return sum(cpu_times(pid))


def steal_seconds(cpu):
    """Time the hypervisor ran something else on this CPU (/proc/stat
    steal), in seconds; None when unknown. A virtual machine's receiver
    that is not running drops what arrives, whatever its code."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts[0] == "cpu%s" % cpu and len(parts) > 8:
                    return int(parts[8]) / CLK_TCK
    except (OSError, ValueError):
        pass
    return None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def udp_rcvbuf_errors():
    """RcvbufErrors of the Udp: line of /proc/net/snmp (this net namespace)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        head, vals = rows[0], rows[1]
        return int(vals[head.index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


def udp_socket_stats(port):
    """(rx_queue bytes, drops) of the IPv4 UDP socket bound to port, from
    /proc/net/udp; None when there is none. Unlike RcvbufErrors these are
    the server's own socket's, not the whole machine's."""
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                col = line.split()
                if int(col[1].split(":")[1], 16) == port:
                    return int(col[4].split(":")[1], 16), int(col[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return None


def drain(srv, expected=None, budget=60.0):
    """Waits until the server has read everything sent: its UDP socket queue
    is empty, or (lossless Unix socket) it counted `expected` lines; then until
    it stops using CPU. Returns its CPU seconds then. Bounded by budget."""
    end = time.monotonic() + budget
    if srv.transport == "udp" and srv.udp_port:
        while time.monotonic() < end:
            st = udp_socket_stats(srv.udp_port)
            if not st or st[0] == 0:
                break
            time.sleep(0.02)
    elif expected is not None:
        while time.monotonic() < end and srv.counts_fast() < expected:
            time.sleep(0.05)
    return wait_quiet(srv.pid, budget=max(1.0, min(10.0, end - time.monotonic())))


def wait_quiet(pid, budget=10.0, step=0.15):
    """Waits until the process stops using CPU (its socket buffer is drained).
    Returns its CPU seconds then."""
    last = cpu_seconds(pid)
    end = time.monotonic() + budget
    while time.monotonic() < end:
        time.sleep(step)
        now = cpu_seconds(pid)
        if now - last < 0.5 / CLK_TCK:
            return now
        last = now
    return last


def pin(cpu, cmd):
    if cpu is None or not shutil.which("taskset"):
        return cmd
    return ["taskset", "-c", str(cpu)] + cmd


def kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


# ---------------------------------------------------------------- HTTP


def http_get(port, path, gzip_ok=False, timeout=30.0):
    """Raw HTTP/1.1 GET on loopback. Returns (status, headers, body, seconds)
    where seconds runs from connect to the last body byte."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
        if gzip_ok:
            req += "Accept-Encoding: gzip\r\n"
        s.sendall((req + "\r\n").encode())
        chunks = []
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while True:
            n = s.recv_into(view)
            if n == 0:
                break
            chunks.append(bytes(view[:n]))
        dt = time.perf_counter() - t0
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers and int(headers["content-length"]) != len(body):
        raise BenchError("short HTTP body: %d of %s bytes" % (len(body), headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":  # a large body, streamed
        body = amtest.dechunk(body)
        if body is None:
            raise BenchError("broken chunked body")
    return status, headers, body, dt


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def parse_exposition(text, prefix=None):
    """{ 'name{labels}': float } for every sample (optionally by prefix)."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if prefix and not line.startswith(prefix):
            continue
        m = SAMPLE_RE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


# ---------------------------------------------------------------- servers


class Server:
    kind = "?"

    def __init__(self, procs, tmp, transport, cpu):
        self.procs, self.tmp, self.transport, self.cpu = procs, tmp, transport, cpu
        self.p = None
        self.udp_port = None
        self.unix_path = os.path.join(tmp, "%s.sock" % self.kind)

    @property
    def pid(self):
        return self.p.pid

    def counts_fast(self):
        return self.counts()[0]

    def target(self):
        if self.transport == "udp":
            return ["--udp", "127.0.0.1:%d" % self.udp_port]
        return ["--unix", self.unix_path]

    def stop(self):
        if self.p:
            self.procs.stop(self.p)
            self.p = None

    def _wait_started(self, startup, timeout=15.0):
        """Follows the server's log until startup (an amtest.Startup) is
        ready; returns it."""
        if amtest.wait_log_file(self.log, self.p, startup, timeout):
            return startup
        if self.p.poll() is not None:
            raise BenchError("%s exited with %s: %s" % (self.kind, self.p.returncode,
                                                       tail(self.log)))
        raise BenchError("%s did not start: %s" % (self.kind, tail(self.log)))


def tail(path, n=600):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip()
    except OSError:
        return "(no log)"


class Alice(Server):
    kind = "alice"

    def __init__(self, procs, tmp, transport, cpu, binary, extra=(), limits=None,
                 unix_too=False, config=None):
        super().__init__(procs, tmp, transport, cpu)
        self.binary, self.extra, self.unix_too = binary, list(extra), unix_too
        self.config = config or {}  # more of the JSON config
        self.limits = limits if limits is not None else {
            "max_series_per_family": 2000000, "max_series": 3000000, "max_families": 100000,
            "max_series_bytes": 1 << 34}

    def start(self):
        cfg = os.path.join(self.tmp, "alice.json")
        with open(cfg, "w") as f:
            json.dump(dict(self.config, limits=self.limits), f)
        self.log = os.path.join(self.tmp, "alice.log")
        cmd = [self.binary, "metrics-server", "--host", "127.0.0.1", "--port", "0",
               "--statsd-host", "127.0.0.1", "--config", cfg,
               "--receive-buffer-bytes", str(8 << 20)]
        if self.transport == "udp":
            self.udp_port = amtest.free_udp_port()
            cmd += ["--statsd-port", str(self.udp_port)]
            if self.unix_too:
                cmd += ["--unix", self.unix_path]
        else:
            cmd += ["--statsd-port", "0", "--unix", self.unix_path]
        cmd += self.extra
        with open(self.log, "w") as logf:
            self.p = self.procs.start(pin(self.cpu, cmd), stdin=subprocess.DEVNULL,
                                      stdout=logf, stderr=subprocess.STDOUT)
        # Every socket, then "started": the HTTP port is logged before the
        # ingest sockets, so waiting for it alone races the senders.
        unix = self.transport == "unix" or self.unix_too
        st = self._wait_started(amtest.Startup({"http", self.transport} |
                                               ({"unix"} if unix else set())))
        self.http_port = st.port("http")
        return self

    def scrape(self, prefix=None):
        st, _, body, _ = http_get(self.http_port, "/metrics")
        if st != 200:
            raise BenchError("/metrics answered %d" % st)
        return parse_exposition(body.decode(), prefix)

    def health(self):
        st, _, body, _ = http_get(self.http_port, "/health", timeout=10)
        return json.loads(body)

    def counts_fast(self):
        return int(self.health()["samples_total"])

    def counts(self):
        """(lines counted, lines rejected) from the self-metrics."""
        m = self.scrape("alice_metricsd_samples")
        acc = m.get("alice_metricsd_samples_total", 0.0)
        rej = sum(v for k, v in m.items() if k.startswith("alice_metricsd_samples_rejected_total"))
        return int(acc), int(rej)


class Null(Server):
    kind = "nullrecv"

    def __init__(self, procs, tmp, transport, cpu, binary, coalesce_ms=0):
        super().__init__(procs, tmp, transport, cpu)
        self.binary = binary
        self.coalesce_ms = coalesce_ms
        if coalesce_ms:
            self.kind = "nullrecv-coalescing"

    def start(self):
        self.log = os.path.join(self.tmp, "nullrecv.log")
        cmd = [self.binary, "--rcvbuf", str(8 << 20), "--coalesce-ms", str(self.coalesce_ms)]
        cmd += ["--udp", "127.0.0.1:0"] if self.transport == "udp" else ["--unix", self.unix_path]
        with open(self.log, "w") as logf:
            self.p = self.procs.start(pin(self.cpu, cmd), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=logf, text=True)
        # nullrecv logs its sockets as the daemon does, and no "started".
        st = self._wait_started(amtest.Startup({self.transport}, started=False))
        if self.transport == "udp":
            self.udp_port = st.port("udp")
        return self

    def counts(self):
        self.p.send_signal(signal.SIGUSR1)
        r, _, _ = select.select([self.p.stdout], [], [], 10.0)
        if not r:
            raise BenchError("nullrecv did not report")
        return int(kv(self.p.stdout.readline()).get("lines", 0)), 0


COLLECTD_CONF = """\
Hostname "bench"
FQDNLookup false
Interval 1
BaseDir "{tmp}"
PIDFile "{tmp}/collectd.pid"
PluginDir "{plugindir}"
TypesDB "{typesdb}"
WriteQueueLimitHigh 10000000
WriteQueueLimitLow 10000000
LoadPlugin statsd
LoadPlugin write_prometheus
<Plugin statsd>
  Host "127.0.0.1"
  Port "{udp}"
  DeleteCounters false
  DeleteTimers false
  DeleteGauges false
  DeleteSets false
</Plugin>
<Plugin write_prometheus>
  Host "127.0.0.1"
  Port "{http}"
</Plugin>
"""


def collectd_available():
    exe = shutil.which("collectd") or ("/usr/sbin/collectd" if os.path.exists(
        "/usr/sbin/collectd") else None)
    plugindir = "/usr/lib/collectd"
    if not exe:
        return None, "collectd not installed (apt-get install collectd-core libmicrohttpd12 " \
                     "libprotobuf-c1)"
    for so in ("statsd.so", "write_prometheus.so"):
        if not os.path.exists(os.path.join(plugindir, so)):
            return None, "collectd has no %s" % so
    return exe, None


class Collectd(Server):
    kind = "collectd"

    def __init__(self, procs, tmp, transport, cpu, binary):
        super().__init__(procs, tmp, transport, cpu)
        self.binary = binary

    def start(self):
        if self.transport != "udp":
            raise BenchError("collectd's statsd plugin reads UDP only")
        self.udp_port, self.http_port = amtest.free_udp_port(), amtest.free_tcp_port()
        typesdb = "/usr/share/collectd/types.db"
        conf = os.path.join(self.tmp, "collectd.conf")
        with open(conf, "w") as f:
            f.write(COLLECTD_CONF.format(tmp=self.tmp, plugindir="/usr/lib/collectd",
                                         typesdb=typesdb, udp=self.udp_port,
                                         http=self.http_port))
        self.log = os.path.join(self.tmp, "collectd.log")
        with open(self.log, "w") as logf:
            self.p = self.procs.start(pin(self.cpu, [self.binary, "-f", "-C", conf]),
                                      stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise BenchError("collectd exited: %s" % tail(self.log))
            try:
                http_get(self.http_port, "/metrics", timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise BenchError("collectd did not start: %s" % tail(self.log))

    def counts(self):
        """Sum of our counters in collectd's exposition: it publishes every
        Interval (1 s), so wait until two reads in a row agree."""
        last, end = None, time.monotonic() + 20
        while time.monotonic() < end:
            _, _, body, _ = http_get(self.http_port, "/metrics", timeout=30)
            total = 0
            for line in body.decode(errors="replace").splitlines():
                if line.startswith("collectd_statsd_derive_total") and 'statsd="bench.c.' in line:
                    total += int(float(line.rsplit(" ", 2)[1]))
            if total == last:
                return total, 0
            last = total
            time.sleep(1.2)
        return last or 0, 0


# ---------------------------------------------------------------- load


def run_loadgen(args, procs, server, extra, timeout, target=None):
    cmd = pin(args.client_cpu, [args.loadgen] + (target or server.target()) + extra)
    p = procs.start(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.stop(p, timeout=2)
        raise BenchError("loadgen did not finish in %.0f s" % timeout)
    procs.children.remove(p)
    if p.returncode != 0:
        raise BenchError("loadgen failed (%d): %s" % (p.returncode, err.strip()[-400:]))
    return kv(out)


def ingest_scenario(args, procs, tmp, make_server, transport, lpd, tags, seconds, series=None,
                    lg_extra=()):
    """One server, one load: returns a result row (dict)."""
    series = series or args.series
    srv = make_server(transport)
    row = {"server": srv.kind, "transport": transport, "lines_per_datagram": lpd,
           "tags": tags, "series": series, "seconds": seconds}
    try:
        srv.start()
        c0, _ = srv.counts()
        cpu0 = wait_quiet(srv.pid, budget=3)
        user0, sys0 = cpu_times(srv.pid)
        snmp0 = udp_rcvbuf_errors()
        steal0 = steal_seconds(args.server_cpu)
        sock0 = udp_socket_stats(srv.udp_port) if transport == "udp" else None
        lg = run_loadgen(args, procs, srv,
                         ["--lines-per-datagram", str(lpd), "--series", str(series),
                          "--tags", tags, "--duration", str(seconds)] + list(lg_extra),
                         timeout=seconds + 60)
        sent = int(lg["lines_sent"])
        cpu1 = drain(srv, expected=c0 + sent if transport == "unix" else None)
        user1, sys1 = cpu_times(srv.pid)
        snmp1 = udp_rcvbuf_errors()
        steal1 = steal_seconds(args.server_cpu)
        sock1 = udp_socket_stats(srv.udp_port) if transport == "udp" else None
        c1, rej = srv.counts()
        counted = c1 - c0
        cpu = cpu1 - cpu0
        elapsed = float(lg["elapsed"])
        row.update({
            "lines_sent": sent, "lines_counted": counted, "lost": sent - counted,
            "rejected": rej, "send_errors": int(lg["send_errors"]),
            "rcvbuf_errors": (snmp1 - snmp0) if transport == "udp" and snmp0 is not None else None,
            "socket_drops": (sock1[1] - sock0[1]) if sock0 and sock1 else None,
            "server_cpu_s": round(cpu, 3), "wall_s": round(elapsed, 3),
            "lines_per_cpu_s": counted / cpu if cpu > 0 else None,
            "lines_per_wall_s": counted / elapsed if elapsed > 0 else None,
            "loadgen_cpu_s": float(lg["cpu"]),
            # Share of the run the hypervisor took the server's CPU away.
            "server_cpu_steal": round((steal1 - steal0) / elapsed, 3)
            if steal0 is not None and steal1 is not None and elapsed > 0 else None,
            # Where the server's time went, per line counted: its own code
            # (user) and the kernel's receive path (system).
            "user_ns_per_line": 1e9 * (user1 - user0) / counted if counted else None,
            "kernel_ns_per_line": 1e9 * (sys1 - sys0) / counted if counted else None,
        })
    except BenchError as e:
        row["error"] = str(e)
    finally:
        srv.stop()
    return row


def repeated(args, fn):
    """Runs a scenario --repeat times; keeps the run with the median lines
    per CPU-second (the others' figures go to the JSON)."""
    return median_row([fn() for _ in range(max(1, args.repeat))])


def median_row(rows):
    """The run with the median lines per CPU-second, the others' figures
    attached."""
    ok = [r for r in rows if r.get("lines_per_cpu_s")]
    if not ok:
        return rows[0]
    ok.sort(key=lambda r: r["lines_per_cpu_s"])
    best = dict(ok[(len(ok) - 1) // 2])
    if len(rows) > 1:
        best["repeats_lines_per_cpu_s"] = [r.get("lines_per_cpu_s") for r in rows]
    return best


# ---------------------------------------------------------------- exactness


def check_expect(expect_path, scraped):
    """Compares loadgen's expectations with a parsed scrape. Returns
    (series checked, mismatches, lines expected (counters), examples)."""
    checked = bad = expected_lines = 0
    examples = []
    with open(expect_path) as f:
        for line in f:
            key, _, val = line.rstrip("\n").rpartition(" ")
            want = float(val)
            got = scraped.get(key)
            checked += 1
            if key.split("{")[0].endswith("_total"):
                expected_lines += int(want)
            if key.split("{")[0].endswith("_sum"):
                ok = got is not None and abs(got - want) <= 1e-9 * max(1.0, abs(want))
            else:
                ok = got == want
            if not ok:
                bad += 1
                if len(examples) < 3:
                    examples.append("%s want %s got %s" % (key, val, got))
    return checked, bad, expected_lines, examples


def preload(args, procs, srv, nseries):
    """nseries more series (prefix pre, families of 10,000) over the
    lossless Unix socket; returns when all are counted."""
    run_loadgen(args, procs, srv, ["--prefix", "pre", "--series", str(nseries),
                                   "--total", str(nseries),
                                   "--families", str(scrape_families(nseries)),
                                   "--lines-per-datagram", "20"],
                timeout=max(120, nseries / 20000), target=["--unix", srv.unix_path])
    end = time.monotonic() + 120
    while srv.counts_fast() < nseries:
        if time.monotonic() > end:
            raise BenchError("preload: %d of %d lines counted" % (srv.counts_fast(), nseries))
        time.sleep(0.1)


class Scraper:
    """Gzip scrapes of /metrics every `every` seconds on a thread, as
    Prometheus would, until stopped; records each scrape's time."""

    def __init__(self, port, every):
        import threading
        self.port, self.every, self.times, self.errors = port, every, [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopping.wait(self.every):
            try:
                st, _, _, dt = http_get(self.port, "/metrics", gzip_ok=True, timeout=60)
                if st != 200:
                    self.errors.append("status %d" % st)
                self.times.append(dt * 1000)
            except Exception as e:  # recorded, reported as a failure
                self.errors.append(str(e))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(90)


def exact_run(args, procs, tmp, transport, rate, seconds, mix, lpd=20, preload_series=0,
              scrape_every=0.0):
    """Paced load with per-series expectations: counted == sent per series.
    preload_series: that many other series loaded first (over the Unix
    socket); scrape_every: a gzip scrape every so many seconds meanwhile."""
    srv = Alice(procs, tmp, transport, args.server_cpu, args.alice,
                unix_too=preload_series > 0 and transport == "udp")
    expect = os.path.join(tmp, "expect.txt")
    row = {"transport": transport, "rate": rate, "seconds": seconds, "mix": mix,
           "lines_per_datagram": lpd, "series": args.series, "preloaded_series": preload_series}
    try:
        srv.start()
        if preload_series:
            preload(args, procs, srv, preload_series)
        base = srv.counts_fast()
        cpu0 = wait_quiet(srv.pid, budget=3)
        user0, sys0 = cpu_times(srv.pid)
        snmp0 = udp_rcvbuf_errors()
        sock0 = udp_socket_stats(srv.udp_port) if transport == "udp" else None
        scraper = Scraper(srv.http_port, scrape_every) if scrape_every > 0 else None
        with scraper or contextlib.nullcontext():
            lg = run_loadgen(args, procs, srv,
                             ["--lines-per-datagram", str(lpd), "--series", str(args.series),
                              "--mix", mix, "--rate", str(rate), "--duration", str(seconds),
                              "--expect", expect], timeout=seconds + 60)
        sent = int(lg["lines_sent"])
        cpu1 = drain(srv, expected=sent + base if transport == "unix" else None)
        snmp1 = udp_rcvbuf_errors()
        sock1 = udp_socket_stats(srv.udp_port) if transport == "udp" else None
        counted, rej = srv.counts()
        counted -= base
        if scraper:
            row["scrapes"] = len(scraper.times)
            row["scrape_ms_max"] = round(max(scraper.times), 1) if scraper.times else None
            row["scrape_errors"] = scraper.errors
        scraped = srv.scrape("bench_")
        checked, bad, _, examples = check_expect(expect, scraped)
        row.update({
            "lines_sent": sent, "lines_counted": counted, "lost": sent - counted,
            "rejected": rej, "send_errors": int(lg["send_errors"]),
            "achieved_rate": float(lg["lines_per_second"]),
            "rcvbuf_errors": (snmp1 - snmp0) if transport == "udp" and snmp0 is not None else None,
            "socket_drops": (sock1[1] - sock0[1]) if sock0 and sock1 else None,
            "server_cpu_s": round(cpu1 - cpu0, 3), "series_checked": checked,
            "series_mismatched": bad, "examples": examples,
            "ok": bad == 0 and sent == counted and rej == 0 and checked > 0 and
            not row.get("scrape_errors") and (not scrape_every or row.get("scrapes", 0) > 0),
        })
    except BenchError as e:
        row["error"] = str(e)
        row["ok"] = False
    finally:
        srv.stop()
    return row


# ---------------------------------------------------------------- scrape + memory


def scrape_families(nseries):
    return max(1, (nseries + 9999) // 10000)


def last_pause_ms(text):
    """alice_metricsd_last_scrape_longest_pause_seconds of a scrape body, in ms."""
    for line in text.splitlines():
        if line.startswith("alice_metricsd_last_scrape_longest_pause_seconds "):
            return float(line.split()[1]) * 1000
    raise BenchError("no alice_metricsd_last_scrape_longest_pause_seconds in the scrape")


def scrape_run(args, procs, tmp, nseries, nscrapes, workers=1):
    extra = ["--workers", str(workers)] if workers > 1 else []
    srv = Alice(procs, tmp, "unix", args.server_cpu, args.alice, extra)
    row = {"series": nseries, "scrapes": nscrapes, "workers": workers}
    try:
        srv.start()
        # Warm the receive slab (its pages are touched on first use) with the
        # same datagram shape, so that RSS grows by series, not by buffers.
        run_loadgen(args, procs, srv, ["--series", "1", "--prefix", "warm", "--total", "5120",
                                        "--lines-per-datagram", "20"], timeout=60)
        drain(srv, expected=5120)
        h0 = srv.health()
        rss0 = rss_kb(srv.pid)
        t0 = time.monotonic()
        # Families of 10,000 series (the default per-family limit): a
        # scrape may hold ingest for one family's render at most.
        lg = run_loadgen(args, procs, srv, ["--series", str(nseries), "--total", str(nseries),
                                            "--families", str(scrape_families(nseries)),
                                            "--lines-per-datagram", "20"],
                         timeout=max(120, nseries / 20000))
        drain(srv, expected=5120 + nseries, budget=120)
        load_s = time.monotonic() - t0
        rss1 = rss_kb(srv.pid)
        h1 = srv.health()
        loaded = h1["series"] - h0["series"]
        if loaded != nseries:
            raise BenchError("%d of %d series loaded (rejected %s)" % (
                loaded, nseries, h1.get("samples_rejected_total")))
        per = (rss1 - rss0) * 1024.0 / nseries
        val_b = int(lg["label_value_bytes"]) / nseries
        txt_b = int(lg["label_text_bytes"]) / nseries
        row.update({"load_seconds": round(load_s, 2), "rss_before_kb": rss0,
                    "rss_after_kb": rss1, "rss_bytes_per_series": round(per, 1),
                    "label_value_bytes_per_series": round(val_b, 1),
                    "label_text_bytes_per_series": round(txt_b, 1),
                    "rss_beyond_label_values": round(per - val_b, 1)})
        for fmt, gz in (("text", False), ("gzip", True)):
            times = []
            pauses = []
            size = 0
            cpu_a = cpu_seconds(srv.pid)
            for _ in range(nscrapes):
                st, hd, body, dt = http_get(srv.http_port, "/metrics", gzip_ok=gz, timeout=120)
                if st != 200:
                    raise BenchError("/metrics answered %d" % st)
                if gz and hd.get("content-encoding") != "gzip":
                    raise BenchError("no gzip answer")
                times.append(dt * 1000)
                size = len(body)
                text = (gzip.decompress(body) if gz else body).decode()
                if len(times) > 1:  # each body reports the scrape before it
                    pauses.append(last_pause_ms(text))
            cpu_b = cpu_seconds(srv.pid)
            found = sum(1 for line in text.splitlines() if line.startswith("bench_c_f"))
            if found != nseries:
                raise BenchError("scrape shows %d of %d series" % (found, nseries))
            _, _, after, _ = http_get(srv.http_port, "/metrics", timeout=120)
            pauses.append(last_pause_ms(after.decode()))
            row[fmt] = {"median_ms": round(statistics.median(times), 1),
                        "max_ms": round(max(times), 1), "body_bytes": size,
                        "server_cpu_ms_per_scrape": round((cpu_b - cpu_a) * 1000 / nscrapes, 1),
                        "longest_ingest_pause_ms": round(max(pauses), 2)}
        # GET /api/v1/families (alice top's source) at this size: kept counts,
        # no scan of the series, so it must stay cheap enough to ask every second
        times = []
        cpu_a = cpu_seconds(srv.pid)
        for _ in range(nscrapes):
            st, _, body, dt = http_get(srv.http_port, "/api/v1/families", timeout=60)
            if st != 200:
                raise BenchError("/api/v1/families answered %d" % st)
            times.append(dt * 1000)
        cpu_b = cpu_seconds(srv.pid)
        fams = json.loads(body)["families"]
        if sum(f["series"] for f in fams) != nseries + 1:  # + the warm-up series
            raise BenchError("/api/v1/families counts %d series" % sum(f["series"] for f in fams))
        row["families_api"] = {"median_ms": round(statistics.median(times), 2),
                               "max_ms": round(max(times), 2), "body_bytes": len(body),
                               "server_cpu_ms": round((cpu_b - cpu_a) * 1000 / nscrapes, 2)}
    except BenchError as e:
        row["error"] = str(e)
    finally:
        srv.stop()
    return row


# ---------------------------------------------------------------- output


def mfmt(x, digits=2):
    if x is None:
        return "n/a"
    return "%.*fM" % (digits, x / 1e6)


def nsfmt(x):
    return "n/a" if x is None else "%.0f" % x


def ifmt(x):
    return "n/a" if x is None else "{:,}".format(x)


def print_ingest(rows, nulls):
    print("| transport | lines/dgram | server | tags | lines sent | counted | lost | "
          "RcvbufErrors | socket drops | server CPU s | user ns/line | kernel ns/line | "
          "lines/CPU-s | lines/wall-s | of null (CPU) | of coalescing null (CPU) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print("| %s | %d | %s | %s | error: %s |||||||||||||" % (
                r["transport"], r["lines_per_datagram"], r["server"], r["tags"], r["error"]))
            continue
        n = nulls.get((r["transport"], r["lines_per_datagram"]))
        frac = ""
        if r.get("of_null"):
            frac = "%.0f%%" % (100.0 * r["of_null"])
        elif r["server"] != "nullrecv" and n and n.get("lines_per_cpu_s") and \
                r["lines_per_cpu_s"] and r["tags"] == n["tags"]:
            frac = "%.0f%%" % (100.0 * r["lines_per_cpu_s"] / n["lines_per_cpu_s"])
        cfrac = "%.0f%%" % (100.0 * r["of_null_coalescing"]) if r.get("of_null_coalescing") \
            else ""
        rcv = "n/a (unix)" if r["transport"] == "unix" else ifmt(r["rcvbuf_errors"])
        drops = "n/a" if r["transport"] == "unix" else ifmt(r.get("socket_drops"))
        print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s |" % (
            r["transport"], r["lines_per_datagram"], r["server"], r["tags"],
            ifmt(r["lines_sent"]), ifmt(r["lines_counted"]), ifmt(r["lost"]), rcv, drops,
            r["server_cpu_s"], nsfmt(r.get("user_ns_per_line")),
            nsfmt(r.get("kernel_ns_per_line")), mfmt(r["lines_per_cpu_s"]),
            mfmt(r["lines_per_wall_s"]), frac, cfrac))


TARGETS = {20: (8e6, 2.0 / 3.0), 1: (0.7e6, 0.9)}


def print_targets(rows, nulls):
    print("| transport | lines/dgram | alice lines/CPU-s | null lines/CPU-s | alice/null | "
          "target (abs; of null) | met | alice/coalescing null |")
    print("|---|---:|---:|---:|---:|---|---|---:|")
    for r in rows:
        if r.get("server") != "alice" or r.get("tags") != "dogstatsd" or "error" in r:
            continue
        n = nulls.get((r["transport"], r["lines_per_datagram"]))
        if not n or not n.get("lines_per_cpu_s") or not r.get("lines_per_cpu_s"):
            continue
        frac = r.get("of_null") or r["lines_per_cpu_s"] / n["lines_per_cpu_s"]
        ab, rel = TARGETS.get(r["lines_per_datagram"], (None, None))
        met = "yes" if ab and r["lines_per_cpu_s"] >= ab and frac >= rel else "no"
        cfrac = "%.0f%%" % (100 * r["of_null_coalescing"]) if r.get("of_null_coalescing") \
            else "n/a"
        print("| %s | %d | %s | %s | %.0f%% | >= %s; >= %.0f%% | %s | %s |" % (
            r["transport"], r["lines_per_datagram"], mfmt(r["lines_per_cpu_s"]),
            mfmt(n["lines_per_cpu_s"]), 100 * frac, mfmt(ab, 1), 100 * rel, met, cfrac))


def machine_info():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            info["cpu"] = m.group(1) if m else "?"
    except OSError:
        info["cpu"] = "?"
    info["cores"] = os.cpu_count()
    info["kernel"] = os.uname().release
    with open("/proc/loadavg") as f:
        info["loadavg_start"] = f.read().split()[:3]
    try:
        with open("/proc/sys/net/unix/max_dgram_qlen") as f:
            info["unix_max_dgram_qlen"] = int(f.read())
    except OSError:
        info["unix_max_dgram_qlen"] = None
    return info


# ---------------------------------------------------------------- main


def build_root(path):
    """The meson build directory that holds path (the nearest folder above
    it with meson-private/), or None."""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.isdir(os.path.join(d, "meson-private")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def default_tools(alice):
    """nullrecv and loadgen of the build directory that holds alice."""
    build = build_root(alice)
    return amtest.built_program("nullrecv", build), amtest.built_program("loadgen", build)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("--alice", default=amtest.ALICE_BIN,
                    help="the daemon [$ALICE_BIN, else alice of <source>/build]")
    ap.add_argument("--nullrecv", help="default: <builddir>/tests/bench/nullrecv of the build of --alice")
    ap.add_argument("--loadgen", help="default: <builddir>/tests/bench/loadgen of the build of --alice")
    ap.add_argument("--seconds", type=float, default=10.0, help="per ingest scenario [10]")
    ap.add_argument("--quick", action="store_true", help="2 s scenarios, scrape at 100k only")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke: small sizes, no collectd; fails if anything does not work "
                         "(never on a performance figure)")
    ap.add_argument("--series", type=int, default=1000, help="series in the ingest runs [1000]")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--transports", default="udp,unix")
    ap.add_argument("--lines-per-datagram", default="20,1")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each ingest scenario N times, null and alice alternating; "
                         "report the medians and the median paired ratio [1]")
    ap.add_argument("--unix-qlen", type=int, default=None,
                    help="set net.unix.max_dgram_qlen for the run (root; restored after)")
    ap.add_argument("--no-ingest", action="store_true")
    ap.add_argument("--no-collectd", action="store_true")
    ap.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 workers run")
    ap.add_argument("--loss-run", action="store_true",
                    help="paced run checking counted == sent per series")
    ap.add_argument("--loss-rate", type=float, default=1e6, help="lines/s [1000000]")
    ap.add_argument("--loss-seconds", type=float, default=60.0)
    ap.add_argument("--loss-scrape-series", type=int, default=1000000,
                    help="series loaded before the scraped loss run [1000000]; 0 = no such run")
    ap.add_argument("--loss-scrape-every", type=float, default=5.0,
                    help="seconds between scrapes in the scraped loss run [5]")
    ap.add_argument("--scrape-series", default=None,
                    help="comma list [100000,1000000; --quick 100000; --smoke 10000]; 0 = none")
    ap.add_argument("--scrapes", type=int, default=10, help="scrapes timed per format [10]")
    ap.add_argument("--state-series", default=None,
                    help="comma list: series written to a state file and restored "
                         "(the state rows; --scrape-workers applies) [none]")
    ap.add_argument("--memory-series", default="",
                    help="comma list of series counts for the memory rows (default limits, "
                         "state writes, 4 concurrent scrapes) [none]")
    ap.add_argument("--ttl-series", default=None,
                    help="comma list: series loaded then expired at once by a 2 s TTL "
                         "(the TTL sweep row; --scrape-workers applies) [none]")
    ap.add_argument("--remote-write-series", default=None,
                    help="comma list: series pushed with remote write every 2 s to a "
                         "discarding receiver (the remote write rows) [none; --smoke 10000]")
    ap.add_argument("--scrape-workers", default="1,2",
                    help="comma list of --workers values for the scrape rows [1,2]")
    ap.add_argument("--json", help="also write every figure as JSON here")
    a = ap.parse_args(argv)
    if a.quick or a.smoke:  # the smoke run only checks that every piece works
        a.seconds = min(a.seconds, 1.0 if a.smoke else 2.0)
    if a.scrape_series is None:
        a.scrape_series = "10000" if a.smoke else "100000" if a.quick else "100000,1000000"
    a.scrape_series = [int(x) for x in a.scrape_series.split(",") if int(x) > 0]
    a.scrape_workers = [int(x) for x in a.scrape_workers.split(",") if int(x) > 0] or [1]
    if a.ttl_series is None:
        a.ttl_series = "10000" if a.smoke else ""
    a.ttl_series = [int(x) for x in a.ttl_series.split(",") if x and int(x) > 0]
    a.memory_series = [int(x) for x in a.memory_series.split(",") if x and int(x) > 0]
    if a.remote_write_series is None:
        a.remote_write_series = "10000" if a.smoke else ""
    a.remote_write_series = [int(x) for x in a.remote_write_series.split(",")
                             if x and int(x) > 0]
    if a.state_series is None:
        a.state_series = "10000" if a.smoke else ""
    a.state_series = [int(x) for x in a.state_series.split(",") if x and int(x) > 0]
    if a.smoke:
        a.scrapes = min(a.scrapes, 3)
        a.no_collectd = True
    if a.nullrecv is None or a.loadgen is None:
        n, lg = default_tools(a.alice)
        a.nullrecv = a.nullrecv or n
        a.loadgen = a.loadgen or lg
    if (os.cpu_count() or 1) < 2:
        a.server_cpu = a.client_cpu = None
    return a


def on_sigterm(signum, frame):
    raise KeyboardInterrupt()


class Run:
    """What every section needs: options, children, scratch dir, results."""

    def __init__(self, args, procs, tmp):
        self.args, self.procs, self.tmp = args, procs, tmp
        self.results = {"machine": machine_info(), "args": vars(args).copy(), "ingest": [],
                        "notes": []}
        self.failures = []
        self.nulls = {}

    def note(self, text):
        self.results["notes"].append(text)

    def maker(self, kind, extra=(), cpu="default", binary=None):
        cpu = self.args.server_cpu if cpu == "default" else cpu
        a = self.args

        def make(transport):
            if kind == "alice":
                return Alice(self.procs, self.tmp, transport, cpu, a.alice, extra)
            if kind == "nullrecv":
                return Null(self.procs, self.tmp, transport, cpu, a.nullrecv)
            if kind == "nullrecv-coalescing":
                return Null(self.procs, self.tmp, transport, cpu, a.nullrecv, coalesce_ms=1)
            return Collectd(self.procs, self.tmp, transport, cpu, binary)
        return make

    def scenario(self, make, transport, lpd, tags, lg_extra=()):
        a = self.args
        return repeated(a, lambda: ingest_scenario(a, self.procs, self.tmp, make, transport, lpd,
                                                   tags, a.seconds, lg_extra=lg_extra))


def section_ingest(run, transports, lpds):
    """Null receiver and alice, DogStatsD tags, every transport x batching.
    With --repeat N they alternate (null, alice, null, alice, ...), so a
    slow drift of a shared machine hits both alike, and alice/null is the
    median of the N paired ratios. Over UDP a third receiver runs too: the
    null receiver reading every millisecond under load as alice does (wake-up
    coalescing), so that what alice's own work costs shows apart from what
    its wake-up strategy saves."""
    a = run.args
    for tr in transports:
        for lpd in lpds:
            kinds = ("nullrecv", "nullrecv-coalescing", "alice") if tr == "udp" \
                else ("nullrecv", "alice")
            runs = {k: [] for k in kinds}
            for _ in range(max(1, a.repeat)):
                for kind in kinds:
                    runs[kind].append(ingest_scenario(a, run.procs, run.tmp, run.maker(kind), tr,
                                                      lpd, "dogstatsd", a.seconds))

            def paired(null_kind):
                return [x["lines_per_cpu_s"] / n["lines_per_cpu_s"]
                        for n, x in zip(runs[null_kind], runs["alice"])
                        if n.get("lines_per_cpu_s") and x.get("lines_per_cpu_s")]
            for kind in kinds:
                r = median_row(runs[kind])
                if kind == "alice":
                    for null_kind, key in (("nullrecv", "of_null"),
                                           ("nullrecv-coalescing", "of_null_coalescing")):
                        ratios = paired(null_kind) if null_kind in runs else []
                        if ratios:
                            r[key] = statistics.median(ratios)
                            r[key + "_pairs"] = [round(x, 3) for x in ratios]
                run.results["ingest"].append(r)
                if kind == "nullrecv":
                    run.nulls[(tr, lpd)] = r
                if "error" in r:
                    run.failures.append("%s %s %d: %s" % (kind, tr, lpd, r["error"]))
                elif r["lines_counted"] <= 0:
                    run.failures.append("%s %s %d: nothing counted" % (kind, tr, lpd))


def note_steal(run):
    """Says when the hypervisor took the server's CPU away for a noticeable
    part of a run: lines lost and slow figures then say little about us."""
    worst = [(r.get("server_cpu_steal") or 0, r) for r in run.results["ingest"]]
    worst = [(st, r) for st, r in worst if st >= 0.05]
    if worst:
        st, r = max(worst, key=lambda x: x[0])
        run.note("the hypervisor took CPU %s away for up to %.0f%% of a run (%d of %d ingest "
                 "runs over 5%%; worst: %s %s %d lines/datagram): losses and figures of those "
                 "runs reflect the host" % (run.args.server_cpu, 100 * st, len(worst),
                                            len(run.results["ingest"]), r["server"],
                                            r["transport"], r["lines_per_datagram"]))


def section_collectd(run, transports, lpds):
    """collectd side by side with us: plain names, UDP only (its statsd
    plugin has no Unix socket)."""
    exe, why = (None, "skipped (--no-collectd)") if run.args.no_collectd \
        else collectd_available()
    if not exe or "udp" not in transports:
        run.note("collectd: %s" % (why or "needs the udp transport"))
        return
    for lpd in lpds:
        for kind in ("collectd", "alice"):
            r = run.scenario(run.maker(kind, binary=exe), "udp", lpd, "plain")
            run.results["ingest"].append(r)


def print_collectd(rows):
    cd_rows = {r["lines_per_datagram"]: r for r in rows
               if r["server"] == "collectd" and "error" not in r and r.get("lines_per_cpu_s")}
    if not cd_rows:
        return

    def ours(tags, lpd):
        m = [r for r in rows if r["server"] == "alice" and r["tags"] == tags and
             r["transport"] == "udp" and r["lines_per_datagram"] == lpd and "error" not in r
             and r.get("lines_per_cpu_s")]
        return m[0] if m else None

    print("| lines/dgram | alice plain lines/CPU-s | collectd lines/CPU-s | alice/collectd (CPU) "
          "| alice/collectd (wall) | alice tags/collectd plain (CPU) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for lpd, c in sorted(cd_rows.items(), reverse=True):
        a, at = ours("plain", lpd), ours("dogstatsd", lpd)
        if not a:
            continue
        print("| %d | %s | %s | %.2fx | %.2fx | %s |" % (
            lpd, mfmt(a["lines_per_cpu_s"]), mfmt(c["lines_per_cpu_s"]),
            a["lines_per_cpu_s"] / c["lines_per_cpu_s"],
            a["lines_per_wall_s"] / c["lines_per_wall_s"],
            "%.2fx" % (at["lines_per_cpu_s"] / c["lines_per_cpu_s"]) if at else "n/a"))
    print()


def section_exact(run):
    """The smoke run checks the per-series machinery over the (lossless)
    Unix socket with every type; --loss-run is the real one, over UDP."""
    a = run.args
    if a.smoke:
        r = exact_run(a, run.procs, run.tmp, "unix", 50000, a.seconds, "c=70,g=10,ms=10,h=5,s=5",
                      preload_series=20000, scrape_every=0.5)
        run.results["exact_smoke"] = r
        print("## Exactness smoke (Unix socket, paced 50k lines/s, all types, 20,000 series "
              "preloaded, scraped every 0.5 s)\n")
        print_exact(r)
        if not r["ok"]:
            run.failures.append("exactness smoke: %s" % (r.get("error") or r.get("examples")))
    if a.loss_run:
        secs = min(a.loss_seconds, 5.0) if a.quick else a.loss_seconds
        r = exact_run(a, run.procs, run.tmp, "udp", a.loss_rate, secs, "c=100")
        run.results["loss_run"] = r
        print("## Loss run (UDP, paced %s lines/s, 20 lines/datagram, %g s, %d series)\n"
              % (mfmt(a.loss_rate, 1), secs, a.series))
        print_exact(r)
        n = a.loss_scrape_series
        if n > 0:
            r = exact_run(a, run.procs, run.tmp, "udp", a.loss_rate, secs, "c=100",
                          preload_series=n, scrape_every=a.loss_scrape_every)
            run.results["loss_run_scraped"] = r
            print("## Loss run while scraping (as above, with %s more series loaded first and "
                  "a gzip scrape every %g s)\n" % (ifmt(n), a.loss_scrape_every))
            print_exact(r)
            if "error" not in r:
                print("%d scrapes during the run, the longest %s ms%s\n" % (
                    r["scrapes"], r["scrape_ms_max"],
                    "; errors: %s" % r["scrape_errors"] if r["scrape_errors"] else ""))


def load_series(args, procs, srv, nseries):
    """nseries counter series (families of 10,000) into srv over its
    lossless Unix socket; returns when every line is counted."""
    run_loadgen(args, procs, srv, ["--series", str(nseries), "--total", str(nseries),
                                    "--families", str(scrape_families(nseries)),
                                    "--lines-per-datagram", "20"],
                timeout=max(120, nseries / 20000))
    drain(srv, expected=nseries, budget=120)


def ttl_run(args, procs, tmp, nseries, ttl, workers=1):
    """nseries series loaded at once, then all expiring together: how long
    the sweep takes past the TTL, the longest ingest pause it caused (the
    daemon's own alice_metricsd_longest_pause_seconds{cause="expiry"}) and
    its CPU time. A trickle of lines keeps one series alive throughout."""
    extra = ["--ttl", str(ttl)] + (["--workers", str(workers)] if workers > 1 else [])
    srv = Alice(procs, tmp, "unix", args.server_cpu, args.alice, extra)
    row = {"series": nseries, "ttl_s": ttl, "workers": workers}
    try:
        srv.start()
        t0 = time.monotonic()
        load_series(args, procs, srv, nseries)
        loaded_at = time.monotonic()
        row["load_seconds"] = round(loaded_at - t0, 2)
        cpu0 = cpu_seconds(srv.pid)
        keep = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        end = loaded_at + ttl + 30
        gone_at = None
        while time.monotonic() < end:
            keep.sendto(b"bench_keepalive:1|c", srv.unix_path)
            h = srv.health()
            if h["series"] <= 1 and time.monotonic() > loaded_at + ttl:
                gone_at = time.monotonic()
                break
            time.sleep(0.05)
        keep.close()
        if gone_at is None:
            raise BenchError("%d series still there %d s past the TTL" % (h["series"], 30))
        m = srv.scrape("alice_metricsd_")
        row["expired"] = int(m.get("alice_metricsd_series_expired_total", 0))
        row["sweep_after_ttl_s"] = round(gone_at - loaded_at - ttl, 2)
        row["longest_pause_ms"] = round(
            1000 * m.get('alice_metricsd_longest_pause_seconds{cause="expiry"}', float("nan")), 2)
        row["cpu_s"] = round(cpu_seconds(srv.pid) - cpu0, 2)
    except BenchError as e:
        row["error"] = str(e)
    finally:
        srv.stop()
    return row


def state_run(args, procs, tmp, nseries, workers=1):
    """nseries series, a periodic state write (its longest ingest pause:
    the daemon's alice_metricsd_longest_pause_seconds{cause="state_write"}),
    then a restart restoring them: the time from start to every socket open
    (the restore runs before any socket is read)."""
    state = os.path.join(tmp, "bench.state")
    if os.path.exists(state):
        os.unlink(state)
    extra = ["--state-file", state, "--state-interval", "2"] + (
        ["--workers", str(workers)] if workers > 1 else [])
    srv = Alice(procs, tmp, "unix", args.server_cpu, args.alice, extra)
    row = {"series": nseries, "workers": workers}
    try:
        srv.start()
        load_series(args, procs, srv, nseries)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            m = srv.scrape("alice_metricsd_")
            pause = m.get('alice_metricsd_longest_pause_seconds{cause="state_write"}', 0)
            if m.get('alice_metricsd_state_writes_total{result="success"}', 0) >= 2 and pause:
                break
            time.sleep(0.2)
        row["write_longest_pause_ms"] = round(1000 * pause, 2)
        srv.stop()
        row["file_bytes"] = os.path.getsize(state)
        t0 = time.monotonic()
        srv2 = Alice(procs, tmp, "unix", args.server_cpu, args.alice, extra)
        srv2.start()  # returns once every socket is open
        row["restart_seconds"] = round(time.monotonic() - t0, 2)
        h = srv2.health()
        row["restored"] = h["series"]
        srv2.stop()
    except BenchError as e:
        row["error"] = str(e)
    finally:
        srv.stop()
    return row


class DiscardReceiver:
    """A remote write receiver on loopback (a thread of this process) that
    reads each request's body, counts it and answers 204."""

    def __init__(self):
        import http.server
        self.requests = self.bytes = 0
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers["Content-Length"])
                left = n
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
                with outer.lock:
                    outer.requests += 1
                    outer.bytes += n
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/api/v1/write" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


RW_LINE = re.compile(r"event=remote_write_encoded series=(\d+) requests=(\d+) bytes=(\d+) "
                     r"encode_cpu_seconds=([\d.]+) seconds=([\d.]+) longest_pause_seconds=([\d.]+) "
                     r"render_longest_seconds=([\d.]+) encode_longest_seconds=([\d.]+)")


def remote_write_run(args, procs, tmp, nseries, pushes=4):
    """nseries series (families of 10,000) pushed every 2 s: from the
    daemon's debug line of each push, its encode time (parse, protobuf,
    snappy; the daemon's thread CPU time), bytes and longest ingest pause; the server's CPU time per push
    (render, encode, send) over `pushes` pushes after the load."""
    rcv = DiscardReceiver()
    cfg = {"remote_write": {"url": rcv.url, "interval": 2, "timeout": 30,
                            "max_queue_bytes": 1 << 30}}
    srv = Alice(procs, tmp, "unix", args.server_cpu, args.alice, ["--log-level", "debug"],
                config=cfg)
    row = {"series": nseries}

    def pushes_seen():
        with open(srv.log, errors="replace") as f:
            return [m.groups() for m in RW_LINE.finditer(f.read())]
    try:
        srv.start()
        load_series(args, procs, srv, nseries)
        # the first push that began after the load, then `pushes` more
        start = len(pushes_seen()) + 1
        end = time.monotonic() + 30 + pushes * 2 * max(1, nseries / 250000)
        marks = []  # (pushes seen, server CPU s)
        while time.monotonic() < end:
            seen = len(pushes_seen())
            if seen >= start and (not marks or marks[-1][0] < seen):
                marks.append((seen, cpu_seconds(srv.pid)))
                if seen >= start + pushes:
                    break
            time.sleep(0.02)
        rows = [r for r in pushes_seen()[start:start + pushes]
                if int(r[0]) >= nseries]
        if len(rows) < pushes or len(marks) < 2:
            raise BenchError("%d pushes of %d series seen in time" % (len(rows), nseries))
        n = [int(r[0]) for r in rows]
        row["series_pushed"] = n[-1]
        row["requests_per_push"] = int(rows[-1][1])
        row["bytes_per_series"] = round(sum(int(r[2]) for r in rows) / sum(n), 1)
        row["encode_ns_per_series"] = round(
            statistics.median(float(r[3]) * 1e9 / int(r[0]) for r in rows))
        row["push_seconds"] = round(statistics.median(float(r[4]) for r in rows), 3)
        pauses = [float(r[5]) * 1000 for r in rows]
        row["longest_pause_ms"] = [round(x, 2) for x in pauses]
        row["render_longest_ms"] = [round(float(r[6]) * 1000, 2) for r in rows]
        row["encode_longest_ms"] = [round(float(r[7]) * 1000, 2) for r in rows]
        row["cpu_s_per_push"] = round((marks[-1][1] - marks[0][1]) /
                                      (marks[-1][0] - marks[0][0]), 3)
        m = srv.scrape("alice_metricsd_")
        row["metric_pause_ms"] = round(
            1000 * m.get('alice_metricsd_longest_pause_seconds{cause="remote_write"}', 0), 2)
        row["failed"] = int(m.get(
            'alice_metricsd_remote_write_samples_total{result="failed"}', 0))
        row["dropped"] = int(m.get(
            'alice_metricsd_remote_write_samples_total{result="dropped"}', 0))
        with rcv.lock:
            row["receiver_bytes"] = rcv.bytes
    except BenchError as e:
        row["error"] = str(e)
    finally:
        srv.stop()
        rcv.close()
    return row


def section_remote_write(run):
    a = run.args
    print("## Remote write: every series pushed every 2 s (families of 10,000 series, one "
          "worker)\n")
    print("| series | encode + compress CPU ns/series | server CPU per push s | push s (render "
          "to last request queued) | bytes/series | longest ingest pause ms (each push) | "
          "failed | dropped |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    section_rows(run, "remote_write", a.remote_write_series,
                 lambda n: remote_write_run(a, run.procs, run.tmp, n), 8,
                 lambda r: "| %s | %d | %.3f | %.3f | %.1f | %s | %s | %s |" % (
                     ifmt(r["series_pushed"]), r["encode_ns_per_series"], r["cpu_s_per_push"],
                     r["push_seconds"], r["bytes_per_series"],
                     ", ".join("%.2f" % x for x in r["longest_pause_ms"]), ifmt(r["failed"]),
                     ifmt(r["dropped"])))


def peak_rss_kb(pid):
    """VmHWM: the process's peak resident set so far."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def memory_run(args, procs, tmp, nseries):
    """Memory under the default limits: nseries counter series (3 tags, as
    loadgen sends them) sent, then 4 scrapers
    (2 text, 2 gzip) at once while state writes run every second. Reports
    the resident set at rest and its peak, against
    alice_metricsd_series_bytes."""
    state = os.path.join(tmp, "memory.state")
    if os.path.exists(state):
        os.unlink(state)
    srv = Alice(procs, tmp, "unix", args.server_cpu, args.alice,
                ["--state-file", state, "--state-interval", "1"], limits={})
    row = {"series_sent": nseries}
    try:
        srv.start()
        run_loadgen(args, procs, srv, ["--series", str(nseries), "--total", str(nseries),
                                        "--families", "100", "--lines-per-datagram", "10"],
                    timeout=max(120, nseries / 20000))
        drain(srv, expected=nseries, budget=120)
        m = srv.scrape("alice_metricsd_")
        row["series_bytes"] = int(m.get("alice_metricsd_series_bytes", 0))
        row["series_held"] = int(sum(v for k, v in m.items()
                                     if k.startswith("alice_metricsd_series{")))
        row["rss_rest_mb"] = round(rss_kb(srv.pid) / 1024, 1)
        body = 0
        for _ in range(3):
            out = []
            ts = [threading.Thread(target=lambda g=g: out.append(
                http_get(srv.http_port, "/metrics", gzip_ok=g)[2])) for g in (0, 0, 1, 1)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            body = max([body] + [len(b) for b in out])
            time.sleep(1.1)  # a state write between rounds
        row["body_mb"] = round(body / 1e6, 1)
        row["rss_peak_mb"] = round(peak_rss_kb(srv.pid) / 1024, 1)
    except BenchError as e:
        row["error"] = str(e)
    finally:
        srv.stop()
    return row


def section_rows(run, key, counts, fn, ncols, fmt):
    """One row per count: fn(count) -> a dict of figures (or with "error"),
    kept in run.results[key] and printed by fmt(dict) under the caller's
    header; ncols: the table's columns."""
    run.results[key] = []
    for n in counts:
        r = fn(n)
        run.results[key].append(r)
        if "error" in r:
            print("| %s | error: %s |%s" % (ifmt(n), r["error"], "|" * (ncols - 2)))
            run.failures.append("%s %d: %s" % (key.replace("_", " "), n, r["error"]))
            continue
        print(fmt(r))
    print()


def section_memory(run):
    a = run.args
    print("## Memory under the default limits: series, 4 concurrent scrapes, state writes\n")
    print("| series sent | series held | series_bytes MiB | RSS at rest MiB | body MB | "
          "peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    section_rows(run, "memory", a.memory_series,
                 lambda n: memory_run(a, run.procs, run.tmp, n), 6,
                 lambda r: "| %s | %s | %.1f | %.1f | %.1f | %.1f |" % (
                     ifmt(r["series_sent"]), ifmt(r["series_held"]), r["series_bytes"] / 1048576,
                     r["rss_rest_mb"], r["body_mb"], r["rss_peak_mb"]))


def section_state(run):
    a = run.args
    print("## State file: a periodic write, then a restart restoring it\n")
    print("| series | workers | write: longest ingest pause ms | file bytes | restart to all "
          "sockets open, s | series restored |")
    print("|---:|---:|---:|---:|---:|---:|")
    run.results["state"] = []
    for n in a.state_series:
        for w in a.scrape_workers:
            r = state_run(a, run.procs, run.tmp, n, w)
            run.results["state"].append(r)
            if "error" in r:
                print("| %s | %d | error: %s ||||" % (ifmt(n), w, r["error"]))
                run.failures.append("state %d, %d workers: %s" % (n, w, r["error"]))
                continue
            print("| %s | %d | %.2f | %s | %.2f | %s |" % (
                ifmt(n), w, r["write_longest_pause_ms"], ifmt(r["file_bytes"]),
                r["restart_seconds"], ifmt(r["restored"])))
    print()


def section_ttl(run):
    a = run.args
    print("## TTL: every series expiring at once (families of 10,000 series)\n")
    print("| series | workers | TTL s | load s | all gone, s after the TTL | expired | "
          "longest ingest pause ms | server CPU s (sweep + keepalive) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    run.results["ttl"] = []
    for n in a.ttl_series:
        for w in a.scrape_workers:
            r = ttl_run(a, run.procs, run.tmp, n, 2, w)
            run.results["ttl"].append(r)
            if "error" in r:
                print("| %s | %d | error: %s ||||||" % (ifmt(n), w, r["error"]))
                run.failures.append("ttl %d, %d workers: %s" % (n, w, r["error"]))
                continue
            print("| %s | %d | %d | %.1f | %.2f | %s | %.2f | %.2f |" % (
                ifmt(n), w, r["ttl_s"], r["load_seconds"], r["sweep_after_ttl_s"],
                ifmt(r["expired"]), r["longest_pause_ms"], r["cpu_s"]))
    print()


def section_scrape(run):
    a = run.args
    print("## Scrape and memory (families of 10,000 series, 3 tags, loaded over the Unix "
          "socket)\n")
    print("| series | workers | format | median ms | max ms | longest ingest pause ms | "
          "body bytes | server CPU ms/scrape | RSS bytes/series | label value bytes/series | "
          "RSS beyond label values |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    run.results["scrape"] = []
    for n in a.scrape_series:
        for w in a.scrape_workers:
            r = scrape_run(a, run.procs, run.tmp, n, a.scrapes, w)
            run.results["scrape"].append(r)
            if "error" in r:
                print("| %s | %d | error: %s |||||||||" % (ifmt(n), w, r["error"]))
                run.failures.append("scrape %d, %d workers: %s" % (n, w, r["error"]))
                continue
            for fmt in ("text", "gzip"):
                s = r[fmt]
                print("| %s | %d | %s | %.1f | %.1f | %.2f | %s | %.1f | %.0f | %.1f | %.0f |" % (
                    ifmt(n), w, fmt, s["median_ms"], s["max_ms"], s["longest_ingest_pause_ms"],
                    ifmt(s["body_bytes"]), s["server_cpu_ms_per_scrape"],
                    r["rss_bytes_per_series"], r["label_value_bytes_per_series"],
                    r["rss_beyond_label_values"]))
    print("\nWith workers, the longest ingest pause is the longest a worker was held by "
          "one merge step (rendering runs on the merged copy).\n")
    print("GET /api/v1/families at the same sizes:\n")
    print("| series | workers | median ms | max ms | server CPU ms/call | body bytes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in run.results["scrape"]:
        f = r.get("families_api")
        if f:
            print("| %s | %d | %.2f | %.2f | %.2f | %s |" % (
                ifmt(r["series"]), r["workers"], f["median_ms"], f["max_ms"], f["server_cpu_ms"],
                ifmt(f["body_bytes"])))
    print()


def section_workers(run):
    """1 vs 2 ingest workers. loadgen sends from 8 sockets so that
    SO_REUSEPORT spreads the flows; with 2 cores the second worker shares
    CPU 1 with the load generator, so read the scaling as a lower bound."""
    a = run.args
    help_text = subprocess.run([a.alice, "metrics-server", "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    if "--workers" not in help_text:
        run.note("workers: the daemon has no --workers option yet: scaling scenario skipped")
        return
    print("## Workers (UDP, 20 lines/datagram, 8 sending sockets)\n")
    rows = []
    for w in (1, 2):
        cpu = None if a.server_cpu is None else (str(a.server_cpu) if w == 1 else "0-1")
        r = run.scenario(run.maker("alice", ["--workers", str(w)], cpu=cpu), "udp", 20,
                         "dogstatsd", lg_extra=["--sockets", "8"])
        r["workers"], r["server_cpus"] = w, cpu
        rows.append(r)
        if "error" in r:
            run.failures.append("workers %d: %s" % (w, r["error"]))
    run.results["workers"] = rows
    print("| workers | server CPUs | lines/wall-s | lines/CPU-s | lost |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print("| %d | error: %s |||" % (r["workers"], r["error"]))
            continue
        print("| %d | %s | %s | %s | %s |" % (
            r["workers"], r["server_cpus"], mfmt(r["lines_per_wall_s"]),
            mfmt(r["lines_per_cpu_s"]), ifmt(r["lost"])))
    if len(rows) == 2 and all(r.get("lines_per_wall_s") for r in rows):
        print("\nscaling 1 -> 2 workers (wall): %.2fx" % (
            rows[1]["lines_per_wall_s"] / rows[0]["lines_per_wall_s"]))
    print()


def run_all(run, argv):
    a = run.args
    t_start = time.monotonic()
    mi = run.results["machine"]
    print("# alice-metrics benchmark\n")
    print("machine: %s, %s cores, kernel %s, load %s; server on CPU %s, load generator on "
          "CPU %s; %g s per scenario, %d series\n" % (
              mi["cpu"], mi["cores"], mi["kernel"], " ".join(mi["loadavg_start"]),
              a.server_cpu, a.client_cpu, a.seconds, a.series))
    if mi["unix_max_dgram_qlen"] is not None and mi["unix_max_dgram_qlen"] < 64:
        run.note("net.unix.max_dgram_qlen is %d (kernel default; systemd sets 512): Unix "
                 "datagram senders block after that many queued datagrams, which throttles "
                 "the 1 line/datagram Unix scenarios for every receiver alike (--unix-qlen)"
                 % mi["unix_max_dgram_qlen"])
    run.note("RcvbufErrors is the whole machine's (/proc/net/snmp: other UDP traffic counts "
             "too); socket drops are the server socket's own (/proc/net/udp)")
    transports = [t for t in a.transports.split(",") if t]
    lpds = [int(x) for x in a.lines_per_datagram.split(",") if x]
    if not a.no_ingest:
        section_ingest(run, transports, lpds)
        section_collectd(run, transports, lpds)
        note_steal(run)
        print("## Ingest (%s series, counters, full speed)\n" % ifmt(a.series))
        print_ingest(run.results["ingest"], run.nulls)
        print()
        print_targets(run.results["ingest"], run.nulls)
        print()
        print_collectd(run.results["ingest"])
    section_exact(run)
    if a.scrape_series:
        section_scrape(run)
    if a.ttl_series:
        section_ttl(run)
    if a.state_series:
        section_state(run)
    if a.memory_series:
        section_memory(run)
    if a.remote_write_series:
        section_remote_write(run)
    if not a.no_workers:
        section_workers(run)
    with open("/proc/loadavg") as f:
        mi["loadavg_end"] = f.read().split()[:3]
    run.results["elapsed_s"] = round(time.monotonic() - t_start, 1)
    for n in run.results["notes"]:
        print("note: %s" % n)
    print("\nload average at the end: %s; %.0f s in all. Command: %s" % (
        " ".join(mi["loadavg_end"]), run.results["elapsed_s"],
        " ".join(["tests/bench/bench.py"] + list(argv))))


def main(argv):
    args = parse_args(argv)
    for what in ("alice", "nullrecv", "loadgen"):
        path = getattr(args, what)
        if not os.access(path, os.X_OK):
            print("bench: %s not found at %s (build first: ninja -C build)" % (what, path),
                  file=sys.stderr)
            return 2
    qlen_path, qlen_saved = "/proc/sys/net/unix/max_dgram_qlen", None
    if args.unix_qlen is not None:
        try:
            with open(qlen_path) as f:
                qlen_saved = f.read().strip()
            with open(qlen_path, "w") as f:
                f.write(str(args.unix_qlen))
        except OSError as e:
            print("bench: cannot set %s: %s" % (qlen_path, e), file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, on_sigterm)
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="alice-bench-")
    run = Run(args, procs, tmp)
    try:
        run_all(run, argv)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        run.failures.append("interrupted")
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        print("bench: %s" % e, file=sys.stderr)
        run.failures.append(str(e))
    finally:
        procs.stop_all()
        if qlen_saved is not None:
            with open(qlen_path, "w") as f:
                f.write(qlen_saved)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(run.results, f, indent=1, default=str)
        shutil.rmtree(tmp, ignore_errors=True)
    if run.failures:
        print("\nproblems:")
        for f in run.failures:
            print("- %s" % f)
    if args.smoke:
        # The closing line tools/test-totals.py and CI read.
        print("\n%d passed, %d failed" % (0 if run.failures else 1, 1 if run.failures else 0))
        return 1 if run.failures else 0
    return 1 if "interrupted" in run.failures else 0


def print_exact(r):
    if "error" in r:
        print("error: %s\n" % r["error"])
        return
    print("| lines sent | counted | lost | rejected | send errors | achieved rate | "
          "RcvbufErrors | socket drops | server CPU s | series checked | series mismatched | "
          "result |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s | %s |" % (
        ifmt(r["lines_sent"]), ifmt(r["lines_counted"]), ifmt(r["lost"]), ifmt(r["rejected"]),
        ifmt(r["send_errors"]), mfmt(r["achieved_rate"]),
        "n/a (unix)" if r["transport"] == "unix" else ifmt(r["rcvbuf_errors"]),
        "n/a" if r["transport"] == "unix" else ifmt(r.get("socket_drops")),
        r["server_cpu_s"], ifmt(r["series_checked"]), ifmt(r["series_mismatched"]),
        "counted == sent per series" if r["ok"] else "MISMATCH"))
    for e in r["examples"]:
        print("  - %s" % e)
    print()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
