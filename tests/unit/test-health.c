/* Unit tests for src/daemon/health.c: the /health body, byte for byte, with
 * one worker and with several, and out of memory reported through the
 * buffer. */
#include "health.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "am_config.h"
#include "check-main.h"

static am_selfstats_t ingest_counts(void)
{
    am_selfstats_t st;
    memset(&st, 0, sizeof(st));
    st.samples = 10;
    st.rejected[AM_REJECT_SYNTAX] = 2;
    st.rejected[AM_REASON_COUNT - 1] = 1;
    st.datagrams[AM_TRANSPORT_UDP] = 7;
    st.datagrams[AM_TRANSPORT_UNIX] = 3;
    return st;
}

START_TEST(test_one_worker)
{
    am_selfstats_t st = ingest_counts();
    am_health_t h = {.uptime_seconds = 12.5, .families = 11, .series = 4, .ingest = &st};
    am_buf_t b;
    am_buf_init(&b, 0);
    am_health_render(&b, &h);
    ck_assert(!am_buf_failed(&b));
    char want[512];
    snprintf(want, sizeof(want),
             "{\"status\":\"ok\",\"version\":\"%s\",\"uptime_seconds\":12.5,\"families\":11,"
             "\"series\":4,\"samples_total\":10,\"samples_rejected_total\":3,"
             "\"datagrams_received_total\":{\"udp\":7,\"unix\":3}}\n",
             AM_VERSION);
    ck_assert_str_eq(b.data, want);
    am_buf_free(&b);
}
END_TEST

START_TEST(test_several_workers)
{
    am_selfstats_t st = ingest_counts();
    const uint64_t per[] = {6, 4};
    st.worker_datagrams = per;
    st.nworkers = 2;
    am_health_t h = {.uptime_seconds = 1, .families = 11, .series = 0, .ingest = &st};
    am_buf_t b;
    am_buf_init(&b, 0);
    am_health_render(&b, &h);
    ck_assert(!am_buf_failed(&b));
    ck_assert_ptr_nonnull(strstr(b.data, "\"datagrams_received_total\":{\"udp\":7,\"unix\":3},"
                                         "\"workers\":2,"
                                         "\"worker_datagrams_received_total\":[6,4]}\n"));
    am_buf_free(&b);
}
END_TEST

/* A buffer that cannot hold the line is left failed, not cut short. */
START_TEST(test_no_room)
{
    am_selfstats_t st = ingest_counts();
    am_health_t h = {.uptime_seconds = 1, .ingest = &st};
    am_buf_t b;
    am_buf_init(&b, 16);
    am_health_render(&b, &h);
    ck_assert(am_buf_failed(&b));
    am_buf_free(&b);
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("health");
    tcase_add_test(tc, test_one_worker);
    tcase_add_test(tc, test_several_workers);
    tcase_add_test(tc, test_no_room);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(health_suite)
