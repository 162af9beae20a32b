/* Unit tests for src/http/negotiate.c: Accept and Accept-Encoding headers,
 * as tables (http-parser test.c style), to the format and the encoding of a
 * /metrics answer. */
#include "negotiate.h"

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

#include "check-main.h"

static const struct {
    const char *accept;
    bool om;
} om_cases[] = {
    {NULL, false},
    {"", false},
    {"text/plain", false},
    {"application/openmetrics-text", true},
    /* Prometheus 2.42's default. */
    {"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
     true},
    /* Prometheus 3's default, escaping and text 1.0.0 included. */
    {"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
     "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
     "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
     true},
    {"application/openmetrics-text; version=2.0.0", false},
    {"application/openmetrics-text;version=0.0.1", true},
    {"application/openmetrics-text;version=\"1.0.0\";charset=utf-8", true},
    {"Application/OpenMetrics-Text;Version=1.0.0", true},
    {"  application/openmetrics-text ; version = 1.0.0 ; q = 0.9 ,\ttext/plain ; q=0.8 ", true},
    /* Ties go to the range listed first. */
    {"text/plain;version=0.0.4,application/openmetrics-text;version=1.0.0", false},
    {"application/openmetrics-text;q=0.5,text/plain;q=0.5", true},
    {"*/*;q=0.5,application/openmetrics-text;q=0.5", false},
    /* q=0 means "not acceptable". */
    {"application/openmetrics-text;q=0", false},
    {"application/openmetrics-text;q=0.0, text/plain;q=0", false},
    {"application/openmetrics-text;q=0.2,*/*;q=0.3", false},
    {"text/*;q=0.1, application/openmetrics-text;q=0.2", true},
    {"text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=2.0.0", false},
    {"*/*", false},
    {"application/json", false},
    /* A malformed q drops that range. */
    {"application/openmetrics-text;q=abc, text/plain;q=0.1", false},
    {"application/openmetrics-text;q=1.5", false},
    {",, application/openmetrics-text ,,", true},
};

START_TEST(test_format)
{
    for (size_t i = 0; i < sizeof(om_cases) / sizeof(om_cases[0]); i++) {
        am_negotiated_t n;
        am_negotiate(om_cases[i].accept, NULL, &n);
        ck_assert_msg((n.format == AM_FORMAT_OPENMETRICS) == om_cases[i].om,
                      "case %zu: Accept: %s => want %d", i,
                      om_cases[i].accept ? om_cases[i].accept : "(null)", om_cases[i].om);
        ck_assert_str_eq(n.content_type,
                         om_cases[i].om ? AM_CONTENT_TYPE_OPENMETRICS : AM_CONTENT_TYPE_TEXT);
        ck_assert(!n.gzip);
    }
}
END_TEST

static const struct {
    const char *ae;
    bool gzip;
} gzip_cases[] = {
    {NULL, false},
    {"", false},
    {"gzip", true},
    {"GZip", true},
    {"x-gzip", true},
    {"deflate, gzip;q=0.5", true},
    {"gzip;q=0", false},
    {"gzip ; q=0.000", false},
    {"*", true},
    {"*;q=0", false},
    {"gzip;q=0, *", false}, /* named beats the wildcard */
    {"br, *;q=0.1", true},
    {"identity", false},
    {"deflate, br", false},
    {" br ; q=1.0 ,\tgzip ; q=0.001 ", true},
    {"gzip;q=1.001", false},
    {"gzip;q=0.5;foo=bar", true},
    {"gzip;q=\"0.5\"", true},
};

START_TEST(test_gzip)
{
    for (size_t i = 0; i < sizeof(gzip_cases) / sizeof(gzip_cases[0]); i++) {
        am_negotiated_t n;
        am_negotiate(NULL, gzip_cases[i].ae, &n);
        ck_assert_msg(n.gzip == gzip_cases[i].gzip, "case %zu: Accept-Encoding: %s => want %d", i,
                      gzip_cases[i].ae ? gzip_cases[i].ae : "(null)", gzip_cases[i].gzip);
        ck_assert_int_eq(n.format, AM_FORMAT_TEXT);
    }
}
END_TEST

/* Both headers at once decide independently. */
START_TEST(test_both)
{
    am_negotiated_t n;
    am_negotiate("application/openmetrics-text", "gzip", &n);
    ck_assert_int_eq(n.format, AM_FORMAT_OPENMETRICS);
    ck_assert(n.gzip);
    am_negotiate("text/plain", "identity", &n);
    ck_assert_int_eq(n.format, AM_FORMAT_TEXT);
    ck_assert(!n.gzip);
}
END_TEST

static Suite *negotiate_suite(void)
{
    Suite *s = suite_create("negotiate");
    TCase *tc = tcase_create("negotiate");
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_gzip);
    tcase_add_test(tc, test_both);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(negotiate_suite)
