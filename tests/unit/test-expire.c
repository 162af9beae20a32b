/* Unit tests for src/registry/expire.c: series TTL. A series not updated
 * for its TTL leaves the read side and every limit, a later line starts it
 * from zero (through the line cache too), a family's own TTL beats the
 * default, sweeps run in bounded steps, and with several workers a series
 * expires only when every worker's copy is stale. */
#include "registry.h"
#include "registry-test.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "check-main.h"

static am_registry_t *registry_with_ttl(uint32_t ttl, size_t per_family)
{
    am_limits_t l;
    am_limits_default(&l);
    l.ttl = ttl;
    if (per_family)
        l.max_series_per_family = per_family;
    am_registry_t *r = am_registry_new(&l);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* The cached path, as the daemon takes lines. */
static am_reason_t ingest(am_registry_t *r, const char *line)
{
    static am_sample_t s;
    return am_registry_ingest_line(r, line, strlen(line), &s);
}

static size_t sweep(am_registry_t *r, uint32_t now_ds)
{
    am_expire_cursor_t c;
    memset(&c, 0, sizeof(c));
    size_t expired = 0;
    int steps = 0;
    while (!am_registry_expire_step(r, &c, now_ds, 1000000, &expired))
        ck_assert_int_lt(++steps, 10);
    return expired;
}

static double value_of(const am_registry_t *r, const char *fam)
{
    const am_family_t *f = am_registry_find(r, fam);
    if (!f || !am_family_first_series(f))
        return -1;
    return am_series_values(am_family_first_series(f))[0];
}

START_TEST(series_expires_after_its_ttl_and_restarts_from_zero)
{
    am_registry_t *r = registry_with_ttl(5, 0);
    ck_assert(am_registry_has_ttl(r));
    am_registry_set_now(r, 100);
    ck_assert_int_eq(ingest(r, "jobs:3|c|#q:a"), AM_OK);
    ck_assert_int_eq(ingest(r, "jobs:4|c|#q:a"), AM_OK); /* a cache hit */
    ck_assert_int_eq(ingest(r, "other:1|g"), AM_OK);
    ck_assert_uint_eq(sweep(r, 150), 0); /* exactly 5 s: not yet */
    am_registry_set_now(r, 149);
    ck_assert_int_eq(ingest(r, "other:2|g"), AM_OK); /* keeps `other` alive */
    ck_assert_uint_eq(sweep(r, 151), 1);
    ck_assert_double_eq(value_of(r, "jobs_total"), -1);
    ck_assert_uint_eq(am_family_series_count(am_registry_find(r, "jobs_total")), 0);
    ck_assert_uint_eq(am_registry_series_count(r), 1);
    /* the same bytes again: the cache must not feed the expired series */
    am_registry_set_now(r, 152);
    ck_assert_int_eq(ingest(r, "jobs:4|c|#q:a"), AM_OK);
    ck_assert_double_eq(value_of(r, "jobs_total"), 4);
    ck_assert_uint_eq(sweep(r, 300), 2);
    ck_assert_uint_eq(am_registry_series_count(r), 0);
    am_registry_free(r);
}
END_TEST

START_TEST(expired_series_free_their_place_under_the_limits)
{
    am_registry_t *r = registry_with_ttl(1, 2);
    am_registry_set_now(r, 10);
    ck_assert_int_eq(ingest(r, "f:1|c|#k:a"), AM_OK);
    ck_assert_int_eq(ingest(r, "f:1|c|#k:b"), AM_OK);
    ck_assert_int_eq(ingest(r, "f:1|c|#k:c"), AM_REJECT_CARDINALITY);
    ck_assert_uint_eq(sweep(r, 30), 2);
    ck_assert_int_eq(ingest(r, "f:1|c|#k:c"), AM_OK);
    ck_assert_int_eq(ingest(r, "f:1|c|#k:d"), AM_OK);
    ck_assert_int_eq(ingest(r, "f:1|c|#k:e"), AM_REJECT_CARDINALITY);
    /* set members go back too */
    ck_assert_int_eq(ingest(r, "u:x|s"), AM_OK);
    ck_assert_int_eq(ingest(r, "u:y|s"), AM_OK);
    ck_assert_uint_eq(am_registry_set_member_count(r), 2);
    ck_assert_uint_gt(am_registry_series_bytes(r), 0);
    ck_assert_uint_eq(sweep(r, 60), 3);
    ck_assert_uint_eq(am_registry_set_member_count(r), 0);
    ck_assert_uint_eq(am_registry_series_bytes(r), 0); /* and the series bytes */
    am_registry_free(r);
}
END_TEST

START_TEST(family_ttl_beats_the_default)
{
    am_registry_t *r = registry_with_ttl(1, 0);
    am_family_def_t keep = {
        .name = S("keep_total"), .help = S("h"), .type = AM_FAMILY_COUNTER, .ttl = AM_TTL_NEVER};
    am_family_def_t fast = {.name = S("fast"), .help = S("h"), .type = AM_FAMILY_GAUGE, .ttl = 2};
    ck_assert_int_ge(am_registry_define(r, &keep), 0);
    ck_assert_int_ge(am_registry_define(r, &fast), 0);
    am_registry_set_now(r, 0);
    ck_assert_int_eq(ingest(r, "keep:1|c"), AM_OK);
    ck_assert_int_eq(ingest(r, "fast:1|g"), AM_OK);
    ck_assert_int_eq(ingest(r, "auto:1|g"), AM_OK);
    ck_assert_uint_eq(sweep(r, 15), 1); /* auto: 1 s */
    ck_assert_uint_eq(sweep(r, 25), 1); /* fast: 2 s */
    ck_assert_uint_eq(sweep(r, 100000), 0);
    ck_assert_double_eq(value_of(r, "keep_total"), 1);
    am_registry_free(r);
    /* no default, no family TTL: nothing to sweep */
    r = registry_with_ttl(0, 0);
    ck_assert_int_eq(am_catalog_install(r), 0);
    ck_assert(!am_registry_has_ttl(r));
    ck_assert_int_eq(ingest(r, "x:1|g"), AM_OK);
    ck_assert_uint_eq(sweep(r, 1000000), 0);
    am_registry_free(r);
}
END_TEST

/* 20,000 series expiring at once, swept 500 at a time while lines keep
 * arriving between steps: every step stays within its budget, the sweep
 * ends, every stale series goes, and the live ones stay exact. */
START_TEST(sweep_in_bounded_steps)
{
    enum { N = 20000, BUDGET = 500 };
    am_registry_t *r = registry_with_ttl(1, N + 10);
    char line[64];
    am_registry_set_now(r, 0);
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof(line), "many:1|c|#i:%d", i);
        ck_assert_int_eq(ingest(r, line), AM_OK);
    }
    am_expire_cursor_t c;
    memset(&c, 0, sizeof(c));
    size_t expired = 0;
    int steps = 0;
    bool done = false;
    while (!done) {
        size_t before = expired;
        done = am_registry_expire_step(r, &c, 100, BUDGET, &expired);
        ck_assert_uint_le(expired - before, BUDGET);
        am_registry_set_now(r, 100);
        ck_assert_int_eq(ingest(r, "live:1|c"), AM_OK);
        ck_assert_int_lt(++steps, 2 * N / BUDGET + 10);
    }
    ck_assert_uint_eq(expired, N);
    ck_assert_uint_ge(steps, N / BUDGET);
    ck_assert_uint_eq(am_registry_series_count(r), 1);
    ck_assert_double_eq(value_of(r, "live_total"), steps);
    /* the same lines again: fresh series, through a cleared cache */
    for (int i = 0; i < N; i += 1000) {
        snprintf(line, sizeof(line), "many:1|c|#i:%d", i);
        ck_assert_int_eq(ingest(r, line), AM_OK);
    }
    ck_assert_uint_eq(am_family_series_count(am_registry_find(r, "many_total")), N / 1000);
    am_registry_free(r);
}
END_TEST

