/* Unit tests for the multi-worker side of src/registry/registry.c: am_registry_merge
 * (the scrape snapshot of several workers' registries), gauge stamps and the
 * family directory shared by the workers (one definition per family, limits
 * over all workers). */
#include "registry.h"
#include "registry-test.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "parse.h"
#include "check-main.h"

/* ---- helpers ---- */

/* A worker's registry: stamps, optionally a directory, optionally the catalog. */
static am_registry_t *worker(am_famdir_t *d, const am_limits_t *limits, bool catalog)
{
    am_registry_t *r = am_registry_new(limits);
    ck_assert_ptr_nonnull(r);
    if (d)
        am_registry_use_directory(r, d);
    am_registry_enable_gauge_stamps(r);
    if (catalog)
        ck_assert_int_eq(am_catalog_install(r), 0);
    return r;
}

static am_registry_t *snapshot(void)
{
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_ptr_nonnull(r);
    am_registry_enable_gauge_stamps(r);
    return r;
}

/* v[0..] of the series of `fam` whose key (label values joined by '\0') is
 * `key` (klen bytes). */
static const double *getk(const am_registry_t *r, const char *fam, const char *key, size_t klen)
{
    const am_family_t *f = am_registry_find(r, fam);
    if (!f)
        return NULL;
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s)) {
        size_t kl;
        const char *kp = am_series_key(f, s, &kl);
        if (kl == klen && memcmp(kp, key, klen) == 0)
            return am_series_values(s);
    }
    return NULL;
}

/* One label value (or none: ""). */
static const double *get(const am_registry_t *r, const char *fam, const char *val)
{
    return getk(r, fam, val, strlen(val));
}

static double value(const am_registry_t *r, const char *fam, const char *val)
{
    const double *v = get(r, fam, val);
    ck_assert_msg(v != NULL, "no series %s{%s}", fam, val);
    return v[0];
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The text exposition of r with its lines sorted (family order differs
 * between a merged snapshot and one registry). Caller frees. */
static char *sorted_exposition(const am_registry_t *r)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_expose_registry(&b, r, AM_FORMAT_TEXT);
    am_buf_putc(&b, '\0');
    ck_assert(!am_buf_failed(&b));
    char *text = strdup(b.data);
    am_buf_free(&b);
    size_t n = 0, cap = 16;
    char **lines = malloc(cap * sizeof(*lines));
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (n == cap)
            lines = realloc(lines, (cap *= 2) * sizeof(*lines));
        lines[n++] = l;
    }
    qsort(lines, n, sizeof(*lines), cmp_line);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *out = malloc(total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(lines[i]);
        memcpy(out + o, lines[i], k);
        out[o + k] = '\n';
        o += k + 1;
    }
    out[o] = '\0';
    free(lines);
    free(text);
    return out;
}

/* ---- merge ---- */

START_TEST(merge_counters_histograms_summaries_add_up)
{
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, NULL, true), *w1 = worker(d, NULL, true);
    ck_line(w0, "jobs:2|c|#q:a", AM_OK);
    ck_line(w1, "jobs:3|c|#q:a", AM_OK);
    ck_line(w1, "jobs:1|c|#q:b", AM_OK);
    ck_line(w0, "lat:0.2|h|#q:a", AM_OK);
    ck_line(w1, "lat:20|ms|#q:a", AM_OK);
    ck_line(w1, "lat:7|h|#q:a", AM_OK);
    ck_line(w0, "alice_api_request_cost_dollars:0.5|h|#provider:p,model:m", AM_OK);
    ck_line(w1, "alice_api_request_cost_dollars:0.25|h|#provider:p,model:m", AM_OK);

    am_registry_t *snap = snapshot();
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    ck_assert_double_eq(value(snap, "jobs_total", "a"), 5);
    ck_assert_double_eq(value(snap, "jobs_total", "b"), 1);
    ck_assert_uint_eq(am_family_series_count(am_registry_find(snap, "jobs_total")), 2);
    const double *h = get(snap, "lat", "a");
    ck_assert_ptr_nonnull(h);
    ck_assert_double_eq(h[0], 3);               /* count */
    ck_assert_double_eq_tol(h[1], 7.22, 1e-12); /* sum */
    ck_assert_double_eq(h[2 + 2], 1);           /* 0.02 in le=0.025 */
    ck_assert_double_eq(h[2 + 6], 1);           /* 0.2 in le=0.25 */
    ck_assert_double_eq(h[2 + 12], 1);          /* 7 in le=7.5 */
    const char cost_key[] = "p\0m";             /* catalog order: provider, model */
    const double *c = getk(snap, "alice_api_request_cost_dollars", cost_key, 3);
    ck_assert_ptr_nonnull(c);
    ck_assert_double_eq(c[0], 2);
    ck_assert_double_eq(c[1], 0.75);
    /* every catalogued family is there once, sources untouched */
    ck_assert_uint_eq(am_registry_family_count(snap), am_registry_family_count(w1));
    ck_assert_double_eq(value(w0, "jobs_total", "a"), 2);
    am_registry_free(snap);
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
}
END_TEST

