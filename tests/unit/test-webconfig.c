/* Unit tests for src/http/webconfig.c: the exporter web configuration
 * (YAML). Errors are checked as whole "FILE:LINE: message" strings; files
 * are written into a fresh temporary folder, so relative names resolve
 * against it. */
#include "webconfig.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check-main.h"

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char dir[64];
static char file[128];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/am-webconfig-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/web.yml", dir);
}

static void teardown(void)
{
    unlink(file);
    rmdir(dir);
}

static int load(const char *yaml, am_webconfig_t *wc, char *err, size_t n)
{
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(yaml, f);
    fclose(f);
    err[0] = '\0';
    return am_webconfig_load(file, wc, err, n);
}

#define HASH "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"

START_TEST(test_full)
{
    static const char yaml[] = "# every key we act on\n"
                               "tls_server_config:\n"
                               "  cert_file: tls/server.crt\n"
                               "  key_file: /etc/abs.key\n"
                               "  client_auth_type: RequireAndVerifyClientCert\n"
                               "  client_ca_file: ca.crt\n"
                               "  client_allowed_sans: [a.example, 10.0.0.1]\n"
                               "  min_version: TLS13\n"
                               "  max_version: TLS13\n"
                               "  cipher_suites:\n"
                               "    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n"
                               "  prefer_server_cipher_suites: false\n"
                               "  curve_preferences: [X25519, CurveP256]\n"
                               "http_server_config:\n"
                               "  http2: false\n"
                               "  headers:\n"
                               "    X-Frame-Options: deny\n"
                               "    Content-Security-Policy: \"\"\n"
                               "    Strict-Transport-Security: max-age=60\n"
                               "basic_auth_users:\n"
                               "  alice: " HASH "\n"
                               "  'bob smith': \"" HASH "\"\n";
    am_webconfig_t wc;
    char err[256];
    ck_assert_int_eq(load(yaml, &wc, err, sizeof(err)), 0);
    ck_assert(wc.tls);
    char want[200];
    snprintf(want, sizeof(want), "%s/tls/server.crt", dir);
    ck_assert_str_eq(wc.cert_file, want);
    ck_assert_str_eq(wc.key_file, "/etc/abs.key");
    snprintf(want, sizeof(want), "%s/ca.crt", dir);
    ck_assert_str_eq(wc.client_ca_file, want);
    ck_assert_int_eq(wc.client_auth, AM_CLIENT_AUTH_REQUIRE_AND_VERIFY);
    ck_assert_int_eq(wc.nallowed_sans, 2);
    ck_assert_str_eq(wc.allowed_sans[1], "10.0.0.1");
    ck_assert_int_eq(wc.min_version, AM_TLS13);
    ck_assert_int_eq(wc.max_version, AM_TLS13);
    ck_assert_int_eq(wc.ncipher_suites, 1);
    ck_assert(!wc.prefer_server_cipher_suites);
    ck_assert_str_eq(wc.groups, "X25519:P-256");
    ck_assert_str_eq(wc.headers,
                     "X-Frame-Options: deny\r\nStrict-Transport-Security: max-age=60\r\n");
    ck_assert_int_eq(wc.nusers, 2);
    ck_assert_str_eq(wc.users[1].name, "bob smith");
    ck_assert_str_eq(wc.users[1].hash, HASH);
    ck_assert_ptr_null(wc.ignored); /* http2: false is what we do */
    am_webconfig_free(&wc);
}
END_TEST

/* Defaults, empty sections, and the keys accepted with a warning. */
START_TEST(test_defaults_and_ignored)
{
    am_webconfig_t wc;
    char err[256];
    ck_assert_int_eq(load("", &wc, err, sizeof(err)), 0);
    ck_assert(!wc.tls);
    ck_assert_int_eq(wc.nusers, 0);
    ck_assert_int_eq(wc.min_version, AM_TLS12);
    ck_assert_int_eq(wc.max_version, AM_TLS13);
    ck_assert(wc.prefer_server_cipher_suites);
    am_webconfig_free(&wc);

    ck_assert_int_eq(load("tls_server_config:\nbasic_auth_users:\nhttp_server_config:\n"
                          "  http2: true\nrate_limit:\n  interval: 1s\n",
                          &wc, err, sizeof(err)),
                     0);
    ck_assert(!wc.tls);
    ck_assert_str_eq(wc.ignored, "http_server_config.http2,rate_limit");
    am_webconfig_free(&wc);

    /* Inline PEM instead of files. */
    ck_assert_int_eq(load("tls_server_config:\n  cert: |\n    -----BEGIN X-----\n"
                          "  key: k\n  client_auth_type: RequestClientCert\n",
                          &wc, err, sizeof(err)),
                     0);
    ck_assert(wc.tls);
    ck_assert_str_eq(wc.cert, "-----BEGIN X-----\n");
    ck_assert_int_eq(wc.client_auth, AM_CLIENT_AUTH_REQUEST);
    am_webconfig_free(&wc);
}
END_TEST

