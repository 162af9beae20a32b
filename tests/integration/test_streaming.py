"""A /metrics body that grows past 2 MiB while it renders is sent as it
renders (Transfer-Encoding: chunked; to the connection's end for HTTP/1.0)
instead of being held whole: the daemon keeps a window of it, paced by its
fastest reader, and a reader that stalls far behind the others is closed.
Every body stays complete and valid for real clients (urllib, curl, the
Prometheus client's parser, Debian's Prometheus server)."""

import gzip
import os
import random
import re
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from amtest import (Daemon, Skip, dechunk, is_chunked, read_answer, read_to_end,  # noqa: E402
                    run_tests, sample_value, sanitized)
from http_abuse import vm_rss  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PER_FAMILY = 5000  # the default per-family series limit is 10,000
# Under ASan bodies are smaller (still well past the 2 MiB threshold).
SCALE = 0.3 if sanitized() else 1.0
STREAMED = 2 * 1024 * 1024


def scaled(n):
    return int(n * SCALE) // 10 * 10


def series_count(d):
    _, _, body = d.get("/health")
    return int(re.search(rb'"series":(\d+)', body).group(1))


def load(d, n, pad_len=60, seed=0):
    """n gauge series with a pad label of pad_len bytes (random hex when
    seed is set: gzip cannot shrink it much). Gauges: sent again, a line
    lost by UDP costs nothing twice, so up to 5 rounds until all are in."""
    rnd = random.Random(seed)
    lines = []
    for i in range(n):
        pad = ("%x" % rnd.getrandbits(4 * pad_len)).rjust(pad_len, "0") if seed else "p" * pad_len
        lines.append("stream.f%d:%d|g|#k:%07d,pad:%s" % (i // PER_FAMILY, i, i, pad))
    want = series_count(d) + n  # every line names a new series
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(5):
        for k in range(0, n, 10):
            s.sendto("\n".join(lines[k:k + 10]).encode(), ("127.0.0.1", d.udp_port))
            if k % 1000 == 0:
                time.sleep(0.002)  # stay inside the receive buffer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if series_count(d) >= want:
                s.close()
                return
            time.sleep(0.05)
    s.close()
    raise AssertionError("series did not arrive: %d of %d" % (series_count(d), want))


def count_stream_samples(text):
    n = 0
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith("stream_f"):
            n += len(fam.samples)
    return n


def raw_request(port, version=b"HTTP/1.1", extra=b"Connection: close\r\n", rcvbuf=None,
                path=b"/metrics"):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(30)
    c.connect(("127.0.0.1", port))
    c.sendall(b"GET " + path + b" " + version + b"\r\nHost: x\r\n" + extra + b"\r\n")
    return c


def test_large_body_is_chunked_and_whole():
    """A 12 MB body: chunked, no Content-Length, every sample there for
    urllib and the Prometheus parser; HEAD says chunked and sends nothing;
    HTTP/1.0 gets the bytes and the connection's end; a small body keeps
    its Content-Length."""
    n = scaled(50000)
    with Daemon() as d:
        load(d, 15000)  # 1.5 MB: held whole
        _, h_small, b_small = d.get("/metrics")
        assert "Content-Length" in h_small and "Transfer-Encoding" not in h_small, h_small
        assert len(b_small) > 1024 * 1024, len(b_small)
        load(d, n, pad_len=160)
        status, h, body = d.get("/metrics")
        assert status == 200
        assert h.get("Transfer-Encoding") == "chunked" and "Content-Length" not in h, h
        assert len(body) > 2 * STREAMED, len(body)
        assert count_stream_samples(body.decode()) == n + 15000

        status, hh, hb = d.get("/metrics", method="HEAD")
        assert status == 200 and hb == b"", hb[:100]
        assert hh.get("Transfer-Encoding") == "chunked", hh

        c = raw_request(d.http_port, version=b"HTTP/1.0")
        head, body10 = read_answer(c)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert not is_chunked(head) and b"Content-Length" not in head, head
        assert re.search(rb"(?im)^Connection: close", head), head
        assert count_stream_samples(body10.decode()) == n + 15000

        # curl, keep-alive: two large answers on one connection, then /health
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w",
             "%{http_code} %{size_download} %{num_connects}\n",
             d.url + "/metrics", d.url + "/metrics", d.url + "/health"],
            capture_output=True, text=True, timeout=60)
        lines = out.stdout.split()
        assert out.returncode == 0, out.stderr
        # each answer: code, size, new connections (1, then 0: reused)
        assert lines[0::3] == ["200"] * 3, lines
        assert int(lines[1]) > 2 * STREAMED and int(lines[4]) > 2 * STREAMED, lines
        assert lines[2::3] == ["1", "0", "0"], lines


