/* Unit tests for src/http/scrape.c with the registry's snapshot hooks: a scrape
 * rendered a family per step, with lines, new series, new families and a
 * redefinition landing between the steps, gives exactly the exposition of
 * the registry as it was when it began; later scrapes see the changes; the
 * gzip body is the same bytes compressed. */
#include "scrape.h"
#include "registry-test.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gunzip.h"

#include "check-main.h"

static const char *const seed_lines[] = {
    "jobs.done:1|c|#provider:openai",
    "jobs.done:2|c|#provider:fal",
    "job.seconds:250|ms|#provider:openai",
    "queue.depth:7|g|#queue:assets",
    "users:alice|s",
    "disk.free:5|g",
};

/* Lines that change families taken and not yet taken, add series to both,
 * and create a family. Each is fed twice through the cached path (the
 * second time from the line cache) and once through the plain path. */
static const char *const change_lines[] = {
    "jobs.done:5|c|#provider:openai",       "brand.new:1|c",
    "job.seconds:1500|ms|#provider:openai", "queue.depth:+3|g|#queue:assets",
    "queue.depth:1|g|#queue:thumbs",        "users:bob|s",
    "jobs.done:1|c|#provider:anthropic",
};

static am_registry_t *seeded(void)
{
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_ptr_nonnull(r);
    am_sample_t s;
    for (int i = 0; i < NELEMS(seed_lines); i++) {
        /* Twice, so that the line cache knows each line. */
        for (int k = 0; k < 2; k++) {
            const char *l = seed_lines[i];
            ck_assert_int_eq(am_registry_ingest_line(r, l, strlen(l), &s), AM_OK);
        }
    }
    return r;
}

static void change(am_registry_t *r, int i)
{
    am_sample_t s;
    const char *l = change_lines[i];
    ck_assert_int_eq(am_registry_ingest_line(r, l, strlen(l), &s), AM_OK);
    ck_assert_int_eq(am_registry_ingest_line(r, l, strlen(l), &s), AM_OK);
    ck_line(r, l, AM_OK);
}

static am_selfstats_t stats(void)
{
    am_selfstats_t st;
    memset(&st, 0, sizeof(st));
    st.version = "test";
    return st;
}

/* Steps with a zero budget (one family each) until done; returns how many. */
static int run(am_scrape_t *sc, am_registry_t *r, int change_from, int change_to)
{
    int steps = 0;
    while (!am_scrape_step(sc, 0)) {
        ck_assert_int_lt(steps, 10000);
        if (change_from + steps < change_to)
            change(r, change_from + steps);
        steps++;
    }
    return steps + 1;
}

/* The families part of a body: everything before the self-metrics. */
static size_t families_len(const am_buf_t *b)
{
    const char *self = strstr(b->data, "# HELP alice_metricsd_");
    ck_assert_ptr_nonnull(self);
    return (size_t)(self - b->data);
}

static void check_body_equals(const am_buf_t *body, const am_buf_t *want)
{
    size_t n = families_len(body);
    ck_assert_msg(n == want->len && memcmp(body->data, want->data, n) == 0,
                  "scrape:\n%.*s\nwant:\n%s", (int)n, body->data, want->data);
}