START_TEST(merge_equals_one_registry)
{
    /* The same lines dealt round-robin to three workers, merged, render
     * exactly what one registry fed every line renders. */
    static const char *const lines[] = {
        "alice_api_requests_total:1|c|#provider:openai,model:gpt-4,operation:text,status:ok",
        "alice_api_request_duration_seconds:120|ms|#provider:openai,model:gpt-4,operation:text",
        "alice_asset_quality_score:0.82|h|#media_type:image,quality_type:brisque",
        "alice_asset_quality_score:55|h|#media_type:image,quality_type:brisque",
        "auto.counter:4|c|#k:v",
        "auto.counter:2|c|@0.5|#k:w",
        "auto.hist:0.3:0.7:12|h|#k:v",
        "auto.dist:3|d",
        "alice_api_requests_total:2|c|#provider:openai,model:gpt-4,operation:text,status:ok",
        "alice_events_published_total:7|c|#event_type:created",
        "auto.counter:1|c|#k:v",
    };
    size_t n = sizeof(lines) / sizeof(lines[0]);
    am_registry_t *one = am_registry_new(NULL);
    ck_assert_int_eq(am_catalog_install(one), 0);
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w[3];
    for (int i = 0; i < 3; i++)
        w[i] = worker(d, NULL, true);
    for (size_t i = 0; i < n; i++) {
        ck_line(one, lines[i], AM_OK);
        ck_line(w[i % 3], lines[i], AM_OK);
    }
    am_registry_t *snap = snapshot();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(am_registry_merge(snap, w[i]), 0);
    char *a = sorted_exposition(one), *b = sorted_exposition(snap);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    am_registry_free(snap);
    for (int i = 0; i < 3; i++)
        am_registry_free(w[i]);
    am_famdir_free(d);
    am_registry_free(one);
}
END_TEST

/* A snapshot callback that merges the family it is given (as the
 * server's merge_early does). */
static void merge_into(void *ctx, const am_family_t *f, size_t index)
{
    (void)index;
    ck_assert_int_eq(am_registry_merge_family(ctx, f), 0);
}

