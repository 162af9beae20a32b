"""Shared helpers for the integration tests: start the real `alice` binary on
ephemeral loopback ports, send datagrams, scrape over real HTTP.

Every wait here is bounded. Run with /usr/bin/python3 (Debian's Python, which
sees python3-prometheus-client)."""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ALICE_BIN = os.environ.get("ALICE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "src", "alice")

LISTEN_RE = re.compile(r"event=listening transport=(\w+) (?:addr=(\S+) port=(\d+)|path=(\S+))")


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_udp_port():
    """An unused UDP port on 127.0.0.1 (`--statsd-port 0` means "UDP off")."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    """`alice metrics-server` on port 0 (HTTP) and a free UDP port."""

    def __init__(self, args=(), env=None, udp=True, unix=None, log_level="info",
                 timeout=10.0, statsd_flags=True, prefix=(), http_flags=True):
        self.udp_port = free_udp_port() if udp else 0
        self.unix = unix
        cmd = list(prefix) + [ALICE_BIN, "--log-level", log_level, "metrics-server"]
        if http_flags:
            cmd += ["--host", "127.0.0.1", "--port", "0"]
        if statsd_flags:
            cmd += ["--statsd-host", "127.0.0.1", "--statsd-port", str(self.udp_port)]
        if unix:
            cmd += ["--unix", unix]
        cmd += list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALICE_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env)
        self.log = []
        self._pending = b""
        self.http_port = None
        want = {"http", "started"} | ({"udp"} if udp else set()) | ({"unix"} if unix else set())
        seen = set()
        deadline = time.monotonic() + timeout
        # every socket logged, then "started": only then is the daemon ready
        while not want <= seen:
            line = self._readline(deadline)
            if line is None:
                self.stop()
                raise RuntimeError("daemon did not start: " + "".join(self.log))
            if "event=started " in line:
                seen.add("started")
                continue
            m = LISTEN_RE.search(line)
            if m:
                seen.add(m.group(1))
                if m.group(1) == "http":
                    self.http_port = int(m.group(3))

    def _readline(self, deadline):
        """One line of the daemon's stderr, or None at the deadline or EOF.
        Reads the raw fd (no Python buffering, or select() would miss lines
        already pulled into a buffer)."""
        fd = self.proc.stderr.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        text = line.decode("utf-8", "replace") + "\n"
        self.log.append(text)
        return text

    def wait_log(self, pattern, timeout=5.0):
        """The first log line (already read or new) matching pattern, or None."""
        rx = re.compile(pattern)
        for line in self.log:
            if rx.search(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline)
            if line is None:
                return None
            if rx.search(line):
                return line

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    def send(self, payload, transport="udp"):
        if isinstance(payload, str):
            payload = payload.encode()
        if transport == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(payload, ("127.0.0.1", self.udp_port))
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(payload, self.unix)
        s.close()

    def get(self, path="/metrics", headers=None, method="GET", timeout=10):
        req = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def metrics(self):
        status, _, body = self.get("/metrics")
        assert status == 200, status
        return body.decode()

    def wait_samples(self, n, timeout=5.0):
        """Waits until alice_metricsd_samples_total + rejected reaches n (UDP is
        asynchronous: a scrape right after sendto may race the loop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = sample_value(self.metrics(), "alice_metricsd_samples_total") or 0
            got += sum_values(self.metrics(), "alice_metricsd_samples_rejected_total")
            if got >= n:
                return got
            time.sleep(0.02)
        raise AssertionError("timed out waiting for %d samples" % n)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rest = (self._pending + self.proc.stderr.read()).decode("utf-8", "replace")
        self._pending = b""
        if rest:
            self.log.extend(line + "\n" for line in rest.splitlines())
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if exc_type is not None:  # show what the daemon said before the failure
            sys.stderr.write("daemon exit %s, log tail:\n%s" % (rc, "".join(self.log[-30:])))
        # A clean SIGTERM exit is 0; under ASan a leak or error at exit is not.
        if exc_type is None and rc != 0:
            raise AssertionError("daemon exited %s: %s" % (rc, "".join(self.log[-30:])))


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')


def owe_scrapes(d, n):
    """n raw connections, each with one GET /metrics sent (Connection:
    close); returns once the daemon has read them (an answer from a later
    connection, /health, comes between the scrapes' steps)."""
    clients = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", d.http_port), timeout=20)
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        clients.append(c)
    status, _, _ = d.get("/health")
    assert status == 200
    return clients


def read_answer(c):
    """Reads one raw HTTP answer to the end of the connection: (head, body)."""
    data = b""
    while True:
        chunk = c.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    c.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def parse_labels(text):
    labels = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",")
        j = eq + 2
        val = []
        while text[j] != '"':
            if text[j] == "\\":
                nxt = text[j + 1]
                val.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
                j += 2
            else:
                val.append(text[j])
                j += 1
        labels[key] = "".join(val)
        i = j + 1
        if i < len(text) and text[i] == ",":
            i += 1
    return labels


def samples(body):
    """[(name, labels dict, float value)] of a text exposition."""
    out = []
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "unparsable sample line: %r" % line
        out.append((m.group(1), parse_labels(m.group(3) or ""), float(m.group(4))))
    return out


def sample_value(body, name, **labels):
    for n, l, v in samples(body):
        if n == name and all(l.get(k) == val for k, val in labels.items()):
            return v
    return None


def sum_values(body, name, **labels):
    return sum(v for n, l, v in samples(body)
               if n == name and all(l.get(k) == val for k, val in labels.items()))


class Skip(Exception):
    """Raised by a test that cannot run on this machine (said, not passed)."""


class Results:
    """A tiny TAP-free runner: each check prints ok/FAIL/skip; exit 1 on failure."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def run(self, fn):
        name = fn.__name__
        try:
            fn()
        except Skip as e:
            self.skipped += 1
            print("skip %s: %s" % (name, e))
        except Exception as e:  # noqa: BLE001 - report every failure
            import traceback
            self.failed += 1
            print("FAIL %s: %s" % (name, e))
            traceback.print_exc()
        else:
            self.passed += 1
            print("ok   %s" % name)
        sys.stdout.flush()

    def finish(self):
        print("%d passed, %d failed, %d skipped" % (self.passed, self.failed, self.skipped))
        sys.exit(1 if self.failed else 0)


def run_tests(namespace):
    """Runs every test_* function of a module, in definition order."""
    r = Results()
    tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    only = os.environ.get("ONLY")
    for fn in tests:
        if only and only not in fn.__name__:
            continue
        r.run(fn)
    r.finish()
