/* Unit tests for src/registry/registry.c (with src/registry/catalog.c): aggregation semantics
 * of every line type, auto-creation, the catalog, limits, define/replace and
 * table growth. Samples are built with am_parse_line from literal lines.
 *
 * Tests named regression_* pin defects found and fixed (see their comments). */
#include "registry.h"
#include "registry-test.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "parse.h"
#include "check-main.h"

/* ---- helpers ---- */


static am_registry_t *new_registry(bool catalog, const am_limits_t *limits)
{
    am_registry_t *r = am_registry_new(limits);
    ck_assert_ptr_nonnull(r);
    if (catalog)
        ck_assert_int_eq(am_catalog_install(r), 0);
    return r;
}

/* Builds a series key: label values joined by '\0'. vals is NULL-terminated
 * (NULL itself for a family without labels). */
static size_t build_key(const char *const *vals, char *key, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; vals && vals[i]; i++) {
        size_t n = strlen(vals[i]);
        ck_assert_uint_lt(k + n + 1, cap);
        if (i > 0)
            key[k++] = '\0';
        memcpy(key + k, vals[i], n);
        k += n;
    }
    while (k > 0 && key[k - 1] == '\0') /* trailing empty values are left out */
        k--;
    return k;
}

/* The values of the series of family `fam` with label values `vals`. */
static const double *get(const am_registry_t *r, const char *fam, const char *const *vals)
{
    const am_family_t *f = am_registry_find(r, fam);
    if (!f)
        return NULL;
    char key[4096];
    size_t k = build_key(vals, key, sizeof(key));
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s)) {
        size_t kl;
        const char *kp = am_series_key(f, s, &kl);
        if (kl == k && memcmp(kp, key, k) == 0)
            return am_series_values(s);
    }
    return NULL;
}


