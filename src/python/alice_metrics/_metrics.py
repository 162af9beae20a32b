"""Counter, Gauge, Histogram and Summary with prometheus_client's call
shapes, writing StatsD lines through _core.

A metric object is a parent; with label names, .labels(...) returns its
child for one label set, created once and cached (as prometheus_client
does), holding its line pre-formatted ("name:" + value + "|c|#k:v,...")
so that a call only formats the value and appends the line. Without label
names the metric object is its own only series: its inc/set/observe are
the child's methods themselves.

Everything the daemon would refuse is refused here, at the call site, with
ValueError (a programming error, as prometheus_client raises for a wrong
label name or count): a bad metric or label name, and a label value with a
character the wire format cannot carry."""

import functools
import inspect
import re
import threading
import time

from . import _core

NAME_MAX = 200  # bytes of a metric name on the wire (the daemon's limit)
LABEL_NAME_MAX = 100
LABEL_VALUE_MAX = 1024  # bytes of UTF-8
LABEL_VALUES_MAX = 8191  # bytes of a series' label values, one separator between them
LABELS_MAX = 32  # tags per line
RESERVED_PREFIXES = ("alice_metricsd_", "process_")  # the daemon's own metrics

_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# The wire has no escaping: ',' ends a tag, '|' a section, CR/LF a line;
# NUL makes the line unreadable.
_VALUE_RESERVED = {",": "','", "|": "'|'", "\n": "a line feed", "\r": "a carriage return",
                   "\0": "a NUL"}

INF = float("inf")
DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0, INF)


def _full_name(kind, name, namespace, subsystem, unit):
    """prometheus_client's name composition (a counter loses its _total)."""
    full = ""
    if namespace:
        full += namespace + "_"
    if subsystem:
        full += subsystem + "_"
    full += name
    if kind == "counter" and full.endswith("_total"):
        full = full[:-6]
    if unit and not full.endswith("_" + unit):
        full += "_" + unit
    return full


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        bad = ""
        if isinstance(name, str):
            for ch in name:
                if not (ch.isascii() and (ch.isalnum() or ch == "_")):
                    bad = " (%r is not accepted by the daemon: names are [a-zA-Z0-9_])" % ch
                    break
        raise ValueError("Invalid metric name: %r%s" % (name, bad))
    if len(name) > NAME_MAX:
        raise ValueError("Invalid metric name: %r is longer than %d bytes" % (name, NAME_MAX))
    for p in RESERVED_PREFIXES:
        if name.startswith(p):
            raise ValueError("Invalid metric name: %r (the prefix %s is the daemon's own)"
                             % (name, p))


def _check_labelnames(labelnames, reserved):
    names = tuple(labelnames)
    if len(names) > LABELS_MAX:
        raise ValueError("At most %d label names, not %d" % (LABELS_MAX, len(names)))
    for n in names:
        if not isinstance(n, str) or not _LABEL_RE.match(n) or len(n) > LABEL_NAME_MAX:
            raise ValueError("Invalid label metric name: %r" % (n,))
        if n.startswith("__") or n in reserved:
            raise ValueError("Reserved label metric name: " + n)
    if len(set(names)) != len(names):
        raise ValueError("Duplicate label names: %r" % (names,))
    return names


def _check_values(labelnames, values):
    total = len(values) - 1
    for n, v in zip(labelnames, values):
        for ch, what in _VALUE_RESERVED.items():
            if ch in v:
                raise ValueError("label %s=%r holds %s, which the StatsD wire format cannot "
                                 "carry in a tag value (',', '|', CR, LF and NUL are refused)"
                                 % (n, v, what))
        try:
            size = len(v.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("label %s=%r is not valid UTF-8 (a lone surrogate)" % (n, v)) from None
        if size > LABEL_VALUE_MAX:
            raise ValueError("label %s: value of %d bytes, at most %d"
                             % (n, size, LABEL_VALUE_MAX))
        total += size
    if total > LABEL_VALUES_MAX:
        raise ValueError("label values of %d bytes in all, at most %d" % (total, LABEL_VALUES_MAX))


# ---------------------------------------------------------------- helpers
class _Timer:
    """Observes (or sets) the seconds a block or call takes: a context
    manager and a decorator, for plain and async functions."""

    __slots__ = ("_metric", "_callback", "_start")

    def __init__(self, metric, callback):
        self._metric = metric
        self._callback = callback

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, typ, value, traceback):
        getattr(self._metric, self._callback)(max(time.perf_counter() - self._start, 0.0))

    def labels(self, *args, **kwargs):
        """Chooses the series at the end of the block (prometheus_client's
        `with h.time() as t: t.labels(...)`)."""
        self._metric = self._metric.labels(*args, **kwargs)

    def __call__(self, f):
        metric, callback = self._metric, self._callback
        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def timed_async(*args, **kwargs):
                with _Timer(metric, callback):
                    return await f(*args, **kwargs)
            return timed_async

        @functools.wraps(f)
        def timed(*args, **kwargs):
            with _Timer(metric, callback):
                return f(*args, **kwargs)
        return timed


