/* Unit tests for src/registry/state.c: the state file's encoding. Every
 * kind of series survives encode + restore exactly (the exposition of the
 * restored registry equals the original's byte for byte); a restore into a
 * config that no longer admits a family skips it and counts it; and bad
 * bytes (every truncation, flipped bytes, another program's file, a future
 * version, an empty file) are refused with a reason, leaving the registry
 * as it was. */
#include "state.h"
#include "registry-test.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "check-main.h"

static am_registry_t *fresh(const am_limits_t *l)
{
    am_registry_t *r = am_registry_new(l);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(am_catalog_install(r), 0);
    return r;
}

static void exposition(const am_registry_t *r, am_buf_t *out)
{
    am_buf_init(out, 0);
    am_expose_registry(out, r, AM_FORMAT_TEXT);
    ck_assert(!am_buf_failed(out));
}

static const char *const lines[] = {
    "alice_api_requests_total:3|c|#provider:openai,model:gpt-4,operation:chat,status:success",
    "alice_api_request_duration_seconds:250|ms|#provider:openai,model:gpt-4,operation:chat",
    "alice_api_request_duration_seconds:7|h|#provider:openai,model:gpt-4,operation:chat",
    "alice_api_request_cost_dollars:0.25|d|#provider:openai,model:gpt-4",
    "alice_db_connections_active:7|g",
    "jobs:1|c|#queue:a",
    "jobs:2|c|#queue:b,region:eu", /* a grown label set */
    "temp:-3.5|g|#room:x",
    "lat:0.1:0.2:30|h",
    "users:alice|s",
    "users:bob|s",
    "users:carol|s|#team:x",
    "esc:1|g|#q:say \"hi\",b:back\\slash",
};

static am_registry_t *filled(void)
{
    am_registry_t *r = fresh(NULL);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        ck_line(r, lines[i], AM_OK);
    return r;
}

static void encode(const am_registry_t *r, am_buf_t *out)
{
    am_buf_init(out, 0);
    ck_assert_int_eq(am_state_encode(r, out), 0);
    ck_assert_uint_gt(out->len, AM_STATE_HEADER_LEN);
}

