/* bench-ingest: ns per line for the parser and the registry alone, the
 * render time of a 100k-series scrape, and remote write's encoder over a
 * million series (its steps timed in thread CPU time), without sockets or
 * a loop.
 *
 * Three paths per line: am_parse_line alone; am_registry_ingest_line, the
 * daemon's (a line cache hit once the line has been seen); and
 * am_parse_line + am_registry_apply, what every line cost before the cache
 * and what a miss (a new series, a changed tag order) still costs.
 *
 *   meson test -C build --benchmark --suite bench   (or run the binary)
 *
 * Every case runs whole passes over its lines until at least --min-ms (300)
 * of wall time has gone by and reports the fastest pass: the machine is
 * shared, and the fastest pass is the one least disturbed. A slow change to
 * parse.c or registry.c shows up here before it reaches the socket benchmark
 * (tests/bench/bench.py). Exits non-zero if a line is rejected: the figures of a
 * benchmark that stopped doing the work would be meaningless. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "encode.h"
#include "expose.h"
#include "hash.h"
#include "parse.h"
#include "registry.h"

typedef struct lines {
    char *buf;   /* lines back to back, no separators */
    size_t *off; /* n + 1 offsets */
    size_t n;
    size_t bytes;
    char *dg;      /* the same lines ended by '\n', lpd per datagram */
    size_t *dgoff; /* ndg + 1 offsets */
    size_t ndg;
} lines_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One DogStatsD line per series, tags in the order users send them; or,
 * mapped, the same three labels in a dotted name that MAPPING turns into
 * them (bench.c.n1000.p3.m7.ok:1|c). */
static int make_lines(lines_t *l, const char *family, const char *type, size_t nseries, size_t lpd,
                      bool mapped)
{
    size_t cap = nseries * 96 + 64;
    l->buf = malloc(cap);
    l->off = malloc((nseries + 1) * sizeof(*l->off));
    if (!l->buf || !l->off)
        return -ENOMEM;
    size_t len = 0;
    for (size_t j = 0; j < nseries; j++) {
        l->off[j] = len;
        int n;
        if (mapped)
            n = snprintf(l->buf + len, cap - len, "%s.p%zu.m%zu.ok:%s|%s", family, j % 20, j / 20,
                         strcmp(type, "ms") == 0 ? "12.5" : "1", type);
        else if (strcmp(type, "ms") == 0)
            n = snprintf(l->buf + len, cap - len, "%s:%zu.5|ms|#provider:p%zu,model:m%zu,status:ok",
                         family, j % 50, j % 20, j / 20);
        else
            n = snprintf(l->buf + len, cap - len, "%s:1|c|#provider:p%zu,model:m%zu,status:ok",
                         family, j % 20, j / 20);
        if (n < 0 || (size_t)n >= cap - len)
            return -EOVERFLOW;
        len += (size_t)n;
    }
    l->off[nseries] = len;
    l->n = nseries;
    l->bytes = len;
    l->ndg = (nseries + lpd - 1) / lpd;
    l->dg = malloc(len + nseries);
    l->dgoff = malloc((l->ndg + 1) * sizeof(*l->dgoff));
    if (!l->dg || !l->dgoff)
        return -ENOMEM;
    size_t o = 0;
    for (size_t j = 0; j < nseries; j++) {
        if (j % lpd == 0)
            l->dgoff[j / lpd] = o;
        memcpy(l->dg + o, l->buf + l->off[j], l->off[j + 1] - l->off[j]);
        o += l->off[j + 1] - l->off[j];
        l->dg[o++] = '\n';
    }
    l->dgoff[l->ndg] = o;
    return 0;
}

static void free_lines(lines_t *l)
{
    free(l->buf);
    free(l->off);
    free(l->dg);
    free(l->dgoff);
}

static volatile size_t sink;
static int failures;

typedef enum path {
    MODE_PARSE,    /* am_parse_line alone: the full parser */
    MODE_FULL,     /* am_parse_line + am_registry_apply: what a line cache miss costs */
    MODE_INGEST,   /* am_registry_ingest_line: one line, line cache first */
    MODE_DATAGRAM, /* am_registry_ingest_datagram: the daemon's own path */
} path_t;

static void count_reject(void *ctx, am_reason_t rc, const char *line, size_t len)
{
    (void)ctx;
    if (failures++ < 5)
        fprintf(stderr, "bench-ingest: line rejected (reason %d): %.*s\n", (int)rc, (int)len, line);
}

