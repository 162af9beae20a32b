/* Unit tests for src/daemon/workers.c without sockets or threads: the
 * workers' registries (fed directly, before any thread starts) merged in
 * steps give the exposition of one registry fed every line; one step per
 * family with a zero budget; counters and the lifecycle of one worker and
 * of several whose threads never started (ASan checks the teardown). */
#include "workers.h"
#include "registry-test.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "check-main.h"

static const char *const lines0[] = {
    "alice_events_published_total:1|c|#event_type:a",
    "alice_events_published_total:2|c|#event_type:b",
    "jobs.done:1|c|#provider:openai",
    "job.seconds:250|ms|#provider:openai",
};
static const char *const lines1[] = {
    "alice_events_published_total:5|c|#event_type:a",
    "jobs.done:3|c|#provider:openai",
    "jobs.done:1|c|#provider:fal",
    "job.seconds:1500|ms|#provider:fal",
    "brand.new:7|c",
};

static void feed(am_registry_t *r, const char *const *lines, int n)
{
    for (int i = 0; i < n; i++)
        ck_line(r, lines[i], AM_OK);
}

static char *expose(const am_registry_t *r)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_expose_registry(&b, r, AM_FORMAT_TEXT);
    ck_assert(!am_buf_failed(&b));
    return am_buf_steal(&b, NULL);
}

/* A loop that is never run: the workers only store its address. */
static uv_loop_t main_loop;

START_TEST(test_merge_steps)
{
    am_workers_t *ws;
    ck_assert_int_eq(am_workers_new(&main_loop, 2, &ws), 0);
    ck_assert_uint_eq(am_workers_count(ws), 2);
    feed(am_workers_registry(ws, 0), lines0, NELEMS(lines0));
    feed(am_workers_registry(ws, 1), lines1, NELEMS(lines1));

    am_registry_t *want = am_registry_new(NULL);
    ck_assert_ptr_nonnull(want);
    ck_assert_int_eq(am_catalog_install(want), 0);
    feed(want, lines0, NELEMS(lines0));
    feed(want, lines1, NELEMS(lines1));

    ck_assert(!am_workers_merging(ws));
    ck_assert_int_eq(am_workers_merge_begin(ws), 0);
    ck_assert(am_workers_merging(ws));
    int steps = 0, rc;
    while ((rc = am_workers_merge_step(ws, 0)) == 0)
        ck_assert_int_lt(++steps, 1000);
    ck_assert_int_eq(rc, AM_WORKERS_MERGED);
    /* A zero budget merges one family per step: more steps than workers. */
    ck_assert_int_gt(steps, 2);
    am_registry_t *snap = am_workers_merge_take(ws);
    ck_assert(!am_workers_merging(ws));

    char *got = expose(snap), *exp = expose(want);
    ck_assert_str_eq(got, exp);
    free(got);
    free(exp);

    /* Families are distinct over the workers; series are summed. */
    size_t families, series;
    am_workers_counts(ws, &families, &series);
    ck_assert_uint_eq(families, am_registry_family_count(want));
    ck_assert_uint_eq(series, am_registry_series_count(am_workers_registry(ws, 0)) +
                                  am_registry_series_count(am_workers_registry(ws, 1)));

    am_registry_free(snap);
    am_registry_free(want);
    am_workers_stop(ws);
    am_workers_free(ws);
}
END_TEST

/* A second merge after the first sees what came in between. */
START_TEST(test_merge_again)
{
    am_workers_t *ws;
    ck_assert_int_eq(am_workers_new(&main_loop, 3, &ws), 0);
    feed(am_workers_registry(ws, 2), lines1, NELEMS(lines1));
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(am_workers_merge_begin(ws), 0);
        int rc;
        while ((rc = am_workers_merge_step(ws, UINT64_MAX)) == 0)
            ;
        ck_assert_int_eq(rc, AM_WORKERS_MERGED);
        am_registry_t *snap = am_workers_merge_take(ws);
        const am_family_t *f = am_registry_find(snap, "brand_new_total");
        ck_assert_ptr_nonnull(f);
        const am_series_t *s = am_family_first_series(f);
        ck_assert_ptr_nonnull(s);
        ck_assert_double_eq(am_series_values(s)[0], 7.0 * (round + 1));
        am_registry_free(snap);
        ck_line(am_workers_registry(ws, 0), "brand.new:7|c", AM_OK);
    }
    am_workers_stop(ws);
    am_workers_free(ws);
}
END_TEST

START_TEST(test_counters)
{
    am_workers_t *ws;
    ck_assert_int_eq(am_workers_new(&main_loop, 2, &ws), 0);
    am_selfstats_t st;
    memset(&st, 0, sizeof(st));
    am_workers_add_ingest(ws, &st);
    ck_assert_uint_eq(st.nworkers, 2);
    ck_assert_ptr_nonnull(st.worker_datagrams);
    ck_assert_uint_eq(st.worker_datagrams[0] + st.worker_datagrams[1], 0);
    am_workers_pause(ws);
    am_workers_resume(ws);
    am_workers_read_now(ws); /* several: nothing to read on this thread */
    am_workers_stop(ws);
    am_workers_free(ws);
}
END_TEST

/* One worker: no threads, no directory, nothing to merge. */
START_TEST(test_one_worker)
{
    am_workers_t *ws;
    ck_assert_int_eq(am_workers_new(&main_loop, 0, &ws), 0); /* 0 counts as 1 */
    ck_assert_uint_eq(am_workers_count(ws), 1);
    ck_assert_int_eq(am_workers_start(ws), 0);
    feed(am_workers_registry(ws, 0), lines0, NELEMS(lines0));
    size_t families, series;
    am_workers_counts(ws, &families, &series);
    ck_assert_uint_eq(families, am_registry_family_count(am_workers_registry(ws, 0)));
    ck_assert_uint_eq(series, 4);
    am_selfstats_t st;
    memset(&st, 0, sizeof(st));
    am_workers_add_ingest(ws, &st);
    ck_assert_uint_eq(st.nworkers, 0); /* per-worker counts only with several */
    am_workers_read_now(ws);           /* no sockets open: nothing to read */
    am_workers_stop(ws);
    am_workers_free(ws);
}
END_TEST

static Suite *workers_suite(void)
{
    Suite *s = suite_create("workers");
    TCase *tc = tcase_create("workers");
    tcase_add_test(tc, test_merge_steps);
    tcase_add_test(tc, test_merge_again);
    tcase_add_test(tc, test_counters);
    tcase_add_test(tc, test_one_worker);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(workers_suite)