static void snapshot_holds(am_format_t fmt)
{
    am_registry_t *r = seeded();
    am_buf_t want;
    am_buf_init(&want, 0);
    am_expose_registry(&want, r, fmt);
    size_t nfam = am_registry_family_count(r);

    am_selfstats_t st = stats();
    am_scrape_t *sc = am_scrape_begin(r, false, fmt, false, &st);
    ck_assert_ptr_nonnull(sc);
    /* Before the first step too: the first family changes before its
     * turn. */
    change(r, 0);
    ck_line(r, "users:carol|s", AM_OK); /* sets take the uncached path */
    int steps = run(sc, r, 1, NELEMS(change_lines));
    ck_assert_int_ge(steps - 1, NELEMS(change_lines) - 2); /* all but one landed mid-scrape */
    /* One family per step, then the self-metrics: rendering really is
     * spread over the loop. */
    ck_assert_int_eq(steps, (int)nfam + 1);
    bool gz;
    am_buf_t *body = am_scrape_output(sc, &gz);
    ck_assert(!gz);
    ck_assert(!am_buf_failed(body));
    check_body_equals(body, &want);
    ck_assert_ptr_null(strstr(body->data, "brand_new"));
    ck_assert_uint_gt(am_scrape_longest_pause_ns(sc), 0);
    am_scrape_free(sc);
    change(r, NELEMS(change_lines) - 1);

    /* The next scrape sees every change. */
    am_buf_reset(&want);
    am_expose_registry(&want, r, fmt);
    ck_assert_ptr_nonnull(strstr(want.data, "brand_new_total 3"));
    ck_assert_ptr_nonnull(strstr(want.data, "jobs_done_total{provider=\"openai\"} 17"));
    sc = am_scrape_begin(r, false, fmt, false, &st);
    ck_assert_ptr_nonnull(sc);
    run(sc, r, 0, 0);
    check_body_equals(am_scrape_output(sc, &gz), &want);
    am_scrape_free(sc);
    am_buf_free(&want);
    am_registry_free(r);
}

START_TEST(test_snapshot_text)
{
    snapshot_holds(AM_FORMAT_TEXT);
}
END_TEST

START_TEST(test_snapshot_openmetrics)
{
    snapshot_holds(AM_FORMAT_OPENMETRICS);
}
END_TEST

/* A redefinition mid-scrape (SIGHUP) replaces a family's series and help:
 * the scrape still shows the family as it was. */
START_TEST(test_redefine_mid_scrape)
{
    am_registry_t *r = seeded();
    am_buf_t want;
    am_buf_init(&want, 0);
    am_expose_registry(&want, r, AM_FORMAT_TEXT);
    am_selfstats_t st = stats();
    am_scrape_t *sc = am_scrape_begin(r, false, AM_FORMAT_TEXT, false, &st);
    ck_assert_ptr_nonnull(sc);
    ck_assert(!am_scrape_step(sc, 0));
    am_family_def_t def = {
        .name = S("queue_depth"),
        .help = S("Redefined."),
        .type = AM_FAMILY_GAUGE,
        .nlabels = 1,
        .labels = {S("pool")},
    };
    ck_assert_int_ge(am_registry_define(r, &def), 0);
    ck_line(r, "queue.depth:9|g|#pool:a", AM_OK);
    run(sc, r, 0, 0);
    bool gz;
    check_body_equals(am_scrape_output(sc, &gz), &want);
    am_scrape_free(sc);
    am_buf_free(&want);
    am_registry_free(r);
}
END_TEST

/* A gzip scrape compresses as it renders: the same bytes as a plain one.
 * Enough series that the body spans several parts. */
START_TEST(test_gzip_body)
{
    am_registry_t *r = am_registry_new(NULL);
    char line[128];
    for (int i = 0; i < 9000; i++) {
        snprintf(line, sizeof(line), "render.load:%d|c|#worker:w%d,zone:z%d", i + 1, i, i % 7);
        ck_line(r, line, AM_OK);
    }
    am_selfstats_t st = stats();
    am_scrape_t *plain = am_scrape_begin(r, false, AM_FORMAT_TEXT, false, &st);
    run(plain, r, 0, 0);
    bool gz;
    am_buf_t *pb = am_scrape_output(plain, &gz);
    ck_assert(!gz);
    ck_assert_uint_gt(pb->len, 256 * 1024);
    size_t nfam = am_registry_family_count(r);
    am_scrape_t *zipped = am_scrape_begin(r, false, AM_FORMAT_TEXT, true, &st);
    int steps = run(zipped, r, 0, 0);
    ck_assert_int_gt(steps, (int)nfam + 2); /* at least two slices */
    am_buf_t *zb = am_scrape_output(zipped, &gz);
    ck_assert(gz);
    size_t n;
    char *unz = gunzip(zb->data, zb->len, &n);
    size_t fl = families_len(pb);
    ck_assert_uint_ge(n, fl);
    ck_assert_mem_eq(unz, pb->data, fl);
    free(unz);
    am_scrape_free(zipped);
    am_scrape_free(plain);
    am_registry_free(r);
}
END_TEST