/* One pass: every line once, through the given path. */
static void pass(const lines_t *l, am_registry_t *r, am_sample_t *s, path_t mode)
{
    size_t acc = 0;
    if (mode == MODE_DATAGRAM) {
        for (size_t i = 0; i < l->ndg; i++)
            acc += am_registry_ingest_datagram(
                r, l->dg + l->dgoff[i], l->dgoff[i + 1] - l->dgoff[i], s, count_reject, NULL);
        sink += acc;
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        const char *p = l->buf + l->off[i];
        size_t n = l->off[i + 1] - l->off[i];
        am_reason_t rc;
        switch (mode) {
            case MODE_PARSE:
                rc = am_parse_line(p, n, s);
                acc += s->ntags + s->nvalues; /* keeps the parse observable */
                break;
            case MODE_FULL:
                rc = am_parse_line(p, n, s);
                if (rc == AM_OK)
                    rc = am_registry_apply(r, s);
                break;
            default:
                rc = am_registry_ingest_line(r, p, n, s);
                break;
        }
        if (rc != AM_OK) {
            if (failures++ < 5)
                fprintf(stderr, "bench-ingest: line rejected (reason %d): %.*s\n", (int)rc, (int)n,
                        p);
        }
    }
    sink += acc;
}

/* Fastest pass, in ns per line, over at least min_s seconds (and 3 passes). */
static double measure(const lines_t *l, am_registry_t *r, am_sample_t *s, path_t mode, double min_s)
{
    pass(l, r, s, mode); /* warm-up; creates the series (and fills the line cache) */
    double best = 1e30, start = now_s();
    for (int k = 0; k < 3 || now_s() - start < min_s; k++) {
        double t0 = now_s();
        pass(l, r, s, mode);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
        if (k > 100000)
            break;
    }
    return best * 1e9 / (double)l->n;
}

/* The mapping of the mapped cases: statsd_exporter's format. */
static const char MAPPING[] = "mappings:\n"
                              "- match: bench.*.*.*.*.*\n"
                              "  name: bench_mapped_${1}_$2\n"
                              "  labels: {provider: $3, model: $4, status: $5}\n";

