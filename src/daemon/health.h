/* health: the body of GET /health, one line of JSON (jansson):
 *
 *   {"status":"ok","version":"0.1.0","uptime_seconds":12.5,"families":11,
 *    "series":3,"samples_total":10,"samples_rejected_total":0,
 *    "datagrams_received_total":{"udp":10,"unix":0}}
 *
 * plus "workers" and "worker_datagrams_received_total" (one count per
 * worker) when there are several ingest workers.
 *
 * Who calls: server.c, on the main loop, for every /health request, with
 * counters it has gathered (summed one worker at a time, no snapshot:
 * probes are frequent). No state, no locks. */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "buf.h"
#include "selfstats.h"

typedef struct am_health {
    double uptime_seconds;
    size_t families; /* distinct families over every worker */
    size_t series;   /* summed over workers (one fed by two workers counts twice) */
    /* Borrowed for the call: samples, rejected, datagrams and, when
     * nworkers > 1, worker_datagrams are read. */
    const am_selfstats_t *ingest;
} am_health_t;

/* Appends the JSON line to body. Out of memory (in jansson or in body)
 * leaves body failed (am_buf_failed), as every am_buf append does. */
void am_health_render(am_buf_t *body, const am_health_t *h);

/* Appends o as one line of JSON (json_dumps flags), and decrefs it (steals
 * o; NULL, or out of memory: body failed). For every JSON body. */
void am_health_put_json(am_buf_t *body, json_t *o, size_t flags);
