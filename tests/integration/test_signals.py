"""SIGTERM/SIGINT graceful exit, SIGHUP reload with a good and a bad config."""

import os
import ssl
import socket
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import ALICE_BIN, Daemon, owe_scrapes, read_answer, run_tests, sample_value  # noqa: E402

TMP = tempfile.mkdtemp(prefix="alice-sig-")


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def logfmt(line):
    """The key=value pairs of one logfmt line; a quoted value may hold \\"
    and \\\\ escapes. Fails on anything else (an unescaped quote inside a
    value leaves a stray word behind)."""
    out, i, line = {}, 0, line.rstrip("\n")
    while i < len(line):
        eq = line.index("=", i)
        key = line[i:eq]
        assert key and " " not in key and '"' not in key, (key, line)
        i = eq + 1
        if i < len(line) and line[i] == '"':
            i += 1
            val = []
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                val.append(line[i])
                i += 1
            i += 1
            value = "".join(val)
        else:
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            value = line[i:end]
            i = end
        assert i == len(line) or line[i] == " ", (i, line)
        out[key] = value
        i += 1
    return out


def test_sigterm_and_sigint_exit_0():
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon()
        d.send("alice_events_published_total:1|c|#event_type:x")
        d.wait_samples(1)
        d.signal(sig)
        d.proc.wait(10)
        assert d.proc.returncode == 0, (sig, d.proc.returncode)
        d.stop()
        assert any("event=stopped" in line for line in d.log), d.log


def test_sigterm_during_scrapes_answers_them():
    """Scrapes owed when SIGTERM arrives (rendered between loop turns) are
    finished and sent before the daemon exits 0; a SIGHUP mid-scrape keeps
    the scrape whole."""
    import socket
    families, per_family = 30, 2000
    d = Daemon()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lines = ["late.f%d:1|c|#k:v%d" % (f, i) for f in range(families) for i in range(per_family)]
    for k in range(0, len(lines), 20):
        s.sendto("\n".join(lines[k:k + 20]).encode(), ("127.0.0.1", d.udp_port))
        if k % 2000 == 0:
            time.sleep(0.002)
    s.close()
    d.wait_samples(len(lines), timeout=30)
    # A request the daemon has not read when SIGTERM lands is dropped:
    # owe_scrapes returns once they are read.
    clients = owe_scrapes(d, 3)
    d.signal(signal.SIGHUP)  # no config file: logged and skipped
    d.signal(signal.SIGTERM)
    for c in clients:
        head, body = read_answer(c)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        n = sum(1 for ln in body.decode().splitlines() if ln.startswith("late_f"))
        assert n == len(lines), n
    d.proc.wait(20)
    assert d.proc.returncode == 0, d.proc.returncode
    d.stop()