static const double *must_get(const am_registry_t *r, const char *fam, const char *const *vals)
{
    const double *v = get(r, fam, vals);
    ck_assert_msg(v != NULL, "series of %s missing", fam);
    return v;
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static size_t family_series(const am_registry_t *r, const char *fam)
{
    const am_family_t *f = am_registry_find(r, fam);
    ck_assert_msg(f != NULL, "family %s missing", fam);
    return am_family_series_count(f);
}

static void limits_with(am_limits_t *l, size_t per_family, size_t total, size_t families,
                        bool auto_create)
{
    am_limits_default(l);
    l->max_series_per_family = per_family;
    l->max_series = total;
    l->max_families = families;
    l->auto_create = auto_create;
}

/* ---- counters, gauges, sets: one value per series ---- */

typedef struct scalar_case {
    const char *lines[5];
    const char *family;
    const char *labels[4]; /* NULL-terminated label values */
    double want;
    am_family_type_t type;
    bool is_set;
} scalar_case_t;

static const scalar_case_t scalar_cases[] = {
    /* counters: value, value/rate, packed values, x and x_total are one family */
    {{"c1:1|c"}, "c1_total", {NULL}, 1, AM_FAMILY_COUNTER, false},
    {{"c2:1|c", "c2:2.5|c"}, "c2_total", {NULL}, 3.5, AM_FAMILY_COUNTER, false},
    {{"c3:1|c|@0.5"}, "c3_total", {NULL}, 2, AM_FAMILY_COUNTER, false},
    {{"c4:3|c|@0.1"}, "c4_total", {NULL}, 30, AM_FAMILY_COUNTER, false},
    {{"c5:1:2:3|c"}, "c5_total", {NULL}, 6, AM_FAMILY_COUNTER, false},
    {{"c6:1:2|c|@0.25"}, "c6_total", {NULL}, 12, AM_FAMILY_COUNTER, false},
    {{"c7_total:1|c", "c7:2|c", "c7_total:4|c"}, "c7_total", {NULL}, 7, AM_FAMILY_COUNTER, false},
    {{"c8:0|c"}, "c8_total", {NULL}, 0, AM_FAMILY_COUNTER, false},
    {{"c9.a-b:4|c"}, "c9_a_b_total", {NULL}, 4, AM_FAMILY_COUNTER, false},
    {{"9c:1|c"}, "_9c_total", {NULL}, 1, AM_FAMILY_COUNTER, false},
    {{"c10:1|c|#k:a", "c10:2|c|#k:b", "c10:3|c|#k:a"}, "c10_total", {"a"}, 4, AM_FAMILY_COUNTER,
     false},
    {{"c11:1e3|c", "c11:0.5|c"}, "c11_total", {NULL}, 1000.5, AM_FAMILY_COUNTER, false},
    /* gauges: set, +/- delta, delta on a new series starts from 0, rate ignored */
    {{"g1:5|g"}, "g1", {NULL}, 5, AM_FAMILY_GAUGE, false},
    {{"g2:5|g", "g2:7|g"}, "g2", {NULL}, 7, AM_FAMILY_GAUGE, false},
    {{"g3:5|g", "g3:+2|g"}, "g3", {NULL}, 7, AM_FAMILY_GAUGE, false},
    {{"g4:5|g", "g4:-7.5|g"}, "g4", {NULL}, -2.5, AM_FAMILY_GAUGE, false},
    {{"g5:-3|g"}, "g5", {NULL}, -3, AM_FAMILY_GAUGE, false},
    {{"g6:+3|g"}, "g6", {NULL}, 3, AM_FAMILY_GAUGE, false},
    {{"g7:10|g", "g7:-3|g", "g7:4|g"}, "g7", {NULL}, 4, AM_FAMILY_GAUGE, false},
    {{"g8:1:+2:-0.5|g"}, "g8", {NULL}, 2.5, AM_FAMILY_GAUGE, false},
    {{"g9:5|g|@0.5"}, "g9", {NULL}, 5, AM_FAMILY_GAUGE, false},
    {{"g10:3|g", "g10:0|g"}, "g10", {NULL}, 0, AM_FAMILY_GAUGE, false},
    {{"g11:+1|g|#k:a", "g11:+1|g|#k:b", "g11:+1|g|#k:a"}, "g11", {"a"}, 2, AM_FAMILY_GAUGE, false},
    {{"g12:1.5e2|g", "g12:+0.25|g"}, "g12", {NULL}, 150.25, AM_FAMILY_GAUGE, false},
    /* sets: distinct members since the series was created; rate ignored */
    {{"s1:a|s"}, "s1", {NULL}, 1, AM_FAMILY_GAUGE, true},
    {{"s2:a|s", "s2:b|s", "s2:a|s"}, "s2", {NULL}, 2, AM_FAMILY_GAUGE, true},
    {{"s3:a|s|@0.5", "s3:b|s|@0.5"}, "s3", {NULL}, 2, AM_FAMILY_GAUGE, true},
    {{"s4:1|s", "s4:01|s", "s4:1.0|s", "s4:1|s"}, "s4", {NULL}, 3, AM_FAMILY_GAUGE, true},
    {{"s5:x|s|#k:1", "s5:x|s|#k:2", "s5:y|s|#k:2"}, "s5", {"1"}, 1, AM_FAMILY_GAUGE, true},
    {{"s6:x|s|#k:1", "s6:x|s|#k:2", "s6:y|s|#k:2"}, "s6", {"2"}, 2, AM_FAMILY_GAUGE, true},
    {{"s7:user@example.com|s", "s7:User@example.com|s"}, "s7", {NULL}, 2, AM_FAMILY_GAUGE, true},
};

START_TEST(test_scalar_semantics)
{
    const scalar_case_t *c = &scalar_cases[_i];
    am_registry_t *r = new_registry(true, NULL);
    for (size_t i = 0; i < 5 && c->lines[i]; i++)
        ck_line(r, c->lines[i], AM_OK);
    const am_family_t *f = am_registry_find(r, c->family);
    ck_assert_msg(f != NULL, "case %d: family %s not created", _i, c->family);
    ck_assert_int_eq(am_family_def(f)->type, c->type);
    ck_assert_int_eq(am_family_def(f)->is_set, c->is_set);
    const double *v = get(r, c->family, c->labels[0] ? c->labels : NULL);
    ck_assert_msg(v != NULL, "case %d: series missing", _i);
    ck_assert_msg(v[0] == c->want, "case %d (%s): got %.17g, want %.17g", _i, c->lines[0], v[0],
                  c->want);
    am_registry_free(r);
}
END_TEST

/* ---- histograms and summaries ---- */

/* Default bucket indexes: 0:.005 1:.01 2:.025 3:.05 4:.075 5:.1 6:.25 7:.5
 * 8:.75 9:1 10:2.5 11:5 12:7.5 13:10 14:+Inf. Quality score (catalog):
 * 0..9: 0.1..1.0, 10..19: 10..100, 20: +Inf. */
typedef struct hist_case {
    const char *lines[4];
    const char *family;
    const char *labels[4];
    double count, sum;
    double b[AM_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
} hist_case_t;

#define DUR "alice_api_request_duration_seconds"
#define QUAL "alice_asset_quality_score"

static const hist_case_t hist_cases[] = {
    {{"h1:0.3|h"}, "h1", {NULL}, 1, 0.3, {[7] = 1}},
    /* a value exactly on a bound belongs to it (le is inclusive) */
    {{"h2:0.25|h"}, "h2", {NULL}, 1, 0.25, {[6] = 1}},
    {{"h3:0.005|h"}, "h3", {NULL}, 1, 0.005, {[0] = 1}},
    {{"h4:10|h"}, "h4", {NULL}, 1, 10, {[13] = 1}},
    /* below the first bound, negative, above the last (+Inf only) */
    {{"h5:0.001|h"}, "h5", {NULL}, 1, 0.001, {[0] = 1}},
    {{"h6:-2|h"}, "h6", {NULL}, 1, -2, {[0] = 1}},
    {{"h7:10.5|h"}, "h7", {NULL}, 1, 10.5, {[14] = 1}},
    /* ms -> seconds; h and d as is */
    {{"h8:250|ms"}, "h8", {NULL}, 1, 0.25, {[6] = 1}},
    {{"h9:1500|ms"}, "h9", {NULL}, 1, 1.5, {[10] = 1}},
    {{"h10:1500|h"}, "h10", {NULL}, 1, 1500, {[14] = 1}},
    {{"h11:1500|d"}, "h11", {NULL}, 1, 1500, {[14] = 1}},
    {{"h12:0.5|d", "h12:0.5|h", "h12:500|ms"}, "h12", {NULL}, 3, 1.5, {[7] = 3}},
    /* weights: 1/rate into buckets and count, value/rate into sum */
    {{"h13:0.3|h|@0.25"}, "h13", {NULL}, 4, 0.3 * 4, {[7] = 4}},
    {{"h14:100|ms|@0.5"}, "h14", {NULL}, 2, 0.2, {[5] = 2}},
    {{"h15:1:1|h|@0.5"}, "h15", {NULL}, 4, 4, {[9] = 4}},
    {{"h16:2|h|@0.5", "h16:2|h"}, "h16", {NULL}, 3, 6, {[10] = 3}},
    /* packed values, each counted */
    {{"h17:0.1:0.4:2|h"}, "h17", {NULL}, 3, 0.1 + 0.4 + 2, {[5] = 1, [7] = 1, [10] = 1}},
    {{"h18:1|h|#k:a", "h18:2|h|#k:b", "h18:3|h|#k:a"}, "h18", {"a"}, 2, 4, {[9] = 1, [11] = 1}},
    /* timers exactly on every default bound */
    {{"h19:5:10:25:50:75|ms", "h19:100:250:500:750:1000|ms", "h19:2500:5000:7500:10000|ms",
      "h19:10001|ms"},
     "h19",
     {NULL},
     15,
     0.005 + 0.01 + 0.025 + 0.05 + 0.075 + 0.1 + 0.25 + 0.5 + 0.75 + 1 + 2.5 + 5 + 7.5 + 10 + 10.001,
     {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
    /* catalogued histograms */
    {{DUR ":0.3|h|#provider:p", DUR ":1500|ms|#provider:p"},
     DUR,
     {"p", "", ""},
     2,
     0.3 + 1.5,
     {[7] = 1, [10] = 1}},
    {{QUAL ":0.85|h", QUAL ":85|h", QUAL ":0.3|h", QUAL ":100|d"},
     QUAL,
     {"", ""},
     4,
     0.85 + 85 + 0.3 + 100,
     {[2] = 1, [8] = 1, [18] = 1, [19] = 1}},
    {{QUAL ":1|h", QUAL ":5|h", QUAL ":150|h", QUAL ":0.05|h"},
     QUAL,
     {"", ""},
     4,
     1 + 5 + 150 + 0.05,
     {[0] = 1, [9] = 1, [10] = 1, [20] = 1}},
};

START_TEST(test_histogram_semantics)
{
    const hist_case_t *c = &hist_cases[_i];
    am_registry_t *r = new_registry(true, NULL);
    for (size_t i = 0; i < 4 && c->lines[i]; i++)
        ck_line(r, c->lines[i], AM_OK);
    const am_family_t *f = am_registry_find(r, c->family);
    ck_assert_ptr_nonnull(f);
    const am_family_def_t *def = am_family_def(f);
    ck_assert_int_eq(def->type, AM_FAMILY_HISTOGRAM);
    const double *v = get(r, c->family, c->labels[0] ? c->labels : NULL);
    ck_assert_msg(v != NULL, "case %d: series missing", _i);
    ck_assert_msg(v[0] == c->count, "case %d: count %.17g, want %.17g", _i, v[0], c->count);
    ck_assert_msg(v[1] == c->sum, "case %d: sum %.17g, want %.17g", _i, v[1], c->sum);
    for (size_t i = 0; i <= def->nbuckets; i++)
        ck_assert_msg(v[2 + i] == c->b[i], "case %d: bucket %zu has %.17g, want %.17g", _i, i,
                      v[2 + i], c->b[i]);
    am_registry_free(r);
}
END_TEST

/* The summary family keeps count and sum only; observations of any kind. */
static const struct {
    const char *lines[3];
    double count, sum;
} summary_cases[] = {
    {{"alice_api_request_cost_dollars:0.25:0.5|d|#provider:openai,model:gpt-4"}, 2, 0.75},
    {{"alice_api_request_cost_dollars:0.5|h|@0.5|#provider:openai,model:gpt-4"}, 2, 1},
    {{"alice_api_request_cost_dollars:1500|ms|#model:gpt-4,provider:openai",
      "alice_api_request_cost_dollars:2|d|#provider:openai,model:gpt-4"},
     2,
     3.5},
};

START_TEST(test_summary_semantics)
{
    am_registry_t *r = new_registry(true, NULL);
    for (size_t i = 0; i < 3 && summary_cases[_i].lines[i]; i++)
        ck_line(r, summary_cases[_i].lines[i], AM_OK);
    const am_family_t *f = am_registry_find(r, "alice_api_request_cost_dollars");
    ck_assert_int_eq(am_family_def(f)->type, AM_FAMILY_SUMMARY);
    ck_assert_uint_eq(am_family_series_count(f), 1);
    const double *v = get(r, "alice_api_request_cost_dollars", L("openai", "gpt-4"));
    ck_assert_ptr_nonnull(v);
    ck_assert_double_eq(v[0], summary_cases[_i].count);
    ck_assert_double_eq(v[1], summary_cases[_i].sum);
    am_registry_free(r);
}
END_TEST

/* Regression (fixed): ms values are multiplied by 1.0/1000.0 instead of divided by 1000, so
 * 9 ms becomes 0.009000000000000001 s (and _sum shows it). Fix in
 * am_registry_apply: `observe(f, se, s->values[i] / 1000.0, w)` for timers. */
START_TEST(regression_ms_divides_by_1000)
{
    am_registry_t *r = new_registry(false, NULL);
    ck_line(r, "t:9|ms", AM_OK);
    const double *v = must_get(r, "t", NULL);
    ck_assert_msg(v[1] == 0.009, "9 ms observed as %.17g s, want 0.009", v[1]);
    ck_line(r, "u:13|ms", AM_OK);
    v = must_get(r, "u", NULL);
    ck_assert_msg(v[1] == 0.013, "13 ms observed as %.17g s, want 0.013", v[1]);
    am_registry_free(r);
}
END_TEST

/* ---- auto-creation ---- */

START_TEST(test_auto_family_shapes)
{
    static const struct {
        const char *line, *family;
        am_family_type_t type;
        bool is_set;
        size_t nbuckets;
    } cases[] = {
        {"a.c:1|c", "a_c_total", AM_FAMILY_COUNTER, false, 0},
        {"a.g:1|g", "a_g", AM_FAMILY_GAUGE, false, 0},
        {"a.ms:1|ms", "a_ms", AM_FAMILY_HISTOGRAM, false, 14},
        {"a.h:1|h", "a_h", AM_FAMILY_HISTOGRAM, false, 14},
        {"a.d:1|d", "a_d", AM_FAMILY_HISTOGRAM, false, 14},
        {"a.s:m|s", "a_s", AM_FAMILY_GAUGE, true, 0},
    };
    am_registry_t *r = new_registry(true, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_line(r, cases[i].line, AM_OK);
        const am_family_t *f = am_registry_find(r, cases[i].family);
        ck_assert_msg(f != NULL, "%s not created", cases[i].family);
        const am_family_def_t *d = am_family_def(f);
        ck_assert_str_eq(d->name, cases[i].family);
        ck_assert_int_eq(d->type, cases[i].type);
        ck_assert_int_eq(d->is_set, cases[i].is_set);
        ck_assert_uint_eq(d->nbuckets, cases[i].nbuckets);
        for (size_t k = 0; k < d->nbuckets; k++)
            ck_assert_double_eq(d->buckets[k], am_default_buckets[k]);
        ck_assert_uint_eq(d->nlabels, 0);
        ck_assert_ptr_nonnull(d->help);
        ck_assert_uint_gt(strlen(d->help), 0);
        ck_assert_uint_eq(d->max_series, 0);
    }
    ck_assert_uint_eq(am_registry_family_count(r), 11 + 6);
    ck_assert_uint_eq(am_registry_series_count(r), 6);
    am_registry_free(r);
}
END_TEST

START_TEST(test_default_buckets_are_client_python)
{
    static const double want[14] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                    0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0};
    for (size_t i = 0; i < 14; i++)
        ck_assert_double_eq(am_default_buckets[i], want[i]);
}
END_TEST

/* `x` and `x_total` counter lines feed one family named x_total. */
START_TEST(test_auto_counter_total_suffix)
{
    am_registry_t *r = new_registry(false, NULL);
    ck_line(r, "jobs:1|c|#q:a", AM_OK);
    ck_line(r, "jobs_total:2|c|#q:a", AM_OK);
    ck_line(r, "jobs:4|c|#q:b", AM_OK);
    ck_assert_uint_eq(am_registry_family_count(r), 1);
    ck_assert_ptr_null(am_registry_find(r, "jobs"));
    ck_assert_double_eq(must_get(r, "jobs_total", L("a"))[0], 3);
    ck_assert_double_eq(must_get(r, "jobs_total", L("b"))[0], 4);
    /* a name already ending in _total gets no second suffix */
    ck_line(r, "done_total:1|c", AM_OK);
    ck_assert_ptr_nonnull(am_registry_find(r, "done_total"));
    ck_assert_ptr_null(am_registry_find(r, "done_total_total"));
    am_registry_free(r);
}
END_TEST

/* Labels of an auto family: the first line's mapped tag keys, sorted. */
START_TEST(test_auto_labels_sorted)
{
    am_registry_t *r = new_registry(false, NULL);
    ck_line(r, "m:1|g|#zeta:z1,alpha.beta:a1,mid-x:m1", AM_OK);
    const am_family_def_t *d = am_family_def(am_registry_find(r, "m"));
    ck_assert_uint_eq(d->nlabels, 3);
    ck_assert_str_eq(d->labels[0], "alpha_beta");
    ck_assert_str_eq(d->labels[1], "mid_x");
    ck_assert_str_eq(d->labels[2], "zeta");
    ck_assert_double_eq(must_get(r, "m", L("a1", "m1", "z1"))[0], 1);
    /* tag order on later lines does not matter */
    ck_line(r, "m:+1|g|#mid.x:m1,alpha-beta:a1,zeta:z1", AM_OK);
    ck_assert_double_eq(must_get(r, "m", L("a1", "m1", "z1"))[0], 2);
    ck_assert_uint_eq(family_series(r, "m"), 1);
    am_registry_free(r);
}
END_TEST

/* A later line with a subset of the labels gets empty values; one with a
 * new label grows the family's label set (appended after the others), and
 * an empty value is an absent label. */
START_TEST(test_auto_label_subset_and_extra)
{
    am_registry_t *r = new_registry(false, NULL);
    ck_line(r, "q:1|c|#b:2,a:1", AM_OK);
    ck_line(r, "q:5|c|#b:9", AM_OK);
    ck_line(r, "q:7|c", AM_OK);
    ck_line(r, "q:1|c|#a:1,b:2,c:3", AM_OK);
    ck_line(r, "q:1|c|#c:3", AM_OK);
    ck_line(r, "q:2|c|#a:1,b:2,c:", AM_OK);    /* the series of a:1,b:2 */
    ck_line(r, "q:2|c|#a:1,b:2,zz:", AM_OK);   /* likewise; no label zz */
    ck_line(r, "q:1|c|#c:3,c:4", AM_REJECT_BAD_LABEL); /* one label twice */
    const am_family_def_t *def = am_family_def(am_registry_find(r, "q_total"));
    ck_assert_uint_eq(def->nlabels, 3);
    ck_assert_str_eq(def->labels[0], "a");
    ck_assert_str_eq(def->labels[1], "b");
    ck_assert_str_eq(def->labels[2], "c");
    ck_assert_double_eq(must_get(r, "q_total", L("1", "2", "3"))[0], 1);
    ck_assert_double_eq(must_get(r, "q_total", L("", "", "3"))[0], 1);
    ck_assert_double_eq(must_get(r, "q_total", L("1", "2"))[0], 5);
    ck_assert_uint_eq(family_series(r, "q_total"), 5);
    /* up to AM_MAX_AUTO_LABELS names: 13 more fit, the 17th is bad_label */
    ck_line(r, "q:1|c|#d:1,e:1,f:1,g:1,h:1,i:1,j:1,k:1,l:1,m:1,n:1,o:1,p:1", AM_OK);
    ck_line(r, "q:1|c|#z:1", AM_REJECT_BAD_LABEL);
    ck_line(r, "q:1|c|#a:1,z:", AM_OK); /* empty: no new name */
    ck_assert_uint_eq(def->nlabels, AM_MAX_AUTO_LABELS);
    ck_line(r, "wide:1|c|#a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1,j:1,k:1,l:1,m:1,n:1,o:1,p:1,q:1",
            AM_REJECT_BAD_LABEL);
    ck_assert_ptr_null(am_registry_find(r, "wide_total"));
    am_registry_free(r);
    r = new_registry(false, NULL);
    ck_line(r, "q:1|c|#b:2,a:1", AM_OK);
    ck_line(r, "q:5|c|#b:9", AM_OK);
    ck_line(r, "q:7|c", AM_OK);
    ck_assert_uint_eq(family_series(r, "q_total"), 3);
    ck_assert_double_eq(must_get(r, "q_total", L("1", "2"))[0], 1);
    ck_assert_double_eq(must_get(r, "q_total", L("", "9"))[0], 5);
    ck_assert_double_eq(must_get(r, "q_total", L("", ""))[0], 7);

    /* a family created without labels takes some later */
    ck_line(r, "n:1|g", AM_OK);
    ck_line(r, "n:1|g|#a:1", AM_OK);
    ck_assert_uint_eq(family_series(r, "n"), 2);

    /* a tag without ':' has an empty value: an absent label */
    ck_line(r, "t:3|g|#flag,k:v", AM_OK);
    ck_assert_double_eq(must_get(r, "t", L("v"))[0], 3);
    ck_assert_uint_eq(am_family_def(am_registry_find(r, "t"))->nlabels, 1);
    am_registry_free(r);
}
END_TEST

/* Bad labels on a first line create no family. */
START_TEST(test_auto_bad_labels)
{
    static const struct {
        const char *line;
        am_reason_t want;
    } cases[] = {
        {"h:1|h|#le:1", AM_REJECT_BAD_LABEL},
        {"h:1|ms|#le:1", AM_REJECT_BAD_LABEL},
        {"h:1|g|#a.b:1,a_b:2", AM_REJECT_BAD_LABEL},
        {"h:1|g|#__x:1", AM_REJECT_BAD_LABEL},
        {"h:1|g|#a b:1", AM_REJECT_BAD_LABEL},
    };
    am_registry_t *r = new_registry(false, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_line(r, cases[i].line, cases[i].want);
    ck_assert_uint_eq(am_registry_family_count(r), 0);
    ck_assert_ptr_null(am_registry_find(r, "h"));
    /* `le` is an ordinary label on a gauge */
    ck_line(r, "g:1|g|#le:1", AM_OK);
    am_registry_free(r);
}
END_TEST

/* Regression (fixed): a first line rejected after its family was created leaves the
 * family behind: nine 1000-byte tag values pass the parser (each value is
 * under AM_MAX_LABEL_VALUE_LEN) but not AM_MAX_KEY_LEN (8192), so
 * am_registry_apply returns bad_label after create_family() has added
 * "big" - an empty family in /metrics that also takes an auto-family slot.
 * Fix: in create_family(), reject before add_family() when the values plus
 * separators exceed AM_MAX_KEY_LEN (the sum does not depend on label
 * order), or remove the family again on that path. */
START_TEST(regression_rejected_first_line_creates_family)
{
    am_registry_t *r = new_registry(false, NULL);
    am_buf_t b;
    am_buf_init(&b, 0);
    am_buf_puts(&b, "big:1|g|#");
    for (int i = 0; i < 9; i++) {
        am_buf_printf(&b, "%sk%d:", i ? "," : "", i);
        for (int k = 0; k < 1000; k++)
            am_buf_putc(&b, 'v');
    }
    ck_line(r, b.data, AM_REJECT_BAD_LABEL);
    ck_assert_uint_eq(am_registry_family_count(r), 0);
    ck_assert_ptr_null(am_registry_find(r, "big"));
    am_buf_free(&b);
    am_registry_free(r);
}
END_TEST

/* ---- catalogued families ---- */

START_TEST(test_catalog_contents)
{
    static const struct {
        const char *name;
        am_family_type_t type;
        const char *labels[5];
        size_t nbuckets;
    } want[] = {
        {"alice_api_requests_total",
         AM_FAMILY_COUNTER,
         {"provider", "model", "operation", "status"},
         0},
        {"alice_api_request_duration_seconds",
         AM_FAMILY_HISTOGRAM,
         {"provider", "model", "operation"},
         14},
        {"alice_api_request_cost_dollars", AM_FAMILY_SUMMARY, {"provider", "model"}, 0},
        {"alice_provider_health_status", AM_FAMILY_GAUGE, {"provider"}, 0},
        {"alice_provider_circuit_breaker_state", AM_FAMILY_GAUGE, {"provider"}, 0},
        {"alice_provider_error_rate", AM_FAMILY_GAUGE, {"provider"}, 0},
        {"alice_db_connections_active", AM_FAMILY_GAUGE, {NULL}, 0},
        {"alice_db_query_duration_seconds", AM_FAMILY_HISTOGRAM, {"query_type"}, 14},
        {"alice_assets_processed_total",
         AM_FAMILY_COUNTER,
         {"media_type", "source", "status"},
         0},
        {"alice_asset_quality_score", AM_FAMILY_HISTOGRAM, {"media_type", "quality_type"}, 20},
        {"alice_events_published_total", AM_FAMILY_COUNTER, {"event_type"}, 0},
    };
    static const double quality[20] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
                                       10,  20,  30,  40,  50,  60,  70,  80,  90,  100};
    ck_assert_uint_eq(am_catalog_count(), 11);
    am_registry_t *r = new_registry(true, NULL);
    ck_assert_uint_eq(am_registry_family_count(r), 11);
    ck_assert_uint_eq(am_registry_series_count(r), 0);
    const am_family_t *f = am_registry_first(r);
    for (size_t i = 0; i < 11; i++, f = am_family_next(f)) {
        ck_assert_ptr_nonnull(f);
        const am_family_def_t *d = am_family_def(f);
        ck_assert_str_eq(d->name, want[i].name); /* also checks catalog order */
        ck_assert_int_eq(d->type, want[i].type);
        ck_assert(!d->is_set);
        size_t n = 0;
        while (n < 5 && want[i].labels[n])
            n++;
        ck_assert_uint_eq(d->nlabels, n);
        for (size_t k = 0; k < n; k++)
            ck_assert_str_eq(d->labels[k], want[i].labels[k]);
        ck_assert_uint_eq(d->nbuckets, want[i].nbuckets);
        for (size_t k = 0; k < d->nbuckets; k++)
            ck_assert_double_eq(d->buckets[k],
                                d->nbuckets == 20 ? quality[k] : am_default_buckets[k]);
        ck_assert_uint_gt(strlen(d->help), 0);
        ck_assert_uint_eq(am_family_series_count(f), 0);
    }
    ck_assert_ptr_null(f);
    am_registry_free(r);
}
END_TEST

START_TEST(test_catalog_labels)
{
    am_registry_t *r = new_registry(true, NULL);
    /* all labels, any order */
    ck_line(r,
            "alice_api_requests_total:1|c|#status:success,operation:chat,model:gpt-4,"
            "provider:openai",
            AM_OK);
    ck_line(r,
            "alice_api_requests:2|c|#provider:openai,model:gpt-4,operation:chat,status:success",
            AM_OK);
    ck_assert_double_eq(
        must_get(r, "alice_api_requests_total", L("openai", "gpt-4", "chat", "success"))[0], 3);
    /* declared labels missing from the line get an empty value */
    ck_line(r, "alice_api_requests_total:1|c|#provider:anthropic", AM_OK);
    ck_assert_double_eq(must_get(r, "alice_api_requests_total", L("anthropic", "", "", ""))[0], 1);
    ck_line(r, "alice_api_requests_total:1|c", AM_OK);
    ck_assert_double_eq(must_get(r, "alice_api_requests_total", L("", "", "", ""))[0], 1);
    /* undeclared labels reject the line */
    ck_line(r, "alice_api_requests_total:1|c|#provider:openai,region:eu",
            AM_REJECT_UNDECLARED_LABEL);
    ck_line(r, "alice_db_connections_active:3|g|#pool:main", AM_REJECT_UNDECLARED_LABEL);
    ck_line(r, "alice_api_request_duration_seconds:1|h|#le:1", AM_REJECT_BAD_LABEL);
    ck_assert_uint_eq(family_series(r, "alice_api_requests_total"), 3);
    ck_assert_uint_eq(family_series(r, "alice_db_connections_active"), 0);
    /* tag keys are mapped like names: query-type is query_type */
    ck_line(r, "alice_db_query_duration_seconds:5|ms|#query-type:select", AM_OK);
    ck_assert_double_eq(must_get(r, "alice_db_query_duration_seconds", L("select"))[0], 1);
    ck_line(r, "alice_db_connections_active:3|g", AM_OK);
    ck_line(r, "alice_db_connections_active:-1|g", AM_OK);
    ck_assert_double_eq(must_get(r, "alice_db_connections_active", NULL)[0], 2);
    am_registry_free(r);
}
END_TEST

/* Which line types feed which family types. */
static const struct {
    const char *line;
    am_reason_t want;
} type_cases[] = {
    /* counter family: c only */
    {"alice_api_requests_total:1|c", AM_OK},
    {"alice_api_requests_total:1|g", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_requests_total:1|ms", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_requests_total:1|h", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_requests_total:1|d", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_requests_total:x|s", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_requests:1|h", AM_REJECT_TYPE_CONFLICT}, /* clashes with x_total */
    /* gauge family (not a set): g only */
    {"alice_provider_error_rate:0.5|g", AM_OK},
    {"alice_provider_error_rate:1|c", AM_REJECT_TYPE_CONFLICT},
    {"alice_provider_error_rate:1|ms", AM_REJECT_TYPE_CONFLICT},
    {"alice_provider_error_rate:1|h", AM_REJECT_TYPE_CONFLICT},
    {"alice_provider_error_rate:1|d", AM_REJECT_TYPE_CONFLICT},
    {"alice_provider_error_rate:x|s", AM_REJECT_TYPE_CONFLICT},
    /* histogram family: ms, h, d */
    {"alice_api_request_duration_seconds:1|ms", AM_OK},
    {"alice_api_request_duration_seconds:1|h", AM_OK},
    {"alice_api_request_duration_seconds:1|d", AM_OK},
    {"alice_api_request_duration_seconds:1|g", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_request_duration_seconds:1|c", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_request_duration_seconds:x|s", AM_REJECT_TYPE_CONFLICT},
    /* summary family: ms, h, d */
    {"alice_api_request_cost_dollars:1|ms", AM_OK},
    {"alice_api_request_cost_dollars:1|h", AM_OK},
    {"alice_api_request_cost_dollars:1|d", AM_OK},
    {"alice_api_request_cost_dollars:1|g", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_request_cost_dollars:1|c", AM_REJECT_TYPE_CONFLICT},
    {"alice_api_request_cost_dollars:x|s", AM_REJECT_TYPE_CONFLICT},
    /* auto families keep the type of their first line */
    {"auto.set:x|s", AM_OK},
    {"auto.set:1|g", AM_REJECT_TYPE_CONFLICT},
    {"auto.gauge:1|g", AM_OK},
    {"auto.gauge:x|s", AM_REJECT_TYPE_CONFLICT},
    {"auto.gauge:1|ms", AM_REJECT_TYPE_CONFLICT},
    {"auto.hist:1|d", AM_OK},
    {"auto.hist:1|ms", AM_OK},
    {"auto.hist:1|g", AM_REJECT_TYPE_CONFLICT},
    {"auto.hist:x|s", AM_REJECT_TYPE_CONFLICT},
    {"auto.cnt:1|c", AM_OK},
    {"auto.cnt_total:1|g", AM_REJECT_TYPE_CONFLICT},
    {"auto.cnt_total:1|h", AM_REJECT_TYPE_CONFLICT},
};

START_TEST(test_type_conflicts)
{
    /* One registry for the whole table: conflicts must not disturb state. */
    am_registry_t *r = new_registry(true, NULL);
    size_t ok = 0;
    for (size_t i = 0; i < sizeof(type_cases) / sizeof(type_cases[0]); i++) {
        ck_line(r, type_cases[i].line, type_cases[i].want);
        ok += type_cases[i].want == AM_OK;
    }
    ck_assert_uint_eq(am_registry_family_count(r), 11 + 4);
    ck_assert_uint_eq(am_registry_series_count(r), 8);
    ck_assert_double_eq(must_get(r, "alice_api_requests_total", L("", "", "", ""))[0], 1);
    ck_assert_double_eq(must_get(r, "alice_api_request_duration_seconds", L("", "", ""))[0], 3);
    ck_assert_double_eq(must_get(r, "alice_api_request_cost_dollars", L("", ""))[0], 3);
    ck_assert_double_eq(must_get(r, "alice_provider_error_rate", L(""))[0], 0.5);
    ck_assert_double_eq(must_get(r, "auto_set", NULL)[0], 1);
    ck_assert_double_eq(must_get(r, "auto_hist", NULL)[0], 2);
    ck_assert_uint_eq(ok, 13);
    am_registry_free(r);
}
END_TEST

/* ---- reserved names and clashes ---- */

START_TEST(test_reserved_prefixes)
{
    static const char *const lines[] = {
        "alice_metricsd_samples_total:1|c", "alice_metricsd_x:1|g", "alice.metricsd.x:1|g",
        "alice-metricsd-series:1|g",        "process_cpu_seconds:1|c", "process.open_fds:1|g",
        "process_x:1|ms",                   "alice_metricsd_u:a|s",
    };
    am_registry_t *r = new_registry(true, NULL);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        ck_line(r, lines[i], AM_REJECT_BAD_NAME);
    ck_assert_uint_eq(am_registry_family_count(r), 11);
    /* only the exact prefixes are reserved */
    ck_line(r, "processes:1|g", AM_OK);
    ck_line(r, "alice_metrics_x:1|g", AM_OK);
    am_registry_free(r);
}
END_TEST

/* A new family may not share a sample name with an existing one. */
static const struct {
    const char *setup;
    const char *line;
} clash_cases[] = {
    {"x:1|c", "x:1|g"},             /* counter x_total owns x (OpenMetrics family name) */
    {"x:1|g", "x:1|c"},             /* and the reverse */
    {"x:1|g", "x:1|h"},             /* same name, other type */
    {"x_total:1|g", "x:1|c"},       /* the gauge x_total is not a counter */
    {"h:1|h", "h_count:1|g"},       /* histogram samples */
    {"h:1|h", "h_sum:1|g"},         /*  */
    {"h:1|h", "h_bucket:1|g"},      /*  */
    {"h:1|h", "h_bucket:1|c"},      /* counter h_bucket_total owns h_bucket */
    {"h:1|h", "h_count:1|c"},       /*  */
    {"h_sum:1|g", "h:1|h"},         /* the reverse */
    {"h_count:1|g", "h:1|ms"},      /*  */
    {"h_bucket:1|c", "h:1|d"},      /*  */
    {"x:1|c", "x_total:1|ms"},      /*  */
    {"x:1|c", "x:1|ms"},            /*  */
    {"u:a|s", "u:1|c"},             /* set gauge */
    {"noop:1|g", "alice_api_request_duration_seconds_count:1|g"},
    {"noop:1|g", "alice_api_request_duration_seconds_bucket:1|c"},
    {"noop:1|g", "alice_api_request_cost_dollars_sum:1|g"},
    {"noop:1|g", "alice_events_published:1|g"},
};

START_TEST(test_name_clash)
{
    am_registry_t *r = new_registry(true, NULL);
    ck_line(r, clash_cases[_i].setup, AM_OK);
    size_t nf = am_registry_family_count(r);
    ck_line(r, clash_cases[_i].line, AM_REJECT_TYPE_CONFLICT);
    ck_assert_uint_eq(am_registry_family_count(r), nf);
    ck_assert_uint_eq(am_registry_series_count(r), 1);
    am_registry_free(r);
}
END_TEST

/* Regression (fixed): OpenMetrics reserves `_created` for counters, histograms and
 * summaries (OM 1.0 "Suffixes": "a gauge called foo_created as a counter
 * called foo could create a foo_created"); prometheus_client's OM parser
 * rejects such a scrape with "Clashing name: foo_created". The registry
 * accepts the clashing family. Fix: owned_names() in registry.c should also
 * list <base>_created for counters (base = name without _total), histograms
 * and summaries. */
static const struct {
    const char *setup, *line;
} created_clash_cases[] = {
    {"foo:1|c", "foo_created:1|g"},
    {"lat:1|h", "lat_created:1|g"},
    {"lat_created:1|g", "lat:1|h"},
    {"noop:1|g", "alice_api_request_cost_dollars_created:1|g"},
};

START_TEST(regression_created_suffix_clash)
{
    am_registry_t *r = new_registry(true, NULL);
    ck_line(r, created_clash_cases[_i].setup, AM_OK);
    ck_line(r, created_clash_cases[_i].line, AM_REJECT_TYPE_CONFLICT);
    am_registry_free(r);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_limit_per_family_default)
{
    am_limits_t lim;
    limits_with(&lim, 3, 1000, 1000, true);
    am_registry_t *r = new_registry(true, &lim);
    ck_line(r, "k:1|c|#id:1", AM_OK);
    ck_line(r, "k:1|c|#id:2", AM_OK);
    ck_line(r, "k:1|c|#id:3", AM_OK);
    ck_line(r, "k:1|c|#id:4", AM_REJECT_CARDINALITY);
    ck_line(r, "k:1|c|#id:5", AM_REJECT_CARDINALITY);
    /* existing series keep counting */
    ck_line(r, "k:5|c|#id:2", AM_OK);
    ck_assert_double_eq(must_get(r, "k_total", L("2"))[0], 6);
    ck_assert_ptr_null(get(r, "k_total", L("4")));
    ck_assert_uint_eq(family_series(r, "k_total"), 3);
    /* other families and catalogued ones have their own count */
    ck_line(r, "j:1|g|#id:1", AM_OK);
    ck_line(r, "alice_events_published_total:1|c|#event_type:a", AM_OK);
    ck_line(r, "alice_events_published_total:1|c|#event_type:b", AM_OK);
    ck_line(r, "alice_events_published_total:1|c|#event_type:c", AM_OK);
    ck_line(r, "alice_events_published_total:1|c|#event_type:d", AM_REJECT_CARDINALITY);
    ck_assert_uint_eq(am_registry_series_count(r), 7);
    /* a histogram series is one series, whatever its bucket count */
    ck_line(r, "hh:1|h|#id:1", AM_OK);
    ck_line(r, "hh:1|h|#id:2", AM_OK);
    ck_line(r, "hh:1|h|#id:3", AM_OK);
    ck_line(r, "hh:1|h|#id:4", AM_REJECT_CARDINALITY);
    /* a set series too, whatever its member count */
    ck_line(r, "ss:a|s|#id:1", AM_OK);
    ck_line(r, "ss:b|s|#id:1", AM_OK);
    ck_line(r, "ss:c|s|#id:1", AM_OK);
    ck_line(r, "ss:d|s|#id:1", AM_OK);
    ck_assert_double_eq(must_get(r, "ss", L("1"))[0], 4);
    am_registry_free(r);
}
END_TEST

START_TEST(test_limit_per_family_override)
{
    am_limits_t lim;
    limits_with(&lim, 3, 1000, 1000, true);
    am_registry_t *r = new_registry(false, &lim);
    am_family_def_t def = {.name = S("small_total"), .help = S("Small."), .type = AM_FAMILY_COUNTER,
                           .nlabels = 1, .labels = {S("id")}, .max_series = 2};
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    am_family_def_t big = {.name = S("big"), .help = S("Big."), .type = AM_FAMILY_GAUGE,
                           .nlabels = 1, .labels = {S("id")}, .max_series = 5};
    ck_assert_int_eq(am_registry_define(r, &big), 0);

    ck_line(r, "small:1|c|#id:1", AM_OK);
    ck_line(r, "small:1|c|#id:2", AM_OK);
    ck_line(r, "small:1|c|#id:3", AM_REJECT_CARDINALITY);
    ck_line(r, "small:1|c|#id:1", AM_OK);
    ck_assert_double_eq(must_get(r, "small_total", L("1"))[0], 2);
    char line[64];
    for (int i = 0; i < 5; i++) {
        snprintf(line, sizeof(line), "big:%d|g|#id:%d", i, i);
        ck_line(r, line, AM_OK); /* above the default of 3 */
    }
    ck_line(r, "big:1|g|#id:x", AM_REJECT_CARDINALITY);
    ck_assert_uint_eq(family_series(r, "big"), 5);
    ck_assert_uint_eq(family_series(r, "small_total"), 2);
    am_registry_free(r);
}
END_TEST

START_TEST(test_limit_total_series)
{
    am_limits_t lim;
    limits_with(&lim, 100, 5, 1000, true);
    am_registry_t *r = new_registry(true, &lim);
    ck_line(r, "a:1|c|#id:1", AM_OK);
    ck_line(r, "a:1|c|#id:2", AM_OK);
    ck_line(r, "b:1|g", AM_OK);
    ck_line(r, "alice_provider_health_status:1|g|#provider:p", AM_OK);
    ck_line(r, "c:1|h", AM_OK);
    ck_assert_uint_eq(am_registry_series_count(r), 5);
    ck_line(r, "a:1|c|#id:3", AM_REJECT_CARDINALITY);
    ck_line(r, "alice_provider_health_status:1|g|#provider:q", AM_REJECT_CARDINALITY);
    ck_line(r, "d:1|g", AM_REJECT_CARDINALITY);
    ck_assert_ptr_null(am_registry_find(r, "d"));
    /* existing series keep counting */
    ck_line(r, "a:1|c|#id:1", AM_OK);
    ck_line(r, "c:2|h", AM_OK);
    ck_assert_double_eq(must_get(r, "a_total", L("1"))[0], 2);
    ck_assert_double_eq(must_get(r, "c", NULL)[0], 2);
    ck_assert_uint_eq(am_registry_series_count(r), 5);
    am_registry_free(r);
}
END_TEST

START_TEST(test_limit_auto_families)
{
    am_limits_t lim;
    limits_with(&lim, 100, 1000, 2, true);
    am_registry_t *r = new_registry(true, &lim);
    ck_line(r, "f1:1|g", AM_OK);
    ck_line(r, "f2:1|c", AM_OK);
    ck_line(r, "f3:1|h", AM_REJECT_CARDINALITY);
    ck_line(r, "f4:1|g", AM_REJECT_CARDINALITY);
    ck_assert_ptr_null(am_registry_find(r, "f3"));
    ck_assert_uint_eq(am_registry_family_count(r), 13);
    /* catalogued families do not count against it; existing ones go on */
    ck_line(r, "alice_provider_health_status:1|g|#provider:p", AM_OK);
    ck_line(r, "f1:5|g", AM_OK);
    ck_line(r, "f2:1|c", AM_OK);
    ck_assert_double_eq(must_get(r, "f1", NULL)[0], 5);
    ck_assert_double_eq(must_get(r, "f2_total", NULL)[0], 2);
    /* defining an auto family makes it catalogued, freeing a slot */
    am_family_def_t def = {.name = S("f1"), .help = S("Now catalogued."), .type = AM_FAMILY_GAUGE};
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    ck_assert_double_eq(must_get(r, "f1", NULL)[0], 5); /* same shape: kept */
    ck_line(r, "f3:1|h", AM_OK);
    ck_line(r, "f4:1|g", AM_REJECT_CARDINALITY);
    am_registry_free(r);
}
END_TEST

START_TEST(test_auto_create_off)
{
    am_limits_t lim;
    limits_with(&lim, 100, 1000, 1000, false);
    am_registry_t *r = new_registry(true, &lim);
    ck_line(r, "new:1|c", AM_REJECT_UNKNOWN_FAMILY);
    ck_line(r, "new:1|g", AM_REJECT_UNKNOWN_FAMILY);
    ck_line(r, "new:1|ms", AM_REJECT_UNKNOWN_FAMILY);
    ck_line(r, "new:a|s", AM_REJECT_UNKNOWN_FAMILY);
    ck_assert_uint_eq(am_registry_family_count(r), 11);
    ck_line(r, "alice_api_requests:1|c|#provider:p", AM_OK);
    ck_line(r, "alice_api_requests_total:1|g", AM_REJECT_TYPE_CONFLICT);
    am_registry_free(r);

    /* switched off at run time: existing auto families go on */
    r = new_registry(false, NULL);
    ck_line(r, "old:1|c", AM_OK);
    limits_with(&lim, 100, 1000, 1000, false);
    am_registry_set_limits(r, &lim);
    ck_line(r, "old:1|c", AM_OK);
    ck_line(r, "old:1|c|#a:1", AM_OK); /* an existing family's labels still grow */
    ck_line(r, "other:1|c", AM_REJECT_UNKNOWN_FAMILY);
    ck_assert_double_eq(must_get(r, "old_total", NULL)[0], 2);
    am_registry_free(r);
}
END_TEST

/* Lowered limits apply to new series only. */
START_TEST(test_set_limits_lowered)
{
    am_registry_t *r = new_registry(false, NULL);
    ck_line(r, "k:1|c|#id:1", AM_OK);
    ck_line(r, "k:1|c|#id:2", AM_OK);
    ck_line(r, "k:1|c|#id:3", AM_OK);
    am_limits_t lim;
    limits_with(&lim, 2, 1000, 1000, true);
    am_registry_set_limits(r, &lim);
    ck_line(r, "k:1|c|#id:3", AM_OK);
    ck_line(r, "k:1|c|#id:4", AM_REJECT_CARDINALITY);
    ck_assert_uint_eq(family_series(r, "k_total"), 3);
    ck_assert_double_eq(must_get(r, "k_total", L("3"))[0], 2);
    am_registry_free(r);
}
END_TEST

/* Set members count against one budget over every set series: past it a
 * new member is refused, members seen before still count, and a series'
 * members come back to the budget when it is freed (a redefinition). */
START_TEST(test_set_members_total_limit)
{
    am_limits_t lim;
    am_limits_default(&lim);
    lim.max_set_members = 5;
    am_registry_t *r = new_registry(false, &lim);
    ck_line(r, "users:a|s|#team:x", AM_OK);
    ck_line(r, "users:b|s|#team:x", AM_OK);
    ck_line(r, "users:a|s|#team:y", AM_OK); /* the same member in another series counts */
    ck_line(r, "visits:p|s", AM_OK);
    ck_line(r, "visits:q|s", AM_OK);
    ck_line(r, "visits:r|s", AM_REJECT_CARDINALITY);
    ck_line(r, "users:c|s|#team:y", AM_REJECT_CARDINALITY);
    ck_line(r, "users:b|s|#team:x", AM_OK);                 /* seen before: no new member */
    ck_line(r, "users:a|s|#team:z", AM_REJECT_CARDINALITY); /* a new series' first member */
    ck_assert_double_eq(must_get(r, "visits", L(""))[0], 2);
    ck_assert_double_eq(must_get(r, "users", L("x"))[0], 2);
    /* Redefined (labels change): users' 3 members are freed, and come back. */
    am_family_def_t def = {.name = S("users"),
                           .help = S("h"),
                           .type = AM_FAMILY_GAUGE,
                           .is_set = true,
                           .nlabels = 1,
                           .labels = {S("region")}};
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    ck_line(r, "users:a|s|#region:eu", AM_OK);
    ck_line(r, "users:b|s|#region:eu", AM_OK);
    ck_line(r, "visits:r|s", AM_OK);
    ck_line(r, "visits:s|s", AM_REJECT_CARDINALITY);
    am_registry_free(r);
}
END_TEST

/* limits.max_series_bytes: series are charged their memory (longer label
 * text costs more); past the budget a new series is refused, existing ones
 * go on, and a family's series give their bytes back when freed. */
START_TEST(test_series_bytes_limit)
{
    am_registry_t *r = new_registry(false, NULL);
    ck_assert_uint_eq(am_registry_series_bytes(r), 0);
    ck_line(r, "k:1|c|#id:1", AM_OK);
    size_t one = am_registry_series_bytes(r);
    ck_assert_uint_gt(one, 40);
    ck_line(r, "k:1|c|#id:1", AM_OK); /* the same series: nothing more */
    ck_assert_uint_eq(am_registry_series_bytes(r), one);
    ck_line(r, "k:1|c|#id:1234567890", AM_OK); /* 9 more bytes of label text */
    ck_assert_uint_eq(am_registry_series_bytes(r), 2 * one + 9);

    am_limits_t lim;
    am_limits_default(&lim);
    lim.max_series_bytes = 4 * one + 9 + one / 2; /* room for two more short ones */
    am_registry_set_limits(r, &lim);
    ck_line(r, "k:1|c|#id:2", AM_OK);
    ck_line(r, "k:1|c|#id:3", AM_OK);
    ck_line(r, "k:1|c|#id:4", AM_REJECT_CARDINALITY);
    ck_line(r, "other:1|g", AM_REJECT_CARDINALITY);
    ck_assert_ptr_null(am_registry_find(r, "other"));
    ck_line(r, "k:1|c|#id:3", AM_OK); /* existing series keep counting */
    ck_assert_double_eq(must_get(r, "k_total", L("3"))[0], 2);
    ck_assert_uint_eq(am_registry_series_bytes(r), 4 * one + 9);

    /* A gauge k takes the counter's names: k_total and its series are
     * freed, their bytes given back. */
    am_family_def_t def = {.name = S("k"), .help = S("h"), .type = AM_FAMILY_GAUGE};
    ck_assert_int_eq(am_registry_define(r, &def), 1);
    ck_assert_uint_eq(am_registry_series_bytes(r), 0);
    ck_line(r, "other:1|g", AM_OK);
    am_registry_free(r);
}
END_TEST

/* ---- define / replace ---- */

START_TEST(test_define_same_shape_keeps_series)
{
    am_registry_t *r = new_registry(true, NULL);
    ck_line(r, "alice_events_published_total:2|c|#event_type:a", AM_OK);
    am_family_def_t def = {.name = S("alice_events_published_total"),
                           .help = S("Replaced help."),
                           .type = AM_FAMILY_COUNTER,
                           .nlabels = 1,
                           .labels = {S("event_type")},
                           .max_series = 7};
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    const am_family_t *f = am_registry_find(r, "alice_events_published_total");
    ck_assert_str_eq(am_family_def(f)->help, "Replaced help.");
    ck_assert_uint_eq(am_family_def(f)->max_series, 7);
    ck_assert_uint_eq(am_family_series_count(f), 1);
    ck_line(r, "alice_events_published:1|c|#event_type:a", AM_OK);
    ck_assert_double_eq(must_get(r, "alice_events_published_total", L("a"))[0], 3);
    ck_assert_uint_eq(am_registry_family_count(r), 11);
    ck_assert_uint_eq(am_registry_series_count(r), 1);
    /* the registry copied the definition */
    ck_assert_ptr_ne(am_family_def(f)->help, def.help);
    /* the family keeps its place in the order */
    const am_family_t *last = am_registry_first(r);
    while (am_family_next(last))
        last = am_family_next(last);
    ck_assert_ptr_eq(last, f);
    am_registry_free(r);
}
END_TEST

typedef struct define_case {
    const char *what;
    am_family_def_t def;
    const char *line_after; /* accepted by the new shape */
} define_case_t;

static const double new_buckets[3] = {1, 2, 3};

static const define_case_t define_cases[] = {
    {"labels changed",
     {.name = S("alice_db_query_duration_seconds"),
      .help = S("h"),
      .type = AM_FAMILY_HISTOGRAM,
      .nlabels = 1,
      .labels = {S("db")},
      .nbuckets = 14},
     "alice_db_query_duration_seconds:1|h|#db:main"},
    {"label added",
     {.name = S("alice_db_query_duration_seconds"),
      .help = S("h"),
      .type = AM_FAMILY_HISTOGRAM,
      .nlabels = 2,
      .labels = {S("query_type"), S("db")},
      .nbuckets = 14},
     "alice_db_query_duration_seconds:1|h|#db:main,query_type:select"},
    {"type changed",
     {.name = S("alice_db_query_duration_seconds"),
      .help = S("h"),
      .type = AM_FAMILY_SUMMARY,
      .nlabels = 1,
      .labels = {S("query_type")}},
     "alice_db_query_duration_seconds:1|h|#query_type:select"},
    {"buckets changed",
     {.name = S("alice_db_query_duration_seconds"),
      .help = S("h"),
      .type = AM_FAMILY_HISTOGRAM,
      .nlabels = 1,
      .labels = {S("query_type")},
      .nbuckets = 3},
     "alice_db_query_duration_seconds:2|h|#query_type:select"},
};

START_TEST(test_define_changed_shape_drops_series)
{
    const define_case_t *c = &define_cases[_i];
    am_family_def_t def = c->def;
    if (def.type == AM_FAMILY_HISTOGRAM && def.nbuckets == 14)
        memcpy(def.buckets, am_default_buckets, sizeof(am_default_buckets));
    else if (def.nbuckets == 3)
        memcpy(def.buckets, new_buckets, sizeof(new_buckets));

    am_registry_t *r = new_registry(true, NULL);
    ck_line(r, "alice_db_query_duration_seconds:5|ms|#query_type:select", AM_OK);
    ck_line(r, "alice_db_query_duration_seconds:5|ms|#query_type:insert", AM_OK);
    ck_line(r, "alice_events_published_total:1|c", AM_OK);
    ck_assert_uint_eq(am_registry_series_count(r), 3);

    ck_assert_int_eq(am_registry_define(r, &def), 0);
    const am_family_t *f = am_registry_find(r, "alice_db_query_duration_seconds");
    ck_assert_msg(am_family_series_count(f) == 0, "%s: series kept", c->what);
    ck_assert_ptr_null(am_family_first_series(f));
    ck_assert_uint_eq(am_registry_series_count(r), 1);
    ck_assert_int_eq(am_family_def(f)->type, def.type);
    ck_assert_uint_eq(am_family_def(f)->nlabels, def.nlabels);
    ck_assert_uint_eq(am_registry_family_count(r), 11);

    ck_line(r, c->line_after, AM_OK);
    ck_assert_uint_eq(am_family_series_count(f), 1);
    const double *v = am_series_values(am_family_first_series(f));
    ck_assert_double_eq(v[0], 1);
    if (def.nbuckets == 3) {
        /* the new buckets place the observation: 2 is in le=2 */
        ck_assert_double_eq(v[2 + 0], 0);
        ck_assert_double_eq(v[2 + 1], 1);
        ck_assert_double_eq(v[2 + 2], 0);
        ck_assert_double_eq(v[2 + 3], 0);
    }
    am_registry_free(r);
}
END_TEST

/* A new definition is appended after the existing families. */
START_TEST(test_define_new_family)
{
    am_registry_t *r = new_registry(true, NULL);
    ck_line(r, "auto1:1|g", AM_OK);
    am_family_def_t def = {.name = S("cfg_jobs_total"), .help = S("Jobs."), .type = AM_FAMILY_COUNTER,
                           .nlabels = 2, .labels = {S("queue"), S("status")}};
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    ck_assert_uint_eq(am_registry_family_count(r), 13);
    const am_family_t *f = am_registry_first(r);
    for (int i = 0; i < 12; i++)
        f = am_family_next(f);
    ck_assert_str_eq(am_family_def(f)->name, "cfg_jobs_total");
    ck_line(r, "cfg.jobs:1|c|#status:ok", AM_OK);
    ck_line(r, "cfg_jobs:1|c|#queue:q,status:ok,x:1", AM_REJECT_UNDECLARED_LABEL);
    ck_assert_double_eq(must_get(r, "cfg_jobs_total", L("", "ok"))[0], 1);
    am_registry_free(r);
}
END_TEST

START_TEST(test_def_copy_and_shape)
{
    am_family_def_t a = {.name = S("x"), .help = NULL, .type = AM_FAMILY_HISTOGRAM,
                         .nlabels = 2, .labels = {S("a"), S("b")}, .nbuckets = 2,
                         .buckets = {1, 2}, .max_series = 3};
    am_family_def_t c;
    ck_assert_int_eq(am_family_def_copy(&c, &a), 0);
    ck_assert_str_eq(c.name, "x");
    ck_assert_str_eq(c.help, ""); /* NULL help becomes "" */
    ck_assert_ptr_ne(c.labels[0], a.labels[0]);
    ck_assert_str_eq(c.labels[1], "b");
    ck_assert_uint_eq(c.max_series, 3);
    ck_assert(am_family_def_same_shape(&a, &c));
    c.max_series = 9; /* not part of the shape */
    ck_assert(am_family_def_same_shape(&a, &c));
    c.buckets[1] = 2.5;
    ck_assert(!am_family_def_same_shape(&a, &c));
    c.buckets[1] = 2;
    c.labels[1][0] = 'z';
    ck_assert(!am_family_def_same_shape(&a, &c));
    c.labels[1][0] = 'b';
    c.is_set = true;
    ck_assert(!am_family_def_same_shape(&a, &c));
    c.is_set = false;
    c.type = AM_FAMILY_SUMMARY;
    ck_assert(!am_family_def_same_shape(&a, &c));
    am_family_def_clear(&c);
    ck_assert_ptr_null(c.name);
    ck_assert_uint_eq(c.nlabels, 0);
}
END_TEST

/* ---- order and table growth ---- */

START_TEST(test_creation_order)
{
    am_registry_t *r = new_registry(false, NULL);
    static const char *const fams[] = {"zz", "aa", "mm", "bb"};
    for (size_t i = 0; i < 4; i++) {
        char line[64];
        snprintf(line, sizeof(line), "%s:1|g", fams[i]);
        ck_line(r, line, AM_OK);
    }
    const am_family_t *f = am_registry_first(r);
    for (size_t i = 0; i < 4; i++, f = am_family_next(f))
        ck_assert_str_eq(am_family_def(f)->name, fams[i]);
    ck_assert_ptr_null(f);

    /* series: creation order, through several table growths */
    int ids[200];
    for (int i = 0; i < 200; i++)
        ids[i] = (i * 7919) % 200; /* a permutation */
    for (int i = 0; i < 200; i++) {
        char line[64];
        snprintf(line, sizeof(line), "ord:%d|g|#id:k%d", i, ids[i]);
        ck_line(r, line, AM_OK);
    }
    f = am_registry_find(r, "ord");
    int i = 0;
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s), i++) {
        char want[16];
        int n = snprintf(want, sizeof(want), "k%d", ids[i]);
        size_t kl;
        const char *k = am_series_key(f, s, &kl);
        ck_assert_uint_eq(kl, (size_t)n);
        ck_assert_mem_eq(k, want, kl);
        ck_assert_double_eq(am_series_values(s)[0], i);
    }
    ck_assert_int_eq(i, 200);
    am_registry_free(r);
}
END_TEST

/* 100,000 series in one family: all found again with exact values. */
START_TEST(test_many_series)
{
    enum { N = 100000 };
    am_limits_t lim;
    limits_with(&lim, N, N, 1000, true);
    am_registry_t *r = new_registry(false, &lim);
    char line[96];
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof(line), "big.family:%d|c|#id:%d,shard:s%d", i, i, i % 7);
        ck_line(r, line, AM_OK);
    }
    ck_assert_uint_eq(family_series(r, "big_family_total"), N);
    ck_assert_uint_eq(am_registry_series_count(r), N);
    /* the total limit is reached now */
    ck_line(r, "big.family:1|c|#id:x", AM_REJECT_CARDINALITY);
    /* every series is found again (same series, not a new one) */
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof(line), "big.family:0.5|c|#shard:s%d,id:%d", i % 7, i);
        ck_line(r, line, AM_OK);
    }
    ck_assert_uint_eq(am_registry_series_count(r), N);
    const am_family_t *f = am_registry_find(r, "big_family_total");
    int i = 0;
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s), i++) {
        char want[32];
        int n = snprintf(want, sizeof(want), "%d%cs%d", i, '\0', i % 7);
        size_t kl;
        const char *k = am_series_key(f, s, &kl);
        ck_assert_uint_eq(kl, (size_t)n);
        ck_assert_mem_eq(k, want, kl);
        ck_assert_double_eq(am_series_values(s)[0], i + 0.5);
    }
    ck_assert_int_eq(i, N);
    /* spot checks through the key lookup */
    ck_assert_double_eq(must_get(r, "big_family_total", L("0", "s0"))[0], 0.5);
    ck_assert_double_eq(must_get(r, "big_family_total", L("99999", "s4"))[0], 99999.5);
    ck_assert_double_eq(must_get(r, "big_family_total", L("31337", "s5"))[0], 31337.5);
    am_registry_free(r);
}
END_TEST

