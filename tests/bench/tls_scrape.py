#!/usr/bin/python3
"""Scrape latency over TLS against plain HTTP: two daemons hold the same
series (10,000 gauges by default), each scraped RUNS times on a kept-alive
connection and on a new connection per scrape (the TLS handshake included),
by Python's http.client and by curl. Prints medians and the TLS/plain
ratios. Not a timed test: run it by hand (tests/bench/README.md).

    ALICE_BIN=build/src/alice tests/bench/tls_scrape.py [--series N] [--runs N]

With --flood SECONDS it measures instead an ordinary TLS scraper (every
50 ms) while 6 threads open TLS connections, finish the handshake and close
them as fast as they can, and 2 more open TCP connections that never start
a handshake, against --max-connections 64.
"""

import argparse
import http.client
import os
import shutil
import ssl
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import Daemon, sample_value  # noqa: E402


def certs(d):
    def sh(*a):
        subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1",
       "-addext", "subjectAltName=IP:127.0.0.1")
    with open(os.path.join(d, "web.yml"), "w") as f:
        f.write("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
    return os.path.join(d, "web.yml"), os.path.join(d, "cert.pem")


def fill(d, n, get):
    for i in range(0, n, 100):
        d.send("".join("bench_tls_gauge:%d|g|#series:s%d\n" % (k, k)
                       for k in range(i, min(n, i + 100))))
    deadline = time.monotonic() + 20
    while sample_value(get(), "alice_metricsd_samples_total") != n:
        if time.monotonic() > deadline:
            raise SystemExit("the series did not arrive")
        time.sleep(0.05)


def fresh_by_name(fn):
    return lambda name, d, secure: fn(d, secure)


def flood(web, cert, seconds, series):
    ctx = ssl.create_default_context(cafile=cert)
    with Daemon(args=["--web-config", web, "--max-connections", "64"]) as d:
        def scrape():
            c = http.client.HTTPSConnection("127.0.0.1", d.http_port, context=ctx, timeout=5)
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read()
            c.close()
            assert r.status == 200
            return body
        fill(d, series, lambda: scrape().decode())
        stop = time.monotonic() + seconds
        counts = {"handshakes": 0, "handshake_errors": 0, "silent": 0}
        silent = []

        def handshaker():
            while time.monotonic() < stop:
                try:
                    s = socket.create_connection(("127.0.0.1", d.http_port), timeout=2)
                    ctx.wrap_socket(s, server_hostname="127.0.0.1").close()
                    counts["handshakes"] += 1
                except OSError:
                    counts["handshake_errors"] += 1

        def opener():
            while time.monotonic() < stop:
                try:
                    silent.append(socket.create_connection(("127.0.0.1", d.http_port), timeout=2))
                    counts["silent"] += 1
                except OSError:
                    pass
                time.sleep(0.005)

        threads = [threading.Thread(target=handshaker) for _ in range(6)]
        threads += [threading.Thread(target=opener) for _ in range(2)]
        for t in threads:
            t.start()
        lat, failed = [], 0
        time.sleep(0.5)
        while time.monotonic() < stop - 0.5:
            t0 = time.monotonic()
            try:
                scrape()
                lat.append((time.monotonic() - t0) * 1000)
            except (OSError, AssertionError, http.client.HTTPException):
                failed += 1
            time.sleep(0.05)
        for t in threads:
            t.join()
        for s in silent:
            s.close()
        lat.sort()
        print("ordinary scrapes %d, failed %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms; %s"
              % (len(lat), failed, lat[len(lat) // 2], lat[max(0, int(len(lat) * 0.99) - 1)],
                 lat[-1], counts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--flood", type=float, default=0, metavar="SECONDS")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="alice-tlsbench-")
    try:
        web, cert = certs(tmp)
        if a.flood:
            flood(web, cert, a.flood, a.series)
            return
        ctx = ssl.create_default_context(cafile=cert)
        with Daemon() as plain, Daemon(args=["--web-config", web]) as tls:
            def conn(d, secure):
                if secure:
                    return http.client.HTTPSConnection("127.0.0.1", d.http_port, context=ctx)
                return http.client.HTTPConnection("127.0.0.1", d.http_port)

            def scrape(c):
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
                assert r.status == 200
                return body

            for d, secure in ((plain, False), (tls, True)):
                c = conn(d, secure)
                fill(d, a.series, lambda: scrape(c).decode())
                c.close()
            size = len(scrape(conn(plain, False)))
            # plain and TLS alternate, so that load from elsewhere hits both alike
            keep = {"plain": conn(plain, False), "tls": conn(tls, True)}
            for c in keep.values():
                scrape(c)

            def fresh(d, secure):
                c = conn(d, secure)
                scrape(c)
                c.close()

            def curl(d, secure):
                url = ("https" if secure else "http") + "://127.0.0.1:%d/metrics" % d.http_port
                cmd = ["curl", "-sS", "-o", "/dev/null"] + (["--cacert", cert] if secure else [])
                subprocess.run(cmd + [url], check=True)

            ways = {"keep-alive": lambda name, d, secure: scrape(keep[name]),
                    "new connection": fresh_by_name(fresh),
                    "curl": fresh_by_name(curl)}
            res = {}
            for how, fn in ways.items():
                times = {"plain": [], "tls": []}
                for _ in range(a.runs):
                    for name, d, secure in (("plain", plain, False), ("tls", tls, True)):
                        t0 = time.perf_counter()
                        fn(name, d, secure)
                        times[name].append((time.perf_counter() - t0) * 1000)
                for name in times:
                    res[name, how] = statistics.median(times[name])
            print("%d series, %d bytes per body, median of %d scrapes (ms)" % (a.series, size, a.runs))
            print("%-16s %8s %8s %7s" % ("", "plain", "tls", "ratio"))
            for how in ("keep-alive", "new connection", "curl"):
                p, t = res["plain", how], res["tls", how]
                print("%-16s %8.2f %8.2f %6.2fx" % (how, p, t, t / p))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
