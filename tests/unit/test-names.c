/* Unit tests for src/registry/names.c: the sample-name index answers exactly what
 * comparing every pair of definitions (am_family_defs_clash) answers,
 * through thousands of random adds and removes (deletions inside probe
 * runs, wrap-around, growth), and the registry uses it: clashes are still
 * refused and a catalog definition still replaces what it clashes with. */
#include "names.h"
#include "registry-test.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#include "check-main.h"

/* Few base names and every type, so that clashes are common: "a3" and
 * "a3_total", a histogram "a3" and a gauge "a3_bucket", ... */
#define POOL 400

static am_family_def_t pool[POOL];
static bool live[POOL];

static unsigned next_rand(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 8) & 0xffffff;
}

static void make_pool(void)
{
    static const char *const suffixes[] = {"", "_total", "_bucket", "_sum", "_count", "_created"};
    unsigned st = 7;
    for (int i = 0; i < POOL; i++) {
        char name[64];
        snprintf(name, sizeof(name), "a%u%s", next_rand(&st) % 40,
                 suffixes[next_rand(&st) % (sizeof(suffixes) / sizeof(suffixes[0]))]);
        memset(&pool[i], 0, sizeof(pool[i]));
        pool[i].name = strdup(name);
        pool[i].type = (am_family_type_t)(next_rand(&st) % 4);
        live[i] = false;
    }
}

static void free_pool(void)
{
    for (int i = 0; i < POOL; i++)
        free(pool[i].name);
}

/* What the index must answer: does a live definition other than except own
 * one of def's names? */
static bool brute_clash(const am_family_def_t *def, const am_family_def_t *except)
{
    for (int i = 0; i < POOL; i++)
        if (live[i] && &pool[i] != except && am_family_defs_clash(def, &pool[i]))
            return true;
    return false;
}

START_TEST(test_matches_pairwise_comparison)
{
    am_hash_seed_init();
    make_pool();
    am_namedex_t x = {0};
    unsigned st = 99;
    size_t added = 0, removed = 0, clashes = 0;
    for (int step = 0; step < 6000; step++) {
        int i = (int)(next_rand(&st) % POOL);
        if (live[i]) {
            am_namedex_remove(&x, &pool[i]);
            live[i] = false;
            removed++;
        } else if (!brute_clash(&pool[i], NULL)) {
            /* Only clash-free definitions go in, as in the registry. */
            ck_assert_int_eq(am_namedex_add(&x, &pool[i]), 0);
            live[i] = true;
            added++;
        }
        for (int q = 0; q < 4; q++) {
            const am_family_def_t *d = &pool[next_rand(&st) % POOL];
            const am_family_def_t *except = (q & 1) ? d : NULL;
            const am_family_def_t *got = am_namedex_clash(&x, d, except);
            bool want = brute_clash(d, except);
            ck_assert_msg((got != NULL) == want, "step %d: %s (type %d): index %s, pairwise %s",
                          step, d->name, (int)d->type, got ? got->name : "none",
                          want ? "clash" : "none");
            if (got) {
                ck_assert(got != except);
                ck_assert(am_family_defs_clash(d, got));
                clashes++;
            }
        }
    }
    ck_assert_uint_gt(added, 500);
    ck_assert_uint_gt(removed, 400);
    ck_assert_uint_gt(clashes, 1000);
    /* Everything removed: the index is empty again. */
    for (int i = 0; i < POOL; i++)
        if (live[i]) {
            am_namedex_remove(&x, &pool[i]);
            live[i] = false;
        }
    ck_assert_uint_eq(x.table.n, 0);
    am_namedex_free(&x);
    free_pool();
}
END_TEST

START_TEST(test_owned_names_by_type)
{
    char n[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    am_family_def_t d = {.name = S("jobs_total"), .type = AM_FAMILY_COUNTER};
    ck_assert_uint_eq(am_owned_names(&d, n), 3);
    ck_assert_str_eq(n[0], "jobs_total");
    ck_assert_str_eq(n[1], "jobs");
    ck_assert_str_eq(n[2], "jobs_created");
    d = (am_family_def_t){.name = S("lat"), .type = AM_FAMILY_HISTOGRAM};
    ck_assert_uint_eq(am_owned_names(&d, n), 5);
    ck_assert_str_eq(n[2], "lat_bucket");
    d = (am_family_def_t){.name = S("cost"), .type = AM_FAMILY_SUMMARY};
    ck_assert_uint_eq(am_owned_names(&d, n), 4);
    d = (am_family_def_t){.name = S("depth"), .type = AM_FAMILY_GAUGE};
    ck_assert_uint_eq(am_owned_names(&d, n), 1);
}
END_TEST

/* The registry through the index: auto families that would repeat a sample
 * name are refused, across many families and after removals. */
START_TEST(test_registry_refuses_clashes_among_many)
{
    am_hash_seed_init();
    am_limits_t lim;
    am_limits_default(&lim);
    lim.max_families = 5000;
    am_registry_t *r = am_registry_new(&lim);
    char line[128];
    for (int i = 0; i < 3000; i++) {
        snprintf(line, sizeof(line), "lat%d:5|ms", i);
        ck_line(r, line, AM_OK);
    }
    for (int i = 0; i < 3000; i += 7) {
        snprintf(line, sizeof(line), "lat%d_bucket:1|g", i);
        ck_line(r, line, AM_REJECT_TYPE_CONFLICT);
        snprintf(line, sizeof(line), "lat%d_count:1|c", i); /* owns lat_count too */
        ck_line(r, line, AM_REJECT_TYPE_CONFLICT);
        snprintf(line, sizeof(line), "lat%d_created:1|g", i);
        ck_line(r, line, AM_REJECT_TYPE_CONFLICT);
        snprintf(line, sizeof(line), "lat%d_counts:1|g", i);
        ck_line(r, line, AM_OK);
    }
    /* A catalog histogram replaces the gauge-free family it clashes with. */
    ck_line(r, "x_sum:1|g", AM_OK);
    am_family_def_t def = {.name = S("x"),
                           .help = S("h"),
                           .type = AM_FAMILY_HISTOGRAM,
                           .nbuckets = 1,
                           .buckets = {1.0}};
    ck_assert_int_eq(am_registry_define(r, &def), 1);
    ck_assert_ptr_null(am_registry_find(r, "x_sum"));
    ck_line(r, "x_sum:1|g", AM_REJECT_TYPE_CONFLICT);
    /* Redefined as a gauge: x_sum is free again. */
    def.type = AM_FAMILY_GAUGE;
    def.nbuckets = 0;
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    ck_line(r, "x_sum:1|g", AM_OK);
    am_registry_free(r);
}
END_TEST

static Suite *names_suite(void)
{
    Suite *s = suite_create("Names");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_matches_pairwise_comparison);
    tcase_add_test(tc, test_owned_names_by_type);
    tcase_add_test(tc, test_registry_refuses_clashes_among_many);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(names_suite)
