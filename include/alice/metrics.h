/* alice/metrics.h: the alice-metrics C client library (libalice).
 *
 * A worker emits StatsD lines to the alice-metrics daemon without ever
 * waiting for it: lines are written into an in-process datagram buffer and
 * sent on a non-blocking socket when the next line would not fit, on
 * alice_flush(), on alice_close(), and every flush interval. A datagram the
 * kernel will not take at once (socket buffer full, daemon absent) is
 * dropped and counted (alice_get_stats()); a metrics call never blocks on
 * the daemon and never fails the caller's work.
 *
 *     alice_client *c;
 *     if (alice_open(&c, NULL, 0) != 0)       // ALICE_METRICS_ADDR or udp://127.0.0.1:8125
 *         c = NULL;                           // every call accepts NULL and does nothing
 *     alice_counter(c, "alice_jobs_total", 1,
 *                   ALICE_LABELS({"queue", "default"}, {"status", "success"}));
 *     alice_histogram(c, "alice_job_duration_seconds", 0.25, ALICE_LABELS({"queue", "default"}));
 *     alice_close(c);                         // flushes, then frees
 *
 * Thread-safety: a client may be shared by any number of threads. Each call
 * takes the client's mutex for the time it formats one line into the buffer
 * (tens of nanoseconds) plus, when the buffer is full or the interval is due,
 * one non-blocking send(). With ALICE_UNLOCKED the mutex is skipped and the
 * caller must serialize every call on that client itself.
 *
 * Fork: a client belongs to the process that opened it. A child created by
 * fork() must neither use nor close its parent's clients (the flusher thread
 * does not exist in the child); it opens its own.
 *
 * Names, labels and values are checked with the daemon's own line parser
 * before they are buffered: a call the daemon would reject returns -EINVAL
 * and is counted in alice_stats.invalid, nothing is sent. Label keys use
 * [a-zA-Z0-9_] ('.' and '-' are mapped to '_' by the daemon); label values
 * are UTF-8 without ',', '|', CR or LF (the wire format reserves them).
 *
 * Status convention: 0 = done, a positive ALICE_* value = an expected
 * outcome, a negative errno value = failure. */
#ifndef ALICE_METRICS_H
#define ALICE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ALICE_EXPORT      __attribute__((visibility("default")))
#define ALICE_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define ALICE_EXPORT
#define ALICE_WARN_UNUSED
#endif

/* Opaque; created by alice_open(), freed by alice_close(). */
typedef struct alice_client alice_client;

/* One label. Both strings are borrowed for the duration of the call only
 * (they are copied into the datagram before the call returns). */
typedef struct alice_label {
    const char *key;
    const char *value;
} alice_label;

#ifndef __cplusplus
/* ALICE_LABELS({"k", "v"}, {"k2", "v2"}) expands to the two label arguments
 * (array, count) of the calls below, as a C99 compound literal. C only. */
#define ALICE_LABELS(...)                                                                          \
    ((const alice_label[]){__VA_ARGS__}),                                                          \
        (sizeof((const alice_label[]){__VA_ARGS__}) / sizeof(alice_label))
#endif

/* Flags for alice_options.flags / alice_open(). */
enum {
    /* Aggregate counters and gauges in process: N increments of one series
     * become one line per flush interval (for hot loops). Histograms, timers
     * and sets are buffered as lines as usual. */
    ALICE_AGGREGATE = 1u << 0,
    /* No flusher thread: the interval is checked by the metric calls
     * themselves, so an idle process sends nothing until its next call,
     * alice_flush() or alice_close(). */
    ALICE_NO_THREAD = 1u << 1,
    /* No interval at all: send only when the buffer is full, on alice_flush()
     * and on alice_close(). Implies ALICE_NO_THREAD. */
    ALICE_MANUAL_FLUSH = 1u << 2,
    /* No mutex: the caller serializes all calls on this client. Implies
     * ALICE_NO_THREAD (the interval is then checked by the calls). */
    ALICE_UNLOCKED = 1u << 3,
};

/* Expected (positive) outcomes. */
enum {
    /* alice_flush()/alice_close(): at least one datagram could not be handed
     * to the kernel (daemon absent, socket buffer full) and was dropped;
     * alice_stats counts it and keeps its errno in last_error. */
    ALICE_DROPPED = 1,
};

typedef struct alice_options {
    size_t struct_size;         /* sizeof(alice_options): lets later versions add fields */
    unsigned flags;             /* ALICE_* flags above */
    unsigned flush_interval_ms; /* 0 = 1000 */
    size_t max_datagram;        /* bytes per datagram; 0 = 8192 (UDP) or 32768 (Unix
                                   socket); at most 65507 (UDP) / 65536 */
    size_t max_keys;            /* series remembered, 0 = 10000: a known series skips the
                                   parser and, with ALICE_AGGREGATE, is aggregated; further
                                   series are parsed on every call and sent as lines */
} alice_options;

#define ALICE_OPTIONS_INIT                                                                         \
    {                                                                                              \
        sizeof(alice_options), 0, 0, 0, 0                                                          \
    }

