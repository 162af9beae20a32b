"""Helpers of the alice_metrics tests (tests/python): the import paths, a
unittest runner that ends with the "N passed, M failed, K skipped" line
tools/test-totals.py counts, waits on the daemon's scrape, and scenario
scripts run in a fresh interpreter (the sender is one per process).

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pyhelp   # puts tests/ and src/python on sys.path"""

import os
import subprocess
import sys
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.normpath(os.path.join(HERE, ".."))
SOURCE_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PYTHON_SRC = os.path.join(SOURCE_ROOT, "src", "python")
for p in (PYTHON_SRC, TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

import amtest  # noqa: E402
from amtest import sample_value, sum_values  # noqa: E402,F401

PYTHON = "/usr/bin/python3"


def wait_value(d, name, want, timeout=5.0, **labels):
    """Waits until the scrape of d shows name{labels} == want."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = sample_value(d.metrics(), name, **labels)
        if got is not None and abs(got - want) <= 1e-9 * max(1.0, abs(want)):
            return got
        time.sleep(0.02)
    raise AssertionError("%s%r: want %r, got %r" % (name, labels, want, got))


def settle(d, timeout=5.0):
    """Waits until the daemon has read every datagram sent so far: its
    count of lines stops moving for 0.2 s."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        body = d.metrics()
        n = (sample_value(body, "alice_metricsd_samples_total") or 0) + \
            sum_values(body, "alice_metricsd_samples_rejected_total")
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= 0.2:
            return n
        time.sleep(0.05)
    return last


def rejected(d):
    return sum_values(d.metrics(), "alice_metricsd_samples_rejected_total")


def run_script(code, env=None, timeout=60, check=True):
    """Runs code (dedented) in a fresh /usr/bin/python3 that imports
    alice_metrics from the checkout; ALICE_* variables come from env only.
    Returns the CompletedProcess (stdout, stderr as text)."""
    code = "import sys; sys.path.insert(0, %r)\n" % PYTHON_SRC + textwrap.dedent(code)
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env=amtest.clean_env(env))
    if check and r.returncode != 0:
        raise AssertionError("script exit %d\nstdout:\n%s\nstderr:\n%s"
                             % (r.returncode, r.stdout, r.stderr))
    return r


def last_dict(text):
    """The dict printed (repr) on the last line of a script's output."""
    import ast
    return ast.literal_eval(text.strip().splitlines()[-1])


def main():
    """Runs the unittest cases of __main__ (ONLY=substring picks some) and
    prints the closing "N passed, M failed, K skipped" line; exit 1 on a
    failure."""
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromModule(sys.modules["__main__"])
    only = os.environ.get("ONLY")
    if only:
        suite = unittest.TestSuite(t for t in _flatten(suite) if only in t.id())
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # A failed setUpModule is an error without a test run: never below 0.
    passed = max(result.testsRun - failed - skipped - len(result.expectedFailures), 0)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t
