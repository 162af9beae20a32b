#!/usr/bin/python3
"""HTTP under abuse: the daemon holds series, attackers on 127.0.0.1 open
slowloris connections (request heads sent a header at a time), slow readers
(ask for /metrics and read a few bytes a second) and pipeliners (send many
GET /metrics at once and never read), while one ordinary scraper asks for
/metrics on a new connection at a steady pace. Reports the ordinary
scrapes' failures and latency, and the daemon's VmRSS growth (from
/proc/PID/status) over its level before the attack.

    /usr/bin/python3 tests/bench/http_abuse.py --alice build-bench/src/alice

The attackers run in a child process (this script with --attack), so that
their work does not hold the scraper's interpreter. Every attacker that the
daemon closes reconnects (at most --reconnect-rate per second), so the
pressure holds for the whole run. tests/integration/test_http_abuse.py runs
a smaller version with thresholds; `--help` lists every knob.

Every loop here is bounded in time (--seconds, the deadlines below) and
count (the connection counts)."""

import argparse
import errno
import json
import os
import random
import resource
import select
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import amtest  # noqa: E402

REQ = b"GET /metrics HTTP/1.1\r\nHost: alice\r\n\r\n"


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------------------
# The attacker (child process)

class Attacker:
    """One epoll loop over every attacking socket. Kinds:
    slowloris: the request line, then one header line every `trickle` s;
    reader: a whole GET /metrics, then `read_bytes` read every second
            (4 KiB receive buffer);
    pipe: as many GET /metrics as the socket takes (at most 256), never a
          byte read (4 KiB receive buffer)."""

    def __init__(self, port, counts, trickle, read_bytes, reconnect_rate, seed=1):
        self.port = port
        self.counts = counts
        self.trickle = trickle
        self.read_bytes = read_bytes
        self.rate = reconnect_rate
        self.rng = random.Random(seed)
        self.ep = select.epoll()
        self.socks = {}  # fd -> state dict
        self.want = []  # kinds waiting for a (re)connect
        for kind, n in counts.items():
            self.want += [kind] * n
        self.rng.shuffle(self.want)
        self.stats = {"connects": 0, "closed_by_server": 0, "connect_errors": 0,
                      "answers_408": 0}

    def _open(self, kind, now):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if kind in ("reader", "pipe"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            self.stats["connect_errors"] += 1
            self.want.append(kind)
            return
        self.stats["connects"] += 1
        st = {"sock": s, "kind": kind, "sent": 0, "next": now, "connected": False,
              "hdr": 0}
        self.socks[s.fileno()] = st
        self.ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLRDHUP)

    def _drop(self, fd, by_server):
        st = self.socks.pop(fd)
        try:
            self.ep.unregister(fd)
        except OSError:
            pass
        st["sock"].close()
        if by_server:
            self.stats["closed_by_server"] += 1
        self.want.append(st["kind"])

    def _send(self, st, data):
        """Bytes sent; 0 when the socket is full, -1 when the daemon has
        closed it."""
        try:
            return st["sock"].send(data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    def _on_connected(self, fd, st, now):
        st["connected"] = True
        kind = st["kind"]
        if kind == "slowloris":
            if self._send(st, b"GET /metrics HTTP/1.1\r\n") < 0:
                self._drop(fd, True)
                return
            st["next"] = now + self.trickle * self.rng.uniform(0.5, 1.0)
            self.ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
        elif kind == "reader":
            if self._send(st, REQ) < 0:
                self._drop(fd, True)
                return
            st["next"] = now + 1.0
            self.ep.modify(fd, select.EPOLLRDHUP)
        else:
            self._pipe_more(fd, st)

    def _pipe_more(self, fd, st):
        while st["sent"] < 256:
            n = self._send(st, REQ)
            if n < 0:
                self._drop(fd, True)
                return
            if n < len(REQ):
                break  # the daemon stopped reading: backpressure
            st["sent"] += 1
        self.ep.modify(fd, select.EPOLLRDHUP | (select.EPOLLOUT if st["sent"] < 256 else 0))

    def _tick(self, fd, st, now):
        """The periodic action of a connected slowloris or reader."""
        if now < st["next"]:
            return
        try:
            if st["kind"] == "slowloris":
                st["hdr"] += 1
                st["sock"].send(b"X-Slow-%d: x\r\n" % st["hdr"])
                st["next"] = now + self.trickle
            else:
                st["sock"].recv(self.read_bytes)
                st["next"] = now + 1.0
        except BlockingIOError:
            st["next"] = now + 1.0
        except OSError:
            self._drop(fd, True)

    def run(self, seconds, ready_out, stop_fd=None):
        """Until `seconds` have passed or stop_fd (the parent's pipe) is
        readable or closed."""
        deadline = time.monotonic() + seconds
        if stop_fd is not None:
            self.ep.register(stop_fd, select.EPOLLIN | select.EPOLLHUP)
        tokens, last = float(self.rate), time.monotonic()
        announced = False
        next_tick = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            tokens = min(float(self.rate), tokens + (now - last) * self.rate)
            last = now
            while self.want and tokens >= 1:
                self._open(self.want.pop(), now)
                tokens -= 1
            if not announced and self.stats["connects"] >= sum(self.counts.values()):
                # every attacker has connected once (the daemon may have
                # closed some already: they reconnect)
                ready_out.write("ready %d\n" % len(self.socks))
                ready_out.flush()
                announced = True
            events = self.ep.poll(0.05, 4096)
            if any(fd == stop_fd for fd, _ in events):
                break
            for fd, ev in events:
                st = self.socks.get(fd)
                if st is None:
                    continue
                if ev & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                    self._drop(fd, st["connected"])
                    if not st["connected"]:
                        self.stats["connect_errors"] += 1
                    continue
                if not st["connected"] and ev & select.EPOLLOUT:
                    self._on_connected(fd, st, now)
                elif st["kind"] == "pipe" and ev & select.EPOLLOUT:
                    self._pipe_more(fd, st)
                elif st["kind"] == "slowloris" and ev & select.EPOLLIN:
                    try:
                        data = st["sock"].recv(65536)
                    except OSError:
                        data = b""
                    if data.startswith(b"HTTP/1.1 408"):
                        self.stats["answers_408"] += 1
                    if not data:
                        self._drop(fd, True)
            if now >= next_tick:  # the periodic actions, 10 times a second
                next_tick = now + 0.1
                for fd, st in list(self.socks.items()):
                    if st["connected"] and st["kind"] != "pipe":
                        self._tick(fd, st, now)
        if not announced:
            ready_out.write("ready %d\n" % len(self.socks))
        self.stats["open_at_end"] = len(self.socks)
        ready_out.write("stats %s\n" % json.dumps(self.stats))
        ready_out.flush()
        for st in self.socks.values():
            st["sock"].close()


def attack_main(args):
    raise_nofile()
    a = Attacker(args.attack, {"slowloris": args.slowloris, "reader": args.slow_readers,
                               "pipe": args.pipeliners},
                 args.trickle, args.read_bytes, args.reconnect_rate)
    a.run(args.seconds, sys.stdout, sys.stdin.fileno())


# ---------------------------------------------------------------------------
# The measuring side

def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class LoggedDaemon(amtest.Daemon):
    """amtest.Daemon at --log-level debug with its log in a file (a pipe
    nobody reads would block the daemon): every shed connection and timeout
    is there to look at after a failure."""

    def __init__(self, args, log_path):
        self.udp_port = amtest.free_udp_port()
        self.unix = None
        self.log = []
        self._pending = b""
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        cmd = [amtest.ALICE_BIN, "--log-level", "debug", "metrics-server", "--host", "127.0.0.1",
               "--port", "0", "--statsd-host", "127.0.0.1", "--statsd-port",
               str(self.udp_port)] + list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log_file, env=amtest.clean_env())
        startup = amtest.Startup({"http", "udp"})
        if not amtest.wait_log_file(log_path, self.proc, startup):
            self.stop()
            raise RuntimeError("daemon did not start, see " + log_path)
        self.http_port = startup.port("http")

    def stop(self, timeout=10):
        amtest.stop_process(self.proc, timeout)
        self.log_file.close()
        return self.proc.returncode


