"""--web-config: TLS and basic auth from a Prometheus exporter web config.

Certificates are made at test time with the openssl command line, bcrypt
hashes with python3-bcrypt; clients are Python's ssl/http.client, curl and
Debian's real Prometheus."""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
from amtest import ALICE_BIN, Daemon, clean_env, run_tests, sample_value, sanitized  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

try:
    import bcrypt
except ImportError:
    raise SystemExit("python3-bcrypt missing: tools/install-deps.sh --test")

TMP = tempfile.mkdtemp(prefix="alice-webcfg-")
USER, PASSWORD = "prom", "s3cret pass:with colon"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()


def sh(*args):
    subprocess.run(args, check=True, cwd=TMP, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


def make_key(name):
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)


def make_certs():
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=alice test CA")
    with open(os.path.join(TMP, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    with open(os.path.join(TMP, "client.ext"), "w") as f:
        f.write("subjectAltName=DNS:scraper.example\nextendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("server2", "server.ext"),
                      ("client", "client.ext")):
        make_key(name)
        sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", ext)
    # a client certificate no configured CA signed
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2", "-subj", "/CN=rogue")


make_certs()


def path(name):
    return os.path.join(TMP, name)


def write(name, text):
    p = path(name)
    with open(p + ".tmp", "w") as f:
        f.write(text)
    os.replace(p + ".tmp", p)
    return p


def web_config(name="web.yml", tls=True, users=True, extra_tls="", extra=""):
    text = ""
    if tls:
        text += "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + extra_tls
    if users:
        text += "basic_auth_users:\n  %s: %s\n" % (USER, HASH)
    return write(name, text + extra)


def tls_daemon(cfg, args=(), **kw):
    return Daemon(args=["--web-config", cfg] + list(args), **kw)


def client_ctx(cert=None, maximum=None, minimum=None):
    ctx = ssl.create_default_context(cafile=path("ca.crt"))
    if cert:
        ctx.load_cert_chain(path(cert + ".crt"), path(cert + ".key"))
    if maximum:
        ctx.maximum_version = maximum
    if minimum:
        ctx.minimum_version = minimum
    return ctx


def auth_header(user=USER, password=PASSWORD):
    import base64
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()}


def https_get(d, p="/metrics", headers=None, ctx=None, conn=None, timeout=10):
    c = conn or http.client.HTTPSConnection("127.0.0.1", d.http_port, context=ctx or client_ctx(),
                                            timeout=timeout)
    c.request("GET", p, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    if conn is None:
        c.close()
    return r.status, dict(r.getheaders()), body


def handshake_fails(d, ctx):
    """True when the TLS connection (and its first request) fail."""
    try:
        https_get(d, "/health", ctx=ctx, timeout=5)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


def test_tls_with_basic_auth():
    with tls_daemon(web_config()) as d:
        st, hd, body = https_get(d, "/health")
        assert st == 200 and b'"status":"ok"' in body, (st, body)
        st, hd, body = https_get(d, "/metrics")
        assert st == 401, st
        assert hd.get("WWW-Authenticate") == 'Basic realm="alice-metrics"', hd
        st, hd, _ = https_get(d, "/", headers=auth_header(password="wrong"))
        assert st == 401 and "WWW-Authenticate" in hd, (st, hd)
        st, _, _ = https_get(d, "/metrics", headers=auth_header(user="nobody"))
        assert st == 401, st
        st, _, _ = https_get(d, "/metrics", headers={"Authorization": "Basic !!!"})
        assert st == 401, st
        # the right user, twice on one keep-alive connection (the second from the cache)
        c = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=client_ctx(), timeout=10)
        for _ in range(2):
            st, hd, body = https_get(d, "/metrics", headers=auth_header(), conn=c)
            assert st == 200, st
            assert b"alice_metricsd_http_requests_total" in body
            assert hd["Content-Type"].startswith("text/plain; version=0.0.4"), hd
        c.close()


def read_responses(t, n, timeout=10):
    """n responses to GET (status, head text, body) read from socket t."""
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, buf
            chunk = t.recv(65536)
            assert chunk, ("closed", out, buf)
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(buf) < length:
            assert time.monotonic() < deadline
            chunk = t.recv(65536)
            assert chunk
            buf += chunk
        body, buf = buf[:length], buf[length:]
        out.append((int(head.split()[1]), head.decode(), body))
    return out


def test_pipelined_requests_wait_for_the_password_check():
    """Pipelined requests behind one whose password is being checked are
    answered after it, in order, on the same TLS connection."""
    with tls_daemon(web_config()) as d:
        ctx = client_ctx()
        raw = socket.create_connection(("127.0.0.1", d.http_port), timeout=10)
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        auth = auth_header()["Authorization"].encode()
        bad = auth_header(password="nope")["Authorization"].encode()
        t.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n"
                  b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: " + bad + b"\r\n\r\n"
                  b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth + b"\r\n\r\n")
        got = read_responses(t, 4)
        assert [g[0] for g in got] == [200, 200, 401, 200], [g[:2] for g in got]
        assert b"alice_metricsd" in got[0][2] and b'"status"' in got[1][2]
        t.close()