/* A family too big for one piece is rendered in parts, and its output can
 * be taken between steps (a streamed body). A line for it mid-way, for a
 * series already out and one still to come, and a new series: the rest is
 * rendered from where it stopped, as it was, and the parts taken add up to
 * the registry as it was when the scrape began. */
START_TEST(test_large_family_in_parts)
{
    am_registry_t *r = am_registry_new(NULL);
    char line[128];
    for (int i = 0; i < 9000; i++) {
        snprintf(line, sizeof(line), "render.load:%d|c|#worker:w%05d,zone:z%d", i + 1, i, i % 7);
        ck_line(r, line, AM_OK);
    }
    am_buf_t want;
    am_buf_init(&want, 0);
    am_expose_registry(&want, r, AM_FORMAT_TEXT);
    ck_assert_uint_gt(want.len, 3 * 64 * 1024);
    am_selfstats_t st = stats();
    am_scrape_t *sc = am_scrape_begin(r, false, AM_FORMAT_TEXT, false, &st);
    am_buf_t taken;
    am_buf_init(&taken, 0);
    bool gz;
    ck_assert(!am_scrape_step(sc, 0));
    am_buf_t *out = am_scrape_output(sc, &gz);
    ck_assert_uint_gt(out->len, 0);
    ck_assert_uint_lt(out->len, want.len / 2); /* a part, not the family */
    am_buf_append(&taken, out->data, out->len);
    am_buf_reset(out);
    ck_assert(!am_scrape_step(sc, 0));
    am_buf_append(&taken, out->data, out->len);
    am_buf_reset(out);
    ck_line(r, "render.load:1000|c|#worker:w00000,zone:z0", AM_OK); /* out already */
    ck_line(r, "render.load:1000|c|#worker:w08999,zone:z5", AM_OK); /* still to come */
    ck_line(r, "render.load:1|c|#worker:w09999,zone:z1", AM_OK);    /* new */
    int steps = 0;
    while (!am_scrape_step(sc, 0)) {
        ck_assert_int_lt(steps++, 10000);
        am_buf_append(&taken, out->data, out->len);
        am_buf_reset(out);
    }
    am_buf_append(&taken, out->data, out->len);
    check_body_equals(&taken, &want);
    am_scrape_free(sc);
    am_buf_free(&taken);
    am_buf_free(&want);
    am_registry_free(r);
}
END_TEST

/* Freed before it finished: the snapshot ends, ingest goes on unhooked. */
START_TEST(test_abandoned)
{
    am_registry_t *r = seeded();
    am_selfstats_t st = stats();
    am_scrape_t *sc = am_scrape_begin(r, false, AM_FORMAT_TEXT, false, &st);
    ck_assert(!am_scrape_step(sc, 0));
    am_scrape_free(sc);
    for (int i = 0; i < NELEMS(change_lines); i++)
        change(r, i);
    am_registry_free(r);
}
END_TEST

static Suite *scrape_suite(void)
{
    Suite *s = suite_create("scrape");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_snapshot_text);
    tcase_add_test(tc, test_snapshot_openmetrics);
    tcase_add_test(tc, test_redefine_mid_scrape);
    tcase_add_test(tc, test_gzip_body);
    tcase_add_test(tc, test_large_family_in_parts);
    tcase_add_test(tc, test_abandoned);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(scrape_suite)