def load_series(d, n):
    """n counter series, 5,000 per family (the default per-family limit is
    10,000), about 54 bytes of exposition each."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lines = ["abuse.requests%d:1|c|#path:/api/v1/item/%06d,code:200" % (i // 5000, i)
             for i in range(n)]
    for k in range(0, n, 20):
        s.sendto("\n".join(lines[k:k + 20]).encode(), ("127.0.0.1", d.udp_port))
        if k % 4000 == 0:
            time.sleep(0.003)
    s.close()
    d.wait_samples(n, timeout=60)


def scrape_once(port, timeout):
    """One ordinary scrape on a new connection: (ok, seconds, body length,
    error text); the text names the local port (the daemon's debug log
    names it as peer=)."""
    t0 = time.monotonic()
    local = 0
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        local = c.getsockname()[1]
        try:
            c.settimeout(timeout)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: alice\r\nConnection: close\r\n\r\n")
            chunks = []
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            c.close()
    except OSError as e:
        return False, time.monotonic() - t0, 0, "%s (port %d)" % (e, local)
    dt = time.monotonic() - t0
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return False, dt, 0, "connection closed without response (port %d)" % local
    if not head.startswith(b"HTTP/1.1 200"):
        return False, dt, 0, head.split(b"\r\n")[0].decode("latin-1")
    length = None
    chunked = False
    for h in head.split(b"\r\n")[1:]:
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
        if k.strip().lower() == b"transfer-encoding" and v.strip().lower() == b"chunked":
            chunked = True
    if chunked:  # a large body is sent as it renders
        body = amtest.dechunk(body)
        if body is None:
            return False, dt, 0, "broken chunked body (port %d)" % local
        length = len(body)
    if length is None or len(body) != length:
        return False, dt, len(body), "short body %d of %s (port %d)" % (len(body), length, local)
    return True, dt, length, ""


def percentile(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def run_scenario(alice, series, slowloris, slow_readers, pipeliners, seconds,
                 max_connections=None, interval=0.05, trickle=5.0, read_bytes=32,
                 reconnect_rate=300, extra_args=(), slowhttptest=0, log_path=None):
    """Runs the attack against a fresh daemon; returns the figures as a
    dict. max_connections None: the daemon's default (no flag given, which
    an old daemon without the flag needs). log_path: the daemon logs at
    debug level into this file."""
    raise_nofile()
    args = list(extra_args)
    if max_connections is not None:
        args += ["--max-connections", str(max_connections)]
    out = {"series": series, "slowloris": slowloris, "slow_readers": slow_readers,
           "pipeliners": pipeliners, "seconds": seconds, "max_connections": max_connections}
    amtest.ALICE_BIN = alice
    d = LoggedDaemon(args, log_path) if log_path else amtest.Daemon(args=args)
    attacker = None
    sht = None
    try:
        load_series(d, series)
        for _ in range(3):  # warm: the render's buffers have been through malloc
            ok, _, blen, err = scrape_once(d.http_port, 10)
            assert ok, err
        out["body_bytes"] = blen
        time.sleep(0.3)
        base = vm_rss(d.proc.pid)
        out["rss_base"] = base
        attacker = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--attack", str(d.http_port),
             "--slowloris", str(slowloris), "--slow-readers", str(slow_readers),
             "--pipeliners", str(pipeliners), "--seconds", str(seconds + 30),
             "--trickle", str(trickle), "--read-bytes", str(read_bytes),
             "--reconnect-rate", str(reconnect_rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = attacker.stdout.readline()
        out["attack_ready"] = ready.strip()
        if slowhttptest:
            sht = subprocess.Popen(
                ["slowhttptest", "-H", "-c", str(slowhttptest), "-r", "200", "-i", "5",
                 "-l", str(int(seconds) + 5), "-u", "http://127.0.0.1:%d/metrics" % d.http_port,
                 "-p", "3"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # let the slow ones settle in
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], vm_rss(d.proc.pid))
                stop.wait(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        lat, fails = [], []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            ok, dt, _, err = scrape_once(d.http_port, 10)
            if ok:
                lat.append(dt)
            else:
                fails.append(err)
            time.sleep(interval)
        stop.set()
        sampler.join()
        try:
            _, _, m = d.get("/metrics")
            m = m.decode()
        except Exception as e:  # noqa: BLE001 - the figures still count
            m = ""
            out["final_scrape_error"] = repr(e)[:200]
        out["scrapes"] = len(lat) + len(fails)
        out["failed"] = len(fails)
        out["failures"] = sorted(set(fails))[:5]
        out["p50_ms"] = percentile(lat, 50) * 1000
        out["p99_ms"] = percentile(lat, 99) * 1000
        out["max_ms"] = max(lat) * 1000 if lat else 0.0
        out["rss_peak"] = peak[0]
        out["rss_growth"] = peak[0] - base
        for name in ("alice_metricsd_http_connections", "alice_metricsd_http_connections_rejected_total",
                     "alice_metricsd_http_connections_shed_total", "alice_metricsd_scrapes_total"):
            out[name.replace("alice_metricsd_", "")] = amtest.sample_value(m, name)
    finally:
        if attacker:
            try:  # closing its stdin stops it: it prints its counts
                rest, _ = attacker.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                attacker.kill()
                rest, _ = attacker.communicate()
            for line in (rest or "").splitlines():
                if line.startswith("stats "):
                    out["attack"] = json.loads(line[6:])
        if sht:
            amtest.stop_process(sht, 5)
        d.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alice", default=amtest.ALICE_BIN, help="the alice binary")
    ap.add_argument("--series", type=int, default=50000)
    ap.add_argument("--slowloris", type=int, default=1000)
    ap.add_argument("--slow-readers", type=int, default=200)
    ap.add_argument("--pipeliners", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the scraper measures")
    ap.add_argument("--interval", type=float, default=0.05, help="pause between ordinary scrapes")
    ap.add_argument("--max-connections", type=int, default=None,
                    help="passed to the daemon (default: none, the daemon's default)")
    ap.add_argument("--trickle", type=float, default=5.0, help="slowloris: seconds per header line")
    ap.add_argument("--read-bytes", type=int, default=32, help="slow reader: bytes per second")
    ap.add_argument("--reconnect-rate", type=int, default=300,
                    help="attack connections opened per second at most")
    ap.add_argument("--slowhttptest", type=int, default=0,
                    help="also run slowhttptest -H with this many connections")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--log", help="the daemon logs at debug level into this file")
    ap.add_argument("--attack", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.attack:
        attack_main(args)
        return
    amtest.ALICE_BIN = args.alice
    r = run_scenario(args.alice, args.series, args.slowloris, args.slow_readers, args.pipeliners,
                     args.seconds, args.max_connections, args.interval, args.trickle,
                     args.read_bytes, args.reconnect_rate, slowhttptest=args.slowhttptest,
                     log_path=args.log)
    if args.json:
        print(json.dumps(r, indent=1))
        return
    mib = 1024.0 * 1024
    print("body %.2f MB, %d series; attack: %d slowloris, %d slow readers, %d pipeliners (%s)"
          % (r["body_bytes"] / 1e6, r["series"], r["slowloris"], r["slow_readers"],
             r["pipeliners"], r.get("attack_ready")))
    print("ordinary scrapes: %d, failed %d %s" % (r["scrapes"], r["failed"], r["failures"]))
    print("latency ms: p50 %.1f  p99 %.1f  max %.1f" % (r["p50_ms"], r["p99_ms"], r["max_ms"]))
    print("RSS: base %.1f MiB, peak %.1f MiB, growth %.1f MiB"
          % (r["rss_base"] / mib, r["rss_peak"] / mib, r["rss_growth"] / mib))
    print("daemon: connections %s, rejected %s, shed %s, scrapes %s; attacker %s"
          % (r.get("http_connections"), r.get("http_connections_rejected_total"),
             r.get("http_connections_shed_total"), r.get("scrapes_total"), r.get("attack")))


if __name__ == "__main__":
    main()