/* Many families: the family table grows and every one is found. */
START_TEST(test_many_families)
{
    am_registry_t *r = new_registry(true, NULL);
    char line[64], name[32];
    for (int i = 0; i < 900; i++) {
        snprintf(line, sizeof(line), "fam%d:%d|g", i, i);
        ck_line(r, line, AM_OK);
    }
    ck_assert_uint_eq(am_registry_family_count(r), 911);
    for (int i = 0; i < 900; i++) {
        snprintf(name, sizeof(name), "fam%d", i);
        const double *v = get(r, name, NULL);
        ck_assert_msg(v != NULL, "%s lost", name);
        ck_assert_double_eq(v[0], i);
    }
    ck_assert_ptr_nonnull(am_registry_find(r, "alice_api_requests_total"));
    ck_assert_ptr_null(am_registry_find(r, "fam900"));
    ck_assert_ptr_null(am_registry_find(r, "fam"));
    am_registry_free(r);
}
END_TEST

/* The family list after removals anywhere (a configured family replacing
 * auto-created ones it clashes with: the first, one in the middle, the
 * last): the others stay in creation order and a new family goes last. */
static void expect_order(const am_registry_t *r, const char *const *want, size_t n)
{
    const am_family_t *f = am_registry_first(r);
    for (size_t i = 0; i < n; i++, f = am_family_next(f)) {
        ck_assert_ptr_nonnull(f);
        ck_assert_str_eq(am_family_def(f)->name, want[i]);
    }
    ck_assert_ptr_null(f);
    ck_assert_uint_eq(am_registry_family_count(r), n);
}

