#include "expose.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fmt.h"

static void put_double(am_buf_t *b, double v)
{
    char tmp[AM_FMT_DOUBLE_MAX];
    size_t n = am_fmt_double(v, tmp);
    am_buf_append(b, tmp, n);
}

void am_expose_family_header(am_buf_t *b, const char *name, const char *help, am_family_type_t type,
                             am_format_t fmt)
{
    size_t nlen = strlen(name);
    bool om = fmt == AM_FORMAT_OPENMETRICS;
    /* OpenMetrics names the counter family without _total; 0.0.4 names
     * the sample. */
    if (om && type == AM_FAMILY_COUNTER && nlen > 6 && strcmp(name + nlen - 6, "_total") == 0)
        nlen -= 6;
    am_buf_append(b, "# HELP ", 7);
    am_buf_append(b, name, nlen);
    am_buf_putc(b, ' ');
    am_fmt_help(b, help, strlen(help), om);
    am_buf_append(b, "\n# TYPE ", 8);
    am_buf_append(b, name, nlen);
    am_buf_putc(b, ' ');
    am_buf_puts(b, am_family_type_name(type));
    am_buf_putc(b, '\n');
}

void am_expose_sample(am_buf_t *b, const char *name, const char *const *labels, size_t nlabels,
                      double value)
{
    am_buf_puts(b, name);
    if (nlabels) {
        am_buf_putc(b, '{');
        for (size_t i = 0; i < nlabels; i++) {
            if (i)
                am_buf_putc(b, ',');
            am_buf_puts(b, labels[2 * i]);
            am_buf_append(b, "=\"", 2);
            am_fmt_label_value(b, labels[2 * i + 1], strlen(labels[2 * i + 1]));
            am_buf_putc(b, '"');
        }
        am_buf_putc(b, '}');
    }
    am_buf_putc(b, ' ');
    put_double(b, value);
    am_buf_putc(b, '\n');
}

void am_expose_finish(am_buf_t *b, am_format_t fmt)
{
    if (fmt == AM_FORMAT_OPENMETRICS)
        am_buf_append(b, "# EOF\n", 6);
}

/* Renders `k1="v1",k2="v2"` of a series into lb (reused across series), with
 * one reservation for the worst case (every value byte escaped): this runs
 * for every series of every scrape. names_len is the sum of the label
 * names' lengths. */
static void render_labels(am_buf_t *lb, const am_family_def_t *def, const size_t *name_len,
                          size_t names_len, const char *key, size_t klen)
{
    am_buf_reset(lb);
    if (!am_buf_reserve(lb, names_len + 4 * def->nlabels + 2 * klen))
        return;
    char *o = lb->data;
    const char *p = key, *end = key + klen;
    for (size_t i = 0; i < def->nlabels; i++) {
        size_t vn = 0; /* up to its NUL: values are short, a loop beats a call */
        while (p + vn < end && p[vn])
            vn++;
        /* An open (auto-created) family writes the labels a series has; a
         * declared one writes every label, empty or not. Prometheus reads
         * both alike: an empty label is an absent one. */
        if (vn == 0 && def->open_labels) {
            p += p + vn < end;
            continue;
        }
        if (o != lb->data)
            *o++ = ',';
        memcpy(o, def->labels[i], name_len[i]);
        o += name_len[i];
        *o++ = '=';
        *o++ = '"';
        o += am_fmt_label_value_to(o, p, vn);
        *o++ = '"';
        p += vn + (p + vn < end);
    }
    lb->len = (size_t)(o - lb->data);
    lb->data[lb->len] = '\0';
}

/* What every sample line of one family shares, computed once per scrape. */
typedef struct line_ctx {
    am_buf_t *b;
    const char *name;
    size_t name_len;
    const am_buf_t *lb; /* the current series' labels */
} line_ctx_t;

/* name[suffix]{labels[,extra]} value\n, with one reservation per line:
 * this is the loop a 1M-series scrape runs 1M+ times. */
