/* Unit tests for src/registry/famstats.c: the live view's counts. Lines
 * accepted per family through both paths (full and line cache), rejects
 * by family or in the registry's bucket, series per label value as series
 * come and go (expiry, redefinition), the caps, the ranking, and a merged
 * copy that keeps none. */
#include "registry.h"
#include "registry-test.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"

static am_reason_t ingest(am_registry_t *r, const char *line)
{
    static am_sample_t s;
    am_reason_t rc = am_registry_ingest_line(r, line, strlen(line), &s);
    if (rc != AM_OK)
        am_registry_count_reject(r, rc, line, strlen(line));
    return rc;
}

/* Series of value v of label `label` of family fam (0 when not tracked). */
static size_t value_series(const am_registry_t *r, const char *fam, const char *label,
                           const char *v)
{
    const am_family_t *f = am_registry_find(r, fam);
    ck_assert_ptr_nonnull(f);
    const am_family_def_t *def = am_family_def(f);
    for (size_t k = 0; k < def->nlabels; k++) {
        if (strcmp(def->labels[k], label) != 0)
            continue;
        size_t pos = 0;
        am_label_value_t lv;
        while (am_family_label_value_next(f, k, &pos, &lv))
            if (lv.len == strlen(v) && memcmp(lv.value, v, lv.len) == 0)
                return lv.series;
    }
    return 0;
}

static size_t values_tracked(const am_registry_t *r, const char *fam, size_t label)
{
    const am_family_t *f = am_registry_find(r, fam);
    size_t pos = 0, n = 0;
    am_label_value_t lv;
    while (am_family_label_value_next(f, label, &pos, &lv))
        n++;
    return n;
}

START_TEST(lines_count_on_both_paths)
{
    am_registry_t *r = am_registry_new(NULL);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ingest(r, "jobs:1|c|#q:a"), AM_OK);  /* full, then cache hits */
    ck_assert_int_eq(ingest(r, "jobs:1|c|@0.5|#q:a"), AM_OK); /* never cached */
    ck_assert_int_eq(ingest(r, "lat:12|ms"), AM_OK);
    ck_assert_int_eq(ingest(r, "lat:13|ms"), AM_OK);
    ck_assert_uint_eq(am_family_lines(am_registry_find(r, "jobs_total")), 6);
    ck_assert_uint_eq(am_family_lines(am_registry_find(r, "lat")), 2);
    am_registry_free(r);
}
END_TEST

START_TEST(rejects_count_against_their_family_or_the_bucket)
{
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_int_eq(ingest(r, "jobs:1|c|#q:a"), AM_OK);
    ck_assert_int_eq(ingest(r, "jobs:1|g"), AM_REJECT_TYPE_CONFLICT);     /* jobs_total's */
    ck_assert_int_eq(ingest(r, "jobs:-1|c"), AM_REJECT_NEGATIVE_COUNTER); /* jobs_total's */
    ck_assert_int_eq(ingest(r, "jobs:x|c"), AM_REJECT_BAD_VALUE);         /* jobs_total's */
    ck_assert_int_eq(ingest(r, "nofam:x|c"), AM_REJECT_BAD_VALUE);        /* no such family */
    ck_assert_int_eq(ingest(r, "garbage"), AM_REJECT_SYNTAX);
    ck_assert_int_eq(ingest(r, "bad name:1|c"), AM_REJECT_BAD_NAME);
    const am_family_t *f = am_registry_find(r, "jobs_total");
    ck_assert_uint_eq(am_family_rejects(f, AM_REJECT_TYPE_CONFLICT), 1);
    ck_assert_uint_eq(am_family_rejects(f, AM_REJECT_NEGATIVE_COUNTER), 1);
    ck_assert_uint_eq(am_family_rejects(f, AM_REJECT_BAD_VALUE), 1);
    ck_assert_uint_eq(am_registry_rejects_without_family(r, AM_REJECT_BAD_VALUE), 1);
    ck_assert_uint_eq(am_registry_rejects_without_family(r, AM_REJECT_SYNTAX), 1);
    ck_assert_uint_eq(am_registry_rejects_without_family(r, AM_REJECT_BAD_NAME), 1);
    am_registry_count_reject(r, AM_REJECT_SYNTAX, NULL, 0); /* a cut datagram's last line */
    ck_assert_uint_eq(am_registry_rejects_without_family(r, AM_REJECT_SYNTAX), 2);
    ck_assert_uint_eq(am_family_lines(f), 1);
    am_registry_free(r);
}
END_TEST

