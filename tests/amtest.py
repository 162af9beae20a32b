"""Helpers shared by the Python tests (tests/integration, tests/emit,
tests/deploy) and the benchmark (tests/bench/bench.py): free loopback ports,
the real `alice` binary started on them and waited for, datagrams, scrapes
over real HTTP and their parsing, and the tiny runner every test script ends
with.

A script imports it with its own folder's parent on sys.path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import amtest

Every wait here is bounded. Run with /usr/bin/python3 (Debian's Python, which
sees python3-prometheus-client); the standard library is all this needs."""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SOURCE_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def built_program(name, build_dir=None):
    """The path of executable target `name` of a meson build directory
    (default: <source>/build), from meson's introspection data, so that a
    script run by hand finds a binary wherever its meson.build puts it.
    meson test passes the paths itself (ALICE_BIN and the like)."""
    build_dir = build_dir or os.path.join(SOURCE_ROOT, "build")
    try:
        with open(os.path.join(build_dir, "meson-info", "intro-targets.json")) as f:
            for t in json.load(f):
                if t.get("name") == name and t.get("type") == "executable":
                    return t["filename"][0]
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return os.path.join(build_dir, name)


ALICE_BIN = os.environ.get("ALICE_BIN") or built_program("alice")

LISTEN_RE = re.compile(r"event=listening transport=(\w+) (?:addr=(\S+) port=(\d+)|path=(\S+))")


def _free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_tcp_port():
    """An unused TCP port on 127.0.0.1."""
    return _free_port(socket.SOCK_STREAM)


def free_udp_port():
    """An unused UDP port on 127.0.0.1 (`--statsd-port 0` means "UDP off")."""
    return _free_port(socket.SOCK_DGRAM)


def clean_env(extra=None):
    """This process's environment without ALICE_* variables (a developer's
    settings must not reach the program under test), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALICE_")}
    env.update(extra or {})
    return env


def stop_process(proc, timeout=10.0, sig=signal.SIGTERM):
    """Asks a child to end (sig), kills it after timeout; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Startup:
    """What a starting daemon logs, line by line: the sockets it listens on
    (event=listening transport=T ...) and event=started, which `alice` logs
    once every socket is open; only then may senders start. nullrecv logs
    the same listening lines and no started line (started=False)."""

    def __init__(self, transports, started=True):
        self.want = set(transports) | ({"started"} if started else set())
        self.listening = {}  # transport -> its LISTEN_RE match
        self.started = False

    def feed(self, line):
        """Reads one log line; True once everything wanted was logged."""
        if "event=started " in line:
            self.started = True
        m = LISTEN_RE.search(line)
        if m:
            self.listening[m.group(1)] = m
        return self.ready

    @property
    def ready(self):
        seen = set(self.listening) | ({"started"} if self.started else set())
        return self.want <= seen

    def port(self, transport):
        """The port a socket listens on (udp, http), as logged."""
        return int(self.listening[transport].group(3))


def wait_log_file(path, proc, startup, timeout=10.0):
    """Follows the log file a started process writes until `startup` is
    ready: True; False when the process exits or the time is up."""
    pos, pending = 0, b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
        except OSError:
            chunk = b""
        pos += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if startup.feed(line.decode("utf-8", "replace")):
                return True
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)


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
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=clean_env(env))
        self.log = []
        self._pending = b""
        # every socket logged, then "started": only then is the daemon ready
        startup = Startup({"http"} | ({"udp"} if udp else set()) | ({"unix"} if unix else set()))
        deadline = time.monotonic() + timeout
        while not startup.ready:
            line = self._readline(deadline)
            if line is None:
                self.stop()
                raise RuntimeError("daemon did not start: " + "".join(self.log))
            startup.feed(line)
        self.http_port = startup.port("http")

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
        stop_process(self.proc, timeout)
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


def dechunk(data):
    """The body of a complete Transfer-Encoding: chunked message (data: the
    bytes after the head), or None when it is cut short or malformed."""
    out, pos = [], 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(data[pos:eol].split(b";")[0], 16)
        except ValueError:
            return None
        pos = eol + 2
        if size == 0:
            return b"".join(out) if data[pos:pos + 2] == b"\r\n" else None
        if len(data) < pos + size + 2 or data[pos + size:pos + size + 2] != b"\r\n":
            return None
        out.append(data[pos:pos + size])
        pos += size + 2


def is_chunked(head):
    return re.search(rb"(?im)^Transfer-Encoding:\s*chunked\s*$", head) is not None


def read_to_end(c, data=b""):
    """Everything socket c sends until it closes (appended to data), then
    closes c."""
    while True:
        chunk = c.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    c.close()
    return data


def read_answer(c):
    """Reads one raw HTTP answer to the end of the connection: (head, body);
    a chunked body (a large one is sent as it renders) comes decoded, and
    must be complete."""
    head, _, body = read_to_end(c).partition(b"\r\n\r\n")
    if is_chunked(head):
        body = dechunk(body)
        assert body is not None, "broken chunked body"
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


def sanitized():
    """An ASan build: slower, and its allocator keeps freed memory in
    quarantine, so RSS says nothing about our bounds."""
    with open(ALICE_BIN, "rb") as f:
        return b"__asan_init" in f.read()


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
