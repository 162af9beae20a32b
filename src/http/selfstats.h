/* selfstats: the daemon's own metrics (alice_metricsd_*) and the standard
 * process_* metrics read from /proc.
 *
 * Who calls: server.c and workers.c fill am_selfstats_t (a plain value
 * struct, copied around); scrape.c renders it, on the main loop. Each
 * worker's copy is guarded by that worker's lock (workers.h). */
#pragma once

#include <stdint.h>

#include "buf.h"
#include "expose.h"
#include "reasons.h"
#include "registry.h"

enum { AM_TRANSPORT_UDP = 0, AM_TRANSPORT_UNIX = 1, AM_TRANSPORT_COUNT = 2 };

typedef struct am_selfstats {
    uint64_t datagrams[AM_TRANSPORT_COUNT];
    uint64_t bytes[AM_TRANSPORT_COUNT];
    uint64_t truncated[AM_TRANSPORT_COUNT]; /* larger than the receive buffer */
    uint64_t receive_errors[AM_TRANSPORT_COUNT];
    uint64_t wakeups[AM_TRANSPORT_COUNT]; /* socket reads that found datagrams */
    uint64_t samples;                     /* lines accepted */
    uint64_t set_members;                 /* held, against limits.max_set_members */
    uint64_t series_bytes;                /* held, against limits.max_series_bytes */
    uint64_t rejected[AM_REASON_COUNT];   /* by reason; [AM_OK] unused */
    uint64_t events[2];                   /* DogStatsD events, service checks */
    uint64_t mapping_dropped;             /* lines a mapping's action: drop matched */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    uint64_t scrapes;
    double last_scrape_seconds;
    double last_scrape_longest_pause_seconds;      /* longest hold on ingest (see scrape.h) */
    uint64_t series_expired;                       /* series TTL */
    double last_expiry_longest_pause_seconds;      /* longest hold of the last sweep pass */
    uint64_t state_writes_ok, state_writes_failed; /* --state-file */
    double last_state_longest_pause_seconds;       /* longest copy step of the last write */
    /* remote write (written when rw_enabled): samples by result, queue */
    bool rw_enabled;
    uint64_t rw_sent, rw_failed, rw_dropped, rw_queue_bytes;
    double last_rw_longest_pause_seconds; /* the last push's snapshot and encoding */
    uint64_t http_requests;
    uint64_t http_bad_requests;
    uint64_t http_connections_rejected;
    uint64_t http_connections_shed;
    unsigned http_connections_open;
    double start_time;   /* unix seconds */
    const char *version; /* static (AM_VERSION) */
    /* Several ingest workers: datagrams each received (borrowed for the
     * render call), written as alice_metricsd_worker_datagrams_total{worker}.
     * nworkers <= 1: not written. */
    const uint64_t *worker_datagrams;
    unsigned nworkers;
} am_selfstats_t;

/* Adds src's ingest counters (datagrams, bytes, truncated, receive errors,
 * wake-ups, samples, rejected) into dst; src is only read. */
void am_selfstats_add_ingest(am_selfstats_t *dst, const am_selfstats_t *src);

/* Appends the alice_metricsd_* families to b: st's counters, and the
 * series and family counts read from r (st and r borrowed for the call). */
void am_selfstats_render(am_buf_t *b, const am_selfstats_t *st, const am_registry_t *r,
                         am_format_t fmt);

/* Appends process_* metrics (Linux /proc; silently skipped where missing). */
void am_selfstats_render_process(am_buf_t *b, am_format_t fmt);

/* Process start time in unix seconds, from /proc (0 if unknown). */
double am_process_start_time(void);