/* Opens a client on addr: "host:port", "udp://host:port" (IPv6 as
 * "[::1]:8125"), "unix:///path/to.sock"; NULL means $ALICE_METRICS_ADDR,
 * or udp://127.0.0.1:8125 when that is unset or empty. addr is borrowed
 * for the call. A host name is resolved here, once (getaddrinfo may block
 * on DNS: pass a numeric address to avoid it); the calls never resolve.
 * A daemon that is not running is not an error: datagrams are dropped until
 * it is (a Unix socket is reconnected at the next flush).
 * On success *out is a client owned by the caller until alice_close().
 * Returns 0; -EINVAL for a malformed address or options; -EADDRNOTAVAIL
 * when the host does not resolve; -ENOMEM; another negative errno from
 * socket(2) or pthread_create(3). On failure *out is NULL. */
ALICE_EXPORT ALICE_WARN_UNUSED int alice_open(alice_client **out, const char *addr, unsigned flags);

/* alice_open() with options. opts is borrowed for the call; NULL means
 * ALICE_OPTIONS_INIT. Returns as alice_open(); -EINVAL also when
 * opts->struct_size is too small or max_datagram is out of range. */
ALICE_EXPORT ALICE_WARN_UNUSED int alice_open_opts(alice_client **out, const char *addr,
                                                   const alice_options *opts);

/* Sends whatever is buffered or aggregated, then stops the flusher thread,
 * closes the socket and frees the client (c is invalid afterwards; steals c).
 * NULL is accepted (returns 0). Returns 0, or ALICE_DROPPED when the final
 * datagrams were dropped. */
ALICE_EXPORT int alice_close(alice_client *c);

/* Sends whatever is buffered or aggregated now, without blocking.
 * Returns 0 when everything was handed to the kernel (or nothing was
 * pending); ALICE_DROPPED when a datagram was dropped; -EBADF for NULL. */
ALICE_EXPORT int alice_flush(alice_client *c);

/* The metric calls. name is the StatsD name ('.' and '-' become '_' in
 * Prometheus; a counter gets "_total" appended by the daemon if missing).
 * name, labels and the strings they point to are borrowed for the call.
 * labels may be NULL when nlabels is 0. Every call returns:
 *   0        buffered (or aggregated); sent later as described above
 *   -EINVAL  the daemon would reject it (name, label, value: NaN/Inf, a
 *            negative counter increment); nothing buffered, counted invalid
 *   -EMSGSIZE the line is longer than max_datagram; counted invalid
 *   -EBADF   c is NULL; nothing done
 * They deliberately lack warn_unused_result: fire-and-forget is the point. */

/* Counter: adds value (>= 0) to the series. */
ALICE_EXPORT int alice_counter(alice_client *c, const char *name, double value,
                               const alice_label *labels, size_t nlabels);
/* Gauge set: the series becomes value (negative values are sent as the
 * StatsD pair "name:0|g" + "name:-5|g" in one datagram). */
ALICE_EXPORT int alice_gauge(alice_client *c, const char *name, double value,
                             const alice_label *labels, size_t nlabels);
/* Gauge delta: adds delta (either sign) to the series ("+3" / "-3"). */
ALICE_EXPORT int alice_gauge_add(alice_client *c, const char *name, double delta,
                                 const alice_label *labels, size_t nlabels);
/* Histogram observation, value taken as is (type h). */
ALICE_EXPORT int alice_histogram(alice_client *c, const char *name, double value,
                                 const alice_label *labels, size_t nlabels);
/* Timer in milliseconds (type ms): the daemon observes ms / 1000 seconds. */
ALICE_EXPORT int alice_timer_ms(alice_client *c, const char *name, double ms,
                                const alice_label *labels, size_t nlabels);
/* Set: member joins the series' set of distinct values (type s). member is
 * borrowed for the call; it may not contain '|', CR or LF. */
ALICE_EXPORT int alice_set(alice_client *c, const char *name, const char *member,
                           const alice_label *labels, size_t nlabels);

typedef struct alice_stats {
    uint64_t calls;             /* metric calls accepted (buffered or aggregated) */
    uint64_t invalid;           /* metric calls refused (-EINVAL, -EMSGSIZE) */
    uint64_t datagrams_sent;    /* datagrams the kernel took */
    uint64_t datagrams_dropped; /* datagrams it did not take: dropped */
    uint64_t lines_sent;        /* StatsD lines inside the datagrams sent */
    uint64_t lines_dropped;     /* StatsD lines inside the datagrams dropped */
    uint64_t bytes_sent;
    int last_error; /* errno of the latest drop, 0 if none */
} alice_stats;

/* Copies the client's counters into *out (owned by the caller). Over UDP a
 * datagram to an absent daemon counts as dropped when the host answers with
 * "port unreachable" before the next send (always so on loopback).
 * Returns 0, or -EBADF for a NULL client or out. */
ALICE_EXPORT int alice_get_stats(alice_client *c, alice_stats *out);

/* A static string describing a status returned by this library (0,
 * ALICE_DROPPED, or the negative errno values listed above). Never NULL. */
ALICE_EXPORT const char *alice_strerror(int status);

/* The library version, e.g. "0.1.0" (static string). */
ALICE_EXPORT const char *alice_version(void);

#ifdef __cplusplus
}
#endif

#endif /* ALICE_METRICS_H */