static void put_line(const line_ctx_t *c, const char *suffix, size_t suffix_len, const char *extra,
                     size_t extra_len, double v)
{
    am_buf_t *b = c->b;
    size_t lbl = c->lb->len;
    if (!am_buf_reserve(b, c->name_len + suffix_len + lbl + extra_len + 4 + AM_FMT_DOUBLE_MAX))
        return;
    char *o = b->data + b->len;
    memcpy(o, c->name, c->name_len);
    o += c->name_len;
    memcpy(o, suffix, suffix_len);
    o += suffix_len;
    if (lbl || extra_len) {
        *o++ = '{';
        if (lbl) { /* a label-less series never allocated its label buffer */
            memcpy(o, c->lb->data, lbl);
            o += lbl;
        }
        if (extra_len) {
            if (lbl)
                *o++ = ',';
            memcpy(o, extra, extra_len);
            o += extra_len;
        }
        *o++ = '}';
    }
    *o++ = ' ';
    o += am_fmt_double(v, o);
    *o++ = '\n';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

typedef struct le_label {
    char text[AM_FMT_DOUBLE_MAX + 8]; /* le="0.005" */
    size_t len;
} le_label_t;

static void render_histogram(const line_ctx_t *c, const am_family_def_t *def, const le_label_t *les,
                             const double *v, bool om)
{
    double count = v[0];
    double cum = 0;
    for (size_t i = 0; i < def->nbuckets; i++) {
        cum += v[2 + i];
        /* Float sums of 1/rate weights may pass the total by an ulp. */
        double n = cum > count ? count : cum;
        put_line(c, "_bucket", 7, les[i].text, les[i].len, om ? round(n) : n);
    }
    put_line(c, "_bucket", 7, "le=\"+Inf\"", 9, om ? round(count) : count);
    /* OpenMetrics: a sum is a counter, so it must not be negative, and a
     * histogram with negative bounds must not have one; _count goes with
     * _sum. There the +Inf bucket alone carries the count. */
    if (!om || (v[1] >= 0 && !(def->nbuckets && def->buckets[0] < 0))) {
        put_line(c, "_sum", 4, NULL, 0, v[1]);
        put_line(c, "_count", 6, NULL, 0, om ? round(count) : count);
    }
}

bool am_expose_family_part(am_buf_t *b, am_buf_t *lb, const am_family_t *f, am_format_t fmt,
                           am_expose_cursor_t *cur, size_t max_bytes)
{
    bool om = fmt == AM_FORMAT_OPENMETRICS;
    le_label_t les[AM_MAX_BUCKETS];
    size_t label_len[AM_MAX_LABELS];
    const am_family_def_t *def = am_family_def(f);
    size_t start = b->len;
    if (!cur->begun) {
        am_expose_family_header(b, def->name, def->help, def->type, fmt);
        cur->next = am_family_first_series(f);
        cur->begun = true;
    }
    size_t names_len = 0;
    for (size_t i = 0; i < def->nlabels; i++) {
        label_len[i] = strlen(def->labels[i]);
        names_len += label_len[i];
    }
    for (size_t i = 0; def->type == AM_FAMILY_HISTOGRAM && i < def->nbuckets; i++) {
        memcpy(les[i].text, "le=\"", 4);
        size_t n = am_fmt_double(def->buckets[i], les[i].text + 4);
        les[i].text[4 + n] = '"';
        les[i].text[5 + n] = '\0';
        les[i].len = 5 + n;
    }
    line_ctx_t c = {b, def->name, strlen(def->name), lb};
    /* OpenMetrics: counters, histograms and summaries carry NAME_created,
     * the counter's NAME without _total. */
    line_ctx_t created = c;
    bool with_created = om && def->type != AM_FAMILY_GAUGE;
    if (def->type == AM_FAMILY_COUNTER && created.name_len > 6)
        created.name_len -= 6;
    const am_series_t *s = cur->next;
    /* Stops on a failed buffer too: its length no longer grows. */
    for (; s && b->len - start < max_bytes && !am_buf_failed(b); s = am_series_next(s)) {
        size_t klen;
        const char *key = am_series_key(f, s, &klen);
        render_labels(lb, def, label_len, names_len, key, klen);
        const double *v = am_series_values(s);
        switch (def->type) {
            case AM_FAMILY_COUNTER:
            case AM_FAMILY_GAUGE:
                put_line(&c, "", 0, NULL, 0, v[0]);
                break;
            case AM_FAMILY_HISTOGRAM:
                render_histogram(&c, def, les, v, om);
                break;
            case AM_FAMILY_SUMMARY:
                /* OpenMetrics: a negative sum is invalid, and _count
                 * goes with _sum (see render_histogram). */
                if (!om || v[1] >= 0) {
                    put_line(&c, "_sum", 4, NULL, 0, v[1]);
                    put_line(&c, "_count", 6, NULL, 0, om ? round(v[0]) : v[0]);
                }
                break;
        }
        if (with_created)
            put_line(&created, "_created", 8, NULL, 0, am_series_created(s));
    }
    cur->next = s;
    if (lb->failed)
        b->failed = true;
    return !s || am_buf_failed(b);
}

void am_expose_family(am_buf_t *b, am_buf_t *lb, const am_family_t *f, am_format_t fmt)
{
    am_expose_cursor_t cur = {0};
    am_expose_family_part(b, lb, f, fmt, &cur, SIZE_MAX);
}

void am_expose_registry(am_buf_t *b, const am_registry_t *r, am_format_t fmt)
{
    am_buf_t lb;
    am_buf_init(&lb, 0);
    for (const am_family_t *f = am_registry_first(r); f; f = am_family_next(f))
        am_expose_family(b, &lb, f, fmt);
    am_buf_free(&lb);
}
