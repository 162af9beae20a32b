"""PythonClient: alice_metrics' metric API against the real daemon (UDP and
the Unix socket), read back from /metrics: every metric type, labels,
label errors as prometheus_client raises them, the values the wire format
refuses, the built-in families."""

import asyncio
import math
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyhelp  # noqa: E402,I100
from pyhelp import rejected, sample_value, settle, sum_values, wait_value  # noqa: E402

import alice_metrics  # noqa: E402,I100
from alice_metrics import Counter, Gauge, Histogram, Summary  # noqa: E402

try:
    import prometheus_client
except ImportError:
    prometheus_client = None

D = None
TMP = None


def setUpModule():
    global D, TMP
    TMP = tempfile.mkdtemp(prefix="alice-py-client-")
    D = pyhelp.amtest.Daemon(unix=os.path.join(TMP, "metrics.sock"))


def tearDownModule():
    D.stop()


def use(transport="udp"):
    addr = ("127.0.0.1:%d" % D.udp_port) if transport == "udp" else "unix://" + D.unix
    alice_metrics.configure(addr=addr, reset_stats=True)


def send():
    """Flushes and checks nothing was dropped or refused."""
    alice_metrics.flush()
    st = alice_metrics.stats()
    assert st["datagrams_dropped"] == 0 and st["invalid"] == 0, st


class Counters(unittest.TestCase):
    def setUp(self):
        use()

    def test_labels_by_name_and_position(self):
        c = Counter("py_jobs_total", "Jobs.", ["queue", "status"])
        c.labels(queue="a", status="ok").inc()
        c.labels("a", "ok").inc(2)
        c.labels(status="ok", queue="a").inc(0.5)  # another order, the same series
        c.labels("b", "ok").inc()
        send()
        wait_value(D, "py_jobs_total", 3.5, queue="a", status="ok")
        wait_value(D, "py_jobs_total", 1, queue="b", status="ok")

    def test_total_suffix_both_ways(self):
        a = Counter("py_both", "x and x_total are one family")
        b = Counter("py_both_total", "x and x_total are one family")
        a.inc()
        b.inc(2)
        self.assertEqual(a._name, "py_both")  # prometheus_client's name, _total stripped
        send()
        wait_value(D, "py_both_total", 3)

    def test_namespace_subsystem_unit(self):
        c = Counter("reads", "d", namespace="py", subsystem="disk", unit="bytes")
        c.inc(4096)
        if prometheus_client is not None:
            ref = prometheus_client.Counter("reads", "d", namespace="py", subsystem="disk",
                                            unit="bytes",
                                            registry=prometheus_client.CollectorRegistry())
            self.assertEqual(c._name, ref._name)
        send()
        wait_value(D, "py_disk_reads_bytes_total", 4096)

    def test_negative_inc_raises(self):
        c = Counter("py_neg_total", "d")
        c.inc()
        with self.assertRaises(ValueError):
            c.inc(-1)
        c.inc(0)
        send()
        wait_value(D, "py_neg_total", 1)

    def test_count_exceptions(self):
        c = Counter("py_exc_total", "d", ["kind"])
        with self.assertRaises(KeyError):
            with c.labels("ctx").count_exceptions():
                raise KeyError("x")
        with c.labels("ctx").count_exceptions(KeyError):
            pass

        @c.labels("deco").count_exceptions(ValueError)
        def f(fail):
            if fail:
                raise ValueError("no")

        f(False)
        for _ in range(2):
            with self.assertRaises(ValueError):
                f(True)
        send()
        wait_value(D, "py_exc_total", 1, kind="ctx")
        wait_value(D, "py_exc_total", 2, kind="deco")

    def test_label_values_through_str(self):
        c = Counter("py_str_total", "d", ["code"])
        c.labels(200).inc()
        c.labels(code=200).inc()
        c.labels("200").inc()
        # 1, 1.0 and True are equal as keys but not as label values.
        c.labels(1).inc()
        c.labels(True).inc()
        c.labels(1.0).inc()
        c.labels(code=True).inc()
        send()
        wait_value(D, "py_str_total", 3, code="200")
        wait_value(D, "py_str_total", 1, code="1")
        wait_value(D, "py_str_total", 2, code="True")
        wait_value(D, "py_str_total", 1, code="1.0")

    def test_remove_and_clear(self):
        c = Counter("py_forget_total", "d", ["k"])
        a = c.labels("a")
        c.remove("a")
        self.assertIsNot(c.labels("a"), a)
        c.clear()
        c.labels("a").inc()
        send()
        wait_value(D, "py_forget_total", 1, k="a")


