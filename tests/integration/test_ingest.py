"""Datagrams in over real UDP and Unix sockets, /metrics scraped and compared
numerically."""

import os
import re
import socket
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from amtest import Daemon, Skip, run_tests, sample_value, sum_values  # noqa: E402

TMP = tempfile.mkdtemp(prefix="alice-ingest-")


def near(a, b, eps=1e-9):
    return a is not None and abs(a - b) <= eps * max(1.0, abs(b))


def test_counter_rate_and_packed():
    with Daemon() as d:
        d.send("alice_events_published_total:1|c|#event_type:a\n"
               "alice_events_published_total:2|c|@0.5|#event_type:a\n"
               "alice_events_published_total:1:2:3|c|#event_type:b\n"
               "alice_events_published_total:+4|c|#event_type:b\n")
        d.wait_samples(4)
        m = d.metrics()
        assert near(sample_value(m, "alice_events_published_total", event_type="a"), 5.0), m
        assert near(sample_value(m, "alice_events_published_total", event_type="b"), 10.0)
        assert sample_value(m, "alice_metricsd_samples_total") == 4


def test_gauge_set_and_delta():
    with Daemon() as d:
        d.send("alice_db_connections_active:10|g")
        d.send("alice_db_connections_active:+5|g\nalice_db_connections_active:-3|g")
        d.send("alice_provider_health_status:-2|g|#provider:x")  # delta on a new series
        d.wait_samples(4)
        m = d.metrics()
        assert sample_value(m, "alice_db_connections_active") == 12.0, m
        assert sample_value(m, "alice_provider_health_status", provider="x") == -2.0


def test_timer_histogram_buckets():
    with Daemon() as d:
        lines = [
            "alice_api_request_duration_seconds:5|ms|#provider:p,model:m,operation:text",  # 0.005
            "alice_api_request_duration_seconds:1000|ms|#provider:p,model:m,operation:text",  # 1.0
            "alice_api_request_duration_seconds:4.5|h|#provider:p,model:m,operation:text",
            "alice_api_request_duration_seconds:60|d|#provider:p,model:m,operation:text",
            "alice_api_request_duration_seconds:0.2|h|@0.25|#provider:p,model:m,operation:text",
        ]
        d.send("\n".join(lines))
        d.wait_samples(5)
        m = d.metrics()
        lab = dict(provider="p", model="m", operation="text")
        b = lambda le: sample_value(m, "alice_api_request_duration_seconds_bucket", le=le, **lab)  # noqa: E731
        assert b("0.005") == 1.0, m
        assert b("0.01") == 1.0
        assert b("0.25") == 5.0  # 0.2 weighted 1/0.25 = 4
        assert b("1.0") == 6.0  # le is inclusive
        assert b("5.0") == 7.0
        assert b("10.0") == 7.0
        assert b("+Inf") == 8.0
        assert sample_value(m, "alice_api_request_duration_seconds_count", **lab) == 8.0
        assert near(sample_value(m, "alice_api_request_duration_seconds_sum", **lab),
                    0.005 + 1.0 + 4.5 + 60 + 0.2 * 4)


def test_summary_and_sets():
    with Daemon() as d:
        d.send("alice_api_request_cost_dollars:0.05|h|#provider:openai,model:gpt-4\n"
               "alice_api_request_cost_dollars:0.10|h|#provider:openai,model:gpt-4\n"
               "users.seen:alice|s\nusers.seen:bob|s\nusers.seen:alice|s\n")
        d.wait_samples(5)
        m = d.metrics()
        assert near(sample_value(m, "alice_api_request_cost_dollars_sum", provider="openai"), 0.15)
        assert sample_value(m, "alice_api_request_cost_dollars_count", provider="openai") == 2.0
        assert "alice_api_request_cost_dollars{" not in m  # no quantiles
        assert sample_value(m, "users_seen") == 2.0
        assert "# TYPE users_seen gauge" in m