START_TEST(round_trip_is_exact)
{
    am_registry_t *r = filled();
    am_buf_t file, want, got;
    encode(r, &file);
    exposition(r, &want);
    am_registry_t *back = fresh(NULL);
    am_state_counts_t c;
    char err[256];
    ck_assert_int_eq(am_state_restore(back, file.data, file.len, &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.skipped, 0);
    ck_assert_uint_eq(c.restored, am_registry_series_count(r));
    exposition(back, &got);
    ck_assert_str_eq(got.data, want.data);
    /* the restored registry goes on counting, and sets remember members */
    ck_line(back, "jobs:1|c|#queue:a", AM_OK);
    ck_line(back, "users:alice|s", AM_OK);
    ck_assert_double_eq(
        am_series_values(am_family_first_series(am_registry_find(back, "users")))[0], 2);
    am_buf_free(&file);
    am_buf_free(&want);
    am_buf_free(&got);
    am_registry_free(r);
    am_registry_free(back);
}
END_TEST

START_TEST(families_the_config_no_longer_admits_are_skipped)
{
    am_registry_t *r = filled();
    am_buf_t file;
    encode(r, &file);
    am_limits_t l;
    am_limits_default(&l);
    l.auto_create = false;
    am_registry_t *back = fresh(&l);
    /* `temp` is now a configured counter: another type */
    am_family_def_t temp = {.name = S("temp_total"), .help = S("h"), .type = AM_FAMILY_COUNTER};
    ck_assert_int_ge(am_registry_define(back, &temp), 0);
    am_state_counts_t c;
    char err[256];
    ck_assert_int_eq(am_state_restore(back, file.data, file.len, &c, err, sizeof(err)), 0);
    /* the catalog's 4 series come back; every auto family is refused */
    ck_assert_uint_eq(c.restored, 4);
    ck_assert_uint_eq(c.restored + c.skipped, c.series);
    ck_assert_ptr_null(am_registry_find(back, "jobs_total"));
    am_buf_free(&file);
    am_registry_free(r);
    am_registry_free(back);
}
END_TEST

static int restore_bytes(const void *p, size_t n, char *err, size_t errlen)
{
    am_registry_t *r = fresh(NULL);
    am_state_counts_t c;
    int rc = am_state_restore(r, p, n, &c, err, errlen);
    if (rc != 0) /* nothing restored */
        ck_assert_uint_eq(am_registry_series_count(r), 0);
    am_registry_free(r);
    return rc;
}

START_TEST(every_truncation_and_flip_is_refused)
{
    am_registry_t *r = filled();
    am_buf_t file;
    encode(r, &file);
    char err[256];
    for (size_t n = 0; n < file.len; n++)
        ck_assert_int_eq(restore_bytes(file.data, n, err, sizeof(err)), -EINVAL);
    char *copy = malloc(file.len);
    ck_assert_ptr_nonnull(copy);
    for (size_t i = 0; i < file.len; i += (i < 64 ? 1 : 7)) {
        memcpy(copy, file.data, file.len);
        copy[i] ^= 0x20;
        ck_assert_int_ne(restore_bytes(copy, file.len, err, sizeof(err)), 0);
        ck_assert_uint_gt(strlen(err), 0);
    }
    free(copy);
    am_buf_free(&file);
    am_registry_free(r);
}
END_TEST

START_TEST(other_files_are_refused_with_a_reason)
{
    char err[256];
    ck_assert_int_eq(restore_bytes("", 0, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "empty file");
    static const char json[] = "{\"limits\": {\"max_series\": 5}}                              ";
    ck_assert_int_eq(restore_bytes(json, sizeof(json) - 1, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "not an alice-metrics state file");
    /* a future version, with a header that checks out */
    am_registry_t *r = filled();
    am_buf_t file;
    encode(r, &file);
    file.data[8] = 3;
    uint32_t hcrc = (uint32_t)crc32(0, (const Bytef *)file.data, 28);
    for (int i = 0; i < 4; i++)
        file.data[28 + i] = (char)(hcrc >> (8 * i));
    ck_assert_int_eq(restore_bytes(file.data, file.len, err, sizeof(err)), -EPROTO);
    ck_assert_str_eq(err, "format version 3, this build reads versions 1 to 2");
    am_buf_free(&file);
    /* a body that checks out but lies about a length: caught by the checks */
    am_buf_t bad;
    am_buf_init(&bad, 0);
    ck_assert_int_eq(am_state_encode(r, &bad), 0);
    bad.data[AM_STATE_HEADER_LEN] = 99; /* 99 families */
    uint32_t bcrc = (uint32_t)crc32(0, (const Bytef *)bad.data + AM_STATE_HEADER_LEN,
                                    (uInt)(bad.len - AM_STATE_HEADER_LEN));
    for (int i = 0; i < 4; i++)
        bad.data[24 + i] = (char)(bcrc >> (8 * i));
    hcrc = (uint32_t)crc32(0, (const Bytef *)bad.data, 28);
    for (int i = 0; i < 4; i++)
        bad.data[28 + i] = (char)(hcrc >> (8 * i));
    ck_assert_int_eq(restore_bytes(bad.data, bad.len, err, sizeof(err)), -EINVAL);
    am_buf_free(&bad);
    am_registry_free(r);
}
END_TEST

/* Two workers sharing a directory: worker 0 restores, the family
 * directory knows the restored families, limits count the series. */
START_TEST(restore_into_a_worker_registry)
{
    am_registry_t *r = filled();
    am_buf_t file;
    encode(r, &file);
    am_famdir_t *d = am_famdir_new();
    am_registry_t *w0 = am_registry_new(NULL), *w1 = am_registry_new(NULL);
    am_registry_use_directory(w0, d);
    am_registry_use_directory(w1, d);
    am_registry_enable_gauge_stamps(w0);
    am_registry_enable_gauge_stamps(w1);
    ck_assert_int_eq(am_catalog_install(w0), 0);
    ck_assert_int_eq(am_catalog_install(w1), 0);
    am_state_counts_t c;
    char err[256];
    ck_assert_int_eq(am_state_restore(w0, file.data, file.len, &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.skipped, 0);
    ck_assert_uint_eq(am_famdir_series_count(d), c.restored);
    ck_line(w1, "jobs:1|c|#queue:b,region:eu", AM_OK); /* copies the restored definition */
    am_registry_t *snap = am_registry_new(NULL);
    am_registry_enable_gauge_stamps(snap);
    ck_assert_int_eq(am_registry_merge(snap, w0), 0);
    ck_assert_int_eq(am_registry_merge(snap, w1), 0);
    am_buf_t got;
    exposition(snap, &got);
    ck_assert_ptr_nonnull(strstr(got.data, "jobs_total{queue=\"b\",region=\"eu\"} 3.0"));
    ck_assert_ptr_nonnull(strstr(got.data, "temp{room=\"x\"} -3.5"));
    am_buf_free(&got);
    am_buf_free(&file);
    am_registry_free(snap);
    am_registry_free(w0);
    am_registry_free(w1);
    am_famdir_free(d);
    am_registry_free(r);
}
END_TEST

static Suite *state_suite(void)
{
    Suite *s = suite_create("State");
    TCase *tc = tcase_create("state");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, round_trip_is_exact);
    tcase_add_test(tc, families_the_config_no_longer_admits_are_skipped);
    tcase_add_test(tc, every_truncation_and_flip_is_refused);
    tcase_add_test(tc, other_files_are_refused_with_a_reason);
    tcase_add_test(tc, restore_into_a_worker_registry);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(state_suite)