static const struct {
    const char *yaml;
    int line; /* 0: no line in the message */
    const char *msg;
} error_cases[] = {
    {"bogus: 1\n", 1, "unknown key \"bogus\""},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n  certfile: c\n", 4,
     "tls_server_config: unknown key \"certfile\""},
    {"http_server_config:\n  headers:\n    X-Powered-By: me\n", 3,
     "http_server_config.headers: \"X-Powered-By\" is not a header it may set"},
    {"http_server_config:\n  headers:\n    X-Frame-Options: allow\n", 3,
     "X-Frame-Options: \"allow\" is not deny or sameorigin"},
    {"http_server_config:\n  colour: red\n", 2, "http_server_config: unknown key \"colour\""},
    {"http_server_config:\n  http2: maybe\n", 2, "http2: expected true or false"},
    {"tls_server_config:\n  cert_file: a\n", 2, "tls_server_config: missing key_file"},
    {"tls_server_config:\n  key_file: a\n", 2, "tls_server_config: missing cert_file"},
    /* an empty string is unset, as in Go */
    {"tls_server_config:\n  cert_file: ''\n  key_file: a\n", 2,
     "tls_server_config: missing cert_file"},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n", 4,
     "min_version: \"TLS14\" is not TLS10, TLS11, TLS12 or TLS13"},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n"
     "  max_version: TLS12\n",
     2, "tls_server_config: min_version is above max_version"},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Always\n", 4,
     "client_auth_type: \"Always\" is not NoClientCert, RequestClientCert, RequireAnyClientCert, "
     "VerifyClientCertIfGiven or RequireAndVerifyClientCert"},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n"
     "  client_auth_type: VerifyClientCertIfGiven\n",
     2, "tls_server_config: client_auth_type VerifyClientCertIfGiven needs client_ca_file"},
    {"tls_server_config:\n  client_ca_file: a\n", 2,
     "tls_server_config: client certificates need cert_file and key_file"},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n", 2,
     "tls_server_config: client_allowed_sans needs client_auth_type RequireAnyClientCert or "
     "RequireAndVerifyClientCert"},
    {"tls_server_config:\n  cert_file: a\n  cert: b\n  key_file: c\n", 2,
     "tls_server_config: cert and cert_file are exclusive"},
    {"tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [P256]\n", 4,
     "curve_preferences: \"P256\" is not CurveP256, CurveP384, CurveP521 or X25519"},
    {"tls_server_config:\n  cert_file: [a]\n", 2, "cert_file: expected a string"},
    {"tls_server_config:\n  cipher_suites: x\n", 2, "cipher_suites: expected a list of strings"},
    {"tls_server_config:\n  cert_file: a\n  cert_file: b\n", 3,
     "tls_server_config: duplicate key \"cert_file\""},
    {"basic_auth_users:\n  a: plain\n", 2,
     "basic_auth_users: user \"a\": expected a bcrypt hash ($2y$...)"},
    {"basic_auth_users:\n  a:b: " HASH "\n", 2,
     "basic_auth_users: user \"a:b\": a name cannot hold ':'"},
    {"basic_auth_users: [a]\n", 1, "basic_auth_users: expected a mapping"},
    {"- a\n", 1, "the file: expected a mapping"},
};

START_TEST(test_errors)
{
    am_webconfig_t wc;
    char err[512], want[512];
    int rc = load(error_cases[_i].yaml, &wc, err, sizeof(err));
    ck_assert_int_eq(rc, -EINVAL);
    snprintf(want, sizeof(want), "%s:%d: %s", file, error_cases[_i].line, error_cases[_i].msg);
    ck_assert_str_eq(err, want);
    ck_assert(!wc.tls && wc.nusers == 0 && !wc.cert_file); /* left empty */
}
END_TEST

/* YAML syntax errors carry line and column; a missing file its errno. */
START_TEST(test_syntax_and_missing)
{
    am_webconfig_t wc;
    char err[512], want[512];
    ck_assert_int_eq(load("a: [1\nb: 2\n", &wc, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:", file);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    ck_assert_msg(strstr(err + strlen(want), ":") != NULL, "no line:col in %s", err);
    unlink(file);
    ck_assert_int_eq(am_webconfig_load(file, &wc, err, sizeof(err)), -ENOENT);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", file);
    ck_assert_str_eq(err, want);
    /* a short buffer is cut, not overrun */
    char small[8];
    ck_assert_int_eq(load("bogus: 1\n", &wc, small, sizeof(small)), -EINVAL);
    ck_assert_int_eq(strlen(small), sizeof(small) - 1);
}
END_TEST

static Suite *webconfig_suite(void)
{
    Suite *s = suite_create("WebConfig");
    TCase *tc = tcase_create("webconfig");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_full);
    tcase_add_test(tc, test_defaults_and_ignored);
    tcase_add_loop_test(tc, test_errors, 0, NELEMS(error_cases));
    tcase_add_test(tc, test_syntax_and_missing);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(webconfig_suite)