def test_pipelined_after_a_stream():
    """Requests pipelined behind a streamed answer are answered after it,
    in order, on the same connection."""
    with Daemon() as d:
        n = scaled(50000)
        load(d, n, pad_len=160)
        c = socket.create_connection(("127.0.0.1", d.http_port), timeout=30)
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, rest = read_to_end(c).partition(b"\r\n\r\n")
        assert is_chunked(head), head
        end = rest.find(b"\r\n0\r\n\r\n")
        assert end > 0
        body = dechunk(rest[:end + 7])
        assert body is not None and count_stream_samples(body.decode()) == n
        second = rest[end + 7:]
        assert second.startswith(b"HTTP/1.1 200"), second[:200]
        assert b'"status":"ok"' in second, second[-300:]


def test_late_request_joins_a_young_stream():
    """A scrape that comes while a streamed body is still in its first 4
    MiB joins it from the first byte: both get the same bytes (one
    snapshot, self-metrics included), the late one at once."""
    n = 14000  # about 3.2 MB: streamed, and wholly within the replay window
    with Daemon() as d:
        load(d, n, pad_len=160)
        d.get("/metrics")
        slow = raw_request(d.http_port, rcvbuf=8 * 1024)
        time.sleep(0.3)  # its stream has begun and waits on it
        fast = raw_request(d.http_port)
        head_f, body_f = read_answer(fast)
        assert is_chunked(head_f), head_f
        head_s, body_s = read_answer(slow)
        assert count_stream_samples(body_f.decode()) == n
        assert body_s == body_f, "two renders, not one shared body"


def test_gzip_body_streams():
    """A gzip body whose compressed bytes pass 2 MiB is streamed too, and
    decompresses to the same samples."""
    n = 50000
    with Daemon() as d:
        load(d, n, pad_len=100, seed=7)
        status, h, body = d.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert status == 200
        assert h.get("Content-Encoding") == "gzip", h
        assert h.get("Transfer-Encoding") == "chunked", h
        text = gzip.decompress(body).decode()
        assert count_stream_samples(text) == n


def test_slow_reader_costs_a_window_not_a_body():
    """One client reads a 24 MB body at about 3 MB/s: the daemon's RSS
    grows by a few MiB (the stream's window), not by the body; the body is
    complete. Held whole, the same read grew RSS by the body's size."""
    n = scaled(110000)
    with Daemon() as d:
        load(d, n, pad_len=160)
        c = raw_request(d.http_port)  # warm: the render's buffers go through malloc
        head, body = read_answer(c)
        size = len(body)
        assert size > 3 * STREAMED, size
        time.sleep(0.3)
        base = vm_rss(d.proc.pid)
        c = raw_request(d.http_port, rcvbuf=64 * 1024)
        data = b""
        peak = base
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            data += c.recv(16 * 1024)
            peak = max(peak, vm_rss(d.proc.pid))
            time.sleep(0.005)
        data = read_to_end(c, data)
        growth = peak - base
        print("  figures: body %d, rss growth while read slowly %d" % (size, growth))
        if not sanitized():
            assert growth < 8 * 1024 * 1024, (growth, size)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert is_chunked(head), head
        body = dechunk(rest)
        assert body is not None
        assert abs(len(body) - size) < 1000, (len(body), size)