static am_registry_t *new_registry(void)
{
    am_limits_t lim;
    am_limits_default(&lim);
    lim.max_series_per_family = 10000000;
    lim.max_series = 10000000;
    return am_registry_new(&lim);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t rw_requests, rw_bytes;

static void rw_emit(void *ctx, char *bytes, size_t len, size_t nsamples)
{
    (void)ctx;
    (void)nsamples;
    rw_requests++;
    rw_bytes += len;
    free(bytes);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Remote write: a /metrics text body of nseries counters (families of
 * 10,000, 3 labels) encoded by 4 pushes in 1 ms steps, as the daemon's
 * loop runs them. The steps are timed in this thread's CPU time, so that a
 * shared machine's preemption does not count: the longest is what the
 * code holds the loop for. The first push sizes everything. */
static void bench_remote_write(size_t nseries)
{
    am_remote_enc_t *e = am_remote_enc_new();
    size_t cap = 1u << 20, nsteps;
    uint64_t *steps = malloc(cap * sizeof(*steps));
    if (!e || !steps) {
        failures++;
        goto out;
    }
    printf("\n| remote write encode, %zu series | CPU ns/series | steps | p99 step ms | "
           "longest step ms | bytes/series |\n|---|---:|---:|---:|---:|---:|\n",
           nseries);
    for (int push = 0; push < 4; push++) {
        am_buf_t b;
        am_buf_init(&b, 0);
        for (size_t f = 0; f < nseries / 10000; f++) {
            am_buf_printf(&b, "# HELP fam_%zu_total Requests.\n# TYPE fam_%zu_total counter\n", f,
                          f);
            for (size_t i = 0; i < 10000; i++)
                am_buf_printf(&b,
                              "fam_%zu_total{host=\"h%zu\",path=\"/api/v1/things/%zu\","
                              "code=\"200\"} %zu\n",
                              f, i % 50, i, i + (size_t)push);
        }
        rw_requests = rw_bytes = 0;
        uint64_t total = 0;
        nsteps = 0;
        if (am_remote_enc_begin(e, &b, 1000 + 2000 * push) != 0) {
            failures++;
            goto out;
        }
        for (bool done = false; !done && nsteps < cap;) {
            uint64_t t0 = thread_cpu_ns();
            done = am_remote_enc_step(e, 1000000, rw_emit, NULL);
            steps[nsteps] = thread_cpu_ns() - t0;
            total += steps[nsteps++];
        }
        qsort(steps, nsteps, sizeof(*steps), cmp_u64);
        printf("| push %d%s | %.0f | %zu | %.2f | %.2f | %.1f |\n", push + 1,
               push ? "" : " (sizes everything)", (double)total / (double)nseries, nsteps,
               (double)steps[nsteps * 99 / 100] / 1e6, (double)steps[nsteps - 1] / 1e6,
               (double)rw_bytes / (double)nseries);
        if (am_remote_enc_series(e) != nseries || am_remote_enc_bad_lines(e) != 0)
            failures++;
    }
out:
    free(steps);
    am_remote_enc_free(e);
}

int main(int argc, char **argv)
{
    double min_s = 0.3;
    const char *only = NULL;      /* run only the cases whose name contains this (for perf) */
    bool aes = true, avx2 = true; /* --portable: what a CPU without them runs */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min-ms") == 0 && i + 1 < argc) {
            min_s = atof(argv[++i]) / 1000.0;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--portable") == 0) {
            aes = avx2 = false;
        } else if (strcmp(argv[i], "--sse2") == 0) {
            avx2 = false;
        } else if (strcmp(argv[i], "--no-aes") == 0) {
            aes = false;
        } else {
            fprintf(stderr,
                    "usage: bench-ingest [--min-ms N] [--only SUBSTRING] [--sse2] [--no-aes]\n"
                    "                    [--portable]\n"
                    "  --sse2:     the SSE2 datagram index, as on a CPU without AVX2\n"
                    "  --no-aes:   the multiply-lane line key, as on a CPU without AES-NI\n"
                    "  --portable: both\n");
            return 2;
        }
    }
    am_hash_seed_init();
    aes = am_hash_use_aes(aes);
    avx2 = am_index_use_avx2(avx2);
    printf("index: %s, line key: %s\n\n", avx2 ? "AVX2" : "SSE2",
           aes ? "AES-NI" : "multiply lanes");
    am_sample_t *s = calloc(1, sizeof(*s));
    if (!s)
        return 1;

    printf("| case | series | ns/line | Mlines/s |\n|---|---:|---:|---:|\n");
    static const struct {
        const char *what;
        const char *type;
        size_t nseries;
        path_t mode;
        size_t lpd;  /* lines per datagram (MODE_DATAGRAM) */
        bool mapped; /* dotted names through MAPPING instead of tags */
    } cases[] = {
        {"parse: counter, 3 tags", "c", 1000, MODE_PARSE, 0, false},
        {"parse: ms timer, 3 tags", "ms", 1000, MODE_PARSE, 0, false},
        {"ingest_line: counter, 3 tags", "c", 1000, MODE_INGEST, 0, false},
        {"ingest_line: counter, 3 tags", "c", 100000, MODE_INGEST, 0, false},
        {"ingest_line: ms histogram, 3 tags", "ms", 1000, MODE_INGEST, 0, false},
        {"ingest_line: ms histogram, 3 tags", "ms", 100000, MODE_INGEST, 0, false},
        {"ingest_datagram (20 lines): counter, 3 tags", "c", 1000, MODE_DATAGRAM, 20, false},
        {"ingest_datagram (20 lines): counter, 3 tags", "c", 100000, MODE_DATAGRAM, 20, false},
        {"ingest_datagram (20 lines): ms histogram, 3 tags", "ms", 1000, MODE_DATAGRAM, 20, false},
        {"ingest_datagram (1 line): counter, 3 tags", "c", 1000, MODE_DATAGRAM, 1, false},
        {"ingest_datagram (20 lines): counter, mapped to 3 labels", "c", 1000, MODE_DATAGRAM, 20,
         true},
        {"ingest_datagram (20 lines): ms histogram, mapped", "ms", 1000, MODE_DATAGRAM, 20, true},
        {"parse+apply (cache miss path): counter", "c", 1000, MODE_FULL, 0, false},
        {"parse+apply (cache miss path): counter", "c", 100000, MODE_FULL, 0, false},
        {"parse+apply (cache miss path): ms histogram", "ms", 100000, MODE_FULL, 0, false},
    };
    am_mapping_t *mapping;
    char err[256];
    if (am_mapping_load_buffer(MAPPING, strlen(MAPPING), "bench", &mapping, err, sizeof(err), NULL,
                               NULL) != 0) {
        fprintf(stderr, "bench-ingest: %s\n", err);
        return 1;
    }
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char label[128];
        snprintf(label, sizeof(label), "%s | %zu |", cases[c].what, cases[c].nseries);
        if (only && !strstr(label, only))
            continue;
        lines_t l;
        memset(&l, 0, sizeof(l));
        char family[64];
        snprintf(family, sizeof(family), "bench.%s.n%zu", cases[c].type, cases[c].nseries);
        if (make_lines(&l, family, cases[c].type, cases[c].nseries,
                       cases[c].lpd ? cases[c].lpd : 20, cases[c].mapped) != 0) {
            fprintf(stderr, "bench-ingest: out of memory\n");
            return 1;
        }
        bool apply = cases[c].mode != MODE_PARSE;
        am_registry_t *r = apply ? new_registry() : NULL;
        if (apply && !r)
            return 1;
        if (r && cases[c].mapped)
            am_registry_set_mapping(r, mapping);
        double ns = measure(&l, r, s, cases[c].mode, min_s);
        printf("| %s | %zu | %.1f | %.2f |\n", cases[c].what, cases[c].nseries, ns, 1e3 / ns);
        if (r && am_registry_series_count(r) != cases[c].nseries) {
            fprintf(stderr, "bench-ingest: %zu series, expected %zu\n", am_registry_series_count(r),
                    cases[c].nseries);
            failures++;
        }
        am_registry_free(r);
        free_lines(&l);
    }

    /* Scrape render: 100k counter series in one family, text and OpenMetrics.
     * "fresh buffer" grows a new am_buf from empty on every render (what a
     * per-request body costs); "reused" renders into one kept across renders,
     * which shows what a reusable output buffer would save. */
    if (!only || strstr("remote", only))
        bench_remote_write(1000000);
    if (only && !strstr("render", only)) {
        free(s);
        am_mapping_free(mapping);
        printf("\nsink=%zu failures=%d\n", (size_t)sink, failures);
        return failures ? 1 : 0;
    }
    const size_t nrender = 100000;
    lines_t l;
    memset(&l, 0, sizeof(l));
    am_registry_t *r = new_registry();
    if (!r || make_lines(&l, "bench.render", "c", nrender, 20, false) != 0)
        return 1;
    pass(&l, r, s, MODE_INGEST);
    printf("\n| render (am_expose_registry) | series | ms | bytes | ns/series |\n"
           "|---|---:|---:|---:|---:|\n");
    static const struct {
        const char *what;
        am_format_t fmt;
        bool reuse;
    } renders[] = {
        {"text 0.0.4, fresh buffer", AM_FORMAT_TEXT, false},
        {"text 0.0.4, reused buffer", AM_FORMAT_TEXT, true},
        {"OpenMetrics, reused buffer", AM_FORMAT_OPENMETRICS, true},
    };
    am_buf_t b;
    am_buf_init(&b, 0);
    for (size_t k = 0; k < sizeof(renders) / sizeof(renders[0]); k++) {
        double best = 1e30, start = now_s();
        size_t bytes = 0;
        for (int it = 0; it < 3 || (now_s() - start < min_s && it < 1000); it++) {
            if (renders[k].reuse) {
                am_buf_reset(&b);
            } else {
                am_buf_free(&b);
                am_buf_init(&b, 0);
            }
            double t0 = now_s();
            am_expose_registry(&b, r, renders[k].fmt);
            double dt = now_s() - t0;
            if (dt < best)
                best = dt;
            bytes = b.len;
        }
        if (am_buf_failed(&b))
            failures++;
        printf("| %s | %zu | %.2f | %zu | %.0f |\n", renders[k].what, nrender, best * 1e3, bytes,
               best * 1e9 / (double)nrender);
    }
    am_buf_free(&b);
    am_registry_free(r);
    free_lines(&l);
    free(s);
    am_mapping_free(mapping);
    printf("\nsink=%zu failures=%d\n", (size_t)sink, failures);
    return failures ? 1 : 0;
}