def test_auto_creation_and_labels():
    with Daemon() as d:
        d.send("worker.jobs:1|c|#queue:fast,status:ok\n"
               "worker.jobs_total:2|c|#status:ok,queue:fast\n"
               "worker.jobs:1|c|#queue:slow\n"
               "worker.jobs:1|c|#queue:slow,extra:x\n"
               "2fa-latency:250|ms\n")
        d.wait_samples(5)
        m = d.metrics()
        assert sample_value(m, "worker_jobs_total", queue="fast", status="ok") == 3.0, m
        # an auto family's series carries the labels it has; a new tag key
        # grows the family's label set
        assert 'worker_jobs_total{queue="slow"} 1.0' in m, m
        assert 'worker_jobs_total{queue="slow",extra="x"} 1.0' in m, m
        assert sum_values(m, "alice_metricsd_samples_rejected_total") == 0.0
        assert sample_value(m, "_2fa_latency_bucket", le="0.25") == 1.0
        assert sample_value(m, "_2fa_latency_bucket", le="0.1") == 0.0
        assert sample_value(m, "alice_metricsd_series", family="worker_jobs_total") == 3.0


def test_unix_socket_transport():
    path = os.path.join(TMP, "ingest.sock")
    with Daemon(unix=path) as d:
        d.send("alice_events_published_total:7|c|#event_type:unix", transport="unix")
        d.send("alice_events_published_total:1|c|#event_type:udp", transport="udp")
        d.wait_samples(2)
        m = d.metrics()
        assert sample_value(m, "alice_events_published_total", event_type="unix") == 7.0
        assert sample_value(m, "alice_metricsd_datagrams_received_total", transport="unix") == 1.0
        assert sample_value(m, "alice_metricsd_datagrams_received_total", transport="udp") == 1.0
    assert not os.path.exists(path), "socket file removed on exit"


def test_largest_datagrams_all_lines_count():
    path = os.path.join(TMP, "big.sock")
    with Daemon(unix=path) as d:
        line = "alice_events_published_total:1|c|#event_type:big\n"
        # UDP: as many lines as fit in 65,507 bytes; unix: 65,536 bytes.
        n_udp = 65507 // len(line)
        udp = (line * n_udp).encode()
        udp += b"x" * 0 if len(udp) == 65507 else b""
        d.send(udp)
        n_unix = 65536 // len(line)
        pad = 65536 - n_unix * len(line)
        unix = (line * n_unix).encode() + b"\n" * pad  # empty lines are fine
        assert len(unix) == 65536
        d.send(unix, transport="unix")
        d.wait_samples(n_udp + n_unix, timeout=10)
        m = d.metrics()
        assert sample_value(m, "alice_events_published_total",
                            event_type="big") == n_udp + n_unix
        assert sample_value(m, "alice_metricsd_datagrams_truncated_total", transport="unix") == 0


def test_oversized_unix_datagram_truncated_counted():
    path = os.path.join(TMP, "trunc.sock")
    with Daemon(unix=path) as d:
        line = "alice_events_published_total:1|c|#event_type:t\n"
        n = 70000 // len(line) + 1
        payload = (line * n).encode()
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        try:
            s.sendto(payload, path)
        except OSError as e:
            raise Skip("the kernel refused a %d-byte datagram: %s" % (len(payload), e))
        finally:
            s.close()
        complete = 65536 // len(line)
        d.wait_samples(complete + 1, timeout=10)
        m = d.metrics()
        assert sample_value(m, "alice_metricsd_datagrams_truncated_total", transport="unix") == 1
        assert sample_value(m, "alice_events_published_total", event_type="t") == complete


