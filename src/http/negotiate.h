/* negotiate: how a /metrics answer is written, decided from the request's
 * Accept and Accept-Encoding headers (RFC 9110 12.5: q-values, ties to the
 * range listed first, q=0 as "not acceptable"). The one place that decides
 * the format (Prometheus text 0.0.4 or OpenMetrics 1.0.0) and whether the
 * body is gzipped; http.c only carries the headers in and the answer out.
 *
 * Who calls: server.c, once per /metrics request, on the main loop. Pure
 * functions: no state, safe from any thread. */
#pragma once

#include <stdbool.h>

#include "expose.h"

typedef struct am_negotiated {
    am_format_t format;
    const char *content_type; /* static: AM_CONTENT_TYPE_TEXT or _OPENMETRICS */
    bool gzip;                /* gzip the body (Content-Encoding: gzip) */
} am_negotiated_t;

/* Decides for one request. accept and accept_encoding are the header
 * values (borrowed for the call, NUL-terminated; NULL when absent; a
 * repeated header joined into one comma list).
 *
 * Format: OpenMetrics when Accept prefers application/openmetrics-text
 * (version 1.0.0, 0.0.1 or none) over text/plain and the wildcard ranges
 * that cover text, by q-value, ties going to the range listed first; else
 * text 0.0.4 (also for a NULL, empty or unknown Accept). A malformed q
 * drops its range.
 * gzip: Accept-Encoding allows gzip (or x-gzip) with q > 0, or, when gzip
 * is not named, allows * with q > 0. */
void am_negotiate(const char *accept, const char *accept_encoding, am_negotiated_t *out);
