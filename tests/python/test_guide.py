"""PythonGuide: the metrics guide's two Python snippets, as the guide
writes them but for their import line, and track_api_metrics (plain and
async functions; success, error and cost), against the real daemon."""

import asyncio
import decimal
import os
import sys
import textwrap
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyhelp  # noqa: E402,I100
from pyhelp import rejected, sample_value, settle, wait_value  # noqa: E402

import alice_metrics  # noqa: E402,I100
from alice_metrics import track_api_metrics  # noqa: E402

D = None

# "Custom Metrics" > "Adding New Metrics", the import line changed from
# `from prometheus_client import Counter, Histogram, Gauge`.
ADDING_NEW_METRICS = '''
from alice_metrics import Counter, Histogram, Gauge

# Define metric
my_custom_metric = Counter(
    'alice_my_custom_total',
    'Description of my metric',
    ['label1', 'label2']
)

# Use in code
my_custom_metric.labels(label1='value1', label2='value2').inc()
'''

# "Custom Metrics" > "Decorating Functions", the import line changed from
# `from alicemultiverse.core.metrics import track_api_metrics`.
DECORATING_FUNCTIONS = '''
from alice_metrics import track_api_metrics

@track_api_metrics(provider="custom", model="my-model", operation="process")
async def my_function():
    # Automatically tracks duration, success/error, cost
    result = await do_work()
    result.cost = 0.05  # Will be tracked
    return result
'''


def setUpModule():
    global D
    D = pyhelp.amtest.Daemon()
    alice_metrics.configure(addr="127.0.0.1:%d" % D.udp_port)


def tearDownModule():
    D.stop()


def send():
    alice_metrics.flush()
    st = alice_metrics.stats()
    assert st["datagrams_dropped"] == 0 and st["invalid"] == 0, st


class Result:
    def __init__(self, cost=None):
        if cost is not None:
            self.cost = cost


class GuideSnippets(unittest.TestCase):
    def test_adding_new_metrics(self):
        before = rejected(D)
        exec(compile(textwrap.dedent(ADDING_NEW_METRICS), "guide-adding-new-metrics", "exec"), {})
        send()
        wait_value(D, "alice_my_custom_total", 1, label1="value1", label2="value2")
        self.assertIn("# TYPE alice_my_custom_total counter", D.metrics())
        settle(D)
        self.assertEqual(rejected(D), before)

    def test_decorating_functions(self):
        before = rejected(D)

        async def do_work():
            await asyncio.sleep(0.01)
            return types.SimpleNamespace()

        ns = {"do_work": do_work}
        exec(compile(textwrap.dedent(DECORATING_FUNCTIONS), "guide-decorating-functions", "exec"),
             ns)
        result = asyncio.run(ns["my_function"]())
        self.assertEqual(result.cost, 0.05)
        send()
        api = dict(provider="custom", model="my-model", operation="process")
        wait_value(D, "alice_api_requests_total", 1, status="success", **api)
        wait_value(D, "alice_api_request_duration_seconds_count", 1, **api)
        wait_value(D, "alice_api_request_cost_dollars_sum", 0.05, provider="custom",
                   model="my-model")
        wait_value(D, "alice_api_request_cost_dollars_count", 1, provider="custom",
                   model="my-model")
        took = sample_value(D.metrics(), "alice_api_request_duration_seconds_sum", **api)
        self.assertTrue(0.009 <= took < 2, took)  # seconds
        settle(D)
        self.assertEqual(rejected(D), before)


class TrackApiMetrics(unittest.TestCase):
    def counts(self, provider, op):
        body = D.metrics()
        sel = dict(provider=provider, model="m", operation=op)
        return (sample_value(body, "alice_api_requests_total", status="success", **sel),
                sample_value(body, "alice_api_requests_total", status="error", **sel),
                sample_value(body, "alice_api_request_duration_seconds_count", **sel),
                sample_value(body, "alice_api_request_cost_dollars_count", provider=provider,
                             model="m"),
                sample_value(body, "alice_api_request_cost_dollars_sum", provider=provider,
                             model="m"))

    def wait_counts(self, provider, op, want):
        deadline = time.monotonic() + 5
        got = None
        while time.monotonic() < deadline:
            got = self.counts(provider, op)
            if got == want:
                return
            time.sleep(0.02)
        self.assertEqual(got, want)

    def test_sync(self):
        @track_api_metrics(provider="t-sync", model="m", operation="text")
        def call(x, fail=False, cost=None):
            """Calls the API."""
            time.sleep(0.01)
            if fail:
                raise RuntimeError("api down")
            return Result(cost)

        self.assertEqual(call.__name__, "call")
        self.assertEqual(call.__doc__, "Calls the API.")
        self.assertEqual(call(1, cost=0.5).cost, 0.5)
        call(2, cost=0.25)
        call(3)  # no cost attribute: nothing observed
        with self.assertRaises(RuntimeError):
            call(4, fail=True)
        send()
        self.wait_counts("t-sync", "text", (3, 1, 4, 2, 0.75))
        s = sample_value(D.metrics(), "alice_api_request_duration_seconds_sum",
                         provider="t-sync", model="m", operation="text")
        self.assertTrue(0.04 <= s < 5, s)

    def test_async(self):
        @track_api_metrics(provider="t-async", model="m", operation="image")
        async def call(fail=False, cost=None):
            await asyncio.sleep(0.01)
            if fail:
                raise ValueError("bad prompt")
            return Result(cost)

        async def main():
            await call(cost=1)
            await asyncio.gather(call(cost=0.5), call(cost=0.25))
            with self.assertRaises(ValueError):
                await call(fail=True)
            task = asyncio.ensure_future(call())
            await asyncio.sleep(0)
            task.cancel()  # a cancelled request is an error too
            with self.assertRaises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        send()
        self.wait_counts("t-async", "image", (3, 2, 5, 3, 1.75))

    def test_cost_kinds(self):
        costs = [0, 2, 0.5, decimal.Decimal("0.125"), True, "0.3", None, float("nan"),
                 complex(1, 1), [1]]

        @track_api_metrics(provider="t-cost", model="m", operation="text")
        def call(cost):
            return types.SimpleNamespace(cost=cost)

        for c in costs:
            call(c)
        send()
        # numbers only: 0, 2, 0.5 and Decimal("0.125")
        self.wait_counts("t-cost", "text", (len(costs), None, len(costs), 4, 2.625))

    def test_bad_label_values_raise_at_decoration(self):
        with self.assertRaises(ValueError):
            track_api_metrics(provider="a,b", model="m", operation="text")


if __name__ == "__main__":
    pyhelp.main()