def test_stalled_reader_left_behind():
    """Two scrapes that share one body: one reads at full speed, the other
    never reads. The fast one gets the whole body at once, the stalled one
    is left behind and closed (a slow reader), and memory stays bounded
    while it hangs on."""
    n = scaled(110000)
    with Daemon(log_level="debug") as d:
        load(d, n, pad_len=160)
        c = raw_request(d.http_port)
        _, body = read_answer(c)
        size = len(body)
        time.sleep(0.3)
        base = vm_rss(d.proc.pid)
        # Both requests in one segment each, back to back: one loop turn
        # reads both, so they join one body.
        stalled = raw_request(d.http_port, rcvbuf=16 * 1024)
        fast = raw_request(d.http_port)
        t0 = time.monotonic()
        head, body = read_answer(fast)
        took = time.monotonic() - t0
        assert head.startswith(b"HTTP/1.1 200") and abs(len(body) - size) < 1000, head
        peak = vm_rss(d.proc.pid)
        growth = peak - base
        print("  figures: body %d read in %.2f s beside a stalled reader; rss growth %d"
              % (size, took, growth))
        assert took < (30 if sanitized() else 10), took
        if not sanitized():
            assert growth < 16 * 1024 * 1024, growth
        # the stalled one: closed for lag if it shared the body, else still
        # waiting on its own paced stream; either way the daemon answers
        shed = d.wait_log(r"event=http_shed reason=stream_lag", timeout=2)
        status, _, _ = d.get("/health")
        assert status == 200
        if shed:
            stalled.settimeout(10)
            got, total = b"x", 0
            try:
                while got and total < 64 * 1024 * 1024:
                    got = stalled.recv(1 << 20)
                    total += len(got)
            except ConnectionResetError:
                pass
            assert total < size, (total, size)
        stalled.close()


def test_reader_that_leaves_ends_the_render():
    """A scrape whose only reader disconnects mid-body stops rendering; the
    next scrape is whole."""
    with Daemon() as d:
        n = scaled(60000)
        load(d, n, pad_len=160)
        c = raw_request(d.http_port, rcvbuf=16 * 1024)
        time.sleep(0.2)
        c.close()
        time.sleep(0.2)
        status, h, body = d.get("/metrics")
        assert status == 200
        assert count_stream_samples(body.decode()) == n
        assert sample_value(body.decode(), "alice_metricsd_scrapes_total") >= 2


def test_prometheus_scrapes_a_streamed_body():
    """Debian's Prometheus server scrapes a streamed body (it asks for
    OpenMetrics, gzip): every series lands, the target is up."""
    if sanitized():  # interoperability, not memory: the normal build checks it
        raise Skip("a real Prometheus is run in the normal build only")
    sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
    import promhelper
    n = 50000
    with Daemon() as d:
        load(d, n, pad_len=100, seed=7)  # random: its gzip body passes 2 MiB too
        _, h, _ = d.get("/metrics", headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            "Accept-Encoding": "gzip"})
        assert h.get("Transfer-Encoding") == "chunked", h  # what Prometheus gets is streamed
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                  "scrape_configs:\n  - job_name: alice\n"
                  "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % d.http_port)
        with promhelper.Prometheus(config) as p:
            got = p.wait(lambda: p.values('up{job="alice"}') or None, "the target's up",
                         timeout=30)
            assert list(got.values()) == [1.0], (got, p.log_tail())
            got = p.wait(lambda: list(p.values('count({__name__=~"stream_f.*"})').values())
                         == [float(n)] or None, "every series scraped", timeout=20)
            assert got, p.log_tail()


if __name__ == "__main__":
    run_tests(globals())
