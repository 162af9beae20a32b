/* push: Prometheus remote write from the daemon. Every interval it asks
 * the server for a /metrics text body (the same snapshot a scrape takes,
 * merged across workers, rendered in steps), encodes it in steps
 * (encode.h), queues the requests (queue.h) and POSTs them one at a time
 * over one keep-alive connection on the loop, plain or TLS (tls.h), with
 * basic auth or a bearer token. 2xx: sent. 5xx, 429, a timeout or a broken
 * connection: failed, retried after the backoff. Any other answer:
 * dropped. Nothing here ever waits on the network: ingest and scrapes go
 * on while a receiver is down, and the queue bounds the memory.
 *
 * At stop, the series of the last push get stale markers, and what is
 * queued is sent for at most the timeout; then push closes its handles and
 * frees itself.
 *
 * Who calls: server.c on the main loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "opts.h"

struct uv_loop_s;
typedef struct am_push am_push_t;

/* The server is asked for a text body of the registry as it is now, to be
 * handed back with am_push_deliver (also when it fails). */
typedef void (*am_push_want_fn)(void *ctx);

typedef struct am_push_stats {
    bool enabled;
    uint64_t sent, failed, dropped; /* samples */
    uint64_t queue_bytes;
    double last_longest_pause_seconds; /* the last push's longest hold on ingest */
} am_push_stats_t;

/* A push that is off until configured; loop and ctx borrowed until it has
 * freed itself (after am_push_stop). NULL when out of memory. */
am_push_t *am_push_new(struct uv_loop_s *loop, am_push_want_fn want, void *ctx)
    __attribute__((warn_unused_result));

/* Applies o (borrowed for the call; NULL or a NULL url: off): reads the
 * password and token files, loads TLS files. 0, or -EINVAL with a message
 * in why (whylen bytes): then the old settings stay. A changed target
 * takes effect with the next request; changed external labels first mark
 * the old series stale. */
int am_push_configure(am_push_t *p, const am_remote_opts_t *o, char *why, size_t whylen)
    __attribute__((warn_unused_result));

/* The body asked for (its bytes stolen; a failed buffer skips this push);
 * held_ns: the longest the snapshot held ingest; encoding_holds_ingest:
 * encoding runs on the ingest loop (one worker). */
void am_push_deliver(am_push_t *p, am_buf_t *body, uint64_t held_ns, bool encoding_holds_ingest);

void am_push_get_stats(const am_push_t *p, am_push_stats_t *st);

/* The final push (see above), then p frees itself. p is not to be used
 * after this call. */
void am_push_stop(am_push_t *p);
