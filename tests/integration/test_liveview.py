"""The live view: GET /api/v1/families, GET /, alice top and alice health.

The real daemon on loopback ports: series counts, rejects by reason (per
family and without one), top label values, lines/s after a known number of
lines (lines in the last minute / 60: exact while the daemon is younger
than a minute), with --workers 2, after expiry (--ttl); `alice top` over a
pipe (parsed) and in a pty (redraws, Ctrl-C exits 0); an unreachable
daemon; `alice health`; the client's TLS (a certificate made here by the
openssl command, a Python ssl server) and basic auth (a Python server that
checks the header); GET / in headless chromium (screenshot and DOM)."""

import base64
import fcntl
import http.server
import json
import os
import pty
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import (ALICE_BIN, Daemon, Skip, clean_env, free_tcp_port,  # noqa: E402
                    run_tests)

TMP = tempfile.mkdtemp(prefix="alice-liveview-")


def families(d):
    status, headers, body = d.get("/api/v1/families")
    assert status == 200, status
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def family(doc, name):
    for f in doc["families"]:
        if f["name"] == name:
            return f
    raise AssertionError("no family %s in %s" % (name, [f["name"] for f in doc["families"]]))


def wait_lines(d, name, n, timeout=5.0):
    """The families JSON once family name has n accepted lines (UDP is
    asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = families(d)
        got = [f for f in doc["families"] if f["name"] == name]
        if got and got[0]["lines_total"] >= n:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError("timed out: %s has %s lines, want %d" % (name, got, n))
        time.sleep(0.05)


def alice(*args, timeout=20, env=None):
    return subprocess.run([ALICE_BIN] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, env=clean_env(env))


CONFIG = os.path.join(TMP, "config.json")
with open(CONFIG, "w") as f:
    json.dump({"families": [{"name": "lv_capped_total", "type": "counter", "help": "Capped.",
                             "labels": ["k"], "max_series": 2}]}, f)


def feed_known(d):
    """120 accepted lv_req_total lines over 4 series, rejects of each kind."""
    lines = []
    for i in range(30):
        lines += ["lv.req:1|c|#provider:openai,model:m1", "lv.req:1|c|#provider:openai,model:m2",
                  "lv.req:1|c|#provider:openai,model:m3", "lv.req:1|c|#provider:anthropic,model:m1"]
    for i in range(0, len(lines), 20):
        d.send("\n".join(lines[i:i + 20]))
    d.send("lv.req:1|g\nlv.req:-1|c\nlv.req:x|c")  # type_conflict, negative_counter, bad_value
    d.send("lv.capped:1|c|#k:a\nlv.capped:1|c|#k:b\nlv.capped:1|c|#k:c\nlv.capped:1|c|#zz:1")
    d.send("garbage\nbad name:1|c\nnofamily:x|c")  # syntax, bad_name, bad_value: no family
    return wait_lines(d, "lv_capped_total", 2) and wait_lines(d, "lv_req_total", 120)


def test_families_endpoint_counts():
    with Daemon(["--config", CONFIG]) as d:
        doc = feed_known(d)
        assert doc["window_seconds"] == 60
        req = family(doc, "lv_req_total")
        assert req["type"] == "counter" and req["series"] == 4
        assert req["lines_total"] == 120
        assert abs(req["lines_per_second"] - 120 / 60) < 1e-3, req
        assert req["rejects"] == {"type_conflict": 1, "negative_counter": 1, "bad_value": 1}
        assert req["rejects_total"] == 3
        tops = req["top_label_values"]
        assert tops["provider"] == [{"value": "openai", "series": 3},
                                    {"value": "anthropic", "series": 1}], tops
        assert tops["model"][0] == {"value": "m1", "series": 2}
        capped = family(doc, "lv_capped_total")
        assert capped["series"] == 2 and capped["lines_total"] == 2
        assert capped["rejects"] == {"cardinality": 1, "undeclared_label": 1}, capped
        assert doc["rejects_without_family"] == {"syntax": 1, "bad_name": 1, "bad_value": 1}
        # built-in families are listed too, and the order is by lines/s, series, rejects
        family(doc, "alice_api_requests_total")
        keys = [(-f["lines_per_second"], -f["series"], -f["rejects_total"], f["name"])
                for f in doc["families"]]
        assert keys == sorted(keys)
        assert doc["families"][0]["name"] == "lv_req_total"
        # the once-a-second samples do not move a rate within the minute
        time.sleep(2.2)
        req = family(families(d), "lv_req_total")
        assert abs(req["lines_per_second"] - 2.0) < 1e-3, req


def test_families_with_two_workers():
    with Daemon(["--workers", "2"]) as d:
        socks = []
        for i in range(24):  # one socket each: the kernel spreads them over both workers
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for i, s in enumerate(socks):
            payload = "\n".join(["lv.w:1|c|#sender:s%02d,kind:%s" % (i, "even" if i % 2 == 0
                                                                       else "odd")] * 5)
            s.sendto(payload.encode(), ("127.0.0.1", d.udp_port))
            s.sendto(b"lv.w:1|g", ("127.0.0.1", d.udp_port))
            s.sendto(b"lv.shared:1|c|#k:same", ("127.0.0.1", d.udp_port))  # on both workers
        wait_lines(d, "lv_shared_total", 24)
        doc = wait_lines(d, "lv_w_total", 120)
        _, _, h = d.get("/health")
        per_worker = json.loads(h)["worker_datagrams_received_total"]
        assert len(per_worker) == 2 and min(per_worker) > 0, per_worker
        for s in socks:
            s.close()
        w = family(doc, "lv_w_total")
        assert w["lines_total"] == 120 and w["series"] == 24, w
        assert abs(w["lines_per_second"] - 2.0) < 1e-3
        assert w["rejects"] == {"type_conflict": 24}, w
        kinds = {e["value"]: e["series"] for e in w["top_label_values"]["kind"]}
        assert kinds == {"even": 12, "odd": 12}, kinds
        assert len(w["top_label_values"]["sender"]) == 10  # the top 10 of 24
        # one series fed through both workers counts once, as the scrape shows it
        sh = family(doc, "lv_shared_total")
        assert sh["series"] == 1 and sh["lines_total"] == 24, sh
        assert sh["top_label_values"] == {"k": [{"value": "same", "series": 1}]}, sh
        body = d.get("/metrics")[2].decode()
        assert sum(1 for ln in body.splitlines() if ln.startswith("lv_w_total{")) == 24
        assert sum(1 for ln in body.splitlines() if ln.startswith("lv_shared_total{")) == 1


def test_counts_follow_expiry():
    with Daemon(["--ttl", "1"]) as d:
        d.send("lv.exp:1|c|#k:a\nlv.exp:1|c|#k:b")
        doc = wait_lines(d, "lv_exp_total", 2)
        assert family(doc, "lv_exp_total")["series"] == 2
        deadline = time.monotonic() + 8
        while True:
            e = family(families(d), "lv_exp_total")
            if e["series"] == 0:
                break
            assert time.monotonic() < deadline, e
            time.sleep(0.1)
        assert e["top_label_values"] == {} and e["lines_total"] == 2
        d.send("lv.exp:1|c|#k:b")
        e = family(wait_lines(d, "lv_exp_total", 3), "lv_exp_total")
        assert e["series"] == 1 and e["top_label_values"]["k"] == [{"value": "b", "series": 1}]


def parse_top(out):
    """alice top's table over a pipe: {family: [type, series, rate, rejects, top]}."""
    lines = out.splitlines()
    assert lines[0].startswith(("alice-metrics http://", "alice-metrics https://")), lines[0]
    hdr = [i for i, ln in enumerate(lines) if ln.startswith("FAMILY")]
    assert hdr, out
    rows = {}
    for ln in lines[hdr[0] + 1:]:
        if not ln:
            break  # the senders section (test_senders.py) follows
        parts = ln.split(None, 5)
        rows[parts[0]] = parts[1:]
    return lines[0], rows


