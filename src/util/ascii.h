/* ascii: case-insensitive matching of protocol tokens (HTTP header names,
 * media types, content codings) that never consults the C library's
 * locale: RFC 9110 tokens are ASCII, and tolower() under some locales
 * would fold other bytes too.
 *
 * Who calls: http.c (header names) and negotiate.c (Accept lists), on the
 * main loop; pure functions, safe from any thread. Header-only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static inline char am_ascii_lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Whether the n bytes at s (borrowed for the call, not NUL-terminated)
 * equal the NUL-terminated lit, ignoring ASCII case. */
static inline bool am_ascii_caseeq(const char *s, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (am_ascii_lower(s[i]) != am_ascii_lower(lit[i]))
            return false;
    }
    return true;
}
