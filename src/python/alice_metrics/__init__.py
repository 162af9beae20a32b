"""alice_metrics: prometheus_client's metric API, sent to the
alice-metrics daemon as StatsD lines.

    from alice_metrics import Counter, Gauge, Histogram, Summary, track_api_metrics

    jobs = Counter("alice_jobs_total", "Jobs run.", ["queue", "status"])
    jobs.labels(queue="default", status="success").inc()

Counter, Gauge, Histogram and Summary take prometheus_client's arguments
and have its methods (labels, inc, dec, set, observe, time, ...); nothing
is kept in the process: each call becomes one StatsD line, and the daemon
aggregates the lines of every process and serves /metrics.

The target comes from ALICE_METRICS_ADDR (127.0.0.1:8125,
udp://host:port, [::1]:8125, unix:///path/to.sock; default
udp://127.0.0.1:8125) or configure(addr=...). Lines are buffered and
sent in datagrams when 256 are waiting, every second (a daemon thread),
on flush(), at exit, before os.fork() and at the end of a multiprocessing
child. A send never blocks and never raises: a datagram the kernel does
not take at once is dropped and counted (stats()). A child of os.fork()
starts with an empty buffer; a child that leaves with os._exit() loses
what it buffered since the last send unless it calls flush() first.

A call the daemon would refuse raises ValueError where it is made: a bad
metric or label name, a wrong label count, a label value holding ',',
'|', CR, LF or NUL (the wire format cannot carry them) or longer than
1,024 UTF-8 bytes, a negative Counter.inc(). NaN and infinite values are
dropped and counted in stats()["invalid"].

Not here: prometheus_client's Info and Enum, registries, exposition
(generate_latest, start_http_server) and exemplars (accepted, ignored):
the daemon serves /metrics."""

from ._core import configure, flush, stats
from ._metrics import Counter, Gauge, Histogram, Summary
from .builtin import (api_request_cost_dollars, api_request_duration_seconds,
                      api_requests_total, asset_quality_score, assets_processed_total,
                      db_connections_active, db_query_duration_seconds, events_published_total,
                      provider_circuit_breaker_state, provider_error_rate,
                      provider_health_status, track_api_metrics)

__version__ = "0.1.0"

__all__ = [
    "Counter", "Gauge", "Histogram", "Summary", "track_api_metrics",
    "configure", "flush", "stats",
    "api_requests_total", "api_request_duration_seconds", "api_request_cost_dollars",
    "provider_health_status", "provider_circuit_breaker_state", "provider_error_rate",
    "db_connections_active", "db_query_duration_seconds", "assets_processed_total",
    "asset_quality_score", "events_published_total",
]
