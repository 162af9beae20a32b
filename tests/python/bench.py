#!/usr/bin/python3
"""The cost of one metric call, prometheus_client against alice_metrics,
side by side in one run (same interpreter, same machine minute).

Each case is `labels(...)` with 4 labels then `inc()` (or `observe()`, or
`set()`), the way application code calls it, timed over --calls calls,
best of --repeat runs; the two libraries alternate run by run so a drift
of the machine hits both. alice_metrics sends to a UDP socket on
127.0.0.1 that nobody reads, so the send() of every full datagram
(amortized over its lines) is included; prometheus_client only updates
memory. Prints a table and the ratio alice / prometheus.

    /usr/bin/python3 tests/python/bench.py [--calls N] [--repeat N] [--quick] [--json FILE]

--quick: 20,000 calls, 3 runs (the smoke test of the test suite: no
threshold). Needs python3-prometheus-client (Debian)."""

import argparse
import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src", "python"))

import alice_metrics  # noqa: E402

try:
    import prometheus_client
except ImportError:  # the table then has alice_metrics alone
    prometheus_client = None

LABELS = dict(provider="openai", model="gpt-4", operation="text", status="success")
VALUES = tuple(LABELS.values())


def sink():
    """A bound UDP socket on 127.0.0.1 that nobody reads (as for libalice's
    bench-client): every send() is a real one, the kernel then drops the
    datagram at the full receive buffer, and no reader thread competes
    with the calls for the GIL."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def cases(lib, registry):
    """[(case name, zero-argument call)] for one library."""
    kw = {} if registry is None else {"registry": registry}
    c = lib.Counter("bench_requests_total", "d", list(LABELS), **kw)
    h = lib.Histogram("bench_duration_seconds", "d", list(LABELS)[:3], **kw)
    g = lib.Gauge("bench_level", "d", ["provider"], **kw)
    c0 = lib.Counter("bench_plain_total", "d", **kw)
    return [
        ("Counter.labels(4 kwargs).inc()", lambda: c.labels(provider="openai", model="gpt-4",
                                                            operation="text",
                                                            status="success").inc()),
        ("Counter.labels(4 args).inc()", lambda: c.labels("openai", "gpt-4", "text",
                                                          "success").inc()),
        ("child.inc() (labels cached by the caller)", c.labels(*VALUES).inc),
        ("Counter without labels .inc()", c0.inc),
        ("Histogram.labels(3 kwargs).observe(0.25)",
         lambda: h.labels(provider="openai", model="gpt-4", operation="text").observe(0.25)),
        ("Gauge.labels(1 kwarg).set(7)", lambda: g.labels(provider="openai").set(7)),
    ]


def run_case(fn, calls):
    """Nanoseconds per call of fn (a loop of calls, less an empty loop)."""
    rng = range(calls)
    t0 = time.perf_counter()
    for _ in rng:
        fn()
    t1 = time.perf_counter()
    nop = (lambda: None)
    for _ in rng:
        nop()
    t2 = time.perf_counter()
    return max((t1 - t0) - (t2 - t1), 0.0) / calls * 1e9


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="20,000 calls, 3 runs")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.repeat = 20000, 3

    sock = sink()
    alice_metrics.configure(addr="udp://127.0.0.1:%d" % sock.getsockname()[1], reset_stats=True)
    libs = [("alice_metrics", cases(alice_metrics, None))]
    if prometheus_client is not None:
        reg = prometheus_client.CollectorRegistry()
        libs.insert(0, ("prometheus_client", cases(prometheus_client, reg)))

    best = {}
    for _ in range(args.repeat):
        for lib, cs in libs:
            for name, fn in cs:
                ns = run_case(fn, args.calls)
                key = (lib, name)
                best[key] = min(best.get(key, ns), ns)
    alice_metrics.flush()
    st = alice_metrics.stats()

    print("Python %s, prometheus_client %s; %d calls per run, best of %d"
          % (sys.version.split()[0],
             getattr(prometheus_client, "__version__", None) or _pc_version(),
             args.calls, args.repeat))
    print("%-44s %14s %14s %8s" % ("case", "prometheus ns", "alice ns", "ratio"))
    rows = []
    for name, _ in libs[-1][1]:
        a = best[("alice_metrics", name)]
        p = best.get(("prometheus_client", name))
        ratio = a / p if p else None
        rows.append({"case": name, "alice_ns": round(a, 1),
                     "prometheus_ns": round(p, 1) if p else None,
                     "ratio": round(ratio, 3) if ratio else None})
        print("%-44s %14s %14.0f %8s" % (name, "%.0f" % p if p else "-", a,
                                         "%.2f" % ratio if ratio else "-"))
    print("alice_metrics sent %d lines in %d datagrams (%d dropped, %d lines/datagram)"
          % (st["lines_sent"], st["datagrams_sent"], st["datagrams_dropped"],
             st["lines_sent"] // max(st["datagrams_sent"], 1)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"calls": args.calls, "repeat": args.repeat, "rows": rows, "stats": st}, f,
                      indent=1)
    # A smoke run checks that the lines left: nothing may be invalid.
    if st["invalid"] or st["lines_sent"] == 0:
        print("FAIL: %r" % st)
        return 1
    return 0


def _pc_version():
    try:
        from importlib.metadata import version
        return version("prometheus_client")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