START_TEST(values_follow_series_in_and_out)
{
    am_limits_t l;
    am_limits_default(&l);
    l.ttl = 5;
    am_registry_t *r = am_registry_new(&l);
    am_registry_set_now(r, 100);
    ck_assert_int_eq(ingest(r, "req:1|c|#provider:openai,status:ok"), AM_OK);
    ck_assert_int_eq(ingest(r, "req:1|c|#provider:openai,status:err"), AM_OK);
    ck_assert_int_eq(ingest(r, "req:1|c|#provider:openai,status:err"), AM_OK); /* same series */
    ck_assert_int_eq(ingest(r, "req:1|c|#provider:anthropic,status:ok"), AM_OK);
    ck_assert_int_eq(ingest(r, "req:1|c|#status:ok"), AM_OK); /* no provider: not counted */
    ck_assert_uint_eq(value_series(r, "req_total", "provider", "openai"), 2);
    ck_assert_uint_eq(value_series(r, "req_total", "provider", "anthropic"), 1);
    ck_assert_uint_eq(value_series(r, "req_total", "status", "ok"), 3);
    ck_assert_uint_eq(value_series(r, "req_total", "status", "err"), 1);
    /* a new label grows the family: older keys keep their positions */
    ck_assert_int_eq(ingest(r, "req:1|c|#provider:openai,status:ok,zone:eu"), AM_OK);
    ck_assert_uint_eq(value_series(r, "req_total", "zone", "eu"), 1);
    ck_assert_uint_eq(value_series(r, "req_total", "provider", "openai"), 3);
    /* expiry gives the counts back; a value with no series left goes */
    am_registry_set_now(r, 140);
    ck_assert_int_eq(ingest(r, "req:1|c|#provider:anthropic,status:ok"), AM_OK);
    am_expire_cursor_t c;
    memset(&c, 0, sizeof(c));
    size_t expired = 0;
    while (!am_registry_expire_step(r, &c, 160, 1000, &expired))
        ;
    ck_assert_uint_eq(expired, 4); /* all but anthropic,ok */
    ck_assert_uint_eq(value_series(r, "req_total", "provider", "openai"), 0);
    ck_assert_uint_eq(value_series(r, "req_total", "provider", "anthropic"), 1);
    ck_assert_uint_eq(value_series(r, "req_total", "status", "ok"), 1);
    ck_assert_uint_eq(values_tracked(r, "req_total", 0), 1);
    ck_assert_uint_eq(values_tracked(r, "req_total", 1), 1);
    ck_assert_uint_eq(values_tracked(r, "req_total", 2), 0);
    am_registry_free(r);
}
END_TEST

START_TEST(values_are_capped_per_label)
{
    am_registry_t *r = am_registry_new(NULL);
    char line[64];
    for (int i = 0; i < AM_VALUES_PER_LABEL + 50; i++) {
        snprintf(line, sizeof(line), "u:1|c|#user:u%d,kind:%s", i, i % 2 ? "odd" : "even");
        ck_assert_int_eq(ingest(r, line), AM_OK);
    }
    ck_assert_uint_eq(values_tracked(r, "u_total", 1), AM_VALUES_PER_LABEL);
    ck_assert_uint_eq(value_series(r, "u_total", "kind", "odd"), (AM_VALUES_PER_LABEL + 50) / 2);
    /* too long to track: counted in the series, not as a value */
    char longv[AM_VALUE_MAX_LEN + 40];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    char big[sizeof(longv) + 32];
    snprintf(big, sizeof(big), "u:1|c|#kind:%s", longv);
    ck_assert_int_eq(ingest(r, big), AM_OK);
    ck_assert_uint_eq(values_tracked(r, "u_total", 0), 2);
    am_registry_free(r);
}
END_TEST

START_TEST(ranking_keeps_the_top_k)
{
    am_label_value_t top[3];
    size_t n = 0;
    const struct {
        const char *v;
        size_t series;
    } in[] = {{"a", 1}, {"b", 5}, {"c", 3}, {"d", 5}, {"e", 2}, {"f", 9}};
    for (int i = 0; i < NELEMS(in); i++) {
        am_label_value_t v = {in[i].v, 1, in[i].series};
        am_label_value_rank(top, &n, 3, &v);
    }
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(top[0].value, "f");
    ck_assert_str_eq(top[1].value, "b"); /* ties: by value */
    ck_assert_str_eq(top[2].value, "d");
}
END_TEST

START_TEST(redefinition_and_merged_copies)
{
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_int_eq(ingest(r, "q:1|c|#k:v"), AM_OK);
    am_registry_t *copy = am_registry_new(NULL);
    ck_assert_int_eq(am_registry_merge(copy, r), 0);
    ck_assert_uint_eq(am_family_series_count(am_registry_find(copy, "q_total")), 1);
    ck_assert_uint_eq(values_tracked(copy, "q_total", 0), 0); /* a scrape's copy: none */
    am_registry_free(copy);
    /* a redefinition of another shape drops the series and their counts */
    am_family_def_t def = {.name = S("q_total"),
                           .help = S("h"),
                           .type = AM_FAMILY_COUNTER,
                           .nlabels = 1,
                           .labels = {S("other")}};
    ck_assert_int_ge(am_registry_define(r, &def), 0);
    ck_assert_uint_eq(values_tracked(r, "q_total", 0), 0);
    ck_assert_int_eq(ingest(r, "q:1|c|#other:w"), AM_OK);
    ck_assert_uint_eq(value_series(r, "q_total", "other", "w"), 1);
    am_registry_free(r);
}
END_TEST