def test_top_over_a_pipe():
    with Daemon(["--config", CONFIG]) as d:
        feed_known(d)
        r = alice("top", "--url", d.url)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout  # no terminal codes in a pipe
        head, rows = parse_top(r.stdout)
        assert "rejects without a family: syntax:1,bad_name:1,bad_value:1" in head, head
        typ, series, rate, rejects, top = rows["lv_req_total"]
        assert (typ, series, rate) == ("counter", "4", "2.00")
        assert rejects == "type_conflict:1,bad_value:1,negative_counter:1" or \
            sorted(rejects.split(",")) == ["bad_value:1", "negative_counter:1", "type_conflict:1"]
        assert "provider=openai(3),anthropic(1)" in top, top
        assert list(rows)[0] == "lv_req_total"  # sorted by lines/s
        assert rows["lv_capped_total"][3] in ("cardinality:1,undeclared_label:1",
                                              "undeclared_label:1,cardinality:1")
        # the environment gives the default URL
        port = str(d.http_port)
        r = alice("top", env={"ALICE_METRICS_PORT": port, "ALICE_METRICS_HOST": "0.0.0.0"})
        assert r.returncode == 0 and "lv_req_total" in r.stdout, r.stderr
        assert alice("top", "--interval", "0").returncode == 2


def test_top_in_a_terminal():
    with Daemon() as d:
        d.send("lv.tty:1|c|#k:v")
        wait_lines(d, "lv_tty_total", 1)
        pid, fd = pty.fork()
        if pid == 0:  # a 100x30 terminal
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            os.execv(ALICE_BIN, [ALICE_BIN, "top", "--url", d.url, "--interval", "0.2"])
        out = b""
        deadline = time.monotonic() + 15
        try:
            while out.count(b"\x1b[2J") < 3 and time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 0.5)
                if r:
                    try:
                        out += os.read(fd, 65536)
                    except OSError:
                        break
            assert out.count(b"\x1b[2J") >= 3, out[-500:]  # redrawn
            assert b"lv_tty_total" in out
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                try:
                    if select.select([fd], [], [], 0.1)[0]:
                        os.read(fd, 65536)
                except OSError:
                    pass
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("alice top did not stop on SIGINT")
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        finally:
            os.close(fd)
        # every line fits the terminal's width
        last = out.split(b"\x1b[2J")[-2]
        width = max(len(ln) for ln in last.decode().splitlines())
        assert width <= 100, width


