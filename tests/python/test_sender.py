"""PythonSender: how alice_metrics sends. Datagram packing and the flush
triggers (seen on a socket of the test's own), fork, multiprocessing and
os._exit children (exact counts in the real daemon), a dead or restarted
daemon, a full socket buffer, and every ALICE_METRICS_ADDR form."""

import os
import socket
import sys
import tempfile
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyhelp  # noqa: E402,I100
from pyhelp import last_dict, run_script, sample_value, wait_value  # noqa: E402

import alice_metrics  # noqa: E402,I100
from alice_metrics import Counter, Gauge, Histogram, _addr  # noqa: E402

D = None
TMP = None


def setUpModule():
    global D, TMP
    TMP = tempfile.mkdtemp(prefix="alice-py-sender-")
    D = pyhelp.amtest.Daemon(unix=os.path.join(TMP, "metrics.sock"))


def tearDownModule():
    D.stop()
    alice_metrics.configure(flush_interval=1.0, flush_lines=256)


def udp_env():
    return {"ALICE_METRICS_ADDR": "127.0.0.1:%d" % D.udp_port}


class Receiver:
    """A UDP socket of the test's own: the datagrams alice_metrics sends."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = "udp://127.0.0.1:%d" % self.sock.getsockname()[1]

    def datagrams(self, timeout=0.2):
        out = []
        self.sock.settimeout(timeout)
        while True:
            try:
                out.append(self.sock.recv(65536))
            except socket.timeout:
                return out

    def first(self, timeout):
        """The next datagram, or None after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