def test_reject_reasons_counted():
    with Daemon(args=["--log-level", "debug"]) as d:
        bad = {
            "syntax": "no_colon_here",
            "bad_name": "bad$name:1|c",
            "bad_value": "x:abc|c",
            "bad_type": "x:1|zz",
            "bad_sample_rate": "x:1|c|@2",
            "bad_label": "x:1|c|#__reserved:1",
            "undeclared_label": "alice_db_connections_active:1|g|#pool:main",
            "type_conflict": "alice_api_requests_total:1|g",
            "negative_counter": "x:-1|c",
        }
        d.send("\n".join(bad.values()) + "\nalice_events_published_total:1|c|#event_type:ok")
        d.wait_samples(len(bad) + 1)
        m = d.metrics()
        for reason in bad:
            assert sample_value(m, "alice_metricsd_samples_rejected_total",
                                reason=reason) == 1.0, (reason, m)
        assert sample_value(m, "alice_events_published_total", event_type="ok") == 1.0
        assert d.wait_log(r"event=line_rejected reason=bad_type .*x:1\|zz"), d.log


def test_config_families_buckets_limits():
    cfg = os.path.join(TMP, "cfg.json")
    with open(cfg, "w") as f:
        f.write("""{
  "limits": {"max_series_per_family": 3},
  "families": [
    {"name": "alice_jobs_total", "type": "counter", "help": "Jobs run.",
     "labels": ["queue", "status"], "max_series": 2},
    {"name": "alice_job_duration_seconds", "type": "histogram",
     "help": "Job wall time.", "labels": ["queue"], "buckets": [0.1, 1, 10, 60]}
  ]
}""")
    with Daemon(args=["--config", cfg]) as d:
        d.send("alice_jobs:1|c|#queue:a,status:ok\nalice_jobs:1|c|#queue:b\n"
               "alice_jobs:1|c|#queue:c\nalice_jobs:5|c|#queue:a,status:ok\n"
               "alice_job_duration_seconds:30|h|#queue:a\n"
               "auto.one:1|c|#k:1\nauto.one:1|c|#k:2\nauto.one:1|c|#k:3\nauto.one:1|c|#k:4\n")
        d.wait_samples(9)
        m = d.metrics()
        assert "# HELP alice_jobs_total Jobs run." in m
        assert sample_value(m, "alice_jobs_total", queue="a", status="ok") == 6.0
        assert sample_value(m, "alice_jobs_total", queue="c") is None
        assert sample_value(m, "alice_job_duration_seconds_bucket", le="10.0") == 0.0
        assert sample_value(m, "alice_job_duration_seconds_bucket", le="60.0") == 1.0
        assert sample_value(m, "alice_metricsd_series", family="auto_one_total") == 3.0
        assert sample_value(m, "alice_metricsd_samples_rejected_total",
                            reason="cardinality") == 2.0


def test_auto_create_off():
    cfg = os.path.join(TMP, "noauto.json")
    with open(cfg, "w") as f:
        f.write('{"auto_create": false}')
    with Daemon(args=["--config", cfg]) as d:
        d.send("surprise:1|c\nalice_events_published_total:1|c|#event_type:x")
        d.wait_samples(2)
        m = d.metrics()
        assert sample_value(m, "alice_metricsd_samples_rejected_total",
                            reason="unknown_family") == 1.0
        assert "surprise" not in m


def test_ipv6_udp():
    import socket
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
    except OSError:
        raise Skip("no IPv6 loopback on this machine")
    with Daemon(args=["--statsd-host", "::1", "--statsd-port", str(port)], udp=False) as d:
        assert d.wait_log(r"event=listening transport=udp addr=::1 port=%d" % port)
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.sendto(b"alice_events_published_total:1|c|#event_type:v6", ("::1", port))
        s.close()
        d.wait_samples(1)
        assert sample_value(d.metrics(), "alice_events_published_total", event_type="v6") == 1.0


def _paced_udp(port, rate, seconds):
    """Sends one-line datagrams at about rate per second (busy-waits between
    sends, bounded by seconds). Returns how many were sent."""
    import socket
    import time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic()
        if now - t0 >= seconds:
            break
        if sent < (now - t0) * rate:
            s.sendto(b"alice_events_published_total:1|c|#event_type:paced", ("127.0.0.1", port))
            sent += 1
    s.close()
    return sent