START_TEST(test_define_removes_anywhere)
{
    am_registry_t *r = new_registry(false, NULL);
    for (int i = 0; i < 5; i++) {
        char line[32];
        snprintf(line, sizeof(line), "g%d:1|g", i);
        ck_line(r, line, AM_OK);
    }
    /* a counter g<i>_total owns g<i>: the gauge goes */
    am_family_def_t d = {.name = S("g2_total"), .help = S("h"), .type = AM_FAMILY_COUNTER};
    ck_assert_int_eq(am_registry_define(r, &d), 1);
    expect_order(r, (const char *const[]){"g0", "g1", "g3", "g4", "g2_total"}, 5);
    d.name = S("g0_total");
    ck_assert_int_eq(am_registry_define(r, &d), 1);
    expect_order(r, (const char *const[]){"g1", "g3", "g4", "g2_total", "g0_total"}, 5);
    d.name = S("g4");
    d.type = AM_FAMILY_HISTOGRAM; /* owns g4_created, g4_count... and g4 itself: replaced */
    ck_assert_int_eq(am_registry_define(r, &d), 0);
    d.name = S("g0"); /* a gauge g0 clashes with counter g0_total, the last family */
    d.type = AM_FAMILY_GAUGE;
    ck_assert_int_eq(am_registry_define(r, &d), 1);
    expect_order(r, (const char *const[]){"g1", "g3", "g4", "g2_total", "g0"}, 5);
    d.name = S("g1_total"); /* the first, then the last again */
    d.type = AM_FAMILY_COUNTER;
    ck_assert_int_eq(am_registry_define(r, &d), 1);
    d.name = S("g1");
    d.type = AM_FAMILY_GAUGE;
    ck_assert_int_eq(am_registry_define(r, &d), 1);
    expect_order(r, (const char *const[]){"g3", "g4", "g2_total", "g0", "g1"}, 5);
    ck_line(r, "new:1|g", AM_OK);
    expect_order(r, (const char *const[]){"g3", "g4", "g2_total", "g0", "g1", "new"}, 6);
    am_registry_free(r);
}
END_TEST