class Packing(unittest.TestCase):
    def setUp(self):
        self.r = Receiver()
        alice_metrics.configure(addr=self.r.addr, flush_interval=0, flush_lines=256,
                                max_datagram=512, reset_stats=True)

    def tearDown(self):
        alice_metrics.flush()
        alice_metrics.configure(flush_interval=1.0, flush_lines=256, max_datagram=32768)
        self.r.close()

    def test_whole_lines_in_order(self):
        c = Counter("py_pack_total", "d", ["i"])
        for i in range(1000):
            c.labels(str(i)).inc()
        alice_metrics.flush()
        grams = self.r.datagrams()
        lines = []
        for g in grams:
            self.assertLessEqual(len(g), 512)
            self.assertFalse(g.endswith(b"\n") or g.startswith(b"\n"), g)
            lines += g.decode().split("\n")
        self.assertEqual(lines, ["py_pack_total:1|c|#i:%d" % i for i in range(1000)])
        st = alice_metrics.stats()
        self.assertEqual((st["lines_sent"], st["datagrams_sent"]), (1000, len(grams)))
        self.assertGreater(len(grams), 1000 * 20 // 512)

    def test_wire_text(self):
        c = Counter("py_w", "d")
        g = Gauge("py_w", "d")
        h = Histogram("py_w_seconds", "d")
        c.inc()
        c.inc(5)
        c.inc(0.5)
        c.inc(2 ** 60)
        g.set(3)
        g.set(-2)
        g.set(0.0)
        g.set(-0.0)
        g.inc(2)
        g.inc(-2)
        g.dec(0.5)
        g.dec(-1.5)
        g.inc(-0.0)
        h.observe(0.25)
        h.observe(3)
        h.observe(-1)
        alice_metrics.flush()
        self.assertEqual(b"\n".join(self.r.datagrams()).decode().split("\n"), [
            "py_w_total:1|c", "py_w_total:5|c", "py_w_total:0.5|c",
            "py_w_total:1.152921504606847e+18|c",
            "py_w:3|g", "py_w:0|g", "py_w:-2.0|g", "py_w:0|g", "py_w:0|g", "py_w:+2|g",
            "py_w:-2|g", "py_w:-0.5|g", "py_w:+1.5|g", "py_w:+0.0|g",
            "py_w_seconds:0.25|h", "py_w_seconds:3|h", "py_w_seconds:-1|h"])

    def test_negative_set_never_split(self):
        g = Gauge("py_pack_gauge", "d", ["k"])
        for i in range(300):
            g.labels("k%03d" % i).set(-i - 1)
        alice_metrics.flush()
        n = 0
        for gram in self.r.datagrams():
            lines = gram.decode().split("\n")
            for j, line in enumerate(lines):
                if ":-" in line:  # the delta, right after its set to 0
                    n += 1
                    self.assertGreater(j, 0, lines)
                    key = line.split("|#")[1]
                    self.assertEqual(lines[j - 1], "py_pack_gauge:0|g|#" + key, (j, lines))
        self.assertEqual(n, 300)
        self.assertEqual(alice_metrics.stats()["lines_sent"], 600)

    def test_long_line_goes_alone(self):
        c = Counter("py_pack_long_total", "d", ["v"])
        c.labels("a").inc()
        c.labels("x" * 1000).inc()
        c.labels("b").inc()
        alice_metrics.flush()
        grams = self.r.datagrams()
        self.assertEqual([len(g) > 512 for g in grams], [False, True, False])
        self.assertEqual(grams[1], b"py_pack_long_total:1|c|#v:" + b"x" * 1000)

    def test_flush_by_count(self):
        alice_metrics.configure(flush_lines=10)
        c = Counter("py_count_total", "d")
        for _ in range(9):
            c.inc()
        self.assertEqual(self.r.datagrams(0.1), [])
        c.inc()  # the tenth line sends the ten
        self.assertEqual(self.r.datagrams(), [b"\n".join([b"py_count_total:1|c"] * 10)])

    def test_flush_by_interval(self):
        alice_metrics.configure(flush_interval=0.1)
        Gauge("py_interval", "d").set(4)
        t0 = time.monotonic()
        self.assertEqual(self.r.first(2.0), b"py_interval:4|g")
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_udp_network_default_sizes(self):
        ours = alice_metrics._core
        self.assertEqual((ours.UDP_LOOPBACK_DATAGRAM, ours.UDP_NETWORK_DATAGRAM,
                          ours.UNIX_DATAGRAM), (32768, 1432, 32768))
        alice_metrics.configure(addr=self.r.addr)  # max_datagram stays 512
        Counter("py_sizes_total", "d").inc()
        alice_metrics.flush()
        self.assertEqual(alice_metrics.stats()["max_datagram"], 512)

    def test_configure_refuses(self):
        for kw in (dict(addr="tcp://127.0.0.1:1"), dict(flush_interval=-1),
                   dict(flush_lines=0), dict(max_datagram=100), dict(max_datagram=70000)):
            with self.subTest(**kw):
                with self.assertRaises(ValueError):
                    alice_metrics.configure(**kw)


class Addresses(unittest.TestCase):
    GOOD = [
        ("127.0.0.1:8125", ("udp", "127.0.0.1", 8125), "udp://127.0.0.1:8125"),
        ("udp://127.0.0.1:9000", ("udp", "127.0.0.1", 9000), "udp://127.0.0.1:9000"),
        ("localhost:1", ("udp", "localhost", 1), "udp://localhost:1"),
        ("metrics.internal", ("udp", "metrics.internal", 8125), "udp://metrics.internal:8125"),
        ("udp://host-1", ("udp", "host-1", 8125), "udp://host-1:8125"),
        ("[::1]:8125", ("udp", "::1", 8125), "udp://[::1]:8125"),
        ("udp://[::1]:65535", ("udp", "::1", 65535), "udp://[::1]:65535"),
        ("[fe80::1%lo]:7", ("udp", "fe80::1%lo", 7), "udp://[fe80::1%lo]:7"),
        ("[::1]", ("udp", "::1", 8125), "udp://[::1]:8125"),
        ("::1", ("udp", "::1", 8125), "udp://[::1]:8125"),
        ("2001:db8::2", ("udp", "2001:db8::2", 8125), "udp://[2001:db8::2]:8125"),
        ("unix:///run/alice/metrics.sock", ("unix", "/run/alice/metrics.sock", None),
         "unix:///run/alice/metrics.sock"),
        ("unix://relative.sock", ("unix", "relative.sock", None), "unix://relative.sock"),
        ("/tmp/x.sock", ("unix", "/tmp/x.sock", None), "unix:///tmp/x.sock"),
    ]
    BAD = ["", ":8125", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999999",
           "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:80x", "127.0.0.1:8125/",
           "tcp://127.0.0.1:8125", "http://x", "udp://", "unix://", "[::1", "[::1]x", "[::1]:",
           "[]:8125", "::1]:8125", "host name:8125", "user@host:8125",
           "unix:///" + "a" * 130 + ".sock", "127.0.0.1:８１"]

    def test_parse_as_libalice(self):
        for spec, want, canonical in self.GOOD:
            with self.subTest(spec=spec):
                t = _addr.parse(spec)
                self.assertEqual(tuple(t), want)
                self.assertEqual(str(t), canonical)
        for spec in self.BAD:
            with self.subTest(spec=spec):
                with self.assertRaises(ValueError):
                    _addr.parse(spec)

    def test_every_form_reaches_the_daemon(self):
        p = D.udp_port
        forms = {"plain": "127.0.0.1:%d" % p, "udp": "udp://127.0.0.1:%d" % p,
                 "localhost": "localhost:%d" % p, "unix": "unix://" + D.unix, "path": D.unix}
        for form, addr in forms.items():
            with self.subTest(form=form):
                r = run_script("""
                    from alice_metrics import Counter, stats
                    Counter("py_addr_total", "d", ["form"]).labels(%r).inc()
                """ % form, env={"ALICE_METRICS_ADDR": addr})
                self.assertEqual(r.stderr, "")
                wait_value(D, "py_addr_total", 1, form=form)

    def test_ipv6(self):
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind(("::1", 0))
            port = s.getsockname()[1]
            s.close()
        except OSError as e:
            self.skipTest("no IPv6 loopback: %s" % e)
        with pyhelp.amtest.Daemon(statsd_flags=False,
                                  args=["--statsd-host", "::1", "--statsd-port", str(port)]) as d6:
            for form, addr in (("v6", "[::1]:%d" % port), ("v6-udp", "udp://[::1]:%d" % port)):
                run_script("""
                    from alice_metrics import Counter
                    Counter("py_addr6_total", "d", ["form"]).labels(%r).inc()
                """ % form, env={"ALICE_METRICS_ADDR": addr})
                wait_value(d6, "py_addr6_total", 1, form=form)

    def test_default_and_bad_environment(self):
        r = run_script("""
            import alice_metrics._core as core
            core._S._load_env()
            print(core._S.target)
        """)
        self.assertEqual(r.stdout.strip(), "udp://127.0.0.1:8125")
        r = run_script("""
            import alice_metrics
            c = alice_metrics.Counter("py_bad_env_total", "d")
            for _ in range(3):
                c.inc()
                alice_metrics.flush()
            print(alice_metrics.stats())
        """, env={"ALICE_METRICS_ADDR": "tcp://127.0.0.1:8125"})
        st = last_dict(r.stdout)
        self.assertEqual((st["lines_dropped"], st["lines_sent"]), (3, 0), st)
        self.assertIn("ALICE_METRICS_ADDR", st["last_error"])
        self.assertEqual(r.stderr.count("ALICE_METRICS_ADDR"), 1, r.stderr)


class DeadDaemon(unittest.TestCase):
    def tearDown(self):
        alice_metrics.configure(addr="127.0.0.1:%d" % D.udp_port)

    def test_udp_refused_then_started(self):
        port = pyhelp.amtest.free_udp_port()
        alice_metrics.configure(addr="127.0.0.1:%d" % port, reset_stats=True)
        c = Counter("py_dead_udp_total", "d")
        for _ in range(5):
            c.inc()
            alice_metrics.flush()  # never raises
        st = alice_metrics.stats()
        self.assertEqual((st["datagrams_dropped"], st["lines_dropped"], st["datagrams_sent"]),
                         (5, 5, 0), st)
        self.assertEqual(st["last_error"], "ECONNREFUSED")
        with pyhelp.amtest.Daemon(statsd_flags=False,
                                  args=["--statsd-host", "127.0.0.1", "--statsd-port",
                                        str(port)]) as d:
            c.inc(7)
            alice_metrics.flush()
            wait_value(d, "py_dead_udp_total", 7)
        self.assertEqual(alice_metrics.stats()["datagrams_sent"], 1)

    def test_unix_absent_then_restarted(self):
        path = os.path.join(TMP, "later.sock")
        alice_metrics.configure(addr="unix://" + path, reset_stats=True)
        c = Counter("py_dead_unix_total", "d")
        c.inc()
        alice_metrics.flush()
        st = alice_metrics.stats()
        self.assertEqual((st["datagrams_dropped"], st["last_error"]), (1, "ENOENT"), st)
        with pyhelp.amtest.Daemon(unix=path) as d:
            c.inc(2)
            alice_metrics.flush()
            wait_value(d, "py_dead_unix_total", 2)
        c.inc(100)  # the daemon is gone: dropped
        alice_metrics.flush()
        with pyhelp.amtest.Daemon(unix=path) as d:
            c.inc(3)  # a new daemon at the same path: reconnected
            alice_metrics.flush()
            wait_value(d, "py_dead_unix_total", 3)
        st = alice_metrics.stats()
        self.assertEqual((st["datagrams_sent"], st["datagrams_dropped"]), (2, 2), st)

    def test_full_socket_buffer_never_blocks(self):
        path = os.path.join(TMP, "nobody-reads.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        try:
            alice_metrics.configure(addr="unix://" + path, reset_stats=True)
            c = Counter("py_full_total", "d", ["k"])
            t0 = time.monotonic()
            for i in range(2000):
                c.labels("v").inc()
                alice_metrics.flush()
            took = time.monotonic() - t0
            st = alice_metrics.stats()
            self.assertEqual(st["datagrams_sent"] + st["datagrams_dropped"], 2000, st)
            self.assertGreater(st["datagrams_dropped"], 0, st)
            self.assertEqual(st["last_error"], "EAGAIN")
            self.assertLess(took, 5.0)
        finally:
            s.close()


class Load(unittest.TestCase):
    def test_hot_loop_and_flusher_thread(self):
        """A loop of calls while the thread flushes every 10 ms: the calls
        that fill the buffer wait for the thread's send, nothing is lost."""
        alice_metrics.configure(addr="127.0.0.1:%d" % D.udp_port, flush_interval=0.01,
                                reset_stats=True)
        try:
            child = Counter("py_hot_total", "d", ["k"]).labels("v")
            for _ in range(300000):
                child.inc()
            alice_metrics.flush()
            st = alice_metrics.stats()
            self.assertEqual((st["lines_sent"], st["lines_dropped"]), (300000, 0), st)
            wait_value(D, "py_hot_total", 300000, k="v")
        finally:
            alice_metrics.configure(flush_interval=1.0)


FORK_SCRIPT = """
import os, sys, threading
import alice_metrics
from alice_metrics import Counter

alice_metrics.configure(flush_interval=3600)  # only count, fork and exit flushes
c = Counter("py_fork_total", "d", ["who"])
stop = threading.Event()
spun = [0]

def spin():
    ch = c.labels("thread")
    while not stop.is_set():
        ch.inc()
        spun[0] += 1

t = threading.Thread(target=spin)
t.start()
c.labels("parent").inc(5)  # still buffered at the first fork
pids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        st = alice_metrics.stats()
        # one write(2): the five children share the pipe
        os.write(1, b"child %d %d\\n" % (st["lines_buffered"], st["lines_sent"]))
        for _ in range(1000):
            c.labels("child").inc()
        sys.exit(0)  # a normal end: atexit sends the rest
    pids.append(pid)
stop.set()
t.join()
for pid in pids:
    assert os.waitpid(pid, 0)[1] == 0
alice_metrics.flush()
st = alice_metrics.stats()
print("parent", spun[0], st["lines_sent"], st["lines_dropped"])
"""

EXIT_SCRIPT = """
import os, time
import alice_metrics
from alice_metrics import Counter

alice_metrics.configure(flush_interval=0.2)
c = Counter("py_exit_total", "d", ["how"])

def child(how, then):
    pid = os.fork()
    if pid == 0:
        c.labels(how).inc()
        then()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0

child("immediate", lambda: None)           # lost: buffered, never sent
child("flushed", alice_metrics.flush)      # sent by flush()
child("waited", lambda: time.sleep(0.8))   # sent by the child's own thread
c.labels("parent").inc()
"""

MP_SCRIPT = """
import multiprocessing as mp
import alice_metrics
from alice_metrics import Counter

c = Counter("py_mp_total", "d", ["ctx"])

def work(name, n):
    ch = c.labels(name)
    for _ in range(n):
        ch.inc()

if __name__ == "__main__":
    alice_metrics.configure(flush_interval=3600)
    for name in ("fork", "forkserver", "spawn"):
        ctx = mp.get_context(name)
        ps = [ctx.Process(target=work, args=(name, 300)) for _ in range(3)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
            assert p.exitcode == 0, p.exitcode
        pool = ctx.Pool(2)
        pool.starmap(work, [(name + "-pool", 100)] * 6)
        pool.close()
        pool.join()
    print("done")
"""


class Processes(unittest.TestCase):
    def test_fork_counts_exact(self):
        r = run_script(FORK_SCRIPT, env=udp_env())
        out = r.stdout.split("\n")
        children = [line.split() for line in out if line.startswith("child")]
        self.assertEqual(children, [["child", "0", "0"]] * 5, r.stdout)
        parent = [line.split() for line in out if line.startswith("parent")][0]
        spun, dropped = int(parent[1]), int(parent[3])
        self.assertEqual(dropped, 0, r.stdout)
        self.assertGreater(spun, 0)
        wait_value(D, "py_fork_total", 5, who="parent")
        wait_value(D, "py_fork_total", 5000, who="child")
        wait_value(D, "py_fork_total", spun, who="thread")

    def test_os_exit_as_documented(self):
        run_script(EXIT_SCRIPT, env=udp_env())
        wait_value(D, "py_exit_total", 1, how="parent")
        wait_value(D, "py_exit_total", 1, how="flushed")
        wait_value(D, "py_exit_total", 1, how="waited")
        time.sleep(0.5)
        self.assertIsNone(sample_value(D.metrics(), "py_exit_total", how="immediate"))

    def test_multiprocessing_children(self):
        path = os.path.join(TMP, "mp_scenario.py")
        with open(path, "w") as f:
            f.write("import sys; sys.path.insert(0, %r)\n" % pyhelp.PYTHON_SRC)
            f.write(textwrap.dedent(MP_SCRIPT))
        import subprocess
        r = subprocess.run([pyhelp.PYTHON, path], capture_output=True, text=True, timeout=120,
                           env=pyhelp.amtest.clean_env(udp_env()))
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("fork", "forkserver", "spawn"):
            with self.subTest(ctx=name):
                wait_value(D, "py_mp_total", 900, ctx=name)
                wait_value(D, "py_mp_total", 600, ctx=name + "-pool")

    def test_exit_flushes(self):
        run_script("""
            import alice_metrics
            alice_metrics.configure(flush_interval=3600)
            alice_metrics.Counter("py_atexit_total", "d").inc(3)
        """, env=udp_env())
        wait_value(D, "py_atexit_total", 3)


if __name__ == "__main__":
    pyhelp.main()
