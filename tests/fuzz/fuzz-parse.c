/* Fuzz harness: one input is one StatsD datagram.
 *
 * Every line goes through am_parse_line; accepted samples are checked against
 * the parser's contract (slices inside the line, limits, UTF-8, finite
 * values, rate in (0,1]) and applied to a fresh registry that holds the
 * built-in catalog and small limits (so memory stays bounded whatever the
 * input). The registry is then rendered in both exposition formats and the
 * output is checked: no NUL byte, every line ends with '\n', every line is a
 * HELP/TYPE comment or a well-formed sample (name, escaped labels, a number),
 * no family TYPE twice, and OpenMetrics ends with "# EOF".
 *
 * Built with libFuzzer (clang -fsanitize=fuzzer) or, for `meson test`, with
 * fuzz-main.c, which replays tests/fuzz/corpus/ and runs a bounded seeded
 * mutation loop. A violated check calls abort() so that both drivers (and
 * ASan/UBSan builds) report it with the input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "hash.h"
#include "parse.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz-parse: check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool inside(am_slice_t s, const char *line, size_t len)
{
    return s.n == 0 || (s.p >= line && s.p + s.n <= line + len);
}

static bool raw_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

/* What am_parse_line promises about an accepted sample. */
static void check_sample(const am_sample_t *s, const char *line, size_t len)
{
    FUZZ_CHECK(s->name.p == line);
    FUZZ_CHECK(s->name.n >= 1 && s->name.n <= AM_MAX_NAME_LEN && s->name.n < len);
    for (size_t i = 0; i < s->name.n; i++)
        FUZZ_CHECK(raw_name_char(s->name.p[i]));
    char mapped[AM_MAX_NAME_LEN + 1];
    size_t mn = am_map_name(s->name.p, s->name.n, mapped, sizeof(mapped));
    FUZZ_CHECK(mn > 0 && am_valid_metric_name(mapped, mn));
    FUZZ_CHECK(s->type >= AM_TYPE_COUNTER && s->type <= AM_TYPE_SET);
    FUZZ_CHECK(s->rate > 0.0 && s->rate <= 1.0);
    if (s->type == AM_TYPE_SET) {
        FUZZ_CHECK(s->nvalues == 0);
        FUZZ_CHECK(s->set_value.n >= 1 && s->set_value.n <= AM_MAX_SET_VALUE_LEN);
        FUZZ_CHECK(inside(s->set_value, line, len));
    } else {
        FUZZ_CHECK(s->nvalues >= 1 && s->nvalues <= AM_MAX_VALUES);
        for (size_t i = 0; i < s->nvalues; i++) {
            FUZZ_CHECK(s->values[i] - s->values[i] == 0.0); /* finite */
            if (s->type == AM_TYPE_COUNTER)
                FUZZ_CHECK(!(s->values[i] < 0));
        }
    }
    FUZZ_CHECK(s->ntags <= AM_MAX_TAGS);
    for (size_t i = 0; i < s->ntags; i++) {
        FUZZ_CHECK(s->tag_key[i].n >= 1 && s->tag_key[i].n <= AM_MAX_LABEL_NAME_LEN);
        FUZZ_CHECK(inside(s->tag_key[i], line, len));
        FUZZ_CHECK(inside(s->tag_value[i], line, len));
        FUZZ_CHECK(s->tag_value[i].n <= AM_MAX_LABEL_VALUE_LEN);
        FUZZ_CHECK(am_valid_utf8(s->tag_value[i].p, s->tag_value[i].n));
        FUZZ_CHECK(memchr(s->tag_value[i].p, '\0', s->tag_value[i].n) == NULL);
    }
}

typedef struct fuzz_ctx {
    am_registry_t *registry; /* fed by am_parse_line + am_registry_apply */
    am_registry_t *daemon;   /* fed by am_registry_ingest_line, the daemon's path */
    am_registry_t *lines;    /* am_registry_ingest_line, each line once */
    am_registry_t *dgram;    /* am_registry_ingest_datagram, the datagram once */
    am_sample_t sample;      /* ~4 KiB: not on the stack of every call */
    am_sample_t scratch;
    /* Each line's outcome on the lines path, then checked, in order,
     * against the datagram path's rejects. */
    size_t nlines, nchecked;
    const char *line_at[32769]; /* a 64 KiB datagram has at most 32768 lines */
    unsigned char line_rc[32769];
} fuzz_ctx_t;

/* Each line goes in twice, so the second time exercises the line cache; the
 * daemon's path must give the same reason as the plain parse + apply. */