class Gauges(unittest.TestCase):
    def setUp(self):
        use()

    def test_set_inc_dec(self):
        g = Gauge("py_level", "d", ["room"])
        g.labels("a").set(10)
        g.labels("a").inc()
        g.labels("a").inc(2.5)
        g.labels("a").dec()
        g.labels("a").dec(0.5)
        g.labels("a").dec(-1)
        g.labels("a").inc(-2)
        send()
        wait_value(D, "py_level", 11, room="a")

    def test_negative_and_zero_sets(self):
        g = Gauge("py_temp", "d", ["room"])
        g.labels("lab").set(7)
        g.labels("lab").set(-5)  # not a delta: set 0, then -5
        g.labels("cold").set(-0.25)
        g.labels("zero").set(3)
        g.labels("zero").set(-0.0)  # -0.0 must not read as a delta
        g.labels("plus").set(1e-7)
        send()
        wait_value(D, "py_temp", -5, room="lab")
        wait_value(D, "py_temp", -0.25, room="cold")
        wait_value(D, "py_temp", 0, room="zero")
        wait_value(D, "py_temp", 1e-7, room="plus")

    def test_unlabelled(self):
        g = Gauge("py_plain_gauge", "d")
        g.set(3)
        g.inc()
        g.dec(10)
        send()
        wait_value(D, "py_plain_gauge", -6)

    def test_helpers(self):
        g = Gauge("py_gauge_helpers", "d", ["what"])
        before = time.time()
        g.labels("now").set_to_current_time()
        with g.labels("busy").track_inprogress():
            g.labels("busy").inc(0)  # still 1 inside; 0 after

        @g.labels("took").time()
        def work():
            time.sleep(0.02)

        work()
        send()
        deadline = time.monotonic() + 5
        now = None
        while now is None and time.monotonic() < deadline:
            now = sample_value(D.metrics(), "py_gauge_helpers", what="now")
            time.sleep(0.02)
        self.assertTrue(before <= now <= time.time() + 1, now)
        wait_value(D, "py_gauge_helpers", 0, what="busy")
        took = sample_value(D.metrics(), "py_gauge_helpers", what="took")
        self.assertTrue(0.02 <= took < 2, took)

    def test_set_function(self):
        alice_metrics.configure(flush_interval=0.1)
        try:
            g = Gauge("py_gauge_function", "d")
            values = iter(range(1, 1000))
            g.set_function(lambda: next(values))
            deadline = time.monotonic() + 5
            got = None
            while time.monotonic() < deadline:
                got = sample_value(D.metrics(), "py_gauge_function")
                if got is not None and got >= 2:
                    break
                time.sleep(0.05)
            self.assertTrue(got is not None and got >= 2, got)
            g.set_function(lambda: 1 / 0)
            time.sleep(0.3)
            self.assertGreater(alice_metrics.stats()["function_errors"], 0)
        finally:
            alice_metrics._core._S.functions.clear()
            alice_metrics.configure(flush_interval=1.0)