class _InProgress:
    """Gauge.track_inprogress(): +1 on entry, -1 on exit."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge):
        self._gauge = gauge

    def __enter__(self):
        self._gauge.inc()

    def __exit__(self, typ, value, traceback):
        self._gauge.dec()

    def __call__(self, f):
        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def tracked_async(*args, **kwargs):
                with self:
                    return await f(*args, **kwargs)
            return tracked_async

        @functools.wraps(f)
        def tracked(*args, **kwargs):
            with self:
                return f(*args, **kwargs)
        return tracked


class _ExceptionCounter:
    """Counter.count_exceptions(): +1 when the block raises `exception`."""

    __slots__ = ("_counter", "_exception")

    def __init__(self, counter, exception):
        self._counter = counter
        self._exception = exception

    def __enter__(self):
        pass

    def __exit__(self, typ, value, traceback):
        if isinstance(value, self._exception):
            self._counter.inc()
        return False

    def __call__(self, f):
        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def counted_async(*args, **kwargs):
                with self:
                    return await f(*args, **kwargs)
            return counted_async

        @functools.wraps(f)
        def counted(*args, **kwargs):
            with self:
                return f(*args, **kwargs)
        return counted


class _ChildHelpers:
    __slots__ = ()

    def labels(self, *args, **kwargs):
        raise ValueError("a series already has labels set; can not chain calls to .labels()")


class _CounterHelpers:
    __slots__ = ()

    def count_exceptions(self, exception=Exception):
        """Counts the exceptions of type `exception` leaving a block or a call."""
        return _ExceptionCounter(self, exception)


class _GaugeHelpers:
    __slots__ = ()

    def set_to_current_time(self):
        """Sets the gauge to the current Unix time."""
        self.set(time.time())

    def track_inprogress(self):
        """Counts the blocks or calls in progress (+1 on entry, -1 on exit)."""
        return _InProgress(self)

    def time(self):
        """Sets the gauge to the seconds a block or call took."""
        return _Timer(self, "set")

    def set_function(self, f):
        """Calls f() every flush interval, in the sender's thread, and sets
        the gauge to its value (prometheus_client calls it at each scrape;
        no scrape reaches this process). An exception is counted in
        stats()["function_errors"]."""
        _core.register_function(self, f)


class _ObserveHelpers:
    __slots__ = ()

    def time(self):
        """Observes the seconds a block or call takes."""
        return _Timer(self, "observe")


class _CounterChild(_core.CounterLines, _CounterHelpers, _ChildHelpers):
    __slots__ = ()


class _GaugeChild(_core.GaugeLines, _GaugeHelpers, _ChildHelpers):
    __slots__ = ()


class _ObserveChild(_core.ObserveLines, _ObserveHelpers, _ChildHelpers):
    __slots__ = ()


# ---------------------------------------------------------------- parents
class _Metric:
    _type = ""
    _wire_type = ""
    _reserved = ()
    _child_class = None
    _methods = ()  # the child's methods a parent without labels takes as its own

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="",
                 registry=None, _labelvalues=None):
        # registry and _labelvalues are prometheus_client's; there is no
        # registry here (the daemon is it), so they are accepted and ignored.
        self._name = _full_name(self._type, name, namespace, subsystem, unit)
        self._wire_name = self._name + ("_total" if self._type == "counter" else "")
        _check_name(self._wire_name)
        self._documentation = documentation
        self._unit = unit
        self._labelnames = _check_labelnames(labelnames, self._reserved)
        self._lock = threading.Lock()
        self._children = {}  # label values (str) -> child
        self._by_args = {}  # positional label values as passed -> child
        self._by_kwargs = {}  # tuple(labelkwargs.items()) as passed -> child
        if not self._labelnames:
            child = self._make(())
            self._children[()] = child
            for m in self._methods:
                setattr(self, m, getattr(child, m))

    def __str__(self):
        return "%s:%s" % (self._type, self._name)

    def __repr__(self):
        return "%s.%s(%s)" % (type(self).__module__, type(self).__name__, self._name)

    def _make(self, values):
        tail = self._wire_type
        if values:
            tail += "|#" + ",".join(n + ":" + v for n, v in zip(self._labelnames, values))
        return self._child_class(self._wire_name + ":", tail)

    def labels(self, *labelvalues, **labelkwargs):
        """The series of one label set: values by position in label-name
        order, or by name. ValueError for a wrong name or count, or a value
        holding ',', '|', CR, LF or NUL, or longer than 1,024 UTF-8 bytes.
        Values are converted with str()."""
        if labelkwargs:
            if labelvalues:
                raise ValueError("Can't pass both *args and **kwargs")
            key = tuple(labelkwargs.items())
            try:
                child = self._by_kwargs.get(key)
            except TypeError:  # an unhashable value: str() below
                child = None
            if child is None:
                child = self._kwargs_miss(key, labelkwargs)
            return child
        try:
            child = self._by_args.get(labelvalues)
        except TypeError:
            child = None
        if child is None:
            child = self._args_miss(labelvalues)
        return child

    def _kwargs_miss(self, key, labelkwargs):
        if not self._labelnames:
            raise ValueError("No label names were set when constructing %s" % self)
        if sorted(labelkwargs) != sorted(self._labelnames):
            raise ValueError("Incorrect label names: %s takes %s, not %s"
                             % (self, ", ".join(self._labelnames), ", ".join(labelkwargs)))
        child = self._child(tuple(str(labelkwargs[n]) for n in self._labelnames))
        # Cached only for str values: 1, 1.0 and True are one key but three
        # label values.
        if all(type(v) is str for v in labelkwargs.values()):
            self._by_kwargs[key] = child
        return child

    def _args_miss(self, labelvalues):
        if not self._labelnames:
            raise ValueError("No label names were set when constructing %s" % self)
        if len(labelvalues) != len(self._labelnames):
            raise ValueError("Incorrect label count: %s takes %d (%s), not %d"
                             % (self, len(self._labelnames), ", ".join(self._labelnames),
                                len(labelvalues)))
        child = self._child(tuple(str(v) for v in labelvalues))
        if all(type(v) is str for v in labelvalues):
            self._by_args[labelvalues] = child
        return child

    def _child(self, values):
        with self._lock:
            child = self._children.get(values)
            if child is None:
                _check_values(self._labelnames, values)
                child = self._make(values)
                self._children[values] = child
            return child

    def remove(self, *labelvalues):
        """Forgets a label set in this process (the daemon keeps the
        series until its TTL, if any)."""
        if not self._labelnames:
            raise ValueError("No label names were set when constructing %s" % self)
        if len(labelvalues) != len(self._labelnames):
            raise ValueError("Incorrect label count (expected %d, got %s)"
                             % (len(self._labelnames), labelvalues))
        values = tuple(str(v) for v in labelvalues)
        with self._lock:
            del self._children[values]
            self._by_args = {}
            self._by_kwargs = {}

    def clear(self):
        """Forgets every label set in this process (see remove())."""
        if not self._labelnames:
            return
        with self._lock:
            self._children = {}
            self._by_args = {}
            self._by_kwargs = {}

    def _missing(self):
        raise ValueError("%s metric is missing label values" % self._type)


class Counter(_Metric, _CounterHelpers):
    """A counter: .inc(amount=1) with amount >= 0 (ValueError below 0).
    `Counter("x", ...)` and `Counter("x_total", ...)` both feed the
    family x_total, as in prometheus_client."""

    _type = "counter"
    _wire_type = "|c"
    _child_class = _CounterChild
    _methods = ("inc",)

    def inc(self, amount=1, exemplar=None):
        self._missing()


class Gauge(_Metric, _GaugeHelpers):
    """A gauge: .set(v), .inc(amount=1), .dec(amount=1), and the helpers
    set_to_current_time(), track_inprogress(), time(), set_function().
    multiprocess_mode is accepted and ignored: the daemon aggregates every
    process's lines."""

    _type = "gauge"
    _wire_type = "|g"
    _child_class = _GaugeChild
    _methods = ("set", "inc", "dec")

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="",
                 registry=None, _labelvalues=None, multiprocess_mode="all"):
        super().__init__(name, documentation, labelnames, namespace, subsystem, unit)

    def set(self, value):
        self._missing()

    def inc(self, amount=1):
        self._missing()

    def dec(self, amount=1):
        self._missing()


