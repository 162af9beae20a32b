/* Unit tests for src/cli/fetch.c: base URL parsing (schemes, hosts with
 * [IPv6], ports, path prefixes, what it refuses), the password file's
 * first line, and the default URL from the environment (query.c). The
 * GET itself is tested end to end in tests/integration/test_liveview.py. */
#include "fetch.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check-main.h"
#include "query.h"

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const struct {
    const char *in;
    bool https;
    const char *host, *port, *path;
    bool ipv6;
} good[] = {
    {"http://127.0.0.1:9090", false, "127.0.0.1", "9090", "", false},
    {"http://127.0.0.1:9090/", false, "127.0.0.1", "9090", "", false},
    {"HTTP://localhost", false, "localhost", "80", "", false},
    {"https://metrics.example.com", true, "metrics.example.com", "443", "", false},
    {"https://[::1]:8443/alice/", true, "::1", "8443", "/alice", true},
    {"http://[2001:db8::7]", false, "2001:db8::7", "80", "", true},
    {"http://h:65535/a/b//", false, "h", "65535", "/a/b", false},
};

static const char *const bad[] = {
    "127.0.0.1:9090",     /* no scheme */
    "ftp://x",            /* another scheme */
    "http://",            /* no host */
    "http://:80",         /* no host */
    "http://h:0",         /* port 0 */
    "http://h:65536",     /* port too large */
    "http://h:",          /* empty port */
    "http://h:8x",        /* not a number */
    "http://[::1",        /* unclosed bracket */
    "http://[::1]x",      /* junk after it */
    "http://[not-v6]:80", /* not an IPv6 address */
    "http://u:p@h",       /* user info */
    "http://h/x?q=1",     /* query */
    "http://h/#f",        /* fragment */
};

START_TEST(parses_base_urls)
{
    for (int i = 0; i < NELEMS(good); i++) {
        am_url_t u;
        char err[256];
        ck_assert_msg(am_url_parse(good[i].in, &u, err, sizeof(err)) == 0, "%s: %s", good[i].in,
                      err);
        ck_assert_int_eq(u.https, good[i].https);
        ck_assert_str_eq(u.host, good[i].host);
        ck_assert_str_eq(u.port, good[i].port);
        ck_assert_str_eq(u.path, good[i].path);
        ck_assert_int_eq(u.ipv6, good[i].ipv6);
    }
}
END_TEST

START_TEST(refuses_what_is_not_a_base_url)
{
    for (int i = 0; i < NELEMS(bad); i++) {
        am_url_t u;
        char err[256] = "";
        ck_assert_msg(am_url_parse(bad[i], &u, err, sizeof(err)) == -EINVAL, "%s accepted", bad[i]);
        ck_assert_msg(err[0] != '\0', "%s: no reason", bad[i]);
    }
    am_url_t u;
    char err[256];
    /* a zone id is not an address inet_pton takes */
    ck_assert_int_eq(am_url_parse("http://[fe80::1%25eth0]:1", &u, err, sizeof(err)), -EINVAL);
    char longhost[400];
    memset(longhost, 'a', sizeof(longhost));
    memcpy(longhost, "http://", 7);
    longhost[sizeof(longhost) - 1] = '\0';
    ck_assert_int_eq(am_url_parse(longhost, &u, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(reads_the_first_line_of_a_secret)
{
    char path[] = "/tmp/alice-test-secret-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char text[] = "pass word:1\r\nsecond line\n";
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    char out[64], err[256];
    ck_assert_int_eq(am_fetch_read_secret(path, out, sizeof(out), err, sizeof(err)), 0);
    ck_assert_str_eq(out, "pass word:1");
    char small[4];
    ck_assert_int_eq(am_fetch_read_secret(path, small, sizeof(small), err, sizeof(err)), -E2BIG);
    unlink(path);
    ck_assert_int_eq(am_fetch_read_secret(path, out, sizeof(out), err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(default_url_from_the_environment)
{
    char url[128];
    unsetenv("ALICE_METRICS_HOST");
    unsetenv("ALICE_METRICS_PORT");
    am_query_default_url(url, sizeof(url));
    ck_assert_str_eq(url, "http://127.0.0.1:9090");
    setenv("ALICE_METRICS_PORT", "8080", 1);
    setenv("ALICE_METRICS_HOST", "0.0.0.0", 1);
    am_query_default_url(url, sizeof(url));
    ck_assert_str_eq(url, "http://127.0.0.1:8080");
    setenv("ALICE_METRICS_HOST", "::", 1);
    am_query_default_url(url, sizeof(url));
    ck_assert_str_eq(url, "http://[::1]:8080");
    setenv("ALICE_METRICS_HOST", "10.1.2.3", 1);
    am_query_default_url(url, sizeof(url));
    ck_assert_str_eq(url, "http://10.1.2.3:8080");
    unsetenv("ALICE_METRICS_HOST");
    unsetenv("ALICE_METRICS_PORT");
}
END_TEST

static Suite *fetch_suite(void)
{
    Suite *s = suite_create("Fetch");
    TCase *tc = tcase_create("url");
    tcase_add_test(tc, parses_base_urls);
    tcase_add_test(tc, refuses_what_is_not_a_base_url);
    tcase_add_test(tc, reads_the_first_line_of_a_secret);
    tcase_add_test(tc, default_url_from_the_environment);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(fetch_suite)
