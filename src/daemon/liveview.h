/* liveview: GET /api/v1/families and the table of GET /.
 *
 * What: per family its type, series, lines accepted per second over the
 * last minute, lines rejected by reason and its top label values by series
 * count, from the counts the registries keep as lines come (famstats.c):
 * a read scans families and tracked values, never series. The rate comes
 * from a once-per-second timer that samples every family's accepted-line
 * total into a ring of 61 samples: lines/s = (total now - total 60 s ago)
 * / 60, where a family younger than that (or a daemon) counts from 0.
 *
 * With several workers each worker's registry is read in turn (that
 * worker held) for its lines and rejects, summed; series and label value
 * counts come from the family directory, which counts a series once
 * however many workers hold it (as /metrics shows it).
 *
 * JSON (one line):
 *   {"window_seconds":60,
 *    "families":[{"name":"alice_api_requests_total","type":"counter",
 *      "series":3,"lines_per_second":0.05,"lines_total":3,
 *      "rejects_total":1,"rejects":{"cardinality":1},
 *      "top_label_values":{"provider":[{"value":"openai","series":2},...]}},
 *      ...],
 *    "rejects_without_family":{"syntax":2},
 *    "senders":[{"pid":42,"pid_visible":true,"uid":0,"process":"app",
 *      "datagrams":1,"lines":3,"rejected":0,"bytes":60,
 *      "first_seen_seconds_ago":5,"last_seen_seconds_ago":5},...],
 *    "senders_evicted":0}
 * senders: the Unix socket's (senders.h), copied out of worker 0 held,
 * most lines first;
 * families sorted by lines_per_second, then series, then rejects_total
 * (descending), then name; "rejects" objects list the reasons with a
 * count; at most AM_LIVEVIEW_TOP values per label.
 *
 * Who calls: server.c, on the main thread. */
#pragma once

#include <uv.h>

#include "buf.h"
#include "workers.h"

#define AM_LIVEVIEW_TOP      10 /* values per label in the JSON */
#define AM_LIVEVIEW_HTML_TOP 3  /* values per label on the page */

typedef struct am_liveview am_liveview_t;

/* Starts the sampling timer on loop; ws is borrowed and must outlive the
 * timer. *out is owned by the caller: am_liveview_close. 0, -ENOMEM, or a
 * libuv error. */
int am_liveview_start(uv_loop_t *loop, am_workers_t *ws, am_liveview_t **out)
    __attribute__((warn_unused_result));

/* Stops the timer; lv is freed once the loop has closed it. */
void am_liveview_close(am_liveview_t *lv);

/* Appends the JSON (html false) or the page's table (html true: a
 * fragment of plain HTML, no script) to body. Out of memory leaves body
 * failed (am_buf_failed). */
void am_liveview_render(am_liveview_t *lv, am_buf_t *body, bool html);
