/* negotiate: Accept and Accept-Encoding to a format and an encoding (see
 * negotiate.h). Lists are scanned in place: nothing is allocated or
 * written. */
#include "negotiate.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ascii.h"

/* Case-insensitive match of [s, e) against lit. */
static bool span_eq(const char *s, const char *e, const char *lit)
{
    return am_ascii_caseeq(s, (size_t)(e - s), lit);
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_ows(**s))
        (*s)++;
    while (*e > *s && is_ows((*e)[-1]))
        (*e)--;
}

/* First sep at or after p outside a quoted-string, or end. */
static const char *scan_to(const char *p, const char *end, char sep)
{
    bool quoted = false;
    for (; p < end; p++) {
        if (quoted) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == '"')
                quoted = false;
        } else if (*p == '"') {
            quoted = true;
        } else if (*p == sep) {
            break;
        }
    }
    return p;
}

/* qvalue (RFC 9110 12.4.2) in thousandths, -1 when malformed. Lenient only
 * in accepting more than three decimals (truncated). */
static int parse_q(const char *s, const char *e)
{
    if (s < e && *s == '"' && e - s >= 2 && e[-1] == '"') {
        s++;
        e--;
    }
    if (s == e || (*s != '0' && *s != '1'))
        return -1;
    int q = (*s++ - '0') * 1000;
    if (s == e)
        return q;
    if (*s++ != '.')
        return -1;
    int scale = 100;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        q += (*s - '0') * scale;
        scale /= 10;
    }
    return q > 1000 ? -1 : q;
}

/* One element of a comma list: the token before the first ';' in [*ts, *te),
 * the q parameter (1000 when absent, -1 when malformed) and, when version is
 * not NULL, the span of a version parameter (NULL when absent). */
typedef struct list_elem {
    const char *ts, *te;
    int q;
    const char *vs, *ve;
} list_elem_t;

static void parse_elem(const char *s, const char *e, list_elem_t *out)
{
    const char *p = scan_to(s, e, ';');
    out->ts = s;
    out->te = p;
    trim(&out->ts, &out->te);
    out->q = 1000;
    out->vs = out->ve = NULL;
    while (p < e) {
        const char *ps = p + 1;
        p = scan_to(ps, e, ';');
        const char *eq = memchr(ps, '=', (size_t)(p - ps));
        if (!eq)
            continue;
        const char *ns = ps, *ne = eq, *vs = eq + 1, *ve = p;
        trim(&ns, &ne);
        trim(&vs, &ve);
        if (span_eq(ns, ne, "q")) {
            out->q = parse_q(vs, ve);
        } else if (span_eq(ns, ne, "version")) {
            if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
                vs++;
                ve--;
            }
            out->vs = vs;
            out->ve = ve;
        }
    }
}

static bool wants_openmetrics(const char *accept)
{
    if (!accept)
        return false;
    const char *p = accept, *end = accept + strlen(accept);
    int om_q = 0, text_q = 0; /* q = 0 is "not acceptable": never a winner */
    size_t om_pos = SIZE_MAX, text_pos = SIZE_MAX;
    for (size_t pos = 0; p < end; pos++) {
        const char *e = scan_to(p, end, ',');
        list_elem_t el;
        parse_elem(p, e, &el);
        p = e < end ? e + 1 : e;
        if (el.q < 0)
            continue; /* a malformed q: we cannot tell what was meant */
        if (span_eq(el.ts, el.te, "application/openmetrics-text")) {
            bool ok = !el.vs || span_eq(el.vs, el.ve, "1.0.0") || span_eq(el.vs, el.ve, "0.0.1");
            if (ok && el.q > om_q) {
                om_q = el.q;
                om_pos = pos;
            }
        } else if (span_eq(el.ts, el.te, "text/plain") || span_eq(el.ts, el.te, "text/*") ||
                   span_eq(el.ts, el.te, "*/*")) {
            if (el.q > text_q) {
                text_q = el.q;
                text_pos = pos;
            }
        }
    }
    return om_q > 0 && (om_q > text_q || (om_q == text_q && om_pos < text_pos));
}

static bool accepts_gzip(const char *accept_encoding)
{
    if (!accept_encoding)
        return false;
    const char *p = accept_encoding, *end = p + strlen(p);
    int gzip_q = -1, star_q = -1;
    while (p < end) {
        const char *e = scan_to(p, end, ',');
        list_elem_t el;
        parse_elem(p, e, &el);
        p = e < end ? e + 1 : e;
        if (el.q < 0)
            continue;
        if (span_eq(el.ts, el.te, "gzip") || span_eq(el.ts, el.te, "x-gzip")) {
            if (el.q > gzip_q)
                gzip_q = el.q;
        } else if (span_eq(el.ts, el.te, "*")) {
            if (el.q > star_q)
                star_q = el.q;
        }
    }
    /* "*" only speaks for codings not listed by name. */
    return gzip_q >= 0 ? gzip_q > 0 : star_q > 0;
}

void am_negotiate(const char *accept, const char *accept_encoding, am_negotiated_t *out)
{
    bool om = wants_openmetrics(accept);
    out->format = om ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
    out->content_type = om ? AM_CONTENT_TYPE_OPENMETRICS : AM_CONTENT_TYPE_TEXT;
    out->gzip = accepts_gzip(accept_encoding);
}