START_TEST(merge_in_steps)
{
    /* am_registry_merge_step merges one family per step and
     * ends with what am_registry_merge gives; a family appended to the
     * source mid-merge is taken, a change to a family already merged is
     * not (it belongs to the next scrape). */
    static const char *const lines[] = {
        "s.a:1|c|#k:x", "s.b:2|g", "s.c:3|ms|#k:y", "s.d:4|h", "s.a:5|c|#k:z", "s.e:6|c",
    };
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w = worker(d, NULL, false);
    for (int i = 0; i < NELEMS(lines); i++)
        ck_line(w, lines[i], AM_OK);
    am_registry_t *whole = snapshot(), *stepped = snapshot();
    ck_assert_int_eq(am_registry_merge(whole, w), 0);

    const am_family_t *cursor = NULL;
    int steps = 0, rc;
    while ((rc = am_registry_merge_step(stepped, w, &cursor)) == 0) {
        steps++;
        ck_assert_ptr_nonnull(cursor);
        ck_assert_uint_eq(am_registry_family_count(stepped), (size_t)steps);
    }
    ck_assert_int_eq(rc, 1);
    ck_assert_ptr_null(cursor);
    ck_assert_int_eq(steps + 1, 5); /* s.a s.b s.c s.d s.e_total */
    char *a = sorted_exposition(whole), *b = sorted_exposition(stepped);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    am_registry_free(stepped);

    stepped = snapshot();
    cursor = NULL;
    ck_assert_int_eq(am_registry_merge_step(stepped, w, &cursor), 0); /* s.a merged */
    ck_line(w, "s.a:100|c|#k:x", AM_OK);                              /* too late */
    ck_line(w, "s.late:7|c", AM_OK);                                  /* appended */
    while ((rc = am_registry_merge_step(stepped, w, &cursor)) == 0)
        ;
    ck_assert_int_eq(rc, 1);
    ck_assert(value(stepped, "s_a_total", "x") == 1.0);
    ck_assert(value(stepped, "s_late_total", "") == 7.0);
    am_registry_free(stepped);

    /* With a snapshot open on the source, as the server merges: a family
     * about to change is merged first, as it was (the callback); a step
     * skips it afterwards; a family created after the begin waits. */
    am_registry_t *at_begin = snapshot();
    ck_assert_int_eq(am_registry_merge(at_begin, w), 0);
    stepped = snapshot();
    am_registry_snapshot_begin(w, merge_into, stepped);
    cursor = NULL;
    ck_assert_int_eq(am_registry_merge_step(stepped, w, &cursor), 0); /* s.a */
    ck_line(w, "s.c:9|ms|#k:y", AM_OK);  /* pending: merged early, as it was */
    ck_line(w, "s.b:100|g", AM_OK);      /* pending too */
    ck_line(w, "s.newer:1|c", AM_OK);    /* after the begin: not in this copy */
    ck_line(w, "s.a:100|c|#k:x", AM_OK); /* taken already: not seen */
    while ((rc = am_registry_merge_step(stepped, w, &cursor)) == 0)
        ;
    ck_assert_int_eq(rc, 1);
    am_registry_snapshot_end(w);
    ck_assert_ptr_null(am_registry_find(stepped, "s_newer_total"));
    a = sorted_exposition(at_begin);
    b = sorted_exposition(stepped);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    am_registry_free(at_begin);
    am_registry_free(stepped);
    am_registry_free(whole);
    am_registry_free(w);
    am_famdir_free(d);
}
END_TEST

START_TEST(merge_set_gauges_union_members)
{
    am_registry_t *w0 = worker(NULL, NULL, false), *w1 = worker(NULL, NULL, false);
    ck_line(w0, "users:alice|s", AM_OK);
    ck_line(w0, "users:bob|s", AM_OK);
    ck_line(w1, "users:bob|s", AM_OK);
    ck_line(w1, "users:carol|s", AM_OK);
    ck_line(w1, "users:dave|s", AM_OK);
    am_registry_t *snap = snapshot();
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_double_eq(value(snap, "users", ""), 2);
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    ck_assert_double_eq(value(snap, "users", ""), 4);
    /* merging the same source again adds nothing to a set */
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    ck_assert_double_eq(value(snap, "users", ""), 4);
    am_registry_free(snap);
    am_registry_free(w0);
    am_registry_free(w1);
}
END_TEST

/* Gauge cases: worker lines as (worker, clock, line); the merged value. */
typedef struct gauge_step {
    int worker;
    double clock;
    const char *line;
} gauge_step_t;

typedef struct gauge_case {
    const char *what;
    gauge_step_t steps[6];
    double want;
} gauge_case_t;