class Observations(unittest.TestCase):
    def setUp(self):
        use()

    def test_histogram_observe(self):
        h = Histogram("py_latency_seconds", "d", ["op"])
        for v in (0.003, 0.02, 0.3, 4, 20):
            h.labels("read").observe(v)
        send()
        sel = dict(op="read")
        wait_value(D, "py_latency_seconds_count", 5, **sel)
        wait_value(D, "py_latency_seconds_sum", 24.323, **sel)
        body = D.metrics()
        self.assertEqual(sample_value(body, "py_latency_seconds_bucket", le="0.005", **sel), 1)
        self.assertEqual(sample_value(body, "py_latency_seconds_bucket", le="0.5", **sel), 3)
        self.assertEqual(sample_value(body, "py_latency_seconds_bucket", le="5.0", **sel), 4)
        self.assertEqual(sample_value(body, "py_latency_seconds_bucket", le="+Inf", **sel), 5)

    def test_buckets_are_the_daemons(self):
        h = Histogram("py_custom_buckets_seconds", "d", buckets=[1, 2, 3])
        h.observe(1.5)
        send()
        wait_value(D, "py_custom_buckets_seconds_count", 1)
        body = D.metrics()
        # the daemon's default buckets, not [1, 2, 3]
        self.assertIsNotNone(sample_value(body, "py_custom_buckets_seconds_bucket", le="0.005"))
        self.assertIsNone(sample_value(body, "py_custom_buckets_seconds_bucket", le="2.0"))
        with self.assertRaises(ValueError):
            Histogram("py_bad_buckets", "d", buckets=[3, 1])
        with self.assertRaises(ValueError):
            Histogram("py_bad_buckets", "d", buckets=[float("inf")])

    def test_time_sync_async_context(self):
        h = Histogram("py_timed_seconds", "d", ["how"])

        @h.labels("sync").time()
        def f():
            time.sleep(0.05)
            return 7

        @h.labels("async").time()
        async def g():
            await asyncio.sleep(0.05)
            return 8

        self.assertEqual(f(), 7)
        self.assertEqual(f.__name__, "f")
        self.assertEqual(asyncio.run(g()), 8)
        with h.labels("ctx").time():
            time.sleep(0.05)
        with h.time() as t:  # prometheus_client's late labels
            t.labels("late")
        with self.assertRaises(ValueError):
            with h.time():  # a parent with labels has no series of its own
                pass
        send()
        for how in ("sync", "async", "ctx"):
            wait_value(D, "py_timed_seconds_count", 1, how=how)
            s = sample_value(D.metrics(), "py_timed_seconds_sum", how=how)
            self.assertTrue(0.045 <= s < 2, (how, s))  # seconds, not ms
        wait_value(D, "py_timed_seconds_count", 1, how="late")

    def test_summary_builtin_and_auto(self):
        s = Summary("alice_api_request_cost_dollars", "d", ["provider", "model"])
        s.labels("p-summary", "m").observe(0.25)
        s.labels("p-summary", "m").observe(0.5)
        plain = Summary("py_request_size_bytes", "d")
        plain.observe(100)
        with plain.time():
            pass
        send()
        sel = dict(provider="p-summary", model="m")
        wait_value(D, "alice_api_request_cost_dollars_count", 2, **sel)
        wait_value(D, "alice_api_request_cost_dollars_sum", 0.75, **sel)
        # a summary the daemon does not know becomes a histogram
        wait_value(D, "py_request_size_bytes_count", 2)

    def test_non_finite_values_dropped_and_counted(self):
        before = rejected(D)
        c = Counter("py_nan_total", "d")
        g = Gauge("py_nan_gauge", "d")
        h = Histogram("py_nan_seconds", "d")
        c.inc(float("nan"))
        c.inc(float("inf"))
        g.set(float("nan"))
        g.set(float("-inf"))
        g.inc(float("inf"))
        g.dec(float("nan"))
        h.observe(float("inf"))
        h.observe(math.nan)
        g.set(2)
        alice_metrics.flush()
        st = alice_metrics.stats()
        self.assertEqual(st["invalid"], 8, st)
        self.assertEqual(st["datagrams_dropped"], 0, st)
        wait_value(D, "py_nan_gauge", 2)
        self.assertIsNone(sample_value(D.metrics(), "py_nan_total"))
        self.assertEqual(rejected(D), before)


