"""Remote write (--remote-write-url, config remote_write) against real
receivers on loopback: Debian's Prometheus with its remote write receiver
(what it stores is exactly what was sent, external labels included, and the
stale markers end series on TTL expiry and at shutdown), and Python servers
that decode the snappy protobuf and answer 500 then 200, 400, or hang."""
import contextlib
import http.server
import json
import os
import shutil
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
    codes for successive requests (the last repeats); "hang" never answers.

    tls: an ssl.SSLContext (server side) to serve https; handshakes that
    fail are kept in tls_errors. idle_timeout: a kept-alive connection idle
    that long is closed. cut_reused: a request on a reused connection is
    read, then the connection is closed without an answer ("fin": TCP only;
    "notify": a TLS close_notify first, as Go servers do), which is what a
    client sees when its request crosses the receiver's idle close."""

    def __init__(self, answers, tls=None, idle_timeout=None, cut_reused=None):
        self.answers = list(answers)
        self.requests = []  # (headers, decoded series)
        self.peers = []  # the client certificate's CN of each request, or None
        self.tls_errors = []
        self.cut = 0  # requests cut by cut_reused
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                self.served = 0

            def do_POST(self):
                n = int(self.headers["Content-Length"])
                body = self.rfile.read(n)
                self.served += 1
                if cut_reused and self.served > 1:
                    with outer.lock:
                        outer.cut += 1
                    if cut_reused == "notify":
                        try:
                            self.connection.settimeout(1)
                            self.connection.unwrap()
                        except OSError:
                            pass
                    self.close_connection = True
                    return
                series = decode_write_request(snappy.uncompress(body))
                peer = None
                if tls is not None:
                    cert = self.connection.getpeercert()
                    if cert:
                        peer = dict(x[0] for x in cert["subject"]).get("commonName")
                with outer.lock:
                    outer.requests.append((dict(self.headers), series))
                    outer.peers.append(peer)
                    k = len(outer.requests) - 1
                    code = outer.answers[min(k, len(outer.answers) - 1)]
                if code == "hang":
                    time.sleep(3)
                    return
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                if tls is None:
                    return sock, addr
                sock.settimeout(5)
                try:
                    return tls.wrap_socket(sock, server_side=True), addr
                except OSError as e:  # socketserver drops the connection
                    with outer.lock:
                        outer.tls_errors.append(str(e))
                    sock.close()
                    raise

        self.server = Server(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return "%s://127.0.0.1:%d/api/v1/write" % (self.scheme, self.port)

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


def ingest_goes_on(d, line, n, pause=0.0):
    """Sends line n times, each followed by a scrape that must answer
    within 0.5 s, then waits until all n are counted."""
    for i in range(n):
        d.send(line)
        t0 = time.monotonic()
        d.get("/metrics")
        assert time.monotonic() - t0 < 0.5
        time.sleep(pause)
    d.wait_samples(n)


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
            ingest_goes_on(d, b"ticks:1|c", 5, pause=0.3)
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



# ---- TLS, client certificates, authentication ----

def _openssl(tmp, *args):
    out = subprocess.run(["openssl"] + list(args), cwd=tmp, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def make_pki(tmp):
    """Two CAs (ca, other) and, signed by ca, a server certificate for
    127.0.0.1 and a client certificate (CN alice-client), made with the
    openssl command line in tmp. Returns {name: path}."""
    with open(os.path.join(tmp, "ca.cnf"), "w") as f:
        f.write("[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n"
                "basicConstraints = critical,CA:TRUE\n"
                "keyUsage = critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier = hash\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for ca in ("ca", "other"):
        _openssl(tmp, "req", "-x509", *ec, "-config", "ca.cnf", "-extensions", "v3_ca",
                 "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "2",
                 "-subj", "/CN=alice-test-" + ca)
    leaves = {"server": ("127.0.0.1", "subjectAltName = IP:127.0.0.1\n"
                                      "extendedKeyUsage = serverAuth\n"),
              "client": ("alice-client", "extendedKeyUsage = clientAuth\n")}
    for name, (cn, ext) in leaves.items():
        with open(os.path.join(tmp, name + ".ext"), "w") as f:
            f.write("basicConstraints = CA:FALSE\nauthorityKeyIdentifier = keyid\n" + ext)
        _openssl(tmp, "req", "-new", *ec, "-config", "ca.cnf", "-keyout", name + ".key",
                 "-out", name + ".csr", "-subj", "/CN=" + cn)
        _openssl(tmp, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", name + ".ext",
                 "-out", name + ".crt")
    return {n: os.path.join(tmp, n) for n in
            ("ca.crt", "other.crt", "server.crt", "server.key", "client.crt", "client.key")}


def server_tls(pki, require_client_cert=False):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca.crt"])
    return ctx


def wait_counts(d, cond, timeout=10.0):
    """The remote write counters once cond(counts) holds (or the last seen)."""
    deadline = time.monotonic() + timeout
    c = rw_counts(d)
    while not cond(c) and time.monotonic() < deadline:
        time.sleep(0.1)
        c = rw_counts(d)
    return c


def pushed_names(rcv):
    with rcv.lock:
        return {dict(l).get("__name__") for _, s in rcv.requests for l, _ in s}


@contextlib.contextmanager
def scratch_pki():
    """(a temporary folder, make_pki's files in it), removed after."""
    tmp = tempfile.mkdtemp()
    try:
        yield tmp, make_pki(tmp)
    finally:
        shutil.rmtree(tmp)


@contextlib.contextmanager
def https_receiver(require_client_cert=False, **kw):
    """(tmp, pki, an https Receiver answering 200), all closed after."""
    with scratch_pki() as (tmp, pki):
        rcv = Receiver([200], tls=server_tls(pki, require_client_cert), **kw)
        try:
            yield tmp, pki, rcv
        finally:
            rcv.close()


def test_tls_ca_file():
    """https with tls.ca_file: the receiver's certificate (for 127.0.0.1,
    checked against the IP address) verified, the series delivered."""
    with https_receiver() as (tmp, pki, rcv):
        cfg = config(tmp, rcv.url(), tls={"ca_file": pki["ca.crt"]})
        with Daemon(["--config", cfg]) as d:
            d.send(b"tls_orders_total:3|c")
            d.wait_samples(1)
            assert rcv.wait(lambda rs: len(rs) >= 2)
            assert "tls_orders_total" in pushed_names(rcv)
            c = wait_counts(d, lambda c: c["sent"] > 0)
            assert c["sent"] > 0 and c["failed"] == 0, c
        assert not rcv.tls_errors, rcv.tls_errors


def test_tls_insecure_skip_verify():
    """insecure_skip_verify: true and no CA: the unverifiable certificate is
    accepted."""
    with https_receiver() as (tmp, pki, rcv):
        cfg = config(tmp, rcv.url(), tls={"insecure_skip_verify": True})
        with Daemon(["--config", cfg]) as d:
            assert rcv.wait(lambda rs: len(rs) >= 2)
            c = wait_counts(d, lambda c: c["sent"] > 0)
            assert c["sent"] > 0 and c["failed"] == 0, c


def test_tls_wrong_ca():
    """A certificate from another CA: nothing delivered, every attempt
    counted failed and logged with the verification error; ingest and
    scrapes go on, and the daemon stops in bounded time."""
    with https_receiver() as (tmp, pki, rcv):
        cfg = config(tmp, rcv.url(), tls={"ca_file": pki["other.crt"]})
        d = Daemon(["--config", cfg])
        try:
            c = wait_counts(d, lambda c: c["failed"] > 0)
            assert c["failed"] > 0 and c["sent"] == 0, c
            line = d.wait_log(r"event=remote_write_failed")
            assert line and "certificate" in line and "issuer" in line, line
            ingest_goes_on(d, b"still_counting_total:1|c", 3)
            assert "still_counting_total 3" in d.metrics()
        finally:
            t0 = time.monotonic()
            assert d.stop() == 0
        assert time.monotonic() - t0 < 5
        assert rcv.requests == [] and rcv.tls_errors


def test_tls_client_certificate():
    """A receiver that requires a client certificate gets tls.cert_file's
    (checked against its CA); without one the handshake fails, counted."""
    with https_receiver(require_client_cert=True) as (tmp, pki, rcv):
        cfg = config(tmp, rcv.url(), tls={"ca_file": pki["ca.crt"],
                                          "cert_file": pki["client.crt"],
                                          "key_file": pki["client.key"]})
        with Daemon(["--config", cfg]) as d:
            assert rcv.wait(lambda rs: len(rs) >= 2)
            c = wait_counts(d, lambda c: c["sent"] > 0)
            assert c["sent"] > 0 and c["failed"] == 0, c
        with rcv.lock:
            assert set(rcv.peers) == {"alice-client"}, rcv.peers
            n = len(rcv.requests)
        cfg = config(tmp, rcv.url(), tls={"ca_file": pki["ca.crt"]})
        with Daemon(["--config", cfg]) as d:
            c = wait_counts(d, lambda c: c["failed"] > 0)
            assert c["failed"] > 0 and c["sent"] == 0, c
        with rcv.lock:
            assert len(rcv.requests) == n


def test_basic_auth_over_tls():
    """basic_auth: username and the first line of password_file, over https."""
    import base64
    with https_receiver() as (tmp, pki, rcv):
        pw = os.path.join(tmp, "pw")
        with open(pw, "w") as f:
            f.write("s3cret:x\n")
        cfg = config(tmp, rcv.url(), tls={"ca_file": pki["ca.crt"]},
                     basic_auth={"username": "alice", "password_file": pw})
        with Daemon(["--config", cfg]):
            assert rcv.wait(lambda rs: len(rs) >= 2)
        want = "Basic " + base64.b64encode(b"alice:s3cret:x").decode()
        with rcv.lock:
            assert {h.get("Authorization") for h, _ in rcv.requests} == {want}


def test_bearer_token():
    tmp = tempfile.mkdtemp()
    try:
        tok = os.path.join(tmp, "token")
        with open(tok, "w") as f:
            f.write("eyJ.tok-en_1\n")
        rcv = Receiver([200])
        try:
            with Daemon(["--config", config(tmp, rcv.url(), bearer_token_file=tok)]):
                assert rcv.wait(lambda rs: len(rs) >= 2)
            with rcv.lock:
                assert {h.get("Authorization") for h, _ in rcv.requests} == {
                    "Bearer eyJ.tok-en_1"}
        finally:
            rcv.close()
    finally:
        shutil.rmtree(tmp)


def test_stale_connection_is_retried():
    """A kept-alive connection the receiver closed (idle, or as the next
    request arrived) is not a failure: the request goes again at once on a
    new connection, plain and TLS alike (TCP close or close_notify)."""
    with scratch_pki() as (tmp, pki):
        cases = [("plain", None, {"cut_reused": "fin"}),
                 ("tls cut", server_tls(pki), {"cut_reused": "fin"}),
                 ("tls cut close_notify", server_tls(pki), {"cut_reused": "notify"}),
                 ("tls idle close", server_tls(pki), {"idle_timeout": 0.1})]
        for name, tls, how in cases:
            rcv = Receiver([200], tls=tls, **how)
            try:
                cfg = config(tmp, rcv.url(), tls={"ca_file": pki["ca.crt"]})
                with Daemon(["--config", cfg]) as d:
                    assert rcv.wait(lambda rs: len(rs) >= 4), name
                    c = rw_counts(d)
                    assert c["failed"] == 0 and c["sent"] > 0, (name, c)
                if "cut_reused" in how:
                    assert rcv.cut >= 2, (name, rcv.cut)
            finally:
                rcv.close()


if __name__ == "__main__":
    run_tests(globals())