def test_udp_under_load_reads_on_a_timer():
    """Wake-up coalescing: datagrams 50 us apart would each wake the loop;
    under load the socket is read every millisecond instead, so a wake-up
    reads several. Counts stay exact."""
    with Daemon() as d:
        line = d.wait_log(r"event=listening transport=udp .*receive_buffer=(\d+) .*coalesce_ms=(\d+)")
        assert line, d.log
        if int(re.search(r"receive_buffer=(\d+)", line).group(1)) < 16 << 20:
            assert "coalesce_ms=0" in line, line
            raise Skip("receive buffer capped (no CAP_NET_ADMIN): coalescing is off")
        assert "coalesce_ms=1" in line, line
        sent = _paced_udp(d.udp_port, 20000, 0.5)
        d.wait_samples(sent)
        m = d.metrics()
        dgrams = sample_value(m, "alice_metricsd_datagrams_received_total", transport="udp")
        wakeups = sample_value(m, "alice_metricsd_ingest_wakeups_total", transport="udp")
        assert dgrams == sent, (dgrams, sent)
        assert sample_value(m, "alice_events_published_total", event_type="paced") == sent
        assert 1 <= wakeups <= sent / 4, (wakeups, sent)


def test_small_receive_buffer_wakes_at_every_arrival():
    """A buffer too small to hold 2 ms of a flood turns coalescing off."""
    with Daemon(args=["--receive-buffer-bytes", "1048576"]) as d:
        assert d.wait_log(r"event=listening transport=udp .*coalesce_ms=0"), d.log
        d.send("alice_events_published_total:3|c|#event_type:small")
        d.wait_samples(1)
        m = d.metrics()
        assert sample_value(m, "alice_events_published_total", event_type="small") == 3.0
        assert sample_value(m, "alice_metricsd_ingest_wakeups_total", transport="udp") == 1.0


def test_scrape_right_after_a_burst_sees_all_of_it():
    """A scrape first reads what the kernel holds: a client that sends and
    then scrapes at once (no wait) sees every datagram it sent."""
    import socket
    with Daemon() as d:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(1000):
            s.sendto(b"alice_events_published_total:1|c|#event_type:burst", ("127.0.0.1", d.udp_port))
        s.close()
        m = d.metrics()
        assert sample_value(m, "alice_events_published_total", event_type="burst") == 1000.0
        st, _, body = d.get("/health")
        assert st == 200 and b'"udp":1000' in body, body


def test_capped_receive_buffer_is_reported():
    """Unprivileged, the kernel caps the receive buffer at net.core.rmem_max:
    the daemon says so at startup, with what it asked and what it got."""
    import shutil
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        raise Skip("needs root and setpriv to start the daemon unprivileged")
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    want = 2 * rmem_max if rmem_max < (512 << 20) else 1 << 30
    if want <= rmem_max:
        raise Skip("net.core.rmem_max is at the flag's maximum")
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    with Daemon(args=["--receive-buffer-bytes", str(want)], prefix=drop) as d:
        line = d.wait_log(r"event=receive_buffer_capped transport=udp")
        assert line, d.log
        assert "requested=%d granted=%d" % (want, rmem_max) in line, line
        assert "net.core.rmem_max" in line
        d.send("alice_events_published_total:1|c|#event_type:capped")
        d.wait_samples(1)
    with Daemon() as d:  # root: SO_RCVBUFFORCE, nothing capped
        d.send("x:1|c")
        d.wait_samples(1)
        assert not any("receive_buffer_capped" in ln for ln in d.log), d.log


def test_set_members_past_the_total_are_refused_and_counted():
    """limits.max_set_members bounds the memory sets take, whatever a
    sender makes up: members past it are refused as cardinality, members
    seen before keep counting."""
    cfg = os.path.join(TMP, "sets.json")
    with open(cfg, "w") as f:
        f.write('{"limits": {"max_set_members": 100}}')
    with Daemon(args=["--config", cfg]) as d:
        for k in range(0, 150, 25):
            d.send("\n".join("visitors:u%d|s|#page:p%d" % (i, i % 3) for i in range(k, k + 25)))
        d.send("visitors:u0|s|#page:p0")
        d.wait_samples(151)
        m = d.metrics()
        assert sample_value(m, "alice_metricsd_samples_rejected_total", reason="cardinality") == 50
        total = sum(sample_value(m, "visitors", page="p%d" % p) for p in range(3))
        assert total == 100.0, m
        assert sample_value(m, "alice_metricsd_set_members") == 100.0


