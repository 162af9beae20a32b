/* expiry: schedules the series TTL sweep on the main loop.
 *
 * A pass sweeps every worker's registry in steps (am_workers_expire_step);
 * a pass starts every AM_EXPIRY_PASS_MS while any family has a TTL, so a
 * series goes well within a second after its TTL. Each loop turn runs steps
 * for at most AM_EXPIRY_SLICE_NS, then lets the loop receive and serve:
 * how long ingest waited on expiry is measured per pass.
 *
 * Who calls: server.c, on the main thread. The struct is the caller's (it
 * holds a libuv handle: close it with am_expiry_close, free it after the
 * loop has run its close callback). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "workers.h"

#define AM_EXPIRY_PASS_MS  250
#define AM_EXPIRY_SLICE_NS 1000000 /* one loop turn's share, 1 ms */

typedef struct am_expiry {
    uv_timer_t timer;
    am_workers_t *workers; /* borrowed: outlives the timer */
    /* borrowed, may be NULL: while it says true the sweep waits (a state
     * file copy holds cursors into the series lists) */
    bool (*hold)(const void *ctx);
    const void *hold_ctx;
    bool in_pass;
    uint64_t pass_started_ms;  /* uv_now of the pass's first step */
    uint64_t pass_longest_ns;  /* the longest turn of the pass in progress */
    uint64_t expired;          /* series expired since start */
    double last_longest_pause; /* seconds: the longest turn of the last pass */
} am_expiry_t;

/* Starts the sweep timer on loop. 0 or a libuv error. */
int am_expiry_start(uv_loop_t *loop, am_workers_t *ws, am_expiry_t *e)
    __attribute__((warn_unused_result));
/* Stops and closes the timer (its memory must live until the loop has
 * closed it: the server's lifetime). */
void am_expiry_close(am_expiry_t *e);
