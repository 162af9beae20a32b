#include "fmt.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shortest decimal digits of v (v finite, > 0): digits without leading or
 * trailing zeros into d, returns their count; *exp10 is the exponent of the
 * first digit (v = d[0].d[1..] * 10^exp10). */
static size_t shortest_digits(double v, char *d, int *exp10)
{
    char tmp[40];
    /* Normal doubles carry 15.95 digits, so 15 is the shortest length worth
     * trying first; subnormals have fewer (5e-324 is one digit). */
    for (int prec = v < DBL_MIN ? 0 : 14; prec <= 16; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec, v);
        if (prec == 16 || strtod(tmp, NULL) == v)
            break;
    }
    /* tmp = "d.ddddde[+-]XX" */
    size_t n = 0;
    const char *p = tmp;
    d[n++] = *p++;
    if (*p == '.')
        p++;
    while (*p >= '0' && *p <= '9')
        d[n++] = *p++;
    *exp10 = atoi(p + 1);
    while (n > 1 && d[n - 1] == '0')
        n--;
    return n;
}

static size_t put_exp_form(char *out, size_t o, const char *d, size_t n, int exp10)
{
    out[o++] = d[0];
    if (n > 1) {
        out[o++] = '.';
        memcpy(out + o, d + 1, n - 1);
        o += n - 1;
    }
    int w = snprintf(out + o, AM_FMT_DOUBLE_MAX - o, "e%c%02d", exp10 < 0 ? '-' : '+',
                     exp10 < 0 ? -exp10 : exp10);
    return o + (size_t)w;
}

size_t am_fmt_double(double v, char out[AM_FMT_DOUBLE_MAX])
{
    if (isnan(v))
        return (size_t)snprintf(out, AM_FMT_DOUBLE_MAX, "NaN");
    if (isinf(v))
        return (size_t)snprintf(out, AM_FMT_DOUBLE_MAX, v > 0 ? "+Inf" : "-Inf");
    /* Fast path: small integers, the common case for counters and buckets
     * (a scrape formats millions of them: no snprintf here). */
    if (v > -1e6 && v < 1e6 && v == (double)(int64_t)v) {
        char tmp[8];
        size_t o = 0, k = 0;
        if (v < 0 || (v == 0 && signbit(v)))
            out[o++] = '-';
        uint32_t u = (uint32_t)(v < 0 ? -v : v);
        do {
            tmp[k++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        while (k)
            out[o++] = tmp[--k];
        out[o++] = '.';
        out[o++] = '0';
        out[o] = '\0';
        return o;
    }
    size_t o = 0;
    double a = v;
    if (v < 0) {
        out[o++] = '-';
        a = -v;
    }
    char d[24];
    int e;
    size_t n = shortest_digits(a, d, &e);
    if ((v > 0 && e >= 6 && e < 16) || e < -4 || e >= 16) {
        o = put_exp_form(out, o, d, n, e);
    } else if (e >= 0) {
        /* Fixed: integer part is d[0..e], padded with zeros. */
        for (int i = 0; i <= e; i++)
            out[o++] = (size_t)i < n ? d[i] : '0';
        out[o++] = '.';
        if ((size_t)e + 1 < n) {
            memcpy(out + o, d + e + 1, n - (size_t)e - 1);
            o += n - (size_t)e - 1;
        } else {
            out[o++] = '0';
        }
    } else {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = -1; i > e; i--)
            out[o++] = '0';
        memcpy(out + o, d, n);
        o += n;
    }
    assert(o < AM_FMT_DOUBLE_MAX); /* at most 17 digits, a sign, a point and e-308 */
    out[o] = '\0';
    return o;
}

void am_fmt_label_value(am_buf_t *b, const char *p, size_t n)
{
    if (n > SIZE_MAX / 4) {
        b->failed = true;
        return;
    }
    if (!am_buf_reserve(b, 2 * n))
        return;
    b->len += am_fmt_label_value_to(b->data + b->len, p, n);
    b->data[b->len] = '\0';
}

void am_fmt_help(am_buf_t *b, const char *p, size_t n, bool openmetrics)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;
        if (p[i] == '\\')
            esc = "\\\\";
        else if (p[i] == '\n')
            esc = "\\n";
        else if (p[i] == '"' && openmetrics)
            esc = "\\\"";
        else
            continue;
        am_buf_append(b, p + run, i - run);
        am_buf_append(b, esc, 2);
        run = i + 1;
    }
    am_buf_append(b, p + run, n - run);
}