/* A scrape snapshot open while a series expires still shows it. */
static size_t rendered_series;

static void on_snapshot(void *ctx, const am_family_t *f, size_t index)
{
    (void)ctx;
    (void)index;
    rendered_series += am_family_series_count(f);
}

START_TEST(snapshot_sees_the_series_before_it_expires)
{
    am_registry_t *r = registry_with_ttl(1, 0);
    am_registry_set_now(r, 0);
    ck_assert_int_eq(ingest(r, "snap:1|g|#k:a"), AM_OK);
    ck_assert_int_eq(ingest(r, "snap:1|g|#k:b"), AM_OK);
    rendered_series = 0;
    am_registry_snapshot_begin(r, on_snapshot, NULL);
    ck_assert_uint_eq(sweep(r, 50), 2);
    ck_assert_uint_eq(rendered_series, 2);
    am_registry_snapshot_end(r);
    am_registry_free(r);
}
END_TEST

/* ---- several workers ---- */

typedef struct others {
    am_registry_t *reg[2];
    uint32_t now;
    am_registry_t *self;
} others_t;

static bool others_fresh(void *ctx, const am_family_t *f, const am_series_t *s)
{
    others_t *o = ctx;
    for (int i = 0; i < 2; i++)
        if (o->reg[i] != o->self && am_registry_copy_fresh(o->reg[i], f, s, o->now))
            return true;
    for (int i = 0; i < 2; i++)
        if (o->reg[i] != o->self)
            am_registry_expire_copy(o->reg[i], f, s);
    return false;
}