def test_unreachable_daemon():
    port = free_tcp_port()
    url = "http://127.0.0.1:%d" % port
    for cmd in ("top", "health"):
        r = alice(cmd, "--url", url)
        assert r.returncode == 1, (cmd, r)
        assert url in r.stderr and "not reachable" in r.stderr and "refused" in r.stderr, r.stderr
    # a daemon that accepts and never answers: the 5 s timeout
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    t0 = time.monotonic()
    r = alice("health", "--url", "http://127.0.0.1:%d" % s.getsockname()[1])
    s.close()
    assert r.returncode == 1 and "timed out" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 12
    r = alice("health", "--url", "ftp://x")
    assert r.returncode == 2 and "http://" in r.stderr


class Handler(http.server.BaseHTTPRequestHandler):
    """/health 200 (or 503 when the path says), /api/v1/families, and basic
    auth when the server has a `password`."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        want = getattr(self.server, "password", None)
        if want is not None:
            token = base64.b64encode(("lv-user:" + want).encode()).decode()
            if self.headers.get("Authorization") != "Basic " + token:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="alice"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        status = 503 if self.server.sick else 200
        body = b'{"status":"ok"}\n'
        if self.path == "/api/v1/families":
            body = json.dumps({"window_seconds": 60, "rejects_without_family": {},
                               "families": [{"name": "tls_fam_total", "type": "counter",
                                             "series": 7, "lines_per_second": 1.5,
                                             "lines_total": 90, "rejects_total": 0,
                                             "rejects": {}, "top_label_values": {}}]}).encode()
        elif self.path != "/health":
            status = 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class TestServer:
    def __init__(self, context=None, password=None, sick=False):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.password = password
        self.httpd.sick = sick
        if context:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_cert(name, san):
    if not shutil.which("openssl"):
        raise Skip("the openssl command is not installed")
    key, crt = os.path.join(TMP, name + ".key"), os.path.join(TMP, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", crt, "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=" + san],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    return ctx, crt


def test_health():
    with Daemon() as d:
        r = alice("health", "--url", d.url)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "ok"
        r = alice("health", env={"ALICE_METRICS_PORT": str(d.http_port)})
        assert r.returncode == 0, r.stderr
    with TestServer(sick=True) as srv:
        r = alice("health", "--url", "http://127.0.0.1:%d" % srv.port)
        assert r.returncode == 1 and "HTTP 503" in r.stderr, r.stderr


def test_tls_client():
    ctx, crt = make_cert("localhost", "DNS:localhost,IP:127.0.0.1")
    other_ctx, other_crt = make_cert("elsewhere", "DNS:elsewhere.example")
    with TestServer(ctx) as srv:
        for host in ("127.0.0.1", "localhost"):
            url = "https://%s:%d" % (host, srv.port)
            r = alice("health", "--url", url, "--cacert", crt)
            assert r.returncode == 0, r.stderr
        url = "https://127.0.0.1:%d" % srv.port
        r = alice("health", "--url", url)  # the system's CAs do not know it
        assert r.returncode == 1 and "certificate" in r.stderr, r.stderr
        r = alice("health", "--url", url, "--insecure")
        assert r.returncode == 0, r.stderr
        r = alice("top", "--url", url, "--cacert", crt)
        assert r.returncode == 0, r.stderr
        _, rows = parse_top(r.stdout)
        assert rows["tls_fam_total"][:3] == ["counter", "7", "1.50"]
        r = alice("health", "--url", "http://127.0.0.1:%d" % srv.port)  # plain HTTP to TLS
        assert r.returncode == 1
    with TestServer(other_ctx) as srv:  # trusted, but for another name
        r = alice("health", "--url", "https://127.0.0.1:%d" % srv.port, "--cacert", other_crt)
        assert r.returncode == 1 and "mismatch" in r.stderr, r.stderr


def test_basic_auth_client():
    pw = os.path.join(TMP, "pw")
    with open(pw, "w") as f:
        f.write("s3cret:with colon\n")
    bad = os.path.join(TMP, "bad")
    with open(bad, "w") as f:
        f.write("wrong\n")
    with TestServer(password="s3cret:with colon") as srv:
        url = "http://127.0.0.1:%d" % srv.port
        r = alice("health", "--url", url, "--user", "lv-user", "--password-file", pw)
        assert r.returncode == 0, r.stderr
        r = alice("top", "--url", url, "--user", "lv-user", "--password-file", pw)
        assert r.returncode == 0 and "tls_fam_total" in r.stdout, r.stderr
        r = alice("health", "--url", url, "--user", "lv-user", "--password-file", bad)
        assert r.returncode == 1 and "HTTP 401" in r.stderr, r.stderr
        r = alice("health", "--url", url)
        assert r.returncode == 1 and "HTTP 401" in r.stderr
        r = alice("health", "--url", url, "--user", "lv-user")
        assert r.returncode == 2
        r = alice("health", "--url", url, "--user", "x", "--password-file", "/nonexistent")
        assert r.returncode == 2 and "/nonexistent" in r.stderr
    # TLS and auth together
    ctx, crt = make_cert("localhost", "DNS:localhost,IP:127.0.0.1")
    with TestServer(ctx, password="s3cret:with colon") as srv:
        r = alice("health", "--url", "https://localhost:%d/" % srv.port, "--cacert", crt,
                  "--user", "lv-user", "--password-file", pw)
        assert r.returncode == 0, r.stderr


def test_the_daemon_behind_tls_and_basic_auth():
    """alice health and top against the daemon's own --web-config."""
    try:
        import bcrypt
    except ImportError:
        raise Skip("python3-bcrypt missing (tools/install-deps.sh --test)")
    _, crt = make_cert("localhost", "DNS:localhost,IP:127.0.0.1")
    key = crt[:-len(".crt")] + ".key"
    cfg = os.path.join(TMP, "web.yml")
    with open(cfg, "w") as f:
        f.write("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n"
                "  lv-user: %s\n" % (crt, key, bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()))
    pw = os.path.join(TMP, "daemon-pw")
    with open(pw, "w") as f:
        f.write("pw\n")
    with Daemon(["--web-config", cfg]) as d:
        d.send("lv.sec:1|c|#k:v")
        url = "https://localhost:%d" % d.http_port
        r = alice("health", "--url", url, "--cacert", crt)  # /health stays open
        assert r.returncode == 0, r.stderr
        r = alice("top", "--url", url, "--cacert", crt)
        assert r.returncode == 1 and "HTTP 401" in r.stderr, r.stderr
        deadline = time.monotonic() + 5
        while True:  # UDP is asynchronous: until the line is counted
            r = alice("top", "--url", url, "--cacert", crt, "--user", "lv-user",
                      "--password-file", pw)
            assert r.returncode == 0, r.stderr
            rows = parse_top(r.stdout)[1]
            if "lv_sec_total" in rows or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert rows["lv_sec_total"][:2] == ["counter", "1"], rows
        r = alice("top", "--url", "http://127.0.0.1:%d" % d.http_port)  # plain HTTP to TLS
        assert r.returncode == 1 and "not reachable" in r.stderr, r.stderr