def test_curl_with_cacert_and_user():
    curl = shutil.which("curl")
    assert curl, "curl missing"
    with tls_daemon(web_config()) as d:
        url = "https://127.0.0.1:%d/metrics" % d.http_port
        r = subprocess.run([curl, "-sS", "--cacert", path("ca.crt"), "-u", "%s:%s" % (USER, PASSWORD),
                            "-o", "-", "-w", "\n%{http_code}", url],
                           capture_output=True, timeout=20, text=True)
        assert r.returncode == 0 and r.stdout.endswith("\n200"), (r.returncode, r.stderr)
        assert "alice_metricsd_samples_total" in r.stdout
        r = subprocess.run([curl, "-sS", "--cacert", path("ca.crt"), "-o", "/dev/null", "-w",
                            "%{http_code}", url], capture_output=True, timeout=20, text=True)
        assert r.stdout == "401", r.stdout
        # the certificate is checked: no --cacert, no connection
        r = subprocess.run([curl, "-sS", "-o", "/dev/null", url], capture_output=True, timeout=20)
        assert r.returncode != 0


def test_plain_http_to_a_tls_port_is_closed():
    with tls_daemon(web_config(users=False)) as d:
        s = socket.create_connection(("127.0.0.1", d.http_port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        assert not got.startswith(b"HTTP/"), got
        st, _, body = https_get(d, "/metrics")
        assert st == 200
        # only this scrape counts as a request, not the plain attempt
        assert sample_value(body.decode(), "alice_metricsd_http_requests_total") == 1, body[:200]


def test_min_version():
    cfg = web_config(users=False, extra_tls="  min_version: TLS13\n")
    with tls_daemon(cfg) as d:
        assert handshake_fails(d, client_ctx(maximum=ssl.TLSVersion.TLSv1_2))
        assert https_get(d, "/health", ctx=client_ctx(minimum=ssl.TLSVersion.TLSv1_3))[0] == 200
    # the default is TLS 1.2: a TLS 1.1 client is refused
    with tls_daemon(web_config(users=False)) as d:
        ctx = client_ctx()
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            return
        assert handshake_fails(d, ctx)
        assert https_get(d, "/health", ctx=client_ctx(maximum=ssl.TLSVersion.TLSv1_2))[0] == 200


def test_cipher_suites_and_curves():
    cfg = web_config(users=False, extra_tls="  max_version: TLS12\n"
                     "  cipher_suites:\n    - TLS_AES_128_GCM_SHA256\n"
                     "    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305\n"
                     "    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n"
                     "  curve_preferences: [CurveP384]\n")
    with tls_daemon(cfg) as d:
        ctx = client_ctx()
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                name, version, _ = t.cipher()
        # the server's order wins (prefer_server_cipher_suites defaults to true)
        assert (name, version) == ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLSv1.2"), (name, version)
        only_aes = client_ctx()
        only_aes.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        assert handshake_fails(d, only_aes)
    start_fails("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                "  cipher_suites: [TLS_NOT_A_SUITE]\n", r"unknown cipher suite .*TLS_NOT_A_SUITE")


def test_client_certificates():
    def cfg(kind, extra=""):
        return web_config(users=False, extra_tls="  client_auth_type: %s\n"
                          "  client_ca_file: ca.crt\n%s" % (kind, extra))

    with tls_daemon(cfg("RequireAndVerifyClientCert")) as d:
        assert handshake_fails(d, client_ctx())
        assert handshake_fails(d, client_ctx("rogue"))
        assert https_get(d, "/health", ctx=client_ctx("client"))[0] == 200
    with tls_daemon(cfg("VerifyClientCertIfGiven")) as d:
        assert https_get(d, "/health", ctx=client_ctx())[0] == 200
        assert handshake_fails(d, client_ctx("rogue"))
        assert https_get(d, "/health", ctx=client_ctx("client"))[0] == 200
    with tls_daemon(cfg("RequireAnyClientCert")) as d:
        assert handshake_fails(d, client_ctx())
        assert https_get(d, "/health", ctx=client_ctx("rogue"))[0] == 200
    with tls_daemon(cfg("RequireAndVerifyClientCert",
                        "  client_allowed_sans:\n    - other.example\n")) as d:
        assert handshake_fails(d, client_ctx("client"))
    with tls_daemon(cfg("RequireAndVerifyClientCert",
                        "  client_allowed_sans:\n    - scraper.example\n")) as d:
        assert https_get(d, "/health", ctx=client_ctx("client"))[0] == 200


def test_relative_paths_and_headers():
    sub = os.path.join(TMP, "conf")
    os.makedirs(os.path.join(sub, "tls"), exist_ok=True)
    for f in ("server.crt", "server.key"):
        shutil.copy(path(f), os.path.join(sub, "tls", f))
    cfg = os.path.join(sub, "web.yml")
    with open(cfg, "w") as f:
        f.write("tls_server_config:\n  cert_file: tls/server.crt\n  key_file: tls/server.key\n"
                "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                "    Strict-Transport-Security: max-age=31536000\n")
    with tls_daemon(cfg) as d:  # started from the test's cwd, not from sub
        st, hd, _ = https_get(d, "/health")
        assert st == 200
        assert hd.get("X-Frame-Options") == "deny", hd
        assert hd.get("Strict-Transport-Security") == "max-age=31536000", hd


def served_cert(d):
    ctx = client_ctx()
    with socket.create_connection(("127.0.0.1", d.http_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert(binary_form=True)


def der(name):
    return ssl.PEM_cert_to_DER_cert(open(path(name)).read())


def test_sighup_rereads_the_certificate():
    cfg = web_config("hup.yml")
    with tls_daemon(cfg) as d:
        assert served_cert(d) == der("server.crt")
        # a keep-alive connection opened before the reload
        old = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=client_ctx(), timeout=10)
        assert https_get(d, "/health", conn=old)[0] == 200
        write("hup.yml", open(cfg).read().replace("server.", "server2."))
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_cert(d) != der("server2.crt"):
            assert time.monotonic() < deadline, "the new certificate is not served"
            time.sleep(0.05)
        assert https_get(d, "/health", conn=old)[0] == 200
        old.close()
        # a bad file: logged, the old one kept
        write("hup.yml", "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n")
        d.signal(signal.SIGHUP)
        line = d.wait_log(r"event=reload_failed.*missing\.crt", timeout=10)
        assert line and "kept the old web config" in line, d.log[-5:]
        assert served_cert(d) == der("server2.crt")
        assert https_get(d, "/metrics", headers=auth_header())[0] == 200
        # users change with the reload too: none now, so /metrics is open
        write("hup.yml", "tls_server_config:\n  cert_file: server2.crt\n  key_file: server2.key\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while https_get(d, "/metrics")[0] != 200:
            assert time.monotonic() < deadline, "users not reloaded"
            time.sleep(0.05)


def start_fails(cfg_text, want):
    cfg = write("bad.yml", cfg_text)
    r = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0",
                        "--web-config", cfg], capture_output=True, text=True, timeout=20,
                       env=clean_env())
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert re.search(want, r.stderr), (want, r.stderr)


def test_bad_file_at_start_exits_2():
    start_fails("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                "  bogus_key: 1\n", r"bad\.yml:4: tls_server_config: unknown key .*bogus_key")
    start_fails("basic_auth_users:\n  a: $2y$10$short\n", r"bad\.yml:2: .*bcrypt")
    start_fails("nonsense: 1\n", r"bad\.yml:1: unknown key .*nonsense")
    start_fails("tls_server_config: [\n", r"bad\.yml:\d+:\d+: ")
    start_fails("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
                r"cannot load the certificate .*nope\.crt")
    start_fails("tls_server_config:\n  cert_file: server.crt\n  key_file: server2.key\n",
                r"server2\.key.*mismatch")
    start_fails("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                "  client_auth_type: RequireAndVerifyClientCert\n", r"needs client_ca_file")
    start_fails("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                "  min_version: TLS14\n", r"bad\.yml:4: min_version")
    r = subprocess.run([ALICE_BIN, "metrics-server", "--port", "0", "--statsd-port", "0",
                        "--web-config", path("absent.yml")], capture_output=True, text=True,
                       timeout=20, env=clean_env())
    assert r.returncode == 2 and "absent.yml" in r.stderr, r.stderr


def test_keys_not_implemented_warn():
    cfg = web_config(users=False, extra="rate_limit:\n  interval: 1s\n  burst: 5\n"
                     "http_server_config:\n  http2: true\n")
    with tls_daemon(cfg) as d:
        line = d.wait_log(r"event=web_config_ignored", timeout=5)
        assert line and "rate_limit" in line and "http_server_config.http2" in line, line
        assert https_get(d, "/health")[0] == 200


def test_env_and_json_config():
    cfg = web_config(users=True, tls=False)
    with Daemon(env={"ALICE_WEB_CONFIG": cfg}) as d:
        assert d.get("/metrics")[0] == 401
        assert d.get("/metrics", headers=auth_header())[0] == 200
        assert d.get("/health")[0] == 200
    js = write("alice.json", '{"server": {"web_config": "%s"}}' % cfg)
    with Daemon(args=["--config", js]) as d:
        assert d.get("/metrics")[0] == 401


def test_password_checks_do_not_stall_the_loop():
    slow = bcrypt.hashpw(b"x", bcrypt.gensalt(13)).decode()  # about half a second each
    cfg = write("slow.yml", "basic_auth_users:\n  slow: %s\n" % slow)
    with Daemon(args=["--web-config", cfg]) as d:
        threads = [threading.Thread(target=d.get, args=("/metrics", auth_header("slow", "bad%d" % i)))
                   for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            assert d.get("/health")[0] == 200
            worst = max(worst, time.monotonic() - t0)
        for t in threads:
            t.join(30)
        assert worst < 0.5, worst  # on the loop, 4 checks would stall it for 2 s


def test_a_flood_of_wrong_passwords_is_bounded():
    """At most two password checks run at once; past them a request is
    answered 503 at once instead of queueing behind the flood. A user
    checked before is answered from the cache all along."""
    good = bcrypt.hashpw(b"right", bcrypt.gensalt(12)).decode()
    cfg = write("flood.yml", "basic_auth_users:\n  ops: %s\n" % good)
    with Daemon(args=["--web-config", cfg]) as d:
        assert d.get("/metrics", auth_header("ops", "right"))[0] == 200  # now cached
        results = []

        def wrong(i):
            results.append(d.get("/metrics", auth_header("ops", "wrong%d" % i))[0])

        threads = [threading.Thread(target=wrong, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            assert d.get("/metrics", auth_header("ops", "right"))[0] == 200
            worst = max(worst, time.monotonic() - t0)
        for t in threads:
            t.join(30)
        assert len(results) == 12 and set(results) <= {401, 503}, results
        assert results.count(503) >= 6, results  # 2 checked at a time, the rest refused
        assert worst < 0.5, worst
        # the flood over, a check slot is free again
        assert d.get("/metrics", auth_header("ops", "wrong"))[0] == 401


def test_tls_big_body_and_silent_clients_are_shed():
    cfg = web_config(users=False)
    with tls_daemon(cfg, args=["--max-connections", "8"]) as d:
        n = 10000  # about 1 MB of body: many TLS records, sent as the socket drains
        for i in range(0, n, 100):
            d.send("".join("big_x:%d|g|#k:v%d\n" % (k, k) for k in range(i, i + 100)))
        deadline = time.monotonic() + 10
        while sample_value(https_get(d)[2].decode(), "alice_metricsd_samples_total") != n:
            assert time.monotonic() < deadline, "the gauges did not all arrive"
            time.sleep(0.05)
        # connections that never start their handshake fill the cap
        idle = [socket.create_connection(("127.0.0.1", d.http_port)) for _ in range(8)]
        time.sleep(1.3)  # past the shed grace
        st, _, body = https_get(d, "/metrics", timeout=10)
        assert st == 200
        text = body.decode()
        assert text.count("\nbig_x{") == n and text.endswith("\n"), len(text)
        for s in idle:
            s.close()


def test_tls_streams_a_large_body():
    """A body past 2 MiB goes out chunked over TLS too, whole, to curl and
    to Python's client, twice on one kept-alive connection."""
    with tls_daemon(web_config(users=False)) as d:
        n = 30000
        pad = "p" * 60
        for i in range(0, n, 100):
            d.send("".join("tls_big_%d:%d|g|#k:v%d,pad:%s\n" % (k // 5000, k, k, pad)
                           for k in range(i, i + 100)))
        deadline = time.monotonic() + 15
        while sample_value(https_get(d)[2].decode(), "alice_metricsd_samples_total") != n:
            assert time.monotonic() < deadline, "the gauges did not all arrive"
            time.sleep(0.05)
        conn = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=client_ctx(),
                                           timeout=20)
        for _ in range(2):
            st, h, body = https_get(d, conn=conn)
            assert st == 200 and h.get("Transfer-Encoding") == "chunked", h
            text = body.decode()
            assert sum(1 for ln in text.splitlines() if ln.startswith("tls_big_")) == n
            list(text_string_to_metric_families(text))
        conn.close()
        r = subprocess.run(["curl", "-sS", "--cacert", path("ca.crt"), "-o", "-",
                            "https://127.0.0.1:%d/metrics" % d.http_port],
                           capture_output=True, timeout=30, text=True)
        assert r.returncode == 0, r.stderr
        assert sum(1 for ln in r.stdout.splitlines() if ln.startswith("tls_big_")) == n


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_tls_slow_readers_share_the_body():
    """TLS readers that take nothing of an 800 KB body hold a record of
    ciphertext each, not an encrypted copy of the body; an ordinary scrape
    still goes through. --max-connections 100 makes the budget of old
    bodies held by slow readers 1.6 MB, so that what grows is the
    connections' own cost."""
    with tls_daemon(web_config(users=False), args=["--max-connections", "100"]) as d:
        n = 30000
        for i in range(0, n, 200):
            # three families: 10,000 series each is the default cap
            d.send("".join("slow_%d:%d|g|#k:v%d\n" % (k % 3, k, k) for k in range(i, i + 200)))
        deadline = time.monotonic() + 15
        while sample_value(https_get(d)[2].decode(), "alice_metricsd_samples_total") != n:
            assert time.monotonic() < deadline, "the gauges did not all arrive"
            time.sleep(0.05)
        size = len(https_get(d)[2])
        assert size > 700000, size
        base = rss(d.proc.pid)
        ctx = client_ctx()
        slow = []
        for _ in range(40):
            raw = socket.create_connection(("127.0.0.1", d.http_port), timeout=5)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            t.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            slow.append(t)
        time.sleep(1.0)
        grown = rss(d.proc.pid) - base
        t0 = time.monotonic()
        st, _, body = https_get(d)
        took = time.monotonic() - t0
        # (self-metrics move between scrapes: a few bytes either way)
        assert st == 200 and abs(len(body) - size) < 1000, (st, len(body), size)
        for t in slow:
            t.close()
        # 40 encrypted copies would be 32 MB; a record and TLS state each are
        # about 35 KB (plain connections: the same test grows about 1.4 MB)
        if not sanitized():  # ASan's quarantine keeps freed memory
            assert grown < 6 * 1024 * 1024, grown
        assert took < 5, took


def test_idle_tls_connections_give_back_their_buffers():
    """After a big answer a kept-alive TLS connection frees its record-sized
    buffers: about 20 KiB each stay (OpenSSL's connection state), not 58."""
    with tls_daemon(web_config(users=False)) as d:
        for i in range(0, 5000, 200):
            d.send("".join("idle_x:%d|g|#k:v%d\n" % (k, k) for k in range(i, i + 200)))
        ctx = client_ctx()

        def scrape(c):
            c.request("GET", "/metrics")
            r = c.getresponse()
            return r.read()

        deadline = time.monotonic() + 10
        first = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=ctx, timeout=10)
        while sample_value(scrape(first).decode(), "alice_metricsd_samples_total") != 5000:
            assert time.monotonic() < deadline, "the gauges did not all arrive"
            time.sleep(0.05)
        time.sleep(0.2)
        base = rss(d.proc.pid)
        conns = [http.client.HTTPSConnection("127.0.0.1", d.http_port, context=ctx, timeout=10)
                 for _ in range(150)]
        for c in conns:
            assert len(scrape(c)) > 100000
        time.sleep(0.3)
        per = (rss(d.proc.pid) - base) / len(conns)
        for c in conns + [first]:
            c.close()
        if not sanitized():
            assert per < 40 * 1024, per


def test_prometheus_scrapes_over_tls_with_basic_auth():
    import promhelper
    with tls_daemon(web_config()) as d:
        d.send("alice_tls_demo_total:3|c\n")
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                  "scrape_configs:\n  - job_name: alice\n    scheme: https\n"
                  "    tls_config:\n      ca_file: %s\n"
                  "    basic_auth:\n      username: %s\n      password: '%s'\n"
                  "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
                  % (path("ca.crt"), USER, PASSWORD, d.http_port))
        with promhelper.Prometheus(config) as p:
            got = p.wait(lambda: p.values('up{job="alice"}') or None, "the target's up", timeout=30)
            assert list(got.values()) == [1.0], (got, p.log_tail())
            p.wait(lambda: p.values("alice_tls_demo_total"), "a series scraped", timeout=15)
        # and with a wrong password the target is down
        bad = config.replace(PASSWORD, "wrong")
        with promhelper.Prometheus(bad) as p:
            got = p.wait(lambda: p.values('up{job="alice"}') or None, "the target's up", timeout=30)
            assert list(got.values()) == [0.0], got


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