static void on_line(void *ctx, const char *line, size_t len)
{
    fuzz_ctx_t *c = ctx;
    FUZZ_CHECK(len > 0 && memchr(line, '\n', len) == NULL);
    for (int rep = 0; rep < 2; rep++) {
        am_reason_t rc = am_parse_line(line, len, &c->sample);
        FUZZ_CHECK((unsigned)rc < AM_REASON_COUNT || rc == AM_EVENT || rc == AM_SERVICE_CHECK);
        if (rc == AM_OK) {
            check_sample(&c->sample, line, len);
            rc = am_registry_apply(c->registry, &c->sample);
            FUZZ_CHECK((unsigned)rc < AM_REASON_COUNT);
        }
        am_reason_t fast = am_registry_ingest_line(c->daemon, line, len, &c->scratch);
        FUZZ_CHECK(fast == rc);
    }
    FUZZ_CHECK(c->nlines < sizeof(c->line_rc));
    c->line_at[c->nlines] = line;
    c->line_rc[c->nlines++] = (unsigned char)am_registry_ingest_line(c->lines, line, len,
                                                                     &c->scratch);
}

/* The datagram path rejects exactly the lines the lines path rejected, with
 * the same reason and the same line bounds. */
static void on_dgram_reject(void *ctx, am_reason_t rc, const char *line, size_t len)
{
    fuzz_ctx_t *c = ctx;
    FUZZ_CHECK(len > 0 && memchr(line, '\n', len) == NULL);
    while (c->nchecked < c->nlines && c->line_rc[c->nchecked] == AM_OK)
        c->nchecked++;
    FUZZ_CHECK(c->nchecked < c->nlines);
    FUZZ_CHECK(c->line_at[c->nchecked] == line && c->line_rc[c->nchecked] == rc);
    c->nchecked++;
}

/* ---- exposition checks ---- */

static bool name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* name{label="value",...} number */
static void check_sample_line(const char *p, size_t n)
{
    size_t i = 0;
    FUZZ_CHECK(n > 0 && name_start(p[0]));
    while (i < n && name_char(p[i]))
        i++;
    if (i < n && p[i] == '{') {
        i++;
        while (i < n && p[i] != '}') {
            FUZZ_CHECK(name_start(p[i]) && p[i] != ':');
            while (i < n && name_char(p[i]) && p[i] != ':')
                i++;
            FUZZ_CHECK(i + 1 < n && p[i] == '=' && p[i + 1] == '"');
            i += 2;
            while (i < n && p[i] != '"') {
                if (p[i] == '\\') {
                    FUZZ_CHECK(i + 1 < n &&
                               (p[i + 1] == '\\' || p[i + 1] == '"' || p[i + 1] == 'n'));
                    i++;
                }
                i++;
            }
            FUZZ_CHECK(i < n); /* closing quote */
            i++;
            FUZZ_CHECK(i < n && (p[i] == ',' || p[i] == '}'));
            if (p[i] == ',')
                i++;
        }
        FUZZ_CHECK(i < n);
        i++;
    }
    FUZZ_CHECK(i < n && p[i] == ' ');
    i++;
    FUZZ_CHECK(i < n);
    size_t vn = n - i;
    char v[64];
    FUZZ_CHECK(vn < sizeof(v));
    memcpy(v, p + i, vn);
    v[vn] = '\0';
    if (strcmp(v, "+Inf") == 0 || strcmp(v, "-Inf") == 0 || strcmp(v, "NaN") == 0)
        return;
    char *end;
    (void)strtod(v, &end);
    FUZZ_CHECK(*end == '\0' && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')));
}

#define MAX_TYPES 256

static void check_exposition(const am_buf_t *b, am_format_t fmt)
{
    FUZZ_CHECK(!am_buf_failed(b));
    FUZZ_CHECK(memchr(b->data, '\0', b->len) == NULL);
    FUZZ_CHECK(b->len > 0 && b->data[b->len - 1] == '\n');
    const char *types[MAX_TYPES];
    size_t type_len[MAX_TYPES];
    size_t ntypes = 0;
    bool eof = false;
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(nl != NULL); /* every line ends with '\n' */
        size_t n = (size_t)(nl - p);
        FUZZ_CHECK(!eof); /* nothing after # EOF */
        if (n >= 7 && memcmp(p, "# HELP ", 7) == 0) {
            FUZZ_CHECK(n > 7 && name_start(p[7]));
        } else if (n >= 7 && memcmp(p, "# TYPE ", 7) == 0) {
            const char *name = p + 7;
            const char *sp = memchr(name, ' ', n - 7);
            FUZZ_CHECK(sp != NULL);
            size_t nl_len = (size_t)(sp - name);
            for (size_t k = 0; k < ntypes; k++)
                FUZZ_CHECK(!(type_len[k] == nl_len && memcmp(types[k], name, nl_len) == 0));
            FUZZ_CHECK(ntypes < MAX_TYPES);
            types[ntypes] = name;
            type_len[ntypes++] = nl_len;
        } else if (n == 5 && memcmp(p, "# EOF", 5) == 0) {
            FUZZ_CHECK(fmt == AM_FORMAT_OPENMETRICS);
            eof = true;
        } else {
            check_sample_line(p, n);
        }
        p = nl + 1;
    }
    FUZZ_CHECK(eof == (fmt == AM_FORMAT_OPENMETRICS));
}