START_TEST(workers_expire_a_series_only_when_every_copy_is_stale)
{
    am_registry_t *w[2];
    am_famdir_t *d = two_workers(1, w);
    ck_assert_int_eq(ingest(w[0], "shared:1|c"), AM_OK);
    ck_assert_int_eq(ingest(w[1], "shared:2|c"), AM_OK);
    am_registry_set_now(w[1], 30);
    ck_assert_int_eq(ingest(w[1], "shared:2|c"), AM_OK); /* worker 1 keeps it fresh */
    others_t o = {{w[0], w[1]}, 35, w[0]};
    am_expire_cursor_t c;
    memset(&c, 0, sizeof(c));
    c.others = others_fresh;
    c.others_ctx = &o;
    size_t expired = 0;
    while (!am_registry_expire_step(w[0], &c, 35, 100, &expired))
        ;
    ck_assert_uint_eq(expired, 0); /* the merged counter must not drop */
    ck_assert_double_eq(value_of(w[0], "shared_total"), 1);
    o.now = 50;
    while (!am_registry_expire_step(w[0], &c, 50, 100, &expired))
        ;
    ck_assert_uint_eq(expired, 1);
    ck_assert_double_eq(value_of(w[0], "shared_total"), -1);
    ck_assert_double_eq(value_of(w[1], "shared_total"), -1); /* its copy went too */
    ck_assert_uint_eq(am_famdir_series_count(d), 0);
    /* worker 1's own sweep unlinks its dead copy and counts nothing twice */
    memset(&c, 0, sizeof(c));
    expired = 0;
    while (!am_registry_expire_step(w[1], &c, 50, 100, &expired))
        ;
    ck_assert_uint_eq(expired, 0);
    ck_assert_int_eq(ingest(w[1], "shared:5|c"), AM_OK);
    ck_assert_double_eq(value_of(w[1], "shared_total"), 5);
    am_registry_free(w[0]);
    am_registry_free(w[1]);
    am_famdir_free(d);
}
END_TEST

static Suite *expire_suite(void)
{
    Suite *s = suite_create("Expire");
    TCase *tc = tcase_create("ttl");
    tcase_add_test(tc, series_expires_after_its_ttl_and_restarts_from_zero);
    tcase_add_test(tc, expired_series_free_their_place_under_the_limits);
    tcase_add_test(tc, family_ttl_beats_the_default);
    tcase_add_test(tc, sweep_in_bounded_steps);
    tcase_add_test(tc, snapshot_sees_the_series_before_it_expires);
    tcase_add_test(tc, workers_expire_a_series_only_when_every_copy_is_stale);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(expire_suite)