class LabelErrors(unittest.TestCase):
    """Misuse raises ValueError where prometheus_client raises it."""

    CASES = [
        ("labels() on a metric without labels", lambda m: m["plain"].labels("x")),
        ("too few values", lambda m: m["two"].labels("x")),
        ("too many values", lambda m: m["two"].labels("x", "y", "z")),
        ("no values", lambda m: m["two"].labels()),
        ("wrong names", lambda m: m["two"].labels(a="x", c="y")),
        ("a missing name", lambda m: m["two"].labels(a="x")),
        ("an extra name", lambda m: m["two"].labels(a="x", b="y", c="z")),
        ("positions and names", lambda m: m["two"].labels("x", b="y")),
        ("inc() on the parent", lambda m: m["two"].inc()),
        ("set() on the parent", lambda m: m["gauge"].set(1)),
        ("observe() on the parent", lambda m: m["hist"].observe(1)),
        ("negative Counter.inc", lambda m: m["plain"].inc(-1)),
        ("negative child inc", lambda m: m["two"].labels("x", "y").inc(-0.5)),
        ("labels() on a child", lambda m: m["two"].labels("x", "y").labels("z")),
    ]
    BAD_CONSTRUCTORS = [
        ("a label name with '-'", lambda lib, r: lib.Counter("py_e", "d", ["a-b"], registry=r)),
        ("a reserved label name", lambda lib, r: lib.Counter("py_e", "d", ["__x"], registry=r)),
        ("le on a histogram", lambda lib, r: lib.Histogram("py_e", "d", ["le"], registry=r)),
        ("quantile on a summary", lambda lib, r: lib.Summary("py_e", "d", ["quantile"],
                                                             registry=r)),
        ("a metric name with a space", lambda lib, r: lib.Gauge("py e", "d", registry=r)),
        ("an empty metric name", lambda lib, r: lib.Gauge("", "d", registry=r)),
    ]

    def metrics(self, lib, registry):
        kw = {"registry": registry}
        return {
            "plain": lib.Counter("py_err_plain", "d", **kw),
            "two": lib.Counter("py_err_two", "d", ["a", "b"], **kw),
            "gauge": lib.Gauge("py_err_gauge", "d", ["a"], **kw),
            "hist": lib.Histogram("py_err_hist", "d", ["a"], **kw),
        }

    def test_same_errors_as_prometheus_client(self):
        ours = self.metrics(alice_metrics, None)
        theirs = None
        if prometheus_client is not None:
            theirs = self.metrics(prometheus_client, prometheus_client.CollectorRegistry())
        for what, call in self.CASES:
            with self.subTest(what):
                with self.assertRaises(ValueError):
                    call(ours)
                if theirs is not None:
                    with self.assertRaises(ValueError):
                        call(theirs)
        for what, make in self.BAD_CONSTRUCTORS:
            with self.subTest(what):
                with self.assertRaises(ValueError):
                    make(alice_metrics, None)
                if prometheus_client is not None:
                    with self.assertRaises(ValueError):
                        make(prometheus_client, prometheus_client.CollectorRegistry())

    def test_names_the_daemon_refuses(self):
        for name, why in (("a:b", "':'"), ("alice_metricsd_x", "alice_metricsd_"),
                          ("process_jobs", "process_"), ("x" * 201, "200"),
                          ("café", "'é'")):
            with self.subTest(name=name):
                with self.assertRaises(ValueError) as cm:
                    Gauge(name, "d")
                self.assertIn(why, str(cm.exception))
        with self.assertRaises(ValueError):
            Counter("py_dup", "d", ["a", "a"])
        with self.assertRaises(ValueError):
            Counter("py_many", "d", ["l%d" % i for i in range(33)])


class LabelValues(unittest.TestCase):
    def setUp(self):
        use()

    def test_reserved_characters_refused(self):
        c = Counter("py_refused_total", "d", ["v"])
        for value, named in ((",", "','"), ("a|b", "'|'"), ("a\nb", "line feed"),
                             ("a\rb", "carriage return"), ("a\0b", "NUL")):
            with self.subTest(value=value):
                with self.assertRaises(ValueError) as cm:
                    c.labels(value)
                self.assertIn(named, str(cm.exception))
                self.assertIn("v=", str(cm.exception))
        with self.assertRaises(ValueError):
            c.labels("x" * 1025)
        with self.assertRaises(ValueError):
            c.labels("\udcff")  # a lone surrogate is not UTF-8
        many = Counter("py_refused_long_total", "d", ["a%d" % i for i in range(9)])
        with self.assertRaises(ValueError):  # 9 x 1,000 bytes > 8,191 in all
            many.labels(*["x" * 1000] * 9)
        alice_metrics.flush()
        self.assertEqual(alice_metrics.stats()["lines_sent"], 0)

    def test_other_characters_arrive_as_is(self):
        before = rejected(D)
        c = Counter("py_chars_total", "d", ["v"])
        values = ["url:http://h:80/p", "#tag", "a=b c@d", "café ☕", "100%", "%s%r",
                  'q"uote\\', "x" * 1024, ""]
        for v in values:
            c.labels(v).inc()
        send()
        settle(D)
        self.assertEqual(rejected(D), before)
        body = D.metrics()
        for v in values:
            with self.subTest(value=v):
                if v:
                    self.assertEqual(sample_value(body, "py_chars_total", v=v), 1)
        # an empty value is an absent label
        self.assertTrue(any(n == "py_chars_total" and "v" not in labels
                            for n, labels, _ in pyhelp.amtest.samples(body)))


