"""Remote write (--remote-write-url, config remote_write) against real
receivers on loopback: Debian's Prometheus with its remote write receiver
(what it stores is exactly what was sent, external labels included, and the
stale markers end series on TTL expiry and at shutdown), and Python servers
that decode the snappy protobuf and answer 500 then 200, 400, or hang."""
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import Daemon, Skip, free_tcp_port, run_tests, sample_value, stop_process  # noqa: E402

import snappy  # noqa: E402  (python3-snappy)


# ---- a minimal protobuf reader for WriteRequest (proto/remote.proto) ----

def _varint(b, i):
    x = s = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return x, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 2:
            n, i = _varint(b, i)
            yield num, b[i:i + n]
            i += n
        elif wt == 1:
            yield num, b[i:i + 8]
            i += 8
        elif wt == 0:
            v, i = _varint(b, i)
            yield num, v
        else:
            raise ValueError("wire type %d" % wt)


def decode_write_request(raw):
    """[(labels as a list of (name, value) in wire order, [(value, ts)])]."""
    import struct
    out = []
    for num, ts in _fields(raw):
        assert num == 1
        labels, samples = [], []
        for f, v in _fields(ts):
            if f == 1:
                d = dict(_fields(v))
                labels.append((d.get(1, b"").decode(), d.get(2, b"").decode()))
            elif f == 2:
                d = dict(_fields(v))
                val = struct.unpack("<d", d[1])[0] if 1 in d else 0.0
                t = d.get(2, 0)
                samples.append((val, t - (1 << 64) if t >= 1 << 63 else t))
        out.append((labels, samples))
    return out