/* Defines while a scrape snapshot is open: every family of the snapshot is
 * taken exactly once, before the first change (the first define takes
 * them all; later ones find nothing pending). */
static void count_taken(void *ctx, const am_family_t *f, size_t index)
{
    (void)f;
    (void)index;
    (*(size_t *)ctx)++;
}

START_TEST(test_define_during_snapshot)
{
    am_registry_t *r = new_registry(false, NULL);
    for (int i = 0; i < 50; i++) {
        char line[32];
        snprintf(line, sizeof(line), "s%d:1|g", i);
        ck_line(r, line, AM_OK);
    }
    size_t taken = 0;
    ck_assert_uint_eq(am_registry_snapshot_begin(r, count_taken, &taken), 50);
    am_family_def_t d = {.name = S("c0"), .help = S("h"), .type = AM_FAMILY_GAUGE};
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        d.name = name;
        ck_assert_int_eq(am_registry_define(r, &d), 0);
        ck_assert_uint_eq(taken, 50);
    }
    am_registry_snapshot_end(r);
    ck_assert_uint_eq(taken, 50);
    /* a new snapshot takes them again, the defined ones too */
    ck_assert_uint_eq(am_registry_snapshot_begin(r, count_taken, &taken), 70);
    d.name = S("s3");
    ck_assert_int_eq(am_registry_define(r, &d), 0);
    ck_assert_uint_eq(taken, 120);
    am_registry_snapshot_end(r);
    am_registry_free(r);
}
END_TEST