def test_landing_page_in_chromium():
    with Daemon(["--config", CONFIG]) as d:
        feed_known(d)
        d.send('lv.html:1|c|#who:<script>alert("x")</script>')
        wait_lines(d, "lv_html_total", 1)
        status, headers, body = d.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'href="/metrics"' in body and b'href="/health"' in body
        assert b'href="/api/v1/families"' in body
        assert b"<script" not in body and b"&lt;script&gt;" in body  # escaped
        assert b"<td>lv_req_total</td>" in body
        chromium = shutil.which("chromium")
        if not chromium:
            raise Skip("chromium is not installed (tools/install-deps.sh --test installs it)")
        shot = os.path.join(TMP, "landing.png")
        common = [chromium, "--headless", "--disable-gpu", "--no-sandbox",
                  "--user-data-dir=" + os.path.join(TMP, "chromium-profile")]
        r = subprocess.run(common + ["--window-size=1280,900", "--screenshot=" + shot, d.url + "/"],
                           capture_output=True, timeout=120)
        assert os.path.exists(shot), r.stderr[-2000:]
        with open(shot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        r = subprocess.run(common + ["--dump-dom", d.url + "/"], capture_output=True, timeout=120)
        dom = r.stdout.decode("utf-8", "replace")
        assert "<td>lv_req_total</td>" in dom and "openai" in dom, dom[:2000]
        if os.environ.get("LIVEVIEW_SCREENSHOT"):
            shutil.copy(shot, os.environ["LIVEVIEW_SCREENSHOT"])


run_tests(globals())
shutil.rmtree(TMP, ignore_errors=True)
