"""The daemon's 11 built-in families, as module-level metrics with the
names, types and label names the daemon declares, and the
track_api_metrics decorator that feeds three of them."""

import functools
import inspect
import math
import numbers
import time

from ._metrics import Counter, Gauge, Histogram, Summary

# API
api_requests_total = Counter(
    "alice_api_requests_total", "Total number of API requests",
    ["provider", "model", "operation", "status"])
api_request_duration_seconds = Histogram(
    "alice_api_request_duration_seconds", "API request duration histogram",
    ["provider", "model", "operation"])
api_request_cost_dollars = Summary(
    "alice_api_request_cost_dollars", "API request cost summary",
    ["provider", "model"])

# Provider health
provider_health_status = Gauge(
    "alice_provider_health_status", "Provider health status gauge (1=healthy, 0=unhealthy)",
    ["provider"])
provider_circuit_breaker_state = Gauge(
    "alice_provider_circuit_breaker_state",
    "Circuit breaker state (0=closed, 1=open, 2=half-open)", ["provider"])
provider_error_rate = Gauge(
    "alice_provider_error_rate", "Provider error rate ratio", ["provider"])

# Database
db_connections_active = Gauge(
    "alice_db_connections_active", "Active database connections gauge")
db_query_duration_seconds = Histogram(
    "alice_db_query_duration_seconds", "Database query duration histogram", ["query_type"])

# Assets
assets_processed_total = Counter(
    "alice_assets_processed_total", "Total assets processed",
    ["media_type", "source", "status"])
asset_quality_score = Histogram(
    "alice_asset_quality_score", "Asset quality score distribution histogram",
    ["media_type", "quality_type"])

# Events
events_published_total = Counter(
    "alice_events_published_total", "Total events published", ["event_type"])

BUILTIN = (api_requests_total, api_request_duration_seconds, api_request_cost_dollars,
           provider_health_status, provider_circuit_breaker_state, provider_error_rate,
           db_connections_active, db_query_duration_seconds, assets_processed_total,
           asset_quality_score, events_published_total)


def _cost(result):
    """result.cost as a float when it is a finite number, else None."""
    cost = getattr(result, "cost", None)
    if isinstance(cost, bool) or not isinstance(cost, numbers.Number):
        return None
    try:
        cost = float(cost)
    except (TypeError, ValueError, OverflowError):  # complex, or a number float() refuses
        return None
    return cost if math.isfinite(cost) else None


def track_api_metrics(provider, model, operation):
    """Decorates a plain or `async def` function that calls an API. Each
    call observes its duration in seconds into
    alice_api_request_duration_seconds{provider,model,operation}, counts one
    request into alice_api_requests_total{provider,model,operation,status}
    with status "success" when it returns and "error" when it raises (any
    exception, cancellation included; the exception propagates), and, when
    the result has a numeric `cost` attribute, observes it into
    alice_api_request_cost_dollars{provider,model}.

    The label values are checked once, here (ValueError, as labels())."""
    duration = api_request_duration_seconds.labels(provider, model, operation)
    success = api_requests_total.labels(provider, model, operation, "success")
    error = api_requests_total.labels(provider, model, operation, "error")
    cost_summary = api_request_cost_dollars.labels(provider, model)

    def decorator(func):
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def tracked_async(*args, **kwargs):
                start = time.perf_counter()
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    duration.observe(max(time.perf_counter() - start, 0.0))
                    error.inc()
                    raise
                duration.observe(max(time.perf_counter() - start, 0.0))
                success.inc()
                cost = _cost(result)
                if cost is not None:
                    cost_summary.observe(cost)
                return result
            return tracked_async

        @functools.wraps(func)
        def tracked(*args, **kwargs):
            start = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException:
                duration.observe(max(time.perf_counter() - start, 0.0))
                error.inc()
                raise
            duration.observe(max(time.perf_counter() - start, 0.0))
            success.inc()
            cost = _cost(result)
            if cost is not None:
                cost_summary.observe(cost)
            return result
        return tracked

    return decorator