/* The directory's view of one family: series and the series of a value. */
typedef struct live {
    const char *family, *label, *value;
    size_t series, value_series;
    bool seen;
} live_t;

static void on_live(void *ctx, const am_family_def_t *def, size_t series, const am_valcounts_t *vc)
{
    live_t *l = ctx;
    if (strcmp(def->name, l->family) != 0)
        return;
    l->seen = true;
    l->series = series;
    l->value_series = 0;
    for (size_t k = 0; k < def->nlabels; k++) {
        size_t pos = 0;
        am_label_value_t v;
        while (strcmp(def->labels[k], l->label) == 0 && am_valcounts_next(vc, k, &pos, &v))
            if (v.len == strlen(l->value) && memcmp(v.value, l->value, v.len) == 0)
                l->value_series = v.series;
    }
}

static live_t live_of(am_famdir_t *d, const char *family, const char *label, const char *value)
{
    live_t l = {family, label, value, 0, 0, false};
    am_famdir_each_live(d, on_live, &l);
    ck_assert_msg(l.seen, "%s not in the directory", family);
    return l;
}

START_TEST(workers_count_a_series_once)
{
    am_registry_t *w[2];
    am_famdir_t *d = two_workers(1, w);
    ck_assert_int_eq(ingest(w[0], "sh:1|c|#k:a"), AM_OK);
    ck_assert_int_eq(ingest(w[1], "sh:1|c|#k:a"), AM_OK); /* the same series, other worker */
    ck_assert_int_eq(ingest(w[1], "sh:1|c|#k:b"), AM_OK);
    live_t v = live_of(d, "sh_total", "k", "a");
    ck_assert_uint_eq(v.series, 2);
    ck_assert_uint_eq(v.value_series, 1);
    ck_assert_uint_eq(am_famdir_series_count(d), 3); /* the limits count per worker */
    /* one copy expires: the series stays; both: it goes */
    am_registry_set_now(w[1], 30);
    ck_assert_int_eq(ingest(w[1], "sh:1|c|#k:a"), AM_OK);
    am_expire_cursor_t c;
    memset(&c, 0, sizeof(c));
    size_t expired = 0;
    while (!am_registry_expire_step(w[0], &c, 35, 100, &expired))
        ;
    ck_assert_uint_eq(expired, 1);
    v = live_of(d, "sh_total", "k", "a");
    ck_assert_uint_eq(v.series, 2);
    ck_assert_uint_eq(v.value_series, 1);
    memset(&c, 0, sizeof(c));
    while (!am_registry_expire_step(w[1], &c, 100, 100, &expired))
        ;
    v = live_of(d, "sh_total", "k", "a");
    ck_assert_uint_eq(v.series, 0);
    ck_assert_uint_eq(v.value_series, 0);
    /* a redefinition of the same shape moves the counts to the new entry;
     * another shape drops them */
    ck_assert_int_eq(ingest(w[0], "sh:1|c|#k:z"), AM_OK);
    ck_assert_int_eq(ingest(w[1], "sh:1|c|#k:z"), AM_OK);
    am_family_def_t def = {.name = S("sh_total"),
                           .help = S("other help"),
                           .type = AM_FAMILY_COUNTER,
                           .open_labels = true,
                           .nlabels = 1,
                           .labels = {S("k")}};
    for (int i = 0; i < 2; i++)
        ck_assert_int_ge(am_registry_define(w[i], &def), 0);
    v = live_of(d, "sh_total", "k", "z");
    ck_assert_uint_eq(v.series, am_family_series_count(am_registry_find(w[0], "sh_total")));
    def.labels[0] = S("j");
    for (int i = 0; i < 2; i++)
        ck_assert_int_ge(am_registry_define(w[i], &def), 0);
    v = live_of(d, "sh_total", "j", "z");
    ck_assert_uint_eq(v.series, 0);
    for (int i = 0; i < 2; i++)
        am_registry_free(w[i]);
    am_famdir_free(d);
}
END_TEST

static Suite *famstats_suite(void)
{
    Suite *s = suite_create("Famstats");
    TCase *tc = tcase_create("counts");
    tcase_add_test(tc, lines_count_on_both_paths);
    tcase_add_test(tc, rejects_count_against_their_family_or_the_bucket);
    tcase_add_test(tc, values_follow_series_in_and_out);
    tcase_add_test(tc, values_are_capped_per_label);
    tcase_add_test(tc, ranking_keeps_the_top_k);
    tcase_add_test(tc, redefinition_and_merged_copies);
    tcase_add_test(tc, workers_count_a_series_once);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(famstats_suite)
