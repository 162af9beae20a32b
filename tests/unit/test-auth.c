/* Unit tests for src/http/auth.c: the Basic header, the bcrypt check run
 * as a job, and the cache that spares the second check. */
#include "auth.h"

#include <check.h>
#include <crypt.h>
#include <string.h>

#include "check-main.h"

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const struct {
    const char *hdr;
    const char *user, *pass; /* NULL: malformed */
} basic_cases[] = {
    {"Basic YWxpY2U6c2VjcmV0", "alice", "secret"},
    {"basic   YWxpY2U6c2VjcmV0  ", "alice", "secret"},
    {"BASIC YTpiOmM=", "a", "b:c"}, /* the first colon splits */
    {"Basic OnB3", "", "pw"},
    {"Basic YTo=", "a", ""},
    {"Bearer YWxpY2U6c2VjcmV0", NULL, NULL},
    {"Basic", NULL, NULL},
    {"Basic YWxpY2U", NULL, NULL},          /* no colon */
    {"Basic YW*pY2U6c2VjcmV0", NULL, NULL}, /* not base64 */
    {"Basic YQBiOmM=", NULL, NULL},         /* a NUL inside */
    {"Basic YTpi=c", NULL, NULL},           /* data after padding */
};

START_TEST(test_parse_basic)
{
    char out[64];
    const char *u, *p;
    const char *h = basic_cases[_i].hdr;
    bool ok = am_auth_parse_basic(h, strlen(h), out, sizeof(out), &u, &p);
    if (!basic_cases[_i].user) {
        ck_assert_msg(!ok, "accepted %s", h);
        return;
    }
    ck_assert_msg(ok, "refused %s", h);
    ck_assert_str_eq(u, basic_cases[_i].user);
    ck_assert_str_eq(p, basic_cases[_i].pass);
}
END_TEST

/* Credentials longer than the buffer are refused, not cut. */
START_TEST(test_parse_too_long)
{
    char out[4];
    const char *u, *p;
    ck_assert(!am_auth_parse_basic("Basic YWxpY2U6c2VjcmV0", 22, out, sizeof(out), &u, &p));
}
END_TEST

static int check(am_auth_t *a, const char *hdr)
{
    am_auth_job_t *job;
    int rc = am_auth_check(a, hdr, hdr ? strlen(hdr) : 0, &job);
    if (rc != AM_AUTH_SLOW)
        return rc;
    am_auth_job_run(job);
    return am_auth_job_finish(job) == AM_AUTH_OK ? 10 : 11; /* 10/11: via the slow path */
}

START_TEST(test_check_and_cache)
{
    /* A cost-4 hash keeps the test fast; the code does not care. */
    char setting[64];
    ck_assert_ptr_nonnull(crypt_gensalt_rn("$2y$", 4, NULL, 0, setting, sizeof(setting)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    char *hash = crypt_r("secret", setting, &cd);
    ck_assert_ptr_nonnull(hash);
    char name[] = "alice";
    am_web_user_t users[] = {{name, hash}};
    am_auth_t *a = am_auth_new(users, 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(check(a, NULL), AM_AUTH_DENIED);
    ck_assert_int_eq(check(a, "Basic !!"), AM_AUTH_DENIED);
    ck_assert_int_eq(check(a, "Basic YWxpY2U6d3Jvbmc="), 11);         /* alice:wrong */
    ck_assert_int_eq(check(a, "Basic YWxpY2U6d3Jvbmc="), 11);         /* failures are not cached */
    ck_assert_int_eq(check(a, "Basic Ym9iOnNlY3JldA=="), 11);         /* bob:secret, unknown */
    ck_assert_int_eq(check(a, "Basic YWxpY2U6c2VjcmV0"), 10);         /* alice:secret, bcrypt */
    ck_assert_int_eq(check(a, "Basic YWxpY2U6c2VjcmV0"), AM_AUTH_OK); /* now from the cache */
    ck_assert_int_eq(check(a, "Basic YWxpY2U6c2VjcmV0MA=="), 11);     /* secret0 */
    /* A job outlives the checker's last outside reference. */
    am_auth_job_t *job;
    ck_assert_int_eq(am_auth_check(a, "Basic YTpi", 10, &job), AM_AUTH_SLOW);
    am_auth_unref(a);
    am_auth_job_run(job);
    ck_assert_int_eq(am_auth_job_finish(job), AM_AUTH_DENIED);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("Auth");
    TCase *tc = tcase_create("auth");
    tcase_add_loop_test(tc, test_parse_basic, 0, NELEMS(basic_cases));
    tcase_add_test(tc, test_parse_too_long);
    tcase_add_test(tc, test_check_and_cache);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(auth_suite)