/* Whether line p (n bytes) is a _created sample: its name, up to '{' or
 * ' ', ends in _created. */
static bool is_created_line(const char *p, size_t n)
{
    size_t name = 0;
    while (name < n && p[name] != '{' && p[name] != ' ')
        name++;
    return p[0] != '#' && name >= 8 && memcmp(p + name - 8, "_created", 8) == 0;
}

/* Whether two expositions are the same, byte for byte but for the values
 * of _created samples (each registry's clock at the series' first line:
 * they may differ by a millisecond). */
static bool same_exposition(const am_buf_t *a, const am_buf_t *b)
{
    const char *p = a->data, *q = b->data;
    const char *pe = p + a->len, *qe = q + b->len;
    while (p < pe && q < qe) {
        const char *pn = memchr(p, '\n', (size_t)(pe - p));
        const char *qn = memchr(q, '\n', (size_t)(qe - q));
        size_t pl = pn ? (size_t)(pn - p) : (size_t)(pe - p);
        size_t ql = qn ? (size_t)(qn - q) : (size_t)(qe - q);
        if (is_created_line(p, pl)) { /* the same up to the value */
            const char *ps = memrchr(p, ' ', pl), *qs = memrchr(q, ' ', ql);
            if (!qs || ps - p != qs - q || memcmp(p, q, (size_t)(ps - p)) != 0)
                return false;
        } else if (pl != ql || memcmp(p, q, pl) != 0) {
            return false;
        }
        p += pl + 1;
        q += ql + 1;
    }
    return p >= pe && q >= qe;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) /* the largest datagram the daemon takes */
        return 0;
    /* An exact-size copy: libFuzzer's buffer is exact already, the replay
     * driver's may not be, and ASan should see any read past the end. */
    char *dg = malloc(size ? size : 1);
    if (!dg)
        return 0;
    memcpy(dg, data, size);

    am_limits_t limits;
    am_limits_default(&limits);
    limits.max_series_per_family = 16;
    limits.max_series = 256;
    limits.max_families = 16;
    limits.auto_create = size == 0 || (data[0] & 0x40) == 0 || (data[0] & 0x0f) != 0x0f;
    /* Both forms of the line cache key (portable, AES-NI), half the inputs
     * each; the registries below are the only ones and live in this call. */
    am_hash_use_aes(size & 1);
    static fuzz_ctx_t ctx;
    ctx.registry = am_registry_new(&limits);
    ctx.daemon = am_registry_new(&limits);
    ctx.lines = am_registry_new(&limits);
    ctx.dgram = am_registry_new(&limits);
    FUZZ_CHECK(ctx.registry && ctx.daemon && ctx.lines && ctx.dgram);
    FUZZ_CHECK(am_catalog_install(ctx.registry) == 0);
    FUZZ_CHECK(am_catalog_install(ctx.daemon) == 0);
    FUZZ_CHECK(am_catalog_install(ctx.lines) == 0);
    FUZZ_CHECK(am_catalog_install(ctx.dgram) == 0);
    ctx.nlines = ctx.nchecked = 0;

    am_parse_datagram(dg, size, on_line, &ctx);
    FUZZ_CHECK(am_registry_series_count(ctx.registry) <= limits.max_series);
    size_t accepted = am_registry_ingest_datagram(ctx.dgram, dg, size, &ctx.scratch,
                                                  on_dgram_reject, &ctx);
    size_t want = 0;
    for (size_t i = 0; i < ctx.nlines; i++)
        want += ctx.line_rc[i] == AM_OK;
    FUZZ_CHECK(accepted == want);

    for (int f = 0; f < 2; f++) {
        am_format_t fmt = f ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
        am_buf_t b, d;
        am_buf_init(&b, 0);
        am_buf_init(&d, 0);
        am_expose_registry(&b, ctx.registry, fmt);
        am_expose_finish(&b, fmt);
        check_exposition(&b, fmt);
        am_expose_registry(&d, ctx.daemon, fmt);
        am_expose_finish(&d, fmt);
        /* Both paths aggregate to the same exposition, byte for byte. */
        FUZZ_CHECK(same_exposition(&b, &d));
        /* So do a datagram taken line by line and in one pass. */
        am_buf_reset(&b);
        am_buf_reset(&d);
        am_expose_registry(&b, ctx.lines, fmt);
        am_expose_registry(&d, ctx.dgram, fmt);
        FUZZ_CHECK(!am_buf_failed(&b) && !am_buf_failed(&d));
        FUZZ_CHECK(same_exposition(&b, &d));
        am_buf_free(&b);
        am_buf_free(&d);
    }
    am_registry_free(ctx.registry);
    am_registry_free(ctx.daemon);
    am_registry_free(ctx.lines);
    am_registry_free(ctx.dgram);
    ctx.registry = ctx.daemon = ctx.lines = ctx.dgram = NULL;
    free(dg);
    return 0;
}
