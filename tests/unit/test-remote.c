/* Unit tests for src/remote/: the encoder (a text body into snappy
 * WriteRequests, decoded back here with protobuf-c: names, sorted labels,
 * external labels, values, stale markers) and the queue (bound, drop of
 * the oldest, the busy head kept, backoff). */
#include "encode.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "hash.h"
#include "opts.h"
#include "queue.h"
#include "remote.pb-c.h"

typedef struct captured {
    Prometheus__WriteRequest *req[64];
    size_t n, samples;
} captured_t;

static void capture(void *ctx, char *bytes, size_t len, size_t nsamples)
{
    captured_t *c = ctx;
    size_t plain;
    ck_assert_int_eq(snappy_uncompressed_length(bytes, len, &plain), SNAPPY_OK);
    char *raw = malloc(plain ? plain : 1);
    ck_assert_int_eq(snappy_uncompress(bytes, len, raw, &plain), SNAPPY_OK);
    free(bytes);
    Prometheus__WriteRequest *r =
        prometheus__write_request__unpack(NULL, plain, (const uint8_t *)raw);
    free(raw);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->n_timeseries, nsamples);
    ck_assert_uint_lt(c->n, 64);
    c->req[c->n++] = r;
    c->samples += nsamples;
}

static void release(captured_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        prometheus__write_request__free_unpacked(c->req[i], NULL);
    memset(c, 0, sizeof(*c));
}

/* The series whose labels, joined as "k=v,k=v", are want; NULL if none. */
static Prometheus__TimeSeries *find(const captured_t *c, const char *want)
{
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = 0; j < c->req[i]->n_timeseries; j++) {
            Prometheus__TimeSeries *ts = c->req[i]->timeseries[j];
            char buf[512] = "";
            for (size_t k = 0; k < ts->n_labels; k++) {
                if (k)
                    strcat(buf, ",");
                strcat(buf, ts->labels[k]->name);
                strcat(buf, "=");
                strcat(buf, ts->labels[k]->value);
            }
            if (strcmp(buf, want) == 0)
                return ts;
        }
    return NULL;
}

static void encode(am_remote_enc_t *e, const char *text, int64_t ts, captured_t *c)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_buf_puts(&b, text);
    ck_assert_int_eq(am_remote_enc_begin(e, &b, ts), 0);
    ck_assert_uint_eq(b.len, 0); /* stolen */
    unsigned steps = 0;
    while (!am_remote_enc_step(e, 1, capture, c))
        ck_assert_uint_lt(++steps, 100000);
}

static bool is_stale(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits == AM_REMOTE_STALE_NAN;
}

static const char body1[] = "# HELP req_total Requests.\n"
                            "# TYPE req_total counter\n"
                            "req_total{route=\"/a\",code=\"200\"} 3\n"
                            "req_total{route=\"q\\\"x\\\\y\\nz\",code=\"\"} 1\n"
                            "# TYPE lat histogram\n"
                            "lat_bucket{le=\"0.5\"} 1\n"
                            "lat_bucket{le=\"+Inf\"} 2\n"
                            "lat_sum 1.25\n"
                            "lat_count 2\n"
                            "temp -Inf\n"
                            "up_like{job=\"mine\"} NaN\n";

START_TEST(test_encode_series)
{
    am_remote_enc_t *e = am_remote_enc_new();
    ck_assert_ptr_nonnull(e);
    const char *ext[] = {"job", "alice", "instance", "host1", "empty", ""};
    ck_assert_int_eq(am_remote_enc_set_external(e, ext, 3), 0);
    captured_t c = {0};
    encode(e, body1, 1700000000123, &c);
    ck_assert_uint_eq(c.samples, 8);
    ck_assert_uint_eq(am_remote_enc_series(e), 8);
    ck_assert_uint_eq(am_remote_enc_bad_lines(e), 0);
    /* sorted by name (byte order: upper case < "__name__" < lower case) */
    Prometheus__TimeSeries *ts =
        find(&c, "__name__=req_total,code=200,instance=host1,job=alice,route=/a");
    ck_assert_ptr_nonnull(ts);
    ck_assert_uint_eq(ts->n_samples, 1);
    ck_assert_double_eq(ts->samples[0]->value, 3);
    ck_assert_int_eq(ts->samples[0]->timestamp, 1700000000123);
    /* escapes undone, the empty label dropped */
    ts = find(&c, "__name__=req_total,instance=host1,job=alice,route=q\"x\\y\nz");
    ck_assert_ptr_nonnull(ts);
    ts = find(&c, "__name__=lat_bucket,instance=host1,job=alice,le=+Inf");
    ck_assert_ptr_nonnull(ts);
    ck_assert_double_eq(ts->samples[0]->value, 2);
    ts = find(&c, "__name__=lat_sum,instance=host1,job=alice");
    ck_assert_ptr_nonnull(ts);
    ck_assert_double_eq(ts->samples[0]->value, 1.25);
    ts = find(&c, "__name__=temp,instance=host1,job=alice");
    ck_assert_ptr_nonnull(ts);
    ck_assert(isinf(ts->samples[0]->value) && ts->samples[0]->value < 0);
    /* a series' own label beats the external one */
    ts = find(&c, "__name__=up_like,instance=host1,job=mine");
    ck_assert_ptr_nonnull(ts);
    ck_assert(isnan(ts->samples[0]->value) && !is_stale(ts->samples[0]->value));
    release(&c);
    am_remote_enc_free(e);
}
END_TEST