class Receiver:
    """A remote write receiver on loopback; `answers` is a list of status
    codes for successive requests (the last repeats); "hang" never answers."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []  # (headers, decoded series)
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers["Content-Length"])
                body = self.rfile.read(n)
                series = decode_write_request(snappy.uncompress(body))
                with outer.lock:
                    outer.requests.append((dict(self.headers), series))
                    k = len(outer.requests) - 1
                    code = outer.answers[min(k, len(outer.answers) - 1)]
                if code == "hang":
                    time.sleep(3)
                    return
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d/api/v1/write" % self.port

    def wait(self, cond, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if cond(self.requests):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def config(tmp, url, **extra):
    rw = {"url": url, "interval": 0.3, "timeout": 1}
    rw.update(extra)
    path = os.path.join(tmp, "alice.json")
    with open(path, "w") as f:
        json.dump({"remote_write": rw}, f)
    return path


def rw_counts(d):
    body = d.metrics()
    return {r: sample_value(body, "alice_metricsd_remote_write_samples_total", result=r) or 0
            for r in ("sent", "failed", "dropped")}


def test_headers_and_content():
    """Every request carries the remote write 1.0 headers; series sorted by
    label name, one timestamp per push, external labels added."""
    rcv = Receiver([200])
    tmp = tempfile.mkdtemp()
    try:
        cfg = config(tmp, rcv.url(), external_labels={"job": "alice", "instance": "h1"})
        with Daemon(["--config", cfg]) as d:
            d.send(b"hits_total:2|c|#path:/x\nlat:0.3|h")
            d.wait_samples(2)
            assert rcv.wait(lambda rs: any(
                any(dict(l).get("__name__") == "hits_total" for l, _ in s) for _, s in rs))
        with rcv.lock:
            for h, series in rcv.requests:
                assert h["Content-Encoding"] == "snappy"
                assert h["Content-Type"] == "application/x-protobuf"
                assert h["X-Prometheus-Remote-Write-Version"] == "0.1.0"
                assert h["User-Agent"].startswith("alice-metrics/")
                for labels, samples in series:
                    names = [n for n, _ in labels]
                    assert names == sorted(names), names
                    assert len(samples) == 1
            pushes = [s for _, s in rcv.requests]
            hit = [dict(l) for s in pushes for l, v in s if dict(l).get("__name__") == "hits_total"]
            assert {"__name__": "hits_total", "path": "/x", "job": "alice",
                    "instance": "h1"} in hit, hit
            stamps = {v[0][1] for l, v in rcv.requests[0][1]}
            assert len(stamps) == 1
    finally:
        rcv.close()
        shutil.rmtree(tmp)


def test_retry_500_then_200():
    """A 500 is retried (failed counted per attempt), then goes through."""
    rcv = Receiver([500, 500, 200])
    tmp = tempfile.mkdtemp()
    try:
        with Daemon(["--config", config(tmp, rcv.url())]) as d:
            assert rcv.wait(lambda rs: len(rs) >= 3)
            c = {}
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                c = rw_counts(d)
                if c["sent"] > 0 and c["failed"] > 0:
                    break
                time.sleep(0.1)
            assert c["failed"] > 0 and c["sent"] > 0 and c["dropped"] == 0, c
            with rcv.lock:  # the retried request is the same request
                assert rcv.requests[0][1] == rcv.requests[1][1]
    finally:
        rcv.close()
        shutil.rmtree(tmp)


def test_400_is_dropped():
    rcv = Receiver([400])
    tmp = tempfile.mkdtemp()
    try:
        with Daemon(["--config", config(tmp, rcv.url())]) as d:
            assert rcv.wait(lambda rs: len(rs) >= 2)
            deadline = time.monotonic() + 10
            c = rw_counts(d)
            while c["dropped"] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
                c = rw_counts(d)
            assert c["dropped"] > 0 and c["sent"] == 0 and c["failed"] == 0, c
    finally:
        rcv.close()
        shutil.rmtree(tmp)


def test_hanging_receiver():
    """A receiver that never answers: timeouts count as failed, the daemon
    keeps ingesting and answering scrapes, and stops in bounded time."""
    rcv = Receiver(["hang"])
    tmp = tempfile.mkdtemp()
    try:
        d = Daemon(["--config", config(tmp, rcv.url(), timeout=0.5)])
        try:
            assert rcv.wait(lambda rs: len(rs) >= 1)
            for i in range(5):
                d.send(b"ticks:1|c")
                t0 = time.monotonic()
                d.get("/metrics")
                assert time.monotonic() - t0 < 0.5
                time.sleep(0.3)
            d.wait_samples(5)
            assert rw_counts(d)["failed"] > 0
        finally:
            t0 = time.monotonic()
            d.stop()
        assert time.monotonic() - t0 < 5
    finally:
        rcv.close()
        shutil.rmtree(tmp)


class Prometheus:
    def __init__(self, tmp):
        self.port = free_tcp_port()
        with open(os.path.join(tmp, "prom.yml"), "w") as f:
            f.write("global: {}\n")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + os.path.join(tmp, "prom.yml"),
             "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("prometheus did not start")

    def url(self):
        return "http://127.0.0.1:%d/api/v1/write" % self.port

    def query(self, q):
        u = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": q}))
        with urllib.request.urlopen(u, timeout=5) as r:
            return json.load(r)["data"]["result"]

    def wait(self, q, cond, timeout=15.0):
        deadline = time.monotonic() + timeout
        res = None
        while time.monotonic() < deadline:
            res = self.query(q)
            if cond(res):
                return res
            time.sleep(0.2)
        raise AssertionError("%s: %r" % (q, res))

    def close(self):
        stop_process(self.proc)


def test_prometheus_receives_exactly():
    if not shutil.which("prometheus"):
        raise Skip("prometheus not installed")
    tmp = tempfile.mkdtemp()
    prom = Prometheus(tmp)
    try:
        cfg = config(tmp, prom.url(), external_labels={"job": "alice", "instance": "h1"})
        with Daemon(["--config", cfg, "--ttl", "2"]) as d:
            d.send(b"orders_total:7|c|#shop:b\nqueue_depth:-3.5|g\nlat:0.3|h\nlat:2|h\n"
                   b"gone:1|g")
            d.wait_samples(5)
            r = prom.wait('orders_total{job="alice",instance="h1",shop="b"}',
                          lambda r: len(r) == 1)
            assert r[0]["value"][1] == "7"
            assert prom.wait("queue_depth", lambda r: len(r) == 1)[0]["value"][1] == "-3.5"
            b = prom.wait('lat_bucket{le="0.5"}', lambda r: len(r) == 1)
            assert b[0]["value"][1] == "1"
            assert prom.query('lat_bucket{le="+Inf"}')[0]["value"][1] == "2"
            assert prom.query("lat_sum")[0]["value"][1] == "2.3"
            assert prom.query("lat_count")[0]["value"][1] == "2"
            # the daemon's own series, for the absent() alert
            prom.wait('alice_metricsd_remote_write_samples_total{job="alice",result="sent"}',
                      lambda r: len(r) == 1)
            # TTL: "gone" expires; its stale marker ends it at the receiver
            # (a plain absence would linger for the 5 min lookback)
            keep = time.monotonic() + 6
            while time.monotonic() < keep:
                d.send(b"orders_total:1|c|#shop:b\nqueue_depth:-3.5|g\nlat:1|h")
                time.sleep(0.5)
            prom.wait("gone", lambda r: r == [])
            assert prom.query("orders_total") != []
        # shutdown: every series ends at once
        prom.wait("orders_total", lambda r: r == [], timeout=5)
        assert prom.query("queue_depth") == []
    finally:
        prom.close()
        shutil.rmtree(tmp)


def test_push_mode_alert_rules():
    """deploy/'s push-mode rules pass promtool."""
    if not shutil.which("promtool"):
        raise Skip("promtool not installed")
    rules = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                         "prometheus", "alerts-remote-write.yml")
    out = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bad_config():
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "c.json")
        with open(path, "w") as f:
            json.dump({"remote_write": {"url": "ftp://x/"}}, f)
        out = subprocess.run([os.environ["ALICE_BIN"], "check-config", path],
                             capture_output=True, text=True)
        assert out.returncode == 1 and "remote_write.url" in out.stderr, out.stderr
        out = subprocess.run([os.environ["ALICE_BIN"], "metrics-server", "--remote-write-url",
                              "nope"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 2 and "--remote-write-url" in out.stderr, out.stderr
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    run_tests(globals())