static const gauge_case_t gauge_cases[] = {
    {"newest set wins (worker 0 newer)", {{1, 10, "g:5|g"}, {0, 20, "g:7|g"}}, 7},
    {"newest set wins (worker 1 newer)", {{0, 10, "g:7|g"}, {1, 20, "g:5|g"}}, 5},
    {"deltas only add up", {{0, 10, "g:+3|g"}, {1, 11, "g:+4|g"}, {0, 12, "g:-1|g"}}, 6},
    {"set, then deltas elsewhere",
     {{0, 10, "g:100|g"}, {1, 11, "g:+1|g"}, {1, 12, "g:+1|g"}, {0, 13, "g:-5|g"}},
     97},
    {"deltas elsewhere before the newest set are dropped",
     {{1, 5, "g:+4|g"}, {0, 10, "g:100|g"}},
     100},
    {"older set elsewhere with later deltas: its deltas count",
     {{1, 5, "g:50|g"}, {0, 10, "g:100|g"}, {1, 15, "g:+2|g"}},
     102},
    {"three-way: newest set plus later deltas",
     {{2, 1, "g:0|g"}, {0, 5, "g:1|g"}, {1, 8, "g:2|g"}, {2, 9, "g:+3|g"}, {0, 9, "g:+1|g"}},
     6},
    /* The documented approximation: another worker's deltas since its own
     * last set count whole when any of them came after the newest set. */
    {"deltas spanning the newest set count whole",
     {{1, 1, "g:+9|g"}, {0, 5, "g:1|g"}, {1, 9, "g:+3|g"}},
     13},
};

START_TEST(merge_stamped_gauges)
{
    const gauge_case_t *c = &gauge_cases[_i];
    am_registry_t *w[3];
    for (int i = 0; i < 3; i++)
        w[i] = worker(NULL, NULL, false);
    for (size_t k = 0; k < 6 && c->steps[k].line; k++) {
        am_registry_set_clock(w[c->steps[k].worker], c->steps[k].clock);
        ck_line(w[c->steps[k].worker], c->steps[k].line, AM_OK);
    }
    /* in either order */
    for (int order = 0; order < 2; order++) {
        am_registry_t *snap = snapshot();
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(am_registry_merge(snap, w[order ? 2 - i : i]), 0);
        ck_assert_msg(value(snap, "g", "") == c->want, "%s (order %d): got %g, want %g", c->what,
                      order, value(snap, "g", ""), c->want);
        am_registry_free(snap);
    }
    for (int i = 0; i < 3; i++)
        am_registry_free(w[i]);
}
END_TEST

START_TEST(merge_unstamped_gauge_later_source_wins)
{
    am_registry_t *a = am_registry_new(NULL), *b = am_registry_new(NULL);
    ck_line(a, "g:1|g", AM_OK);
    ck_line(b, "g:2|g", AM_OK);
    am_registry_t *snap = am_registry_new(NULL);
    ck_assert_int_eq(am_registry_merge(snap, a), 0);
    ck_assert_int_eq(am_registry_merge(snap, b), 0);
    ck_assert_double_eq(value(snap, "g", ""), 2);
    /* unstamped registries still render a plain gauge */
    ck_assert_uint_eq(am_registry_series_count(snap), 1);
    am_registry_free(snap);
    am_registry_free(a);
    am_registry_free(b);
}
END_TEST

START_TEST(merge_skips_family_of_another_shape)
{
    /* Without a directory two registries may disagree; merge never adds
     * values of one shape into another. */
    am_registry_t *a = worker(NULL, NULL, false), *b = worker(NULL, NULL, false);
    ck_line(a, "x:1|c|#k:a", AM_OK);
    ck_line(b, "x:1|c|#j:a", AM_OK);
    am_registry_t *snap = snapshot();
    ck_assert_int_eq(am_registry_merge(snap, a), 0);
    ck_assert_int_eq(am_registry_merge(snap, b), 0);
    ck_assert_uint_eq(am_registry_series_count(snap), 1);
    ck_assert_str_eq(am_family_def(am_registry_find(snap, "x_total"))->labels[0], "k");
    am_registry_free(snap);
    am_registry_free(a);
    am_registry_free(b);
}
END_TEST