START_TEST(test_stale_markers)
{
    am_remote_enc_t *e = am_remote_enc_new();
    captured_t c = {0};
    encode(e, "a 1\nb{x=\"1\"} 2\nc 3\n", 1000, &c);
    ck_assert_uint_eq(c.samples, 3);
    release(&c);
    /* b went away (expired): one stale marker, at the new push's time */
    encode(e, "a 4\nc 5\n", 2000, &c);
    ck_assert_uint_eq(c.samples, 3);
    Prometheus__TimeSeries *ts = find(&c, "__name__=b,x=1");
    ck_assert_ptr_nonnull(ts);
    ck_assert(is_stale(ts->samples[0]->value));
    ck_assert_int_eq(ts->samples[0]->timestamp, 2000);
    ck_assert_double_eq(find(&c, "__name__=a")->samples[0]->value, 4);
    release(&c);
    /* once marked, it is forgotten */
    encode(e, "a 4\nc 5\n", 3000, &c);
    ck_assert_uint_eq(c.samples, 2);
    release(&c);
    /* shutdown: every series, 1 ms after the last push at the earliest */
    am_remote_enc_stale_all(e, 3000, capture, &c);
    ck_assert_uint_eq(c.samples, 2);
    ts = find(&c, "__name__=c");
    ck_assert(is_stale(ts->samples[0]->value));
    ck_assert_int_eq(ts->samples[0]->timestamp, 3001);
    release(&c);
    am_remote_enc_stale_all(e, 4000, capture, &c);
    ck_assert_uint_eq(c.samples, 0);
    am_remote_enc_free(e);
}
END_TEST

START_TEST(test_batches_and_bad_lines)
{
    am_remote_enc_t *e = am_remote_enc_new();
    am_buf_t b;
    am_buf_init(&b, 0);
    size_t n = 2 * AM_REMOTE_MAX_SAMPLES + 7;
    for (size_t i = 0; i < n; i++)
        am_buf_printf(&b, "s{i=\"%zu\"} %zu\n", i, i);
    am_buf_puts(&b, "broken{x=\"1\" 2\nnovalue\ns{i=\"0\"} 9\nbadvalue 1x\n");
    captured_t c = {0};
    ck_assert_int_eq(am_remote_enc_begin(e, &b, 5), 0);
    while (!am_remote_enc_step(e, 1000000, capture, &c))
        ;
    ck_assert_uint_eq(c.n, 3);
    ck_assert_uint_eq(c.req[0]->n_timeseries, AM_REMOTE_MAX_SAMPLES);
    ck_assert_uint_eq(c.samples, n);
    /* unparsable lines and the duplicate are counted, not sent */
    ck_assert_uint_eq(am_remote_enc_bad_lines(e), 4);
    ck_assert_double_eq(find(&c, "__name__=s,i=0")->samples[0]->value, 0);
    release(&c);
    am_remote_enc_free(e);
}
END_TEST

/* A body of n series s{i="..."} (i from 0), values v. */
static void big_body(am_buf_t *b, size_t n, size_t v)
{
    am_buf_init(b, 0);
    am_buf_puts(b, "# TYPE s gauge\n");
    for (size_t i = 0; i < n; i++)
        am_buf_printf(b, "s{i=\"%zu\",pad=\"%040zu\"} %zu\n", i, i, v);
}

/* Steps of the smallest budget: each emits at most one request (a full
 * batch opens a step), and the pushes over a 4 MB body (counted, parsed,
 * swept and given back in slices) are exact, push after push. */