class Histogram(_Metric, _ObserveHelpers):
    """A histogram: .observe(v) and .time() (seconds). The buckets are the
    daemon's, from its catalog or config file; `buckets` is checked as
    prometheus_client checks it, then ignored."""

    _type = "histogram"
    _wire_type = "|h"
    _reserved = ("le",)
    _child_class = _ObserveChild
    _methods = ("observe",)
    DEFAULT_BUCKETS = DEFAULT_BUCKETS

    def __init__(self, name, documentation, labelnames=(), namespace="", subsystem="", unit="",
                 registry=None, _labelvalues=None, buckets=DEFAULT_BUCKETS):
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds and bounds[-1] != INF:
            bounds.append(INF)
        if len(bounds) < 2:
            raise ValueError("Must have at least two buckets")
        self._upper_bounds = bounds
        super().__init__(name, documentation, labelnames, namespace, subsystem, unit)

    def observe(self, amount, exemplar=None):
        self._missing()


class Summary(_Metric, _ObserveHelpers):
    """A summary: .observe(v) and .time() (seconds). The daemon keeps _sum
    and _count; a name it does not know as a summary (catalog or config)
    becomes a histogram with the default buckets."""

    _type = "summary"
    _wire_type = "|h"
    _reserved = ("quantile",)
    _child_class = _ObserveChild
    _methods = ("observe",)

    def observe(self, amount):
        self._missing()