START_TEST(merge_empty_and_many_series)
{
    am_registry_t *w0 = worker(NULL, NULL, false), *w1 = worker(NULL, NULL, false);
    am_registry_t *snap = snapshot();
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_uint_eq(am_registry_family_count(snap), 0);
    char line[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(line, sizeof(line), "many:1|c|#i:%d", i);
        ck_line(i % 2 ? w1 : w0, line, AM_OK);
        snprintf(line, sizeof(line), "many:2|c|#i:%d", i);
        ck_line(i % 3 ? w1 : w0, line, AM_OK);
    }
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    ck_assert_uint_eq(am_registry_series_count(snap), 5000);
    double total = 0;
    const am_family_t *f = am_registry_find(snap, "many_total");
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s))
        total += am_series_values(s)[0];
    ck_assert_double_eq(total, 15000);
    ck_assert_double_eq(value(snap, "many_total", "4999"), 3);
    am_registry_free(snap);
    am_registry_free(w0);
    am_registry_free(w1);
}
END_TEST

/* ---- the family directory ---- */

START_TEST(directory_first_definition_wins)
{
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, NULL, true), *w1 = worker(d, NULL, true);
    size_t builtins = am_famdir_family_count(d);
    ck_assert_uint_eq(builtins, am_catalog_count());
    /* worker 1 meets `x` first: its labels decide */
    ck_line(w1, "x:1|c|#b:1", AM_OK);
    ck_line(w0, "x:1|c|#b:2", AM_OK);
    ck_line(w0, "x:1|g", AM_REJECT_TYPE_CONFLICT); /* x_total owns the name x */
    ck_line(w1, "y_count:1|g", AM_OK);
    ck_line(w0, "y:1|h", AM_REJECT_TYPE_CONFLICT); /* only worker 1 has y_count */
    ck_line(w0, "y:1|c", AM_OK);                   /* y_total does not clash */
    ck_assert_uint_eq(am_famdir_family_count(d), builtins + 3);
    const am_family_def_t *d0 = am_family_def(am_registry_find(w0, "x_total"));
    const am_family_def_t *d1 = am_family_def(am_registry_find(w1, "x_total"));
    ck_assert(am_family_def_same_shape(d0, d1));
    ck_assert_str_eq(d0->labels[0], "b");
    ck_line(w0, "z:1|h", AM_OK);
    ck_line(w1, "z_bucket:1|g", AM_REJECT_TYPE_CONFLICT);
    ck_line(w1, "z:2|h|#k:v", AM_OK); /* an auto family's labels grow */
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
}
END_TEST

/* Two workers grow one family's label set: each new name takes the next
 * position in the directory, whichever worker meets it, so every worker
 * keys a label at the same place and the merge adds up the right series. */
START_TEST(directory_labels_grow_in_one_order)
{
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, NULL, false), *w1 = worker(d, NULL, false);
    ck_line(w1, "x:1|c|#b:1", AM_OK); /* labels: b */
    ck_line(w0, "x:1|c|#a:1", AM_OK); /* w0 copies b, adds a: b a */
    ck_line(w1, "x:1|c|#c:1", AM_OK); /* w1 takes a, adds c: b a c */
    ck_line(w0, "x:2|c|#c:1", AM_OK); /* w0 takes c */
    ck_line(w1, "x:4|c|#a:1", AM_OK); /* a is known to w1 now */
    const am_family_def_t *d0 = am_family_def(am_registry_find(w0, "x_total"));
    const am_family_def_t *d1 = am_family_def(am_registry_find(w1, "x_total"));
    ck_assert(am_family_def_same_shape(d0, d1));
    ck_assert_uint_eq(d0->nlabels, 3);
    ck_assert_str_eq(d0->labels[0], "b");
    ck_assert_str_eq(d0->labels[1], "a");
    ck_assert_str_eq(d0->labels[2], "c");
    /* a snapshot that met the family with fewer labels takes the longer list */
    am_registry_t *snap = snapshot();
    ck_line(w1, "y:1|c|#k:1", AM_OK);
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_double_eq(getk(snap, "x_total", "1", 1)[0], 1);
    ck_assert_double_eq(getk(snap, "x_total", "\0" "1", 2)[0], 5);
    ck_assert_double_eq(getk(snap, "x_total", "\0\0" "1", 3)[0], 3);
    ck_assert_uint_eq(am_family_def(am_registry_find(snap, "x_total"))->nlabels, 3);
    am_registry_free(snap);
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
}
END_TEST