START_TEST(test_steps_bounded)
{
    am_remote_enc_t *e = am_remote_enc_new();
    size_t n = 70000;
    captured_t c = {0};
    for (int push = 0; push < 4; push++) {
        am_buf_t b;
        /* the last push lacks the second half: n/2 stale markers */
        big_body(&b, push == 3 ? n / 2 : n, (size_t)push);
        size_t len = b.len;
        ck_assert_uint_gt(len, push == 3 ? 2u << 20 : 4u << 20);
        ck_assert_int_eq(am_remote_enc_begin(e, &b, 1000 * (push + 1)), 0);
        size_t steps = 0, samples = 0, stale = 0;
        for (bool done = false; !done;) {
            size_t before = c.n;
            done = am_remote_enc_step(e, 0, capture, &c);
            ck_assert_uint_le(c.n - before, 1);
            for (size_t i = 0; i < c.n; i++)
                for (size_t j = 0; j < c.req[i]->n_timeseries; j++) {
                    Prometheus__Sample *sm = c.req[i]->timeseries[j]->samples[0];
                    stale += is_stale(sm->value);
                    ck_assert(is_stale(sm->value) || sm->value == push);
                }
            samples += c.samples;
            release(&c);
            ck_assert_uint_lt(++steps, 1000000);
        }
        ck_assert_uint_gt(steps, len / 4096); /* nothing in one go */
        ck_assert_uint_eq(samples, n);        /* all, or half and n/2 stale markers */
        ck_assert_uint_eq(stale, push == 3 ? n / 2 : 0);
        ck_assert(!am_remote_enc_busy(e));
    }
    ck_assert_uint_eq(am_remote_enc_bad_lines(e), 0);
    am_remote_enc_free(e);
}
END_TEST

START_TEST(test_queue_bound)
{
    am_rwq_t q;
    am_rwq_init(&q, 100);
    ck_assert_uint_eq(am_rwq_push(&q, malloc(40), 40, 4), 0);
    ck_assert_uint_eq(am_rwq_push(&q, malloc(40), 40, 5), 0);
    ck_assert_uint_eq(q.bytes, 80);
    /* full: the oldest goes */
    ck_assert_uint_eq(am_rwq_push(&q, malloc(40), 40, 6), 4);
    ck_assert_uint_eq(q.dropped_samples, 4);
    ck_assert_uint_eq(am_rwq_head(&q)->nsamples, 5);
    /* the head being sent is never dropped: the next oldest goes */
    q.head_busy = true;
    ck_assert_uint_eq(am_rwq_push(&q, malloc(40), 40, 7), 6);
    ck_assert_uint_eq(am_rwq_head(&q)->nsamples, 5);
    ck_assert_uint_eq(q.n, 2);
    /* larger than the bound: dropped itself */
    ck_assert_uint_eq(am_rwq_push(&q, malloc(101), 101, 8), 8);
    am_rwq_pop(&q);
    ck_assert(!q.head_busy);
    ck_assert_uint_eq(am_rwq_head(&q)->nsamples, 7);
    ck_assert_uint_eq(q.bytes, 40);
    am_rwq_clear(&q);
    ck_assert_uint_eq(q.bytes, 0);
    ck_assert_ptr_null(am_rwq_head(&q));
    ck_assert_uint_eq(q.dropped_samples, 4 + 6 + 8 + 7);
}
END_TEST

START_TEST(test_backoff)
{
    am_rwq_t q;
    am_rwq_init(&q, 100);
    unsigned step = AM_RWQ_BACKOFF_MIN_MS;
    for (int i = 0; i < 20; i++) {
        unsigned w = am_rwq_backoff(&q);
        ck_assert_uint_le(w, step);
        ck_assert_uint_ge(w, step - step / 4);
        step = step * 2 > AM_RWQ_BACKOFF_MAX_MS ? AM_RWQ_BACKOFF_MAX_MS : step * 2;
    }
    ck_assert_uint_eq(q.backoff_ms, AM_RWQ_BACKOFF_MAX_MS);
    am_rwq_backoff_reset(&q);
    ck_assert_uint_le(am_rwq_backoff(&q), AM_RWQ_BACKOFF_MIN_MS);
}
END_TEST

START_TEST(test_url)
{
    am_remote_url_t u;
    char why[128];
    ck_assert_int_eq(am_remote_url_parse("http://127.0.0.1:9090/api/v1/write", &u, why, 128), 0);
    ck_assert(!u.tls);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_str_eq(u.port, "9090");
    ck_assert_str_eq(u.path, "/api/v1/write");
    ck_assert_str_eq(u.hostport, "127.0.0.1:9090");
    ck_assert_int_eq(am_remote_url_parse("https://[::1]/w?tenant=a", &u, why, 128), 0);
    ck_assert(u.tls);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_str_eq(u.port, "443");
    ck_assert_str_eq(u.path, "/w?tenant=a");
    ck_assert_str_eq(u.hostport, "[::1]");
    ck_assert_int_eq(am_remote_url_parse("ftp://x/", &u, why, 128), -EINVAL);
    ck_assert_int_eq(am_remote_url_parse("http://u:p@x/", &u, why, 128), -EINVAL);
    ck_assert_int_eq(am_remote_url_parse("x/y", &u, why, 128), -EINVAL);
}
END_TEST

static Suite *remote_suite(void)
{
    am_hash_seed_init();
    Suite *s = suite_create("Remote");
    TCase *tc = tcase_create("remote");
    tcase_add_test(tc, test_encode_series);
    tcase_add_test(tc, test_stale_markers);
    tcase_add_test(tc, test_batches_and_bad_lines);
    tcase_add_test(tc, test_steps_bounded);
    tcase_add_test(tc, test_queue_bound);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_url);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(remote_suite)
