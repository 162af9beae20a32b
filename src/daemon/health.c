#include "health.h"

#include <jansson.h>
#include <stdlib.h>

#include "am_config.h"

void am_health_render(am_buf_t *body, const am_health_t *h)
{
    const am_selfstats_t *st = h->ingest;
    uint64_t rejected = 0;
    for (int i = 1; i < AM_REASON_COUNT; i++)
        rejected += st->rejected[i];
    json_t *o =
        json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:{s:I, s:I}}", "status", "ok", "version",
                  AM_VERSION, "uptime_seconds", h->uptime_seconds, "families",
                  (json_int_t)h->families, "series", (json_int_t)h->series, "samples_total",
                  (json_int_t)st->samples, "samples_rejected_total", (json_int_t)rejected,
                  "datagrams_received_total", "udp", (json_int_t)st->datagrams[AM_TRANSPORT_UDP],
                  "unix", (json_int_t)st->datagrams[AM_TRANSPORT_UNIX]);
    if (o && st->nworkers > 1 && st->worker_datagrams) {
        json_t *per = json_array();
        for (unsigned i = 0; per && i < st->nworkers; i++)
            json_array_append_new(per, json_integer((json_int_t)st->worker_datagrams[i]));
        json_object_set_new(o, "workers", json_integer((json_int_t)st->nworkers));
        json_object_set_new(o, "worker_datagrams_received_total", per ? per : json_null());
    }
    am_health_put_json(body, o, JSON_COMPACT);
}

void am_health_put_json(am_buf_t *body, json_t *o, size_t flags)
{
    char *text = o ? json_dumps(o, flags) : NULL;
    if (text) {
        am_buf_puts(body, text);
        am_buf_putc(body, '\n');
    } else {
        body->failed = true;
    }
    free(text);
    json_decref(o);
}