def test_series_bytes_budget_counts_label_text():
    """limits.max_series_bytes bounds what series and their label text
    take: long label values fill it with fewer series, a new series past it
    is refused as cardinality, existing ones keep counting, and
    alice_metricsd_series_bytes shows the use (with workers, summed)."""
    cfg = os.path.join(TMP, "bytes.json")
    budget = 65536
    with open(cfg, "w") as f:
        f.write('{"limits": {"max_series_bytes": %d}}' % budget)
    for workers in ("1", "2"):
        with Daemon(args=["--config", cfg, "--workers", workers]) as d:
            pad = "x" * 500
            n = 300
            # one socket: with workers, one sender's lines go to one worker
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            dest = ("127.0.0.1", d.udp_port)
            for k in range(0, n, 10):
                sock.sendto("\n".join("big.calls:1|c|#id:%s%d" % (pad, i)
                                       for i in range(k, k + 10)).encode(), dest)
            d.wait_samples(n)
            m = d.metrics()
            used = sample_value(m, "alice_metricsd_series_bytes")
            held = sample_value(m, "alice_metricsd_series", family="big_calls_total")
            refused = sample_value(m, "alice_metricsd_samples_rejected_total",
                                   reason="cardinality")
            assert 0 < used <= budget, (workers, used)
            assert used > budget - 2 * 600, (workers, used)  # filled, to about a series
            assert held + refused == n and 60 < held < 130, (workers, held, refused)
            # a series already held keeps counting
            sock.sendto(("big.calls:4|c|#id:%s0" % pad).encode(), dest)
            sock.close()
            d.wait_samples(n + 1)
            m = d.metrics()
            assert sample_value(m, "big_calls_total", id=pad + "0") == 5.0, workers
            assert sample_value(m, "alice_metricsd_series_bytes") == used


def test_tag_dialects_events_and_service_checks():
    """InfluxDB, Librato and SignalFx tags land where DogStatsD's do; events
    and service checks are counted, never rejected; a dialect switched off
    in the config is a bad name again."""
    with Daemon() as d:
        d.send("dia.calls:1|c|#provider:openai\n"
               "dia.calls,provider=openai:2|c\n"
               "dia.calls#provider=openai:3|c\n"
               "dia.calls[provider=openai]:4|c\n"
               "dia.calls,provider=openai:1|c|#x:y\n"
               "_e{5,4}:title|text|#env:prod\n"
               "_sc|db.up|0\n"
               "dia.gauge:5|g|T1656581400")
        d.wait_samples(6)  # 5 metric lines + 1 rejected (two dialects)
        m = d.metrics()
        assert sample_value(m, "dia_calls_total", provider="openai") == 10.0, m
        assert sample_value(m, "dia_gauge") == 5.0, m
        assert sample_value(m, "alice_metricsd_samples_rejected_total", reason="bad_label") == 1
        assert sample_value(m, "alice_metricsd_events_total", kind="event") == 1.0, m
        assert sample_value(m, "alice_metricsd_events_total", kind="service_check") == 1.0, m
    cfg = os.path.join(TMP, "dialects.json")
    with open(cfg, "w") as f:
        f.write('{"tag_dialects": ["dogstatsd", "librato"]}')
    with Daemon(args=["--config", cfg]) as d:
        d.send("off.calls,provider=openai:2|c\non.calls#provider=x:1|c")
        d.wait_samples(2)
        m = d.metrics()
        assert sample_value(m, "alice_metricsd_samples_rejected_total", reason="bad_name") == 1
        assert sample_value(m, "on_calls_total", provider="x") == 1.0, m


run_tests(globals())
