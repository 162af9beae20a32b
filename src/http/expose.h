/* expose: renders families into the Prometheus text format 0.0.4 or
 * OpenMetrics 1.0.0. The caller's single-threaded loop makes one call one
 * consistent snapshot.
 *
 * Who calls: scrape.c and selfstats.c on the loop that owns the registry
 * (or its private copy). No state. Every pointer argument is borrowed for
 * the call; output is appended to the caller's buffer b (a failed
 * am_buf_t reports out of memory). */
#pragma once

#include <stdbool.h>

#include "buf.h"
#include "registry.h"

typedef enum am_format {
    AM_FORMAT_TEXT,        /* text/plain; version=0.0.4 */
    AM_FORMAT_OPENMETRICS, /* application/openmetrics-text; version=1.0.0 */
} am_format_t;

/* Static strings: the Content-Type of each format. */
#define AM_CONTENT_TYPE_TEXT        "text/plain; version=0.0.4; charset=utf-8"
#define AM_CONTENT_TYPE_OPENMETRICS "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* Every family of r (read only), with HELP and TYPE even when it has no
 * series yet. */
void am_expose_registry(am_buf_t *b, const am_registry_t *r, am_format_t fmt);
/* One family (f read only), HELP and TYPE first. lb is the caller's
 * scratch for label text (owned by the caller), reused from call to call. */
void am_expose_family(am_buf_t *b, am_buf_t *lb, const am_family_t *f, am_format_t fmt);

/* Where a family's rendering stopped (am_expose_family_part); zeroed
 * before the first part. next is borrowed from the family and valid only
 * while the family does not change. */
typedef struct am_expose_cursor {
    const am_series_t *next; /* the next series to render; NULL: none left */
    bool begun;              /* HELP and TYPE are out */
} am_expose_cursor_t;
/* Renders f from cur on, stopping at a series boundary once b has grown by
 * max_bytes or more (a large family in parts between loop turns). true
 * when f is complete (or b failed). */
bool am_expose_family_part(am_buf_t *b, am_buf_t *lb, const am_family_t *f, am_format_t fmt,
                           am_expose_cursor_t *cur, size_t max_bytes);

/* Primitives, also used for the self-metrics. `name` is the family name as
 * 0.0.4 writes it (counters end in _total; OpenMetrics drops that suffix in
 * HELP/TYPE). */
void am_expose_family_header(am_buf_t *b, const char *name, const char *help, am_family_type_t type,
                             am_format_t fmt);
/* One sample line: name, optional label pairs (key, value)..., value.
 * labels (2 * nlabels strings, borrowed for the call) may be NULL when
 * nlabels is 0. */
void am_expose_sample(am_buf_t *b, const char *name, const char *const *labels, size_t nlabels,
                      double value);
/* "# EOF\n" for OpenMetrics, nothing for 0.0.4. */
void am_expose_finish(am_buf_t *b, am_format_t fmt);