class Transports(unittest.TestCase):
    def test_unix_socket(self):
        use("unix")
        c = Counter("py_unix_total", "d", ["k"])
        g = Gauge("py_unix_gauge", "d")
        for _ in range(1000):
            c.labels("v").inc()
        g.set(-3)
        send()
        st = alice_metrics.stats()
        self.assertEqual(st["lines_sent"], 1002, st)  # the negative set is two lines
        self.assertTrue(st["target"].startswith("unix://"), st)
        wait_value(D, "py_unix_total", 1000, k="v")
        wait_value(D, "py_unix_gauge", -3)
        n = sample_value(D.metrics(), "alice_metricsd_datagrams_received_total", transport="unix")
        self.assertGreater(n, 0)

    def test_threads(self):
        use()
        import threading
        c = Counter("py_threads_total", "d", ["t"])
        n = 20000

        def work(i):
            child = c.labels("all")
            for _ in range(n):
                child.inc()
            for _ in range(n // 10):
                c.labels(t="all").inc(2)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        send()
        self.assertEqual(alice_metrics.stats()["lines_sent"], 4 * (n + n // 10))
        wait_value(D, "py_threads_total", 4 * (n + n // 5), t="all")


class Builtin(unittest.TestCase):
    """The module-level families are the daemon's built-in ones."""

    NAMES = {
        "api_requests_total": ("alice_api_requests_total", "counter",
                               ("provider", "model", "operation", "status")),
        "api_request_duration_seconds": ("alice_api_request_duration_seconds", "histogram",
                                         ("provider", "model", "operation")),
        "api_request_cost_dollars": ("alice_api_request_cost_dollars", "summary",
                                     ("provider", "model")),
        "provider_health_status": ("alice_provider_health_status", "gauge", ("provider",)),
        "provider_circuit_breaker_state": ("alice_provider_circuit_breaker_state", "gauge",
                                           ("provider",)),
        "provider_error_rate": ("alice_provider_error_rate", "gauge", ("provider",)),
        "db_connections_active": ("alice_db_connections_active", "gauge", ()),
        "db_query_duration_seconds": ("alice_db_query_duration_seconds", "histogram",
                                      ("query_type",)),
        "assets_processed_total": ("alice_assets_processed_total", "counter",
                                   ("media_type", "source", "status")),
        "asset_quality_score": ("alice_asset_quality_score", "histogram",
                                ("media_type", "quality_type")),
        "events_published_total": ("alice_events_published_total", "counter", ("event_type",)),
    }

    def test_eleven_families_match_the_daemon(self):
        body = D.metrics()
        types = {}
        for line in body.splitlines():
            if line.startswith("# TYPE alice_") and not line.startswith("# TYPE alice_metricsd"):
                _, _, name, kind = line.split()
                types[name] = kind
        self.assertEqual(len(types), 11, types)
        for attr, (wire, kind, labels) in self.NAMES.items():
            with self.subTest(attr):
                m = getattr(alice_metrics, attr)
                self.assertEqual(m._wire_name, wire)
                self.assertEqual(m._type, kind)
                self.assertEqual(m._labelnames, labels)
                self.assertEqual(types[wire], kind)

    def test_every_family_takes_its_lines(self):
        use()
        before = rejected(D)
        am = alice_metrics
        am.api_requests_total.labels("b-p", "b-m", "text", "success").inc()
        am.api_request_duration_seconds.labels("b-p", "b-m", "text").observe(1.5)
        am.api_request_cost_dollars.labels("b-p", "b-m").observe(0.01)
        am.provider_health_status.labels("b-p").set(1)
        am.provider_circuit_breaker_state.labels("b-p").set(2)
        am.provider_error_rate.labels("b-p").set(0.125)
        am.db_connections_active.set(7)
        am.db_query_duration_seconds.labels("select").observe(0.002)
        am.assets_processed_total.labels("image", "b-p", "success").inc()
        am.asset_quality_score.labels("image", "brisque").observe(0.75)
        am.events_published_total.labels("b-event").inc()
        send()
        wait_value(D, "alice_events_published_total", 1, event_type="b-event")
        settle(D)
        self.assertEqual(rejected(D), before)
        body = D.metrics()
        self.assertEqual(sample_value(body, "alice_provider_circuit_breaker_state",
                                      provider="b-p"), 2)
        self.assertEqual(sample_value(body, "alice_db_connections_active"), 7)
        self.assertEqual(sample_value(body, "alice_asset_quality_score_bucket",
                                      media_type="image", quality_type="brisque", le="0.8"), 1)
        self.assertEqual(sum_values(body, "alice_api_request_duration_seconds_count",
                                    provider="b-p"), 1)


if __name__ == "__main__":
    pyhelp.main()
