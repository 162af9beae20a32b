/* fmt: number and string formatting for the exposition formats.
 *
 * Who calls: expose.c (and tests), from any thread: pure functions. Input
 * bytes are borrowed for the call; output goes to the caller's buffer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define AM_FMT_DOUBLE_MAX 32

/* Writes v the way Python's prometheus_client floatToGoString does (shortest
 * round-trip digits, "1.0", "0.005", "1e-05", "+Inf", "-Inf", "NaN"), except
 * that positive values from 1e6 up to 1e16 always use Go's exponent form
 * ("1e+06", "1.5e+10"; Python would write "1e+010"). This is the one renderer
 * for `le` and sample values, kept forever: `le="5.0"` selectors depend on
 * it. Returns the length (< AM_FMT_DOUBLE_MAX); out, the caller's, gets a
 * NUL terminator. */
size_t am_fmt_double(double v, char out[AM_FMT_DOUBLE_MAX]);

/* Appends p[0, n) (borrowed for the call) to b, escaped for both formats:
 * \ -> \\, " -> \", LF -> \n. */
void am_fmt_label_value(am_buf_t *b, const char *p, size_t n);
/* The same into out (the caller's, room for 2 * n bytes; not
 * NUL-terminated); returns the length.
 * One pass, no calls: values are short, and a scrape runs this for every
 * label of every series. */
static inline size_t am_fmt_label_value_to(char *out, const char *p, size_t n)
{
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' || c == '"' || c == '\n') {
            *o++ = '\\';
            c = c == '\n' ? 'n' : c;
        }
        *o++ = c;
    }
    return (size_t)(o - out);
}

/* Appends HELP text p[0, n) (borrowed for the call) to b: 0.0.4 escapes \
 * and LF only; OpenMetrics also ". */
void am_fmt_help(am_buf_t *b, const char *p, size_t n, bool openmetrics);