def test_sighup_good_then_bad_config():
    cfg = os.path.join(TMP, "reload.json")
    write(cfg, '{"families": [{"name": "alice_jobs_total", "type": "counter", '
               '"help": "Jobs v1.", "labels": ["queue"]},'
               '{"name": "alice_job_seconds", "type": "histogram", "labels": ["queue"]}]}')
    with Daemon(args=["--config", cfg]) as d:
        d.send("alice_jobs:4|c|#queue:a\nalice_job_seconds:1|h|#queue:a\nnew.family:1|g|#k:v")
        d.wait_samples(3)
        # good config: help changes (values kept), a new family appears,
        # a family whose labels change starts afresh
        write(cfg, '{"families": [{"name": "alice_jobs_total", "type": "counter", '
                   '"help": "Jobs v2.", "labels": ["queue"]},'
                   '{"name": "alice_job_seconds", "type": "histogram", "labels": ["queue", "host"]},'
                   '{"name": "alice_brand_new", "type": "gauge", "help": "New."}]}')
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"event=reloaded"), d.log
        m = d.metrics()
        assert "# HELP alice_jobs_total Jobs v2." in m, m
        assert sample_value(m, "alice_jobs_total", queue="a") == 4.0
        assert "# TYPE alice_brand_new gauge" in m
        assert sample_value(m, "alice_job_seconds_count") is None, "reshaped family restarted"
        assert sample_value(m, "new_family", k="v") == 1.0
        assert sample_value(m, "alice_metricsd_config_reloads_total", result="success") == 1
        # bad config: logged, old one kept, daemon still ingesting
        write(cfg, '{"families": [{"name": "alice_jobs_total", "type": "countr"}]}')
        d.signal(signal.SIGHUP)
        line = d.wait_log(r"level=error event=reload_failed .*countr")
        assert line, d.log
        # the error text holds quotes: escaped, the line is still logfmt
        fields = logfmt(line)
        assert fields["event"] == "reload_failed", fields
        assert fields["error"].endswith('got "countr"'), fields
        assert fields["action"] == "kept the old config", fields
        d.send("alice_jobs:1|c|#queue:a")
        d.wait_samples(4)
        m = d.metrics()
        assert sample_value(m, "alice_jobs_total", queue="a") == 5.0
        assert "# HELP alice_jobs_total Jobs v2." in m
        assert sample_value(m, "alice_metricsd_config_reloads_total", result="failure") == 1
        # and a file that vanished
        os.unlink(cfg)
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"event=reload_failed .*cannot open"), d.log
        assert d.get("/health")[0] == 200