/* Rejected lines change nothing. */
START_TEST(test_rejects_leave_no_trace)
{
    static const struct {
        const char *line;
        am_reason_t want;
    } cases[] = {
        {"x:abc|c", AM_REJECT_BAD_VALUE},
        {"x:1|zz", AM_REJECT_BAD_TYPE},
        {"x:1|c|@2", AM_REJECT_BAD_SAMPLE_RATE},
        {"x:-1|c", AM_REJECT_NEGATIVE_COUNTER},
        {"x y:1|c", AM_REJECT_BAD_NAME},
        {"x1|c", AM_REJECT_SYNTAX},
    };
    am_registry_t *r = new_registry(true, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_line(r, cases[i].line, cases[i].want);
    ck_assert_uint_eq(am_registry_family_count(r), 11);
    ck_assert_uint_eq(am_registry_series_count(r), 0);
    am_registry_free(r);
}
END_TEST

START_TEST(test_type_names)
{
    ck_assert_str_eq(am_family_type_name(AM_FAMILY_COUNTER), "counter");
    ck_assert_str_eq(am_family_type_name(AM_FAMILY_GAUGE), "gauge");
    ck_assert_str_eq(am_family_type_name(AM_FAMILY_HISTOGRAM), "histogram");
    ck_assert_str_eq(am_family_type_name(AM_FAMILY_SUMMARY), "summary");
    am_limits_t l;
    am_limits_default(&l);
    ck_assert_uint_eq(l.max_series_per_family, 10000);
    ck_assert_uint_eq(l.max_series, 1000000);
    ck_assert_uint_eq(l.max_families, 1000);
    ck_assert(l.auto_create);
}
END_TEST


/* The daemon's path (am_registry_ingest_line: line cache, then the full
 * parse) agrees with parse + apply, whatever the spelling of a series: the
 * plain layout, a rate, an ignored extension, tags in another order, and a
 * cached line whose value turns bad (it must get the full path's reason). */
START_TEST(test_ingest_line_cache_paths)
{
    static const struct {
        const char *line;
        am_reason_t want;
    } lines[] = {
        {"lc.hits:1|c|#a:1,b:2", AM_OK},
        {"lc.hits:2|c|#a:1,b:2", AM_OK},                /* cache hit */
        {"lc.hits:1|c|@0.5|#a:1,b:2", AM_OK},           /* another layout: 2 */
        {"lc.hits:1|c|#a:1,b:2|c:container1", AM_OK},   /* extension ignored */
        {"lc.hits:1|c|#b:2,a:1", AM_OK},                /* tags reordered */
        {"lc.hits:-1|c|#a:1,b:2", AM_REJECT_NEGATIVE_COUNTER},
        {"lc.hits:x|c|#a:1,b:2", AM_REJECT_BAD_VALUE},
        {"lc.hits:1|c|#a:1,b:2|c:x\0", AM_OK},         /* literal backslash-zero */
        {"lc.hits:12.5|c|#a:1,b:2", AM_OK},
        /* the small-integer counter shortcut and its edges */
        {"lc.hits:007|c|#a:1,b:2", AM_OK},
        {"lc.hits:999|c|#a:1,b:2", AM_OK},
        {"lc.hits:1000|c|#a:1,b:2", AM_OK},
        {"lc.hits:1:2|c|#a:1,b:2", AM_OK},
        {"lc.hits:+5|c|#a:1,b:2", AM_OK},
        {"lc.hits:9a|c|#a:1,b:2", AM_REJECT_BAD_VALUE},
        {"lc.gauge:5|g", AM_OK},
        {"lc.gauge:+3|g", AM_OK},
        {"lc.gauge:-10|g", AM_OK},
        {"lc.lat:250|ms|#a:1", AM_OK},
        {"lc.lat:250|ms|#a:1", AM_OK},
        {"lc.lat:1e308|h|@0.1|#a:1", AM_REJECT_BAD_VALUE},
        /* the one-value observation shortcut and its edges */
        {"lc.obs:9|ms|#a:1", AM_OK},
        {"lc.obs:9|ms|#a:1", AM_OK}, /* cache hit: 0.009 s exactly, twice */
        {"lc.obs:0.5|ms|#a:1", AM_OK},
        {"lc.obs:+5|ms|#a:1", AM_OK},
        {"lc.obs:-3|ms|#a:1", AM_OK},
        {"lc.obs:1:2:3|ms|#a:1", AM_OK}, /* several values: the general path */
        {"lc.obs:2|ms|@0.5|#a:1", AM_OK},
        {"lc.obs:x|ms|#a:1", AM_REJECT_BAD_VALUE},
        {"lc.obs:|ms|#a:1", AM_REJECT_BAD_VALUE},
        {"lc.obs:1e999|ms|#a:1", AM_REJECT_BAD_VALUE},
        {"lc.big:1e308|h", AM_OK},
        {"lc.big:1e308|h", AM_REJECT_BAD_VALUE}, /* the sum would overflow */
        {"lc.big:1|h", AM_OK},
        {"lc.dist:7|d|#a:1", AM_OK},
        {"lc.dist:7|d|#a:1", AM_OK},
        {"lc.dist:0.25|d|#a:1", AM_OK},
    };
    am_registry_t *fast = new_registry(true, NULL);
    am_registry_t *ref = new_registry(true, NULL);
    am_sample_t *scratch = malloc(sizeof(*scratch));
    ck_assert_ptr_nonnull(scratch);
    for (size_t i = 0; i < NELEMS(lines); i++) {
        const char *l = lines[i].line;
        am_reason_t got = am_registry_ingest_line(fast, l, strlen(l), scratch);
        ck_assert_msg(got == lines[i].want, "\"%s\": got %s, want %s", l, am_reason_label(got),
                      am_reason_label(lines[i].want));
        ck_assert_int_eq(apply_line(ref, l), got);
    }
    const double *v = must_get(fast, "lc_hits_total", L("1", "2"));
    ck_assert(v[0] == 1 + 2 + 2 + 1 + 1 + 1 + 12.5 + 7 + 999 + 1000 + 1 + 2 + 5);
    ck_assert(must_get(ref, "lc_hits_total", L("1", "2"))[0] == v[0]);
    ck_assert(must_get(fast, "lc_gauge", L(NULL))[0] == -2);
    const double *h = must_get(fast, "lc_lat", L("1"));
    ck_assert(h[0] == 2 && h[1] == 0.5);
    const double *obs = must_get(fast, "lc_obs", L("1"));
    ck_assert(obs[0] == 10 && fabs(obs[1] - 0.0305) < 1e-12); /* "2|ms|@0.5" weighs 2 */
    /* Everything as the uncached path has it, to the last bit. */
    am_buf_t a, b;
    am_buf_init(&a, 0);
    am_buf_init(&b, 0);
    am_expose_registry(&a, fast, AM_FORMAT_TEXT);
    am_expose_registry(&b, ref, AM_FORMAT_TEXT);
    ck_assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    am_buf_free(&a);
    am_buf_free(&b);
    free(scratch);
    am_registry_free(fast);
    am_registry_free(ref);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("Registry");

    TCase *tc = tcase_create("aggregation");
    tcase_add_loop_test(tc, test_scalar_semantics, 0, NELEMS(scalar_cases));
    tcase_add_loop_test(tc, test_histogram_semantics, 0, NELEMS(hist_cases));
    tcase_add_loop_test(tc, test_summary_semantics, 0, NELEMS(summary_cases));
    tcase_add_test(tc, regression_ms_divides_by_1000);
    suite_add_tcase(s, tc);

    tc = tcase_create("auto");
    tcase_add_test(tc, test_auto_family_shapes);
    tcase_add_test(tc, test_set_members_total_limit);
    tcase_add_test(tc, test_default_buckets_are_client_python);
    tcase_add_test(tc, test_auto_counter_total_suffix);
    tcase_add_test(tc, test_auto_labels_sorted);
    tcase_add_test(tc, test_auto_label_subset_and_extra);
    tcase_add_test(tc, test_auto_bad_labels);
    tcase_add_test(tc, regression_rejected_first_line_creates_family);
    suite_add_tcase(s, tc);

    tc = tcase_create("catalog");
    tcase_add_test(tc, test_catalog_contents);
    tcase_add_test(tc, test_catalog_labels);
    tcase_add_test(tc, test_type_conflicts);
    tcase_add_test(tc, test_reserved_prefixes);
    tcase_add_loop_test(tc, test_name_clash, 0, NELEMS(clash_cases));
    tcase_add_loop_test(tc, regression_created_suffix_clash, 0, NELEMS(created_clash_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, test_limit_per_family_default);
    tcase_add_test(tc, test_limit_per_family_override);
    tcase_add_test(tc, test_limit_total_series);
    tcase_add_test(tc, test_limit_auto_families);
    tcase_add_test(tc, test_auto_create_off);
    tcase_add_test(tc, test_set_limits_lowered);
    tcase_add_test(tc, test_series_bytes_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("define");
    tcase_add_test(tc, test_define_same_shape_keeps_series);
    tcase_add_loop_test(tc, test_define_changed_shape_drops_series, 0, NELEMS(define_cases));
    tcase_add_test(tc, test_define_new_family);
    tcase_add_test(tc, test_def_copy_and_shape);
    suite_add_tcase(s, tc);

    tc = tcase_create("tables");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_creation_order);
    tcase_add_test(tc, test_many_series);
    tcase_add_test(tc, test_many_families);
    tcase_add_test(tc, test_define_removes_anywhere);
    tcase_add_test(tc, test_define_during_snapshot);
    tcase_add_test(tc, test_rejects_leave_no_trace);
    tcase_add_test(tc, test_type_names);
    tcase_add_test(tc, test_ingest_line_cache_paths);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(registry_suite)