START_TEST(directory_limits_count_every_worker)
{
    am_limits_t l;
    am_limits_default(&l);
    l.max_series_per_family = 3;
    l.max_series = 5;
    l.max_families = 2;
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, &l, false), *w1 = worker(d, &l, false);
    ck_line(w0, "a:1|c|#k:1", AM_OK);
    ck_line(w1, "a:1|c|#k:2", AM_OK);
    ck_line(w1, "a:1|c|#k:1", AM_OK); /* the same series on another worker counts again */
    ck_line(w0, "a:1|c|#k:3", AM_REJECT_CARDINALITY);
    ck_line(w0, "a:1|c|#k:1", AM_OK); /* existing series keep counting */
    ck_assert_uint_eq(am_famdir_series_count(d), 3);
    ck_line(w1, "b:1|c|#k:1", AM_OK);
    ck_line(w0, "c:1|c", AM_REJECT_CARDINALITY); /* third auto family */
    ck_line(w0, "b:1|c|#k:2", AM_OK);
    ck_line(w0, "b:1|c|#k:3", AM_REJECT_CARDINALITY); /* total of 5 */
    ck_assert_uint_eq(am_famdir_series_count(d), 5);
    am_registry_free(w0);
    ck_assert_uint_eq(am_famdir_series_count(d), 3); /* w1's */
    am_registry_free(w1);
    ck_assert_uint_eq(am_famdir_series_count(d), 0);
    am_famdir_free(d);
}
END_TEST

START_TEST(directory_set_members_count_every_worker)
{
    /* One budget of set members over every worker; a freed registry's
     * members come back to it. */
    am_limits_t l;
    am_limits_default(&l);
    l.max_set_members = 3;
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, &l, false), *w1 = worker(d, &l, false);
    ck_line(w0, "seen:a|s", AM_OK);
    ck_line(w1, "seen:a|s", AM_OK); /* counted on each worker */
    ck_line(w1, "seen:b|s", AM_OK);
    ck_line(w0, "seen:c|s", AM_REJECT_CARDINALITY);
    ck_line(w0, "seen:a|s", AM_OK);
    am_registry_free(w1);
    ck_line(w0, "seen:c|s", AM_OK);
    ck_line(w0, "seen:d|s", AM_OK);
    ck_line(w0, "seen:e|s", AM_REJECT_CARDINALITY);
    am_registry_free(w0);
    am_famdir_free(d);
}
END_TEST

START_TEST(directory_auto_create_off_still_copies_known_families)
{
    am_limits_t l;
    am_limits_default(&l);
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, &l, false), *w1 = worker(d, &l, false);
    ck_line(w0, "known:1|c", AM_OK);
    l.auto_create = false;
    am_registry_set_limits(w0, &l);
    am_registry_set_limits(w1, &l);
    ck_line(w1, "known:1|c", AM_OK); /* exists (in worker 0): usable as in one registry */
    ck_line(w1, "unknown:1|c", AM_REJECT_UNKNOWN_FAMILY);
    ck_assert_uint_eq(am_famdir_family_count(d), 1);
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
}
END_TEST