def test_sighup_changes_limits():
    cfg = os.path.join(TMP, "limits.json")
    write(cfg, '{"limits": {"max_series_per_family": 1}}')
    with Daemon(args=["--config", cfg]) as d:
        d.send("lim.x:1|c|#k:a\nlim.x:1|c|#k:b")
        d.wait_samples(2)
        write(cfg, '{"limits": {"max_series_per_family": 5}}')
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"event=reloaded")
        d.send("lim.x:1|c|#k:b")
        d.wait_samples(3)
        m = d.metrics()
        assert sample_value(m, "lim_x_total", k="a") == 1.0
        assert sample_value(m, "lim_x_total", k="b") == 1.0
        assert sample_value(m, "alice_metricsd_samples_rejected_total", reason="cardinality") == 1


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def test_sighup_config_not_a_regular_file():
    """A config path that became a FIFO, a device or a huge file: SIGHUP
    logs an error at once and keeps the old config; the loop never waits on
    the file (a blocking open of a FIFO would wait for a writer)."""
    cfg = os.path.join(TMP, "special.json")
    write(cfg, '{"families": [{"name": "kept_gauge", "type": "gauge", "help": "Kept."}]}')
    with Daemon(args=["--config", cfg]) as d:
        cases = [
            ("fifo", lambda: os.mkfifo(cfg), "not a regular file"),
            ("device", lambda: os.symlink("/dev/zero", cfg), "not a regular file"),
            ("huge", lambda: sparse(cfg, 1 << 30), "larger than 16 MiB"),
        ]
        for n, (name, make, want) in enumerate(cases, 1):
            os.unlink(cfg)
            make()
            t0 = time.monotonic()
            d.signal(signal.SIGHUP)
            # the loop answers at once, during and after the reload attempt
            status, _, body = d.get("/health", timeout=1)
            assert status == 200 and b'"ok"' in body, (name, status, body)
            assert d.wait_log(r"level=error event=reload_failed .*%s" % want, timeout=1), \
                (name, d.log)
            assert time.monotonic() - t0 < 2, name
            m = d.metrics()
            assert "# HELP kept_gauge Kept." in m, (name, m)
            assert sample_value(m, "alice_metricsd_config_reloads_total", result="failure") == n
        # a regular file again: reloaded
        os.unlink(cfg)
        write(cfg, '{"families": [{"name": "kept_gauge", "type": "gauge", "help": "Back."}]}')
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"event=reloaded"), d.log
        assert "# HELP kept_gauge Back." in d.metrics()
    # at start and in check-config: refused as a bad config, without waiting
    os.unlink(cfg)
    os.mkfifo(cfg)
    try:
        r = subprocess.run([ALICE_BIN, "metrics-server", "--config", cfg, "--port", "0"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "not a regular file" in r.stderr, r
        r = subprocess.run([ALICE_BIN, "check-config", cfg], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1 and "not a regular file" in r.stderr, r
    finally:
        os.unlink(cfg)


def test_sighup_mapping_not_a_regular_file():
    """The mapping file, reread at SIGHUP too: a FIFO there is refused at
    once (the old mapping kept), never waited on."""
    path = os.path.join(TMP, "mapping.yml")
    write(path, 'mappings:\n- match: "kept.*"\n  name: "kept_mapped"\n')
    with Daemon(args=["--mapping-config", path]) as d:
        os.unlink(path)
        os.mkfifo(path)
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        status, _, _ = d.get("/health", timeout=1)
        assert status == 200, status
        assert d.wait_log(r"level=error event=reload_failed .*mapping.yml: not a regular file"
                          r".*kept the old mapping", timeout=1), d.log
        assert time.monotonic() - t0 < 2
        d.send("kept.x:1|c")
        d.wait_samples(1)
        assert sample_value(d.metrics(), "kept_mapped_total") == 1.0
    os.unlink(path)


def test_secret_file_not_a_regular_file():
    """remote_write's password file (read at start and at SIGHUP) as a
    FIFO: refused at once, never waited on."""
    pw = os.path.join(TMP, "password.fifo")
    os.mkfifo(pw)
    cfg = os.path.join(TMP, "remote.json")
    write(cfg, '{"remote_write": {"url": "http://127.0.0.1:1/api/v1/write", '
               '"basic_auth": {"username": "u", "password_file": "%s"}}}' % pw)
    try:
        r = subprocess.run([ALICE_BIN, "metrics-server", "--config", cfg, "--port", "0",
                            "--statsd-port", "0"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "password.fifo: not a regular file" in r.stderr, r
    finally:
        os.unlink(pw)


def test_sighup_web_config_not_a_regular_file():
    """The web config, reread at SIGHUP: a FIFO there is refused at once,
    the running web configuration kept."""
    path = os.path.join(TMP, "web.yml")
    write(path, "# no TLS, no users\n")
    with Daemon(args=["--web-config", path]) as d:
        os.unlink(path)
        os.mkfifo(path)
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        status, _, _ = d.get("/health", timeout=1)
        assert status == 200, status
        assert d.wait_log(r"level=error event=reload_failed .*web.yml: not a regular file",
                          timeout=1), d.log
        assert time.monotonic() - t0 < 2
        assert d.get("/metrics")[0] == 200
    os.unlink(path)



def test_sighup_certificate_not_a_regular_file():
    """The certificate and key the web config names are read at SIGHUP too,
    never opened by a call that could block: a FIFO at the key's path is
    refused at once, the running TLS setup kept."""
    d_ = tempfile.mkdtemp(prefix="alice-fifo-cert-", dir=TMP)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1"],
                   cwd=d_, check=True, capture_output=True, timeout=30)
    path = os.path.join(d_, "web.yml")
    write(path, "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
    with Daemon(args=["--web-config", path]) as d:
        key = os.path.join(d_, "key.pem")
        os.unlink(key)
        os.mkfifo(key)
        t0 = time.monotonic()
        d.signal(signal.SIGHUP)
        assert d.wait_log(r"level=error event=reload_failed .*key.pem: not a regular file",
                          timeout=2), d.log
        assert time.monotonic() - t0 < 2
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=2) as raw:
            with ctx.wrap_socket(raw) as tls:  # still served with the old certificate
                tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert tls.recv(64).startswith(b"HTTP/1.1 200"), "no answer over TLS"

run_tests(globals())