START_TEST(directory_define_applies_to_every_worker)
{
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, NULL, false), *w1 = worker(d, NULL, false);
    ck_line(w0, "y_count:1|g", AM_OK); /* auto gauge, clashes with histogram y */
    ck_line(w1, "y_count:2|g", AM_OK);
    ck_line(w1, "z:1|c|#k:a", AM_OK); /* will be reshaped */
    ck_line(w0, "z:1|c|#k:b", AM_OK);
    ck_assert_uint_eq(am_famdir_series_count(d), 4);
    am_family_def_t y = {.name = S("y"),
                         .help = S("Y."),
                         .type = AM_FAMILY_HISTOGRAM,
                         .nbuckets = 1,
                         .buckets = {1}};
    am_family_def_t z = {.name = S("z_total"),
                         .help = S("Z."),
                         .type = AM_FAMILY_COUNTER,
                         .nlabels = 1,
                         .labels = {S("j")}};
    /* as the server does on SIGHUP: every worker in turn */
    am_registry_t *w[2] = {w0, w1};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(am_registry_define(w[i], &y), 1);
        ck_assert_int_eq(am_registry_define(w[i], &z), 0);
    }
    ck_assert_uint_eq(am_famdir_series_count(d), 0);
    ck_assert_uint_eq(am_famdir_family_count(d), 2);
    ck_assert_ptr_null(am_registry_find(w1, "y_count"));
    ck_line(w1, "y_count:1|g", AM_REJECT_TYPE_CONFLICT);
    ck_line(w0, "z:1|c|#k:a", AM_REJECT_UNDECLARED_LABEL);
    ck_line(w1, "z:1|c|#j:a", AM_OK);
    ck_line(w0, "y:0.5|h", AM_OK);
    ck_assert_uint_eq(am_famdir_series_count(d), 2);
    /* defining the same again changes nothing */
    ck_assert_int_eq(am_registry_define(w0, &z), 0);
    ck_assert_uint_eq(am_famdir_series_count(d), 2);
    ck_assert_double_eq(value(w1, "z_total", "a"), 1);
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
}
END_TEST

START_TEST(merge_catalog_gauge_deltas_add_up)
{
    /* The guide's pool gauge moves by deltas from many senders: spread over
     * two workers, the deltas must still add up. */
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = worker(d, NULL, true), *w1 = worker(d, NULL, true);
    ck_line(w0, "alice_db_connections_active:+1|g", AM_OK);
    ck_line(w1, "alice_db_connections_active:+1|g", AM_OK);
    ck_line(w1, "alice_db_connections_active:-1|g", AM_OK);
    ck_line(w0, "alice_db_connections_active:+1|g", AM_OK);
    am_registry_t *snap = snapshot();
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    ck_assert_double_eq(value(snap, "alice_db_connections_active", ""), 2);
    am_registry_free(snap);
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
}
END_TEST

static Suite *merge_suite(void)
{
    Suite *s = suite_create("Merge");
    TCase *m = tcase_create("merge");
    tcase_add_test(m, merge_counters_histograms_summaries_add_up);
    tcase_add_test(m, merge_equals_one_registry);
    tcase_add_test(m, merge_in_steps);
    tcase_add_test(m, merge_set_gauges_union_members);
    tcase_add_loop_test(m, merge_stamped_gauges, 0,
                        (int)(sizeof(gauge_cases) / sizeof(gauge_cases[0])));
    tcase_add_test(m, merge_unstamped_gauge_later_source_wins);
    tcase_add_test(m, merge_skips_family_of_another_shape);
    tcase_add_test(m, merge_empty_and_many_series);
    tcase_add_test(m, merge_catalog_gauge_deltas_add_up);
    suite_add_tcase(s, m);
    TCase *d = tcase_create("directory");
    tcase_add_test(d, directory_first_definition_wins);
    tcase_add_test(d, directory_labels_grow_in_one_order);
    tcase_add_test(d, directory_limits_count_every_worker);
    tcase_add_test(d, directory_set_members_count_every_worker);
    tcase_add_test(d, directory_auto_create_off_still_copies_known_families);
    tcase_add_test(d, directory_define_applies_to_every_worker);
    suite_add_tcase(s, d);
    return s;
}

AM_CHECK_MAIN(merge_suite)
